//! Determinism of the world: same seed ⇒ same trace digest, whatever runs
//! beside it; tapes replay exactly; a tape stripped of its faults is a
//! fault-free run.

use std::collections::BTreeMap;

use durasim_sim::selftest::{run_toy, ToyReport};
use durasim_sim::trace::EventKind;
use durasim_sim::{FaultConfig, RunOutcome, TraceDigest, TraceMode};

/// Every fault kind the world has, at reference rates.
fn every_fault() -> FaultConfig {
    FaultConfig::none()
        .with_network(1.0)
        .with_crashes(1.0)
        .with_disk(1.0)
        .with_app(1.0)
        .with_media(1.0)
}

fn toy(seed: u64) -> RunOutcome<ToyReport> {
    run_toy(seed, every_fault(), None, 30, TraceMode::DigestOnly)
}

fn digest(seed: u64) -> TraceDigest {
    let outcome = toy(seed);
    assert!(outcome.result.is_ok(), "seed {seed}: {:?}", outcome.result);
    outcome.digest
}

#[test]
fn same_seed_gives_the_same_digest_twice() {
    for seed in [0, 1, 42, 9_999] {
        assert_eq!(digest(seed), digest(seed), "seed {seed}");
    }
}

#[test]
fn different_seeds_give_different_digests() {
    let digests: std::collections::BTreeSet<TraceDigest> = (0..16).map(digest).collect();
    assert_eq!(digests.len(), 16);
}

#[test]
fn parallel_threads_give_the_same_digests_as_one_after_another() {
    let seeds: Vec<u64> = (100..108).collect();
    let sequential: Vec<TraceDigest> = seeds.iter().map(|&s| digest(s)).collect();
    let parallel: Vec<TraceDigest> = std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&s| scope.spawn(move || digest(s)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(sequential, parallel);
}

#[test]
fn a_recorded_tape_replays_to_the_same_digest_and_tape() {
    for seed in [3, 17, 23] {
        let first = toy(seed);
        assert!(first.stats.faults() > 0, "seed {seed} injected no fault");
        let replayed = run_toy(
            seed,
            every_fault(),
            Some(first.tape.clone()),
            30,
            TraceMode::DigestOnly,
        );
        assert_eq!(first.digest, replayed.digest, "seed {seed}");
        assert_eq!(first.tape, replayed.tape, "seed {seed}");
    }
}

#[test]
fn a_tape_with_every_fault_removed_is_a_fault_free_run() {
    for seed in [3, 17, 23] {
        let first = toy(seed);
        let faults = first.tape.faults();
        assert!(!faults.is_empty());
        let clean_tape = first.tape.without(&faults);
        let clean = run_toy(seed, every_fault(), Some(clean_tape), 30, TraceMode::Full);
        assert_eq!(clean.stats.faults(), 0, "seed {seed}: {:?}", clean.stats);
        let events = clean.events.as_deref().unwrap_or_default();
        let fault_events = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Fault { .. }))
            .count();
        assert_eq!(fault_events, 0, "seed {seed}");
        let report = clean.result.expect("clean run finishes");
        assert!(report.clients_done);
        assert_eq!(report.lost, 0);
    }
}

#[test]
fn removing_one_fault_changes_the_run_but_keeps_the_other_faults() {
    let first = toy(5);
    let faults = first.tape.faults();
    assert!(faults.len() >= 2);
    let edited = run_toy(
        5,
        every_fault(),
        Some(first.tape.without(&faults[..1])),
        30,
        TraceMode::DigestOnly,
    );
    assert_ne!(edited.digest, first.digest);
    assert!(edited.stats.faults() > 0);
}

#[test]
fn every_fault_kind_fires_across_a_few_seeds() {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for seed in 0..24 {
        for (kind, n) in toy(seed).stats.faults_by_kind {
            *by_kind.entry(kind).or_default() += n;
        }
    }
    for kind in [
        "crash",
        "pause",
        "clock-jump",
        "partition",
        "network-loss",
        "network-duplicate",
        "network-reorder",
        "torn-write",
        "lost-metadata",
        "fsync-eio",
        "storage-busy",
        "media",
    ] {
        assert!(
            by_kind.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never fired: {by_kind:?}"
        );
    }
}

#[test]
fn synced_and_acknowledged_records_survive_crashes_and_torn_writes() {
    // Without media faults (which may corrupt synced data), a correct
    // system on SimDisk never loses an acknowledged record.
    let faults = FaultConfig::none()
        .with_network(1.0)
        .with_crashes(1.0)
        .with_disk(1.0)
        .with_app(1.0);
    for seed in 0..40 {
        let outcome = run_toy(seed, faults.clone(), None, 30, TraceMode::DigestOnly);
        let report = outcome.result.expect("run finishes");
        assert!(
            report.clients_done,
            "seed {seed}: clients did not finish after heal"
        );
        assert_eq!(
            report.lost, 0,
            "seed {seed}: lost acked records: {report:?}"
        );
        assert_eq!(report.acked.len(), 60, "seed {seed}");
    }
}
