//! Spec 01, the group commit coordinator, on a simulated disk:
//!
//! - every request commits with a distinct, gap-free commit seq; each batch
//!   with a valid request runs validate → append → fsync → publish with
//!   exactly one fsync, and the disk saw exactly as many fsyncs;
//! - a batch whose every request conflicts issues no fsync and writes
//!   nothing; conflicts (stale snapshot, earlier in batch) never reach the
//!   WAL; a repeated event id is rejected for good (`receipt-exists`);
//! - batches hold at most `max_batch_size` requests;
//! - duplicate txn ids are two commits with two seqs;
//! - a log returning the wrong number of offsets fails the whole batch,
//!   which is never acknowledged nor left in the WAL;
//! - shutdown is clean: reserved requests are answered, new ones refused;
//! - under fsync errors, torn writes and power loss, nothing acknowledged
//!   is lost, nothing `Failed` appears, and recovery never loses what an
//!   earlier recovery showed;
//! - the same seed gives the same run (digest, tape, counters).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_ok, fsyncs_after, in_process, tearing_disk, wait_for_exit};
use durasim::systems::group_commit::{
    fsyncs_per_batch, group_commit, phase_orders, BatchPhase, CommitEvent, CommitRequest,
    CommitResponse, ConflictReason, GroupCommitConfig, PermanentReason,
};
use durasim::systems::record::Recorder;
use durasim::systems::wal::{CommitLog, Recovery, Wal, WalConfig, WalError};
use durasim::systems::wal_format::{scan, Frame};
use durasim_sim::{run, ProcessCtx, RunConfig, TraceMode};

fn request(txn_id: u64, pages: &[u32], snapshot_seq: u64) -> CommitRequest {
    CommitRequest {
        txn_id,
        event_id: None,
        snapshot_seq,
        write_set_pages: pages.to_vec(),
        payload: txn_id.to_le_bytes().to_vec(),
    }
}

async fn open_wal(ctx: &ProcessCtx) -> (Wal, Recovery) {
    Wal::open(&ctx.disk(), WalConfig::new("wal"), None)
        .await
        .expect("recovery of a fresh disk succeeds")
}

/// Txn ids of the frames in the WAL image on `ctx`'s disk.
fn wal_txns(ctx: &ProcessCtx) -> Vec<u64> {
    let files = ctx.disk().snapshot();
    let bytes = files.get("wal/log").cloned().unwrap_or_default();
    scan(&bytes, 4096, true)
        .frames()
        .map(|(_, f)| f.txn_id)
        .collect()
}

fn committed_seq(response: &CommitResponse) -> u64 {
    match response {
        CommitResponse::Committed { commit_seq, .. } => *commit_seq,
        other => panic!("expected Committed, got {other:?}"),
    }
}

const FULL_BATCH: [BatchPhase; 4] = [
    BatchPhase::Validate,
    BatchPhase::Append,
    BatchPhase::Fsync,
    BatchPhase::Publish,
];

#[test]
fn concurrent_writers_commit_with_distinct_seqs_and_one_fsync_per_batch() {
    for seed in 0..10 {
        let outcome = run(
            RunConfig::new(seed).trace(TraceMode::Full),
            |sim| async move {
                in_process(&sim, Duration::from_secs(10), |ctx| async move {
                    let recorder = Recorder::new();
                    let (wal, recovery) = open_wal(&ctx).await;
                    let gc = group_commit(
                        wal,
                        &recovery,
                        GroupCommitConfig {
                            recorder: recorder.clone(),
                            ..GroupCommitConfig::default()
                        },
                    );
                    ctx.trace("test.ready", &[]);
                    let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
                    let mut writers = Vec::new();
                    for w in 0..6u64 {
                        let client = gc.client.clone();
                        writers.push(durasim_sim::task::spawn(async move {
                            let mut seqs = Vec::new();
                            for i in 0..5u64 {
                                let page = (w * 100 + i) as u32;
                                let r = client.commit(request(w * 10 + i, &[page], 0)).await;
                                seqs.push(committed_seq(&r));
                            }
                            seqs
                        }));
                    }
                    let mut seqs = Vec::new();
                    for w in writers {
                        seqs.extend(w.await.expect("writer"));
                    }
                    gc.handle.shutdown();
                    let summary = coordinator.await.expect("joined").expect("clean shutdown");
                    (seqs, recorder.events(), summary, wal_txns(&ctx).len())
                })
                .await
            },
        );
        let events = outcome.events.clone().expect("full trace");
        let (mut seqs, commit_events, summary, frames_on_disk) = expect_ok(outcome);
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=30).collect::<Vec<u64>>(), "seed {seed}");
        assert_eq!(frames_on_disk, 30);
        let orders = phase_orders(&commit_events);
        assert!(orders.len() < 30, "seed {seed}: requests were batched");
        for (batch, phases) in &orders {
            assert_eq!(phases, &FULL_BATCH, "seed {seed} batch {batch}");
        }
        let fsyncs = fsyncs_per_batch(&commit_events);
        assert!(fsyncs.values().all(|&n| n == 1), "seed {seed}: {fsyncs:?}");
        assert_eq!(fsyncs.len(), orders.len());
        assert_eq!(summary.fsyncs as usize, orders.len());
        assert_eq!(
            fsyncs_after(&events, "test.ready"),
            orders.len(),
            "seed {seed}: the disk saw one fsync per batch"
        );
    }
}

