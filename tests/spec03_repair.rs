//! Spec 03, asynchronous repair workers, on a simulated disk:
//!
//! - each commit's events come in the spec's order, numbered 1, 2, 3, …,
//!   in simulated time; the durable-but-not-repairable window is measured;
//!   pending repairs are counted until the workers finish;
//! - with repair disabled: durable, acked, nothing scheduled;
//! - a panicking worker fails only its own commit and is reported;
//!   failing generation and a failure to schedule fail loudly;
//! - tasks cancelled before they start end `Failed`;
//! - after a crash, pending repairs are re-scheduled and complete;
//! - the parity regenerates any one lost shard, and `verify_parity`
//!   rejects damaged parity or data;
//! - under buggified faults, at quiescence nothing is pending and every
//!   `Completed` repair's durable parity verifies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{expect_ok, in_process, wait_for_exit};
use durasim::systems::repair::{
    read_image, regenerate_shard, shards, verify_parity, xor_parity, BackgroundReport,
    GenerationFault, ParityRecord, Receipt, RepairConfig, RepairCoordinator, RepairEventKind,
    RepairState,
};
use durasim::systems::wal_format::DEFAULT_BLOCK;
use durasim_sim::{run, FaultConfig, ProcessCtx, RunConfig, Sim};

fn payload(i: u64) -> Vec<u8> {
    (0..1300u64).map(|b| (b * 31 + i * 7) as u8).collect()
}

fn config_with(plan: impl Fn(u64) -> GenerationFault + Send + Sync + 'static) -> RepairConfig {
    RepairConfig {
        fault_plan: Some(Arc::new(plan)),
        ..RepairConfig::default()
    }
}

async fn open(ctx: &ProcessCtx, config: RepairConfig) -> RepairCoordinator {
    RepairCoordinator::open(&ctx.disk(), config)
        .await
        .expect("recovery")
        .0
}

fn kinds(repair: &RepairCoordinator, seq: u64) -> Vec<RepairEventKind> {
    repair.events_for(seq).into_iter().map(|e| e.kind).collect()
}

/// Every `Completed` commit's parity on `ctx`'s disk verifies.
fn parity_on_disk_verifies(ctx: &ProcessCtx, repair: &RepairCoordinator) -> usize {
    let (commits, records) = read_image(&ctx.disk().snapshot(), "repair", DEFAULT_BLOCK);
    let mut verified = 0;
    for (seq, state) in repair.states() {
        if state == RepairState::Completed {
            let record = records
                .iter()
                .find(|r| r.commit_seq == seq)
                .unwrap_or_else(|| panic!("commit {seq} is Completed without parity on disk"));
            assert!(verify_parity(&commits[&seq], record), "commit {seq}");
            verified += 1;
        }
    }
    verified
}

use RepairEventKind::*;

#[test]
fn events_come_in_spec_order_and_the_not_repairable_window_is_measured() {
    expect_ok(run(RunConfig::new(41), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let slow = Duration::from_millis(5);
            let repair = open(&ctx, config_with(move |_| GenerationFault::Slow(slow))).await;
            let mut receipts = Vec::new();
            for i in 1..=3 {
                receipts.push(repair.commit(payload(i)).await.expect("durable"));
            }
            let seqs: Vec<u64> = receipts.iter().map(|r| r.commit_seq).collect();
            assert_eq!(seqs, vec![1, 2, 3]);
            assert!(receipts.iter().all(|r| r.durable && r.repair_pending));
            assert!(repair.pending_background_repair_count() > 0);
            assert_eq!(repair.durable_not_repairable_window(3), None, "not yet");
            let report = repair.wait_for_background_repair().await;
            assert_eq!(
                report,
                BackgroundReport {
                    joined: 3,
                    panicked: 0
                }
            );
            assert_eq!(repair.pending_background_repair_count(), 0);
            for seq in 1..=3 {
                assert_eq!(repair.repair_state_for(seq), RepairState::Completed);
                assert_eq!(
                    kinds(&repair, seq),
                    vec![
                        CommitDurable,
                        DurableButNotRepairable,
                        CommitAcked,
                        RepairStarted,
                        RepairCompleted
                    ]
                );
                let events = repair.events_for(seq);
                let numbers: Vec<u32> = events.iter().map(|e| e.event_seq).collect();
                assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
                assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
                let window = repair
                    .durable_not_repairable_window(seq)
                    .expect("completed");
                assert!(window >= slow, "commit {seq}: window {window:?}");
            }
            assert_eq!(parity_on_disk_verifies(&ctx, &repair), 3);
        })
        .await
    }));
}

