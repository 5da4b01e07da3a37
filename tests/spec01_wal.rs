//! Spec 01 / spec 07, the WAL's recovery on a simulated disk:
//!
//! - a torn tail is cut off, and what recovery kept survives a later
//!   power loss;
//! - across seeds of torn writes on power loss, recovery exposes the synced
//!   frames and either all or none of an unsynced batch, never part of it;
//! - after a failed fsync and a process crash (page cache intact),
//!   recovery makes what it shows durable: a later power loss keeps it;
//! - a crash in the middle of recovery, then recovery again, gives the
//!   same frames;
//! - corruption in the middle of acknowledged data is reported, not
//!   truncated: the log is left as it was.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_ok, tearing_disk, wait_for_exit};
use durasim::systems::wal::{CommitLog, Wal, WalConfig, WalError};
use durasim::systems::wal_format::{encode_batch, Frame, ScanOutcome};
use durasim_sim::{run, FaultConfig, ProcessCtx, RunConfig, Sim};

fn frame(seq: u64, payload_len: usize) -> Frame {
    Frame {
        commit_seq: seq,
        txn_id: seq,
        event_id: Some(1000 + seq),
        pages: vec![seq as u32],
        payload: vec![seq as u8; payload_len],
    }
}

fn seqs(frames: &[(u64, Frame)]) -> Vec<u64> {
    frames.iter().map(|(_, f)| f.commit_seq).collect()
}

async fn open(ctx: &ProcessCtx) -> Result<(Wal, durasim::systems::wal::Recovery), WalError> {
    Wal::open(&ctx.disk(), WalConfig::new("wal"), None).await
}

/// Open, retrying while the disk fails an fsync of the recovery itself
/// (the old log is untouched then).
async fn open_retrying(ctx: &ProcessCtx) -> (Wal, durasim::systems::wal::Recovery) {
    loop {
        match open(ctx).await {
            Ok(opened) => return opened,
            Err(WalError::Io(_)) => continue,
            Err(other) => panic!("recovery: {other}"),
        }
    }
}

/// What each incarnation's recovery found (`Err` text when it failed).
type Recoveries = Arc<Mutex<Vec<Result<Vec<u64>, String>>>>;

/// Run a process whose first incarnation runs `setup` after recovering
/// and whose later ones only recover; the supervisor crashes and restarts
/// it once per entry of `crashes` (`true`: power loss). Returns what each
/// recovery found and the log's final image.
fn recoveries_after<S, Fut>(
    seed: u64,
    faults: FaultConfig,
    crashes: &'static [bool],
    setup: S,
) -> (Vec<Result<Vec<u64>, String>>, Vec<u8>)
where
    S: Fn(ProcessCtx, Wal) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let seen: Recoveries = Arc::default();
    let seen2 = seen.clone();
    let setup = Arc::new(setup);
    let image = expect_ok(run(
        RunConfig::new(seed).faults(faults),
        move |sim: Sim| async move {
            let id = sim.spawn_process("db", move |ctx| {
                let (seen, setup) = (seen2.clone(), setup.clone());
                async move {
                    let opened = open(&ctx).await;
                    let found = opened
                        .as_ref()
                        .map(|(_, r)| seqs(&r.frames))
                        .map_err(|e| e.to_string());
                    seen.lock().expect("lock").push(found);
                    if let (1, Ok((wal, _))) = (ctx.incarnation(), opened) {
                        setup(ctx, wal).await;
                    }
                }
            });
            assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
            for &power_loss in crashes {
                sim.crash(id, power_loss);
                sim.restart(id);
                assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
            }
            sim.disk_files(id).remove("wal/log").unwrap_or_default()
        },
    ));
    let seen = seen.lock().expect("lock").clone();
    (seen, image)
}

#[test]
fn recovery_cuts_off_a_torn_tail_and_what_it_kept_survives_power_loss() {
    let (seen, image) = recoveries_after(
        31,
        tearing_disk(),
        &[false, true],
        |ctx, mut wal| async move {
            wal.append_batch(&[frame(1, 10)]).await.expect("append");
            wal.sync().await.expect("sync");
            // Half of the next batch reaches the file, then the process dies.
            let (bytes, _) = encode_batch(&[frame(2, 10)], 4096);
            let file = ctx.disk().open("wal/log").await.expect("open");
            file.write_at(4096, &bytes[..70]).await.expect("write");
        },
    );
    assert_eq!(seen, vec![Ok(vec![]), Ok(vec![1]), Ok(vec![1])]);
    assert_eq!(image.len(), 4096, "the torn tail was cut off");
}

#[test]
fn recovery_exposes_all_or_none_of_an_unsynced_batch_never_part_of_it() {
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..60 {
        let mut faults = tearing_disk();
        faults.disk.crash_keep_all_fraction = 0.3;
        let (seen, _) = recoveries_after(seed, faults, &[true, true], |_, mut wal| async move {
            wal.append_batch(&[frame(1, 3000), frame(2, 3000)])
                .await
                .expect("append");
            wal.sync().await.expect("sync");
            // Spans several sectors; never synced.
            wal.append_batch(&[frame(3, 5000), frame(4, 5000)])
                .await
                .expect("append");
        });
        assert_eq!(seen[0], Ok(vec![]));
        let after_crash = seen[1].clone().expect("recovered");
        match after_crash.as_slice() {
            [1, 2] => lost += 1,
            [1, 2, 3, 4] => kept += 1,
            other => panic!("seed {seed}: recovery exposed {other:?}"),
        }
        assert_eq!(
            seen[2], seen[1],
            "seed {seed}: a second power loss changed it"
        );
    }
    assert!(
        lost > 0 && kept > 0,
        "both outcomes happen: kept {kept}, lost {lost}"
    );
}