/// Reserve `requests.len()` places, then send them all at once, so the
/// coordinator takes them as one batch; returns the answers in order.
async fn one_batch(
    client: &durasim::systems::group_commit::CommitClient,
    requests: Vec<CommitRequest>,
) -> Vec<CommitResponse> {
    let mut permits = Vec::new();
    for _ in &requests {
        permits.push(client.reserve().await.expect("open"));
    }
    let pending: Vec<_> = permits
        .into_iter()
        .zip(requests)
        .map(|(p, r)| p.send(r))
        .collect();
    let mut answers = Vec::new();
    for p in pending {
        answers.push(p.response().await);
    }
    answers
}

#[test]
fn a_batch_where_every_request_conflicts_issues_no_fsync_and_writes_nothing() {
    let outcome = run(
        RunConfig::new(11).trace(TraceMode::Full),
        |sim| async move {
            in_process(&sim, Duration::from_secs(10), |ctx| async move {
                let recorder = Recorder::new();
                let (wal, recovery) = open_wal(&ctx).await;
                let gc = group_commit(
                    wal,
                    &recovery,
                    GroupCommitConfig {
                        recorder: recorder.clone(),
                        ..GroupCommitConfig::default()
                    },
                );
                let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
                let first = gc.client.commit(request(1, &[7], 0)).await;
                assert_eq!(committed_seq(&first), 1);
                ctx.trace("test.ready", &[]);
                // Three writers that all read before commit 1: all stale.
                let answers = one_batch(
                    &gc.client,
                    vec![
                        request(2, &[7], 0),
                        request(3, &[7, 8], 0),
                        request(4, &[9, 7], 0),
                    ],
                )
                .await;
                gc.handle.shutdown();
                coordinator.await.expect("joined").expect("clean");
                (answers, recorder.events(), wal_txns(&ctx))
            })
            .await
        },
    );
    let events = outcome.events.clone().expect("full trace");
    let (answers, commit_events, txns) = expect_ok(outcome);
    for answer in &answers {
        assert_eq!(
            answer,
            &CommitResponse::Conflict {
                reason: ConflictReason::CommittedSinceSnapshot {
                    page: 7,
                    committed_seq: 1
                }
            }
        );
    }
    assert_eq!(fsyncs_after(&events, "test.ready"), 0);
    let orders = phase_orders(&commit_events);
    assert_eq!(orders.get(&2), Some(&vec![BatchPhase::Validate]));
    assert_eq!(fsyncs_per_batch(&commit_events).get(&2), None);
    assert_eq!(txns, vec![1], "no conflicted request reached the WAL");
}