#[test]
fn with_repair_disabled_a_commit_is_durable_and_acked_with_nothing_scheduled() {
    expect_ok(run(RunConfig::new(42), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let config = RepairConfig {
                enabled: false,
                ..RepairConfig::default()
            };
            let repair = open(&ctx, config).await;
            let receipt = repair.commit(payload(1)).await.expect("durable");
            assert_eq!(
                receipt,
                Receipt {
                    commit_seq: 1,
                    durable: true,
                    repair_pending: false
                }
            );
            assert_eq!(kinds(&repair, 1), vec![CommitDurable, CommitAcked]);
            assert_eq!(repair.repair_state_for(1), RepairState::NotScheduled);
            assert_eq!(repair.wait_for_background_repair().await.joined, 0);
            let (commits, parity) = read_image(&ctx.disk().snapshot(), "repair", DEFAULT_BLOCK);
            assert_eq!(commits.len(), 1);
            assert!(parity.is_empty());
        })
        .await
    }));
}

#[test]
fn a_panicking_worker_fails_only_its_own_commit_and_is_reported() {
    expect_ok(run(RunConfig::new(43), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let repair = open(
                &ctx,
                config_with(|seq| match seq {
                    2 => GenerationFault::Panic,
                    _ => GenerationFault::Slow(Duration::from_millis(2)),
                }),
            )
            .await;
            for i in 1..=4 {
                repair.commit(payload(i)).await.expect("durable");
            }
            let report = repair.wait_for_background_repair().await;
            assert!(report.any_panicked());
            assert_eq!(report.panicked, 1);
            assert_eq!(repair.repair_state_for(2), RepairState::Failed);
            let last = kinds(&repair, 2).pop();
            assert!(
                matches!(&last, Some(RepairFailed { reason }) if reason.contains("panicked")),
                "{last:?}"
            );
            for seq in [1, 3, 4] {
                assert_eq!(
                    repair.repair_state_for(seq),
                    RepairState::Completed,
                    "{seq}"
                );
            }
            // The workers' locks were not poisoned: a later commit repairs.
            let receipt = repair.commit(payload(5)).await.expect("durable");
            repair.wait_for_background_repair().await;
            assert_eq!(
                repair.repair_state_for(receipt.commit_seq),
                RepairState::Completed
            );
            assert_eq!(parity_on_disk_verifies(&ctx, &repair), 4);
        })
        .await
    }));
}

#[test]
fn failing_generation_and_a_failure_to_schedule_end_failed_and_say_so() {
    expect_ok(run(RunConfig::new(44), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let repair = open(
                &ctx,
                config_with(|seq| match seq {
                    1 => GenerationFault::Fail,
                    _ => GenerationFault::CannotSchedule,
                }),
            )
            .await;
            let first = repair.commit(payload(1)).await.expect("durable");
            let second = repair.commit(payload(2)).await.expect("durable");
            assert!(first.repair_pending);
            assert!(second.durable && !second.repair_pending);
            repair.wait_for_background_repair().await;
            assert_eq!(repair.repair_state_for(1), RepairState::Failed);
            assert_eq!(repair.repair_state_for(2), RepairState::Failed);
            assert_eq!(
                kinds(&repair, 1),
                vec![
                    CommitDurable,
                    DurableButNotRepairable,
                    CommitAcked,
                    RepairStarted,
                    RepairFailed {
                        reason: "repair generation failed".into()
                    }
                ]
            );
            assert_eq!(
                kinds(&repair, 2),
                vec![
                    CommitDurable,
                    DurableButNotRepairable,
                    CommitAcked,
                    RepairFailed {
                        reason: "the repair task could not be scheduled".into()
                    }
                ]
            );
            assert_eq!(repair.pending_background_repair_count(), 0);
        })
        .await
    }));
}