#[test]
fn after_a_failed_fsync_recovery_makes_what_it_shows_durable() {
    let mut failed_syncs = 0;
    for seed in 0..40 {
        let mut faults = tearing_disk();
        faults.disk.fsync_eio = 0.5;
        let sync_failed = Arc::new(Mutex::new(false));
        let flag = sync_failed.clone();
        let seen: Recoveries = Arc::default();
        let seen2 = seen.clone();
        expect_ok(run(
            RunConfig::new(seed).faults(faults),
            move |sim| async move {
                // Fsyncs may fail while the first incarnation writes…
                sim.start_faults(&[]);
                let id = sim.spawn_process("db", move |ctx| {
                    let (seen, flag) = (seen2.clone(), flag.clone());
                    async move {
                        let (mut wal, recovery) = open_retrying(&ctx).await;
                        seen.lock().expect("lock").push(Ok(seqs(&recovery.frames)));
                        if ctx.incarnation() == 1 {
                            wal.append_batch(&[frame(1, 6000)]).await.expect("append");
                            if wal.sync().await.is_err() {
                                // Stop here, as a process dying right after
                                // the failed fsync would.
                                *flag.lock().expect("lock") = true;
                            }
                        }
                    }
                });
                assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
                // …then faults stop, and each crash is followed by recovery.
                sim.heal();
                for power_loss in [false, true] {
                    sim.crash(id, power_loss);
                    sim.restart(id);
                    assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
                }
            },
        ));
        if !*sync_failed.lock().expect("lock") {
            continue;
        }
        failed_syncs += 1;
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen[2], seen[1],
            "seed {seed}: power loss took back what recovery had shown"
        );
    }
    assert!(
        failed_syncs > 5,
        "only {failed_syncs} seeds had a failed fsync"
    );
}

#[test]
fn a_crash_in_the_middle_of_recovery_then_recovery_again_gives_the_same_frames() {
    let mut interrupted = 0;
    for seed in 0..20 {
        let mut faults = tearing_disk();
        faults.crash.crash_per_io = 0.2;
        faults.crash.restart_delay_ms = durasim_sim::profile::Span::new(1, 3);
        let started = Arc::new(Mutex::new(0u32));
        let seen: Recoveries = Arc::default();
        let (started2, seen2) = (started.clone(), seen.clone());
        let final_image = expect_ok(run(
            RunConfig::new(seed).faults(faults),
            move |sim| async move {
                // The run starts in its setup phase: no crashes at I/O
                // points while the log is built.
                let id = sim.spawn_process("db", move |ctx| {
                    let (started, seen) = (started2.clone(), seen2.clone());
                    async move {
                        *started.lock().expect("lock") += 1;
                        let (mut wal, recovery) = open_retrying(&ctx).await;
                        seen.lock().expect("lock").push(Ok(seqs(&recovery.frames)));
                        if ctx.incarnation() == 1 {
                            for seq in 1..=3 {
                                wal.append_batch(&[frame(seq, 2000)]).await.expect("append");
                                wal.sync().await.expect("sync");
                            }
                            let tail = ctx.disk().open("wal/log").await.expect("open");
                            tail.write_at(3 * 4096, &[0xAB; 900]).await.expect("write");
                        }
                    }
                });
                assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
                sim.start_faults(&[id]);
                for round in 0..12 {
                    sim.crash(id, round % 2 == 0);
                    sim.restart(id);
                    sim.sleep(Duration::from_millis(10)).await;
                }
                sim.heal();
                assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
                sim.disk_files(id).remove("wal/log").unwrap_or_default()
            },
        ));
        let seen = seen.lock().expect("lock").clone();
        let started = *started.lock().expect("lock") as usize;
        interrupted += started - seen.len();
        assert_eq!(seen[0], Ok(vec![]));
        for (i, found) in seen.iter().enumerate().skip(1) {
            assert_eq!(found, &Ok(vec![1, 2, 3]), "seed {seed}: recovery {i}");
        }
        assert_eq!(final_image.len(), 3 * 4096, "seed {seed}: the tail is gone");
    }
    assert!(interrupted > 0, "some recoveries were cut short by a crash");
}

#[test]
fn corruption_in_the_middle_of_acknowledged_data_is_reported_and_not_truncated() {
    let images: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let images2 = images.clone();
    let (seen, image) = recoveries_after(
        35,
        FaultConfig::none(),
        &[false, false],
        move |ctx, mut wal| {
            let images = images2.clone();
            async move {
                for seq in 1..=2 {
                    wal.append_batch(&[frame(seq, 100)]).await.expect("append");
                    wal.sync().await.expect("sync");
                }
                // A bit flips inside batch 1, which batch 2 proves was acknowledged.
                let file = ctx.disk().open("wal/log").await.expect("open");
                let mut byte = file.read_at(100, 1).await.expect("read");
                byte[0] ^= 0x04;
                file.write_at(100, &byte).await.expect("write");
                file.sync_all().await.expect("sync");
                images
                    .lock()
                    .expect("lock")
                    .push(ctx.disk().snapshot().remove("wal/log").unwrap_or_default());
            }
        },
    );
    let expected = WalError::Corrupt(ScanOutcome::MidLogCorruption {
        offset: 0,
        next_valid_offset: 4096,
    })
    .to_string();
    assert_eq!(seen, vec![Ok(vec![]), Err(expected.clone()), Err(expected)]);
    let images = images.lock().expect("lock");
    assert_eq!(images[0].len(), 2 * 4096);
    assert_eq!(image, images[0], "recovery left the damaged log as it was");
}
