//! SimDisk against its reference: what spec 07 allows after a crash.
//!
//! The reference is deliberately simpler than the model: it remembers the
//! synced image of a file and every image the file passed through since
//! (one per unsynced write or length change). After a power loss, each
//! sector must equal that sector of one of those images — whole, absent, or
//! torn only at sector boundaries — and the length must be one of theirs.
//! A sector no unsynced operation touched is the same in every image, so
//! this also proves synced bytes survive.
//!
//! Index:
//! - proptests: crash outcomes per sector (4096 and 512-byte sectors);
//!   synced files are exact after any crash; failed fsyncs never resurrect.
//! - namespace: un-dir-synced create/rename may vanish, dir-synced ones never.
//! - one test per knob showing it fire.

use durasim_sim::disk::model::{DiskState, FaultNote};
use durasim_sim::disk::DiskConfig;
use durasim_sim::profile::DiskFaults;
use durasim_sim::tape::{Chooser, Tape};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: usize, byte: u8 },
    Append { len: usize, byte: u8 },
    SetLen(u64),
    Fsync,
    Crash,
}

fn op(sector: u64) -> impl Strategy<Value = Op> {
    let max = 3 * sector;
    prop_oneof![
        4 => (0..max, 1..(2 * sector as usize), any::<u8>())
            .prop_map(|(offset, len, byte)| Op::Write { offset, len, byte }),
        3 => (1..(2 * sector as usize), any::<u8>()).prop_map(|(len, byte)| Op::Append { len, byte }),
        1 => (0..max).prop_map(Op::SetLen),
        2 => Just(Op::Fsync),
        2 => Just(Op::Crash),
    ]
}

fn tearing(within_sector: bool) -> DiskFaults {
    DiskFaults {
        tear_unsynced: true,
        tear_within_sector: within_sector,
        crash_keep_all_fraction: 0.1,
        ..DiskFaults::default()
    }
}

fn disk(sector: u32) -> DiskState {
    DiskState::new(DiskConfig {
        sector_size: sector,
        ..DiskConfig::default()
    })
}

/// A file created and made durable (name and empty content).
fn durable_file(d: &mut DiskState) -> u64 {
    let ino = d.create("f", false).expect("create");
    d.sync_dir("").expect("sync dir");
    ino
}

fn read_all(d: &DiskState, path: &str) -> Vec<u8> {
    let ino = d.lookup(path).expect("file exists");
    d.read_at(ino, 0, usize::MAX >> 1).expect("read")
}

fn zero_extended(image: &[u8], range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(|i| image.get(i).copied().unwrap_or(0)).collect()
}

/// Check a post-crash file against the images it may have come from.
fn check_against_images(after: &[u8], images: &[Vec<u8>], sector: usize) -> Result<(), String> {
    if !images.iter().any(|img| img.len() == after.len()) {
        return Err(format!(
            "length {} is none of the images' {:?}",
            after.len(),
            images.iter().map(Vec::len).collect::<Vec<_>>()
        ));
    }
    let mut start = 0;
    while start < after.len() {
        let end = (start + sector).min(after.len());
        let got = &after[start..end];
        if !images
            .iter()
            .any(|img| zero_extended(img, start..end) == got)
        {
            return Err(format!("sector at {start}..{end} matches no image"));
        }
        start = end;
    }
    Ok(())
}