#[test]
fn repairs_cancelled_before_they_start_end_failed() {
    expect_ok(run(RunConfig::new(45), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let config = RepairConfig {
                workers: 1,
                ..config_with(|_| GenerationFault::Slow(Duration::from_millis(20)))
            };
            let repair = open(&ctx, config).await;
            for i in 1..=3 {
                repair.commit(payload(i)).await.expect("durable");
            }
            // One worker: commit 1's repair is running, 2 and 3 wait.
            assert!(kinds(&repair, 1).contains(&RepairStarted));
            repair.cancel_pending();
            repair.wait_for_background_repair().await;
            assert_eq!(repair.repair_state_for(1), RepairState::Completed);
            for seq in [2, 3] {
                assert_eq!(
                    kinds(&repair, seq),
                    vec![
                        CommitDurable,
                        DurableButNotRepairable,
                        CommitAcked,
                        RepairFailed {
                            reason: "cancelled before start".into()
                        }
                    ],
                    "commit {seq}"
                );
            }
        })
        .await
    }));
}

#[test]
fn pending_repairs_are_rescheduled_after_a_crash_and_complete() {
    let recovered = expect_ok(run(RunConfig::new(46), |sim: Sim| async move {
        let out = common::slot();
        let out2 = out.clone();
        let id = sim.spawn_process("db", move |ctx| {
            let out = out2.clone();
            async move {
                if ctx.incarnation() == 1 {
                    // Repairs too slow to finish before the crash.
                    let slow = config_with(|_| GenerationFault::Slow(Duration::from_secs(1)));
                    let repair = open(&ctx, slow).await;
                    for i in 1..=3 {
                        repair.commit(payload(i)).await.expect("durable");
                    }
                    repair.wait_for_background_repair().await;
                    return;
                }
                let (repair, recovery) =
                    RepairCoordinator::open(&ctx.disk(), RepairConfig::default())
                        .await
                        .expect("recovery");
                let first_events: Vec<_> = (1..=3).map(|s| kinds(&repair, s)).collect();
                repair.wait_for_background_repair().await;
                let states: Vec<_> = (1..=3).map(|s| repair.repair_state_for(s)).collect();
                let verified = parity_on_disk_verifies(&ctx, &repair);
                common::fill(&out, (recovery, first_events, states, verified));
            }
        });
        sim.sleep(Duration::from_millis(100)).await;
        sim.crash(id, true);
        sim.restart(id);
        assert!(wait_for_exit(&sim, id, Duration::from_secs(10)).await);
        common::take(&out).expect("second incarnation reported")
    }));
    let (recovery, first_events, states, verified) = recovered;
    assert_eq!(recovery.commits, 3);
    assert_eq!(recovery.rescheduled, vec![1, 2, 3]);
    for events in first_events {
        assert_eq!(events.first(), Some(&RecoveredPending));
    }
    assert_eq!(states, vec![RepairState::Completed; 3]);
    assert_eq!(verified, 3);
}