#[test]
fn conflicts_never_reach_the_wal_and_the_earlier_request_in_a_batch_wins() {
    let (answers, txns, state) = expect_ok(run(RunConfig::new(12), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let (wal, recovery) = open_wal(&ctx).await;
            let gc = group_commit(wal, &recovery, GroupCommitConfig::default());
            let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
            assert_eq!(
                committed_seq(&gc.client.commit(request(1, &[6], 0)).await),
                1
            );
            let answers = one_batch(
                &gc.client,
                vec![
                    request(10, &[5], 1),    // valid
                    request(11, &[4, 5], 1), // page 5 taken earlier in the batch
                    request(12, &[6], 0),    // page 6 committed after snapshot 0
                    request(13, &[6], 1),    // fresh snapshot: valid
                ],
            )
            .await;
            gc.handle.shutdown();
            coordinator.await.expect("joined").expect("clean");
            (answers, wal_txns(&ctx), gc.handle.state())
        })
        .await
    }));
    assert!(matches!(
        answers[0],
        CommitResponse::Committed { commit_seq: 2, .. }
    ));
    assert_eq!(
        answers[1],
        CommitResponse::Conflict {
            reason: ConflictReason::EarlierInBatch { page: 5 }
        }
    );
    assert_eq!(
        answers[2],
        CommitResponse::Conflict {
            reason: ConflictReason::CommittedSinceSnapshot {
                page: 6,
                committed_seq: 1
            }
        }
    );
    assert!(matches!(
        answers[3],
        CommitResponse::Committed { commit_seq: 3, .. }
    ));
    assert_eq!(txns, vec![1, 10, 13]);
    assert_eq!(state.commit_seq, 3);
    assert_eq!(state.latest(5).map(|v| v.commit_seq), Some(2));
    assert_eq!(state.latest(4), None, "a conflicted write is not visible");
}

#[test]
fn a_repeated_event_id_is_rejected_for_good_as_receipt_exists() {
    let answers = expect_ok(run(RunConfig::new(13), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let (wal, recovery) = open_wal(&ctx).await;
            let gc = group_commit(wal, &recovery, GroupCommitConfig::default());
            let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
            let with_event = |txn: u64, event: u64| CommitRequest {
                event_id: Some(event),
                ..request(txn, &[txn as u32], 0)
            };
            let first = gc.client.commit(with_event(1, 42)).await;
            // A retry of the same event, and two copies inside one batch.
            let again = gc.client.commit(with_event(2, 42)).await;
            let batch = one_batch(&gc.client, vec![with_event(3, 43), with_event(4, 43)]).await;
            gc.handle.shutdown();
            coordinator.await.expect("joined").expect("clean");
            (first, again, batch, wal_txns(&ctx))
        })
        .await
    }));
    let (first, again, batch, txns) = answers;
    assert_eq!(committed_seq(&first), 1);
    let receipt = |e| CommitResponse::Rejected {
        reason: PermanentReason::ReceiptExists { event_id: Some(e) },
    };
    assert_eq!(again, receipt(42));
    assert_eq!(committed_seq(&batch[0]), 2);
    assert_eq!(batch[1], receipt(43));
    assert_eq!(txns, vec![1, 3]);
}

#[test]
fn batches_never_exceed_max_batch_size() {
    let events = expect_ok(run(RunConfig::new(14), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let recorder = Recorder::new();
            let (wal, recovery) = open_wal(&ctx).await;
            let gc = group_commit(
                wal,
                &recovery,
                GroupCommitConfig {
                    max_batch_size: 4,
                    channel_capacity: 64,
                    recorder: recorder.clone(),
                    ..GroupCommitConfig::default()
                },
            );
            let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
            let requests = (0..10u64).map(|t| request(t, &[t as u32], 0)).collect();
            let answers = one_batch(&gc.client, requests).await;
            assert!(answers
                .iter()
                .all(|a| matches!(a, CommitResponse::Committed { .. })));
            gc.handle.shutdown();
            coordinator.await.expect("joined").expect("clean");
            recorder.events()
        })
        .await
    }));
    let sizes: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            CommitEvent::BatchFormed { requests, .. } => Some(requests.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sizes,
        vec![4, 4, 2],
        "10 requests ready at once, batches of 4"
    );
}