fn run_ops(ops: &[Op], seed: u64, sector: u32) -> Result<(), TestCaseError> {
    let faults = tearing(false);
    let mut chooser = Chooser::random(seed);
    let mut notes: Vec<FaultNote> = Vec::new();
    let mut d = disk(sector);
    let ino = durable_file(&mut d);
    let mut images: Vec<Vec<u8>> = vec![Vec::new()];
    for op in ops {
        let latest = images.last().cloned().unwrap_or_default();
        match *op {
            Op::Write { offset, len, byte } => {
                d.write_at(
                    ino,
                    offset,
                    &vec![byte; len],
                    &mut chooser,
                    &faults,
                    &mut notes,
                )
                .expect("write");
                let mut next = latest;
                let end = offset as usize + len;
                if next.len() < end {
                    next.resize(end, 0);
                }
                next[offset as usize..end].fill(byte);
                images.push(next);
            }
            Op::Append { len, byte } => {
                let at = d
                    .append(ino, &vec![byte; len], &mut chooser, &faults, &mut notes)
                    .expect("append");
                prop_assert_eq!(at, latest.len() as u64);
                let mut next = latest;
                next.extend(std::iter::repeat_n(byte, len));
                images.push(next);
            }
            Op::SetLen(len) => {
                d.set_len(ino, len, &mut chooser, &faults, &mut notes)
                    .expect("set_len");
                let mut next = latest;
                next.resize(len as usize, 0);
                images.push(next);
            }
            Op::Fsync => {
                let issued = d.issue_seq();
                d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
                    .expect("fsync");
                images = vec![latest];
            }
            Op::Crash => {
                d.power_fail(&mut chooser, &faults, &mut notes);
                let after = read_all(&d, "f");
                check_against_images(&after, &images, sector as usize)
                    .map_err(TestCaseError::fail)?;
                images = vec![after];
            }
        }
        // Reads always see the latest writes.
        prop_assert_eq!(&read_all(&d, "f"), images.last().expect("an image"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn crashes_leave_each_sector_whole_from_some_image_4096(
        ops in proptest::collection::vec(op(4096), 1..40),
        seed in any::<u64>(),
    ) {
        run_ops(&ops, seed, 4096)?;
    }

    #[test]
    fn crashes_leave_each_sector_whole_from_some_image_512(
        ops in proptest::collection::vec(op(512), 1..40),
        seed in any::<u64>(),
    ) {
        run_ops(&ops, seed, 512)?;
    }

    #[test]
    fn a_synced_file_is_exact_after_any_crash(
        writes in proptest::collection::vec((0u64..9000, 1usize..5000, any::<u8>()), 1..10),
        seed in any::<u64>(),
    ) {
        let faults = tearing(true);
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        let ino = durable_file(&mut d);
        for (offset, len, byte) in writes {
            d.write_at(ino, offset, &vec![byte; len], &mut chooser, &faults, &mut notes).expect("write");
        }
        let issued = d.issue_seq();
        d.fsync(ino, issued, &mut chooser, &faults, &mut notes).expect("fsync");
        let before = read_all(&d, "f");
        d.power_fail(&mut chooser, &faults, &mut notes);
        prop_assert_eq!(read_all(&d, "f"), before);
    }

    #[test]
    fn bytes_a_failed_fsync_dropped_stay_dropped(
        sectors in 1usize..6,
        tail in 1usize..4096,
        dropped in proptest::collection::vec(any::<bool>(), 6),
    ) {
        // The failed fsync's decisions come from a tape: it fails, keeps
        // the new length, and each sector is kept (0) or dropped (1).
        let len = (sectors - 1) * 4096 + tail;
        let mut tape = Tape::empty();
        tape.set("disk.fsync.eio@f", 0, 1);
        for (i, &drop) in dropped.iter().take(sectors).enumerate() {
            tape.set("disk.eio.sector", i, u64::from(drop));
        }
        let mut chooser = Chooser::replay(tape);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        let ino = durable_file(&mut d);
        let failing = DiskFaults { fsync_eio: 1.0, ..DiskFaults::default() };
        let healthy = DiskFaults::default();
        d.write_at(ino, 0, &vec![0xAB; len], &mut chooser, &healthy, &mut notes).expect("write");
        let issued = d.issue_seq();
        prop_assert!(d.fsync(ino, issued, &mut chooser, &failing, &mut notes).is_err());
        // Reads still show the new bytes, and a retried fsync "succeeds"…
        prop_assert_eq!(read_all(&d, "f"), vec![0xAB; len]);
        let issued = d.issue_seq();
        prop_assert!(d.fsync(ino, issued, &mut chooser, &healthy, &mut notes).is_ok());
        // …but after a crash that keeps every unsynced write, each dropped
        // sector is still gone (zeros: the file was empty before).
        d.power_fail(&mut chooser, &healthy, &mut notes);
        let after = read_all(&d, "f");
        prop_assert_eq!(after.len(), len);
        for (i, chunk) in after.chunks(4096).enumerate() {
            let expected = if dropped[i] { 0 } else { 0xAB };
            prop_assert!(chunk.iter().all(|&b| b == expected), "sector {}", i);
        }
    }
}

/// Fraction of `seeds` for which `scenario` returns true.
fn count(seeds: std::ops::Range<u64>, mut scenario: impl FnMut(u64) -> bool) -> usize {
    seeds.filter(|&s| scenario(s)).count()
}

#[test]
fn an_un_dir_synced_create_can_vanish_and_a_dir_synced_one_cannot() {
    let faults = tearing(false);
    let survives = |seed: u64, sync_dir: bool| {
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        let ino = d.create("new", false).expect("create");
        d.write_at(ino, 0, b"data", &mut chooser, &faults, &mut notes)
            .expect("write");
        let issued = d.issue_seq();
        d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
            .expect("fsync");
        if sync_dir {
            d.sync_dir("").expect("sync dir");
        }
        d.power_fail(&mut chooser, &faults, &mut notes);
        d.exists("new")
    };
    let unsynced = count(0..200, |s| survives(s, false));
    assert!(
        unsynced > 0 && unsynced < 200,
        "un-dir-synced create survived {unsynced}/200"
    );
    assert_eq!(count(0..200, |s| survives(s, true)), 200);
}

#[test]
fn an_un_dir_synced_rename_can_revert_and_a_dir_synced_one_cannot() {
    let faults = tearing(false);
    let renamed = |seed: u64, sync_dir: bool| {
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        d.create("tmp", false).expect("create");
        d.sync_dir("").expect("sync dir");
        d.rename("tmp", "final", true).expect("rename");
        if sync_dir {
            d.sync_dir("").expect("sync dir");
        }
        d.power_fail(&mut chooser, &faults, &mut notes);
        // Atomic rename: exactly one of the names exists.
        assert_ne!(d.exists("tmp"), d.exists("final"), "seed {seed}");
        d.exists("final")
    };
    let unsynced = count(0..200, |s| renamed(s, false));
    assert!(
        unsynced > 0 && unsynced < 200,
        "un-dir-synced rename survived {unsynced}/200"
    );
    assert_eq!(count(0..200, |s| renamed(s, true)), 200);
}

#[test]
fn knob_non_atomic_rename_can_leave_both_names() {
    let faults = DiskFaults {
        non_atomic_rename: true,
        ..tearing(false)
    };
    let both = count(0..300, |seed| {
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        d.create("tmp", false).expect("create");
        d.sync_dir("").expect("sync dir");
        d.rename("tmp", "final", !faults.non_atomic_rename)
            .expect("rename");
        d.power_fail(&mut chooser, &faults, &mut notes);
        d.exists("tmp") && d.exists("final")
    });
    assert!(both > 0, "non-atomic rename never left both names");
}

#[test]
fn knob_tear_within_sector_tears_inside_sectors() {
    let faults = tearing(true);
    let torn_inside = count(0..300, |seed| {
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(512);
        let ino = durable_file(&mut d);
        d.write_at(ino, 0, &[1; 2048], &mut chooser, &faults, &mut notes)
            .expect("write");
        d.power_fail(&mut chooser, &faults, &mut notes);
        let after = read_all(&d, "f");
        after.chunks(512).any(|s| s.iter().any(|&b| b != s[0]))
    });
    assert!(torn_inside > 0, "no sector tore inside itself");
}

#[test]
fn knob_keep_all_fraction_one_never_loses_unsynced_data() {
    let faults = DiskFaults {
        crash_keep_all_fraction: 1.0,
        ..tearing(true)
    };
    for seed in 0..100 {
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        let ino = durable_file(&mut d);
        d.write_at(ino, 0, &[7; 10_000], &mut chooser, &faults, &mut notes)
            .expect("write");
        d.power_fail(&mut chooser, &faults, &mut notes);
        assert_eq!(read_all(&d, "f"), vec![7; 10_000], "seed {seed}");
    }
}

#[test]
fn knob_tear_unsynced_off_keeps_every_unsynced_write() {
    let faults = DiskFaults::default();
    for seed in 0..50 {
        let mut chooser = Chooser::random(seed);
        let mut notes = Vec::new();
        let mut d = disk(4096);
        let ino = d.create("f", false).expect("create");
        d.write_at(ino, 0, &[7; 5000], &mut chooser, &faults, &mut notes)
            .expect("write");
        d.power_fail(&mut chooser, &faults, &mut notes);
        assert_eq!(read_all(&d, "f"), vec![7; 5000]);
        assert!(notes.is_empty());
    }
}

#[test]
fn knob_fsync_eio_fails_fsyncs() {
    let faults = DiskFaults {
        fsync_eio: 0.5,
        ..DiskFaults::default()
    };
    let mut chooser = Chooser::random(1);
    let mut notes = Vec::new();
    let mut d = disk(4096);
    let ino = durable_file(&mut d);
    let mut failures = 0;
    for i in 0..100u8 {
        d.append(ino, &[i; 100], &mut chooser, &faults, &mut notes)
            .expect("append");
        let issued = d.issue_seq();
        if let Err(e) = d.fsync(ino, issued, &mut chooser, &faults, &mut notes) {
            assert!(durasim_sim::disk::errors::is_eio(&e), "{e}");
            failures += 1;
        }
    }
    assert!(
        (20..80).contains(&failures),
        "{failures} of 100 fsyncs failed"
    );
}

#[test]
fn knob_capacity_and_injected_enospc_refuse_writes() {
    let mut d = DiskState::new(DiskConfig {
        capacity_bytes: Some(1000),
        ..DiskConfig::default()
    });
    let mut chooser = Chooser::random(0);
    let mut notes = Vec::new();
    let healthy = DiskFaults::default();
    let ino = durable_file(&mut d);
    d.append(ino, &[1; 900], &mut chooser, &healthy, &mut notes)
        .expect("fits");
    let err = d
        .append(ino, &[1; 200], &mut chooser, &healthy, &mut notes)
        .expect_err("full");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    assert_eq!(
        read_all(&d, "f").len(),
        900,
        "a refused write changes nothing"
    );

    let injected = DiskFaults {
        enospc: 1.0,
        ..DiskFaults::default()
    };
    let mut d = disk(4096);
    let ino = durable_file(&mut d);
    let err = d
        .append(ino, b"x", &mut chooser, &injected, &mut notes)
        .expect_err("injected");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
}

#[test]
fn knob_latent_sector_errors_fail_reads_until_rewritten() {
    let faults = DiskFaults {
        latent_sector_error: 1.0,
        ..DiskFaults::default()
    };
    let mut chooser = Chooser::random(9);
    let mut notes = Vec::new();
    let mut d = disk(4096);
    let ino = durable_file(&mut d);
    d.write_at(ino, 0, &[5; 8192], &mut chooser, &faults, &mut notes)
        .expect("write");
    let issued = d.issue_seq();
    d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
        .expect("fsync");
    d.power_fail(&mut chooser, &faults, &mut notes);
    let err = d.read_at(ino, 0, 8192).expect_err("latent error");
    assert!(durasim_sim::disk::errors::is_eio(&err));
    // Rewriting both sectors remaps them.
    d.write_at(
        ino,
        0,
        &[6; 8192],
        &mut chooser,
        &DiskFaults::default(),
        &mut notes,
    )
    .expect("rewrite");
    assert_eq!(
        d.read_at(ino, 0, 8192).expect("readable again"),
        vec![6; 8192]
    );
}

#[test]
fn knob_silent_corruption_flips_a_bit_within_budget() {
    let faults = DiskFaults {
        silent_corruption: 1.0,
        media_faults_per_file_max: 1,
        ..DiskFaults::default()
    };
    let mut chooser = Chooser::random(4);
    let mut notes = Vec::new();
    let mut d = disk(4096);
    let ino = durable_file(&mut d);
    d.write_at(ino, 0, &[0; 4096], &mut chooser, &faults, &mut notes)
        .expect("write");
    let issued = d.issue_seq();
    d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
        .expect("fsync");
    for _ in 0..5 {
        d.power_fail(&mut chooser, &faults, &mut notes);
    }
    let flipped: u32 = read_all(&d, "f").iter().map(|b| b.count_ones()).sum();
    assert_eq!(
        flipped, 1,
        "budget of one fault per file: exactly one bit flipped"
    );

    let over = DiskFaults {
        over_budget: true,
        ..faults
    };
    for _ in 0..5 {
        d.power_fail(&mut chooser, &over, &mut notes);
    }
    let flipped: u32 = read_all(&d, "f").iter().map(|b| b.count_ones()).sum();
    assert!(flipped > 1, "over-budget mode exceeds the budget");
}

#[test]
fn knob_misdirected_write_lands_one_sector_off() {
    let faults = DiskFaults {
        misdirected_write: 1.0,
        ..DiskFaults::default()
    };
    let mut chooser = Chooser::random(2);
    let mut notes = Vec::new();
    let mut d = disk(512);
    let ino = durable_file(&mut d);
    d.write_at(ino, 0, &[9; 512], &mut chooser, &faults, &mut notes)
        .expect("write");
    let issued = d.issue_seq();
    d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
        .expect("fsync");
    d.power_fail(&mut chooser, &DiskFaults::default(), &mut notes);
    let after = read_all(&d, "f");
    assert_eq!(&after[..512], &[0; 512][..]);
    assert_eq!(&after[512..1024], &[9; 512][..]);
}

#[test]
fn knob_lost_write_vanishes_despite_a_successful_fsync() {
    let faults = DiskFaults {
        lost_write: 1.0,
        ..DiskFaults::default()
    };
    let mut chooser = Chooser::random(2);
    let mut notes = Vec::new();
    let mut d = disk(4096);
    let ino = durable_file(&mut d);
    d.write_at(ino, 0, b"hello", &mut chooser, &faults, &mut notes)
        .expect("write");
    let issued = d.issue_seq();
    d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
        .expect("fsync reports success");
    assert_eq!(
        read_all(&d, "f"),
        b"hello",
        "reads see the write before the crash"
    );
    d.power_fail(&mut chooser, &DiskFaults::default(), &mut notes);
    assert!(
        read_all(&d, "f").is_empty(),
        "the lost write is gone after the crash"
    );
}

#[test]
fn an_fsync_covers_only_writes_completed_before_it_was_issued() {
    let faults = DiskFaults::default();
    let mut chooser = Chooser::random(0);
    let mut notes = Vec::new();
    let mut d = disk(4096);
    let ino = durable_file(&mut d);
    d.append(ino, b"before", &mut chooser, &faults, &mut notes)
        .expect("append");
    let issued = d.issue_seq();
    d.append(ino, b"after", &mut chooser, &faults, &mut notes)
        .expect("append");
    d.fsync(ino, issued, &mut chooser, &faults, &mut notes)
        .expect("fsync");
    // A crash that drops every unsynced write (replayed decision: drop 1).
    let mut tape = Tape::empty();
    tape.set("disk.crash.unsynced@f", 0, 1);
    let mut crash_chooser = Chooser::replay(tape);
    d.power_fail(&mut crash_chooser, &tearing(false), &mut notes);
    assert_eq!(read_all(&d, "f"), b"before");
}