#[test]
fn the_parity_regenerates_any_one_lost_shard_and_detects_damage() {
    let data = payload(9);
    let all = shards(&data, 512);
    assert_eq!(all.len(), 3, "1300 bytes in 512-byte shards");
    let parity = xor_parity(&data, 512);
    for lost in 0..all.len() {
        let mut erased: Vec<Option<Vec<u8>>> = all.iter().cloned().map(Some).collect();
        erased[lost] = None;
        assert_eq!(regenerate_shard(&erased, &parity), Some(all[lost].clone()));
    }
    let none_lost: Vec<Option<Vec<u8>>> = all.iter().cloned().map(Some).collect();
    assert_eq!(regenerate_shard(&none_lost, &parity), None);
    let record = ParityRecord {
        commit_seq: 1,
        systematic_checksum: durasim::systems::wal_format::checksum(&data),
        shard_size: 512,
        systematic_len: data.len(),
        parity,
    };
    assert!(verify_parity(&data, &record));
    let mut bad_parity = record.clone();
    bad_parity.parity[17] ^= 1;
    assert!(!verify_parity(&data, &bad_parity));
    let mut bad_data = data.clone();
    bad_data[700] ^= 1;
    assert!(!verify_parity(&bad_data, &record));
}

/// The definition `verify_parity` shortcuts: erase each shard in turn and
/// rebuild it from the others and the parity.
fn every_shard_rebuilds(data: &[u8], shard_size: usize, parity: &[u8]) -> bool {
    let all = shards(data, shard_size);
    (0..all.len()).all(|lost| {
        let mut erased: Vec<Option<Vec<u8>>> = all.iter().cloned().map(Some).collect();
        erased[lost] = None;
        regenerate_shard(&erased, parity).as_ref() == Some(&all[lost])
    })
}

#[test]
fn the_one_pass_parity_check_agrees_with_rebuilding_every_shard() {
    for (len, shard_size) in [(1, 1), (7, 3), (512, 512), (1300, 512), (1301, 64)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
        let good = xor_parity(&data, shard_size);
        let mut candidates = vec![good.clone()];
        for byte in [0, shard_size / 2, shard_size - 1] {
            let mut flipped = good.clone();
            flipped[byte] ^= 0x10;
            candidates.push(flipped);
        }
        for parity in candidates {
            let record = ParityRecord {
                commit_seq: 1,
                systematic_checksum: durasim::systems::wal_format::checksum(&data),
                shard_size,
                systematic_len: data.len(),
                parity: parity.clone(),
            };
            assert_eq!(
                verify_parity(&data, &record),
                every_shard_rebuilds(&data, shard_size, &parity),
                "{len} bytes in {shard_size}-byte shards"
            );
        }
    }
}

#[test]
fn under_buggified_repair_faults_nothing_stays_pending_and_completed_parity_verifies() {
    let (mut failed, mut completed) = (0, 0);
    for seed in 0..20 {
        let faults = FaultConfig::none().with_app(4.0);
        let states = expect_ok(run(RunConfig::new(seed).faults(faults), |sim| async move {
            // Repair faults are application faults: they fire in the fault phase.
            sim.start_faults(&[]);
            in_process(&sim, Duration::from_secs(30), |ctx| async move {
                let repair = open(&ctx, RepairConfig::default()).await;
                for i in 1..=10 {
                    repair.commit(payload(i)).await.expect("durable");
                }
                repair.wait_for_background_repair().await;
                assert_eq!(repair.pending_background_repair_count(), 0);
                parity_on_disk_verifies(&ctx, &repair);
                for (seq, state) in repair.states() {
                    let events = kinds(&repair, seq);
                    let last = events.last().cloned();
                    match state {
                        RepairState::Completed => assert_eq!(last, Some(RepairCompleted)),
                        RepairState::Failed => {
                            assert!(matches!(last, Some(RepairFailed { .. })), "{events:?}")
                        }
                        other => panic!("commit {seq} left {other:?}"),
                    }
                }
                repair.states()
            })
            .await
        }));
        failed += states
            .values()
            .filter(|s| **s == RepairState::Failed)
            .count();
        completed += states
            .values()
            .filter(|s| **s == RepairState::Completed)
            .count();
    }
    assert!(
        failed > 0 && completed > 0,
        "failed {failed}, completed {completed}"
    );
}