#[test]
fn duplicate_txn_ids_are_two_commits_with_two_distinct_seqs() {
    let (answers, txns) = expect_ok(run(RunConfig::new(15), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let (wal, recovery) = open_wal(&ctx).await;
            let gc = group_commit(wal, &recovery, GroupCommitConfig::default());
            let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
            let answers =
                one_batch(&gc.client, vec![request(7, &[1], 0), request(7, &[2], 0)]).await;
            let third = gc.client.commit(request(7, &[3], 0)).await;
            gc.handle.shutdown();
            coordinator.await.expect("joined").expect("clean");
            let mut all = answers;
            all.push(third);
            (all, wal_txns(&ctx))
        })
        .await
    }));
    let seqs: Vec<u64> = answers.iter().map(committed_seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(txns, vec![7, 7, 7]);
}

/// A log that loses one offset of its first batch: a writer bug the
/// coordinator must treat as a failure of the whole batch.
struct DropsAnOffset {
    wal: Wal,
    batches: u32,
}

impl CommitLog for DropsAnOffset {
    async fn append_batch(&mut self, frames: &[Frame]) -> Result<Vec<u64>, WalError> {
        let mut offsets = self.wal.append_batch(frames).await?;
        self.batches += 1;
        if self.batches == 1 {
            offsets.pop();
        }
        Ok(offsets)
    }
    async fn sync(&mut self) -> Result<(), WalError> {
        self.wal.sync().await
    }
    async fn discard_unsynced(&mut self) -> Result<(), WalError> {
        self.wal.discard_unsynced().await
    }
}

#[test]
fn a_log_returning_the_wrong_number_of_offsets_fails_the_whole_batch() {
    let (answers, later, events, txns) = expect_ok(run(RunConfig::new(16), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let recorder = Recorder::new();
            let (wal, recovery) = open_wal(&ctx).await;
            let log = DropsAnOffset { wal, batches: 0 };
            let gc = group_commit(
                log,
                &recovery,
                GroupCommitConfig {
                    recorder: recorder.clone(),
                    ..GroupCommitConfig::default()
                },
            );
            let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
            let answers = one_batch(
                &gc.client,
                vec![
                    request(1, &[1], 0),
                    request(2, &[2], 0),
                    request(3, &[3], 0),
                ],
            )
            .await;
            let later = gc.client.commit(request(4, &[4], 0)).await;
            gc.handle.shutdown();
            coordinator.await.expect("joined").expect("clean");
            (answers, later, recorder.events(), wal_txns(&ctx))
        })
        .await
    }));
    for answer in &answers {
        assert!(
            matches!(answer, CommitResponse::Failed { reason } if reason.contains("2 offsets for 3 frames")),
            "{answer:?}"
        );
    }
    assert_eq!(
        phase_orders(&events).get(&1),
        Some(&vec![BatchPhase::Validate, BatchPhase::Append]),
        "the failed batch never reached fsync or publish"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        CommitEvent::BatchFailed {
            batch: 1,
            discarded: true,
            ..
        }
    )));
    assert_eq!(committed_seq(&later), 1, "the failed batch consumed no seq");
    assert_eq!(txns, vec![4], "the failed batch was discarded from the WAL");
}

#[test]
fn shutdown_answers_every_reserved_request_then_refuses_new_ones() {
    let (answers, after, summary) = expect_ok(run(RunConfig::new(17), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| async move {
            let (wal, recovery) = open_wal(&ctx).await;
            let gc = group_commit(wal, &recovery, GroupCommitConfig::default());
            let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
            let p1 = gc.client.reserve().await.expect("open");
            let p2 = gc.client.reserve().await.expect("open");
            gc.handle.shutdown();
            // Reserved before the shutdown: still answered.
            let a1 = p1.send(request(1, &[1], 0));
            let a2 = p2.send(request(2, &[2], 0));
            let answers = vec![a1.response().await, a2.response().await];
            let after = gc.client.commit(request(3, &[3], 0)).await;
            let summary = coordinator.await.expect("joined").expect("clean");
            (answers, after, summary)
        })
        .await
    }));
    assert_eq!(
        answers.iter().map(committed_seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(matches!(after, CommitResponse::Failed { .. }), "{after:?}");
    assert_eq!(summary.committed, 2);
}

/// What one run of the durability property saw.
#[derive(Default)]
struct Observed {
    acked: BTreeSet<u64>,
    failed: BTreeSet<u64>,
    recoveries: Vec<Vec<u64>>,
}

#[test]
fn under_fsync_errors_and_power_loss_acked_commits_survive_and_failed_ones_never_appear() {
    let mut failed_batches = 0;
    for seed in 0..40 {
        let mut faults = tearing_disk();
        faults.disk.fsync_eio = 0.15;
        let observed = Arc::new(Mutex::new(Observed::default()));
        let obs = observed.clone();
        expect_ok(run(
            RunConfig::new(seed).faults(faults),
            move |sim| async move {
                // Fsync failures fire in the fault phase (no crash targets:
                // the crashes below are explicit).
                sim.start_faults(&[]);
                let obs2 = obs.clone();
                let id = sim.spawn_process("db", move |ctx| {
                    let obs = obs2.clone();
                    async move { serve_and_write(ctx, obs).await }
                });
                wait_for_exit(&sim, id, Duration::from_secs(30)).await;
                // Crash with the page cache intact, then lose power: each
                // restart recovers and records what it sees.
                for power_loss in [false, true, true] {
                    sim.crash(id, power_loss);
                    sim.restart(id);
                    wait_for_exit(&sim, id, Duration::from_secs(30)).await;
                }
            },
        ));
        let o = observed.lock().expect("lock");
        failed_batches += o.failed.len();
        let last = o.recoveries.last().expect("recovered");
        for txn in &o.acked {
            assert!(last.contains(txn), "seed {seed}: acked txn {txn} lost");
        }
        for txn in &o.failed {
            assert!(
                !last.contains(txn),
                "seed {seed}: failed txn {txn} appeared"
            );
        }
        for pair in o.recoveries.windows(2) {
            assert!(
                pair[0].iter().all(|t| pair[1].contains(t)),
                "seed {seed}: a later recovery lost what an earlier one showed: {:?}",
                o.recoveries
            );
        }
    }
    assert!(failed_batches > 0, "some fsyncs failed and were handled");
}

/// Recover; on the first start also run 20 writes, recording answers.
async fn serve_and_write(ctx: ProcessCtx, observed: Arc<Mutex<Observed>>) {
    let (wal, recovery) = loop {
        // A failed fsync during recovery leaves the old log: try again.
        match Wal::open(&ctx.disk(), WalConfig::new("wal"), None).await {
            Ok(opened) => break opened,
            Err(WalError::Io(_)) => continue,
            Err(other) => panic!("recovery: {other}"),
        }
    };
    let recovered: Vec<u64> = recovery.frames.iter().map(|(_, f)| f.txn_id).collect();
    observed.lock().expect("lock").recoveries.push(recovered);
    if ctx.incarnation() > 1 {
        return;
    }
    let gc = group_commit(wal, &recovery, GroupCommitConfig::default());
    let coordinator = durasim_sim::task::spawn(gc.coordinator.run());
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (client, observed) = (gc.client.clone(), observed.clone());
        writers.push(durasim_sim::task::spawn(async move {
            for i in 0..5u64 {
                let txn = w * 100 + i;
                let r = client.commit(request(txn, &[txn as u32], 0)).await;
                let mut o = observed.lock().expect("lock");
                match r {
                    CommitResponse::Committed { .. } => o.acked.insert(txn),
                    CommitResponse::Failed { .. } => o.failed.insert(txn),
                    _ => false,
                };
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    gc.handle.shutdown();
    let _ = coordinator.await;
}

#[test]
fn the_same_seed_gives_the_same_run_byte_for_byte() {
    let once = || {
        let mut faults = tearing_disk();
        faults.disk.fsync_eio = 0.15;
        let observed = Arc::new(Mutex::new(Observed::default()));
        let obs = observed.clone();
        let outcome = run(RunConfig::new(7).faults(faults), move |sim| async move {
            let id = sim.spawn_process("db", move |ctx| {
                let obs = obs.clone();
                async move { serve_and_write(ctx, obs).await }
            });
            wait_for_exit(&sim, id, Duration::from_secs(30)).await;
        });
        let acked = observed.lock().expect("lock").acked.clone();
        (outcome.digest, outcome.tape, outcome.stats, acked)
    };
    let (first, second) = (once(), once());
    assert!(!first.3.is_empty());
    assert_eq!(first, second);
}
