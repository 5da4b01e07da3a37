//! One hand-built history per invariant: the broken version is rejected
//! with exactly that invariant id (and its message is snapshotted), the
//! fixed version passes. Plus one correct history that uses every event
//! kind.
//!
//! Index: D1 acked-durable · D2 atomic · D3 no-phantom · D4 order ·
//! D5 publish-after-fsync · D6 no-silent-drop · D7 exactly-once ·
//! D8 first-committer-wins · D9 repair-settles · D10 recovery-idempotent ·
//! D11 retry-bounded · D12 backpressure · L1 liveness.

mod common;

use common::*;
use durasim_models::model::repair::xor_parity;
use durasim_models::*;

/// Assert the fixed history passes and the broken one reports exactly
/// `invariant` (once or more, nothing else); snapshot the broken report.
fn assert_only(invariant: InvariantId, snapshot: &str, history: impl Fn(bool) -> History) {
    let fixed = history(false);
    assert_eq!(
        check(&fixed),
        vec![],
        "the fixed {invariant} history must pass"
    );
    let broken = history(true);
    let reported = ids(&broken);
    assert!(
        !reported.is_empty(),
        "the broken {invariant} history must be rejected"
    );
    assert!(
        reported.iter().all(|id| *id == invariant),
        "the broken {invariant} history must report only {invariant}, got:\n{}",
        render(&broken)
    );
    assert_eq!(check_invariant(&broken, invariant).len(), reported.len());
    insta::assert_snapshot!(snapshot, render(&broken));
}

/// op 1 commits `writes` as seq 1 through batch 1 (permit 1), acked at 3 ms.
fn one_committed_write(b: &mut Builder, writes: &[PageWrite]) -> BatchRequest {
    let req = request(1, 1, 17, 0, writes);
    b.at(1).invoke_write(1).attempt(1, 1, 0);
    b.at(2).through_channel(1).batch(1, vec![req.clone()], &[1]);
    b.at(3).acked(1, 1, 1);
    req
}

#[test]
fn d1_an_acknowledged_commit_missing_after_a_crash_is_rejected() {
    assert_only(
        InvariantId::D1,
        "d1_an_acknowledged_commit_missing_after_a_crash_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let req = one_committed_write(&mut b, &[w(1, 10)]);
            b.at(5).crash();
            let log = if broken { vec![] } else { vec![entry(1, &req)] };
            b.at(6).recovered(log, None);
            b.build()
        },
    );
}

#[test]
fn d1_a_commit_seen_by_one_recovery_and_lost_by_the_next_is_rejected() {
    assert_only(
        InvariantId::D1,
        "d1_a_commit_seen_by_one_recovery_and_lost_by_the_next_is_rejected",
        |broken| {
            let mut b = Builder::new();
            // op 1's frame is appended but never published: it may exist.
            let first = request(1, 1, 17, 0, &[w(1, 10)]);
            b.at(1).invoke_write(1).attempt(1, 1, 0);
            b.at(2).through_channel(1);
            b.push(EventKind::BatchValidated {
                batch: 1,
                requests: vec![first.clone()],
            });
            b.push(EventKind::WalAppended { batch: 1, ok: true });
            b.at(3).crash();
            b.at(4).recovered(vec![entry(1, &first)], None); // it did take effect
            b.push(EventKind::ChannelDeclared {
                channel: 0,
                capacity: 4,
            });
            b.at(5).attempt_ended(1, 1, AttemptResult::Unknown);
            b.complete(1, Outcome::Unknown(UnknownReason::TimedOut));
            let second = request(2, 1, 18, 1, &[w(2, 20)]);
            b.at(6).invoke_write(2).attempt(2, 1, 0);
            b.at(7).through_channel(1);
            b.push(EventKind::BatchValidated {
                batch: 2,
                requests: vec![second.clone()],
            });
            b.push(EventKind::WalAppended { batch: 2, ok: true });
            b.at(8).crash();
            let log = if broken {
                vec![]
            } else {
                vec![entry(1, &first)]
            };
            b.at(9).recovered(log, None);
            b.at(10).attempt_ended(2, 1, AttemptResult::Unknown);
            b.complete(2, Outcome::Unknown(UnknownReason::TimedOut));
            b.build()
        },
    );
}

#[test]
fn d2_a_recovered_commit_holding_part_of_its_writes_is_rejected() {
    assert_only(
        InvariantId::D2,
        "d2_a_recovered_commit_holding_part_of_its_writes_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let req = one_committed_write(&mut b, &[w(1, 10), w(2, 20)]);
            b.at(5).crash();
            let mut recovered = entry(1, &req);
            if broken {
                recovered.writes.truncate(1);
            }
            b.at(6).recovered(vec![recovered], None);
            b.build()
        },
    );
}

#[test]
fn d2_a_recovered_state_showing_part_of_a_commit_is_rejected() {
    assert_only(
        InvariantId::D2,
        "d2_a_recovered_state_showing_part_of_a_commit_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let first = one_committed_write(&mut b, &[w(1, 10), w(2, 20)]);
            let second = request(2, 1, 18, 1, &[w(1, 11), w(2, 21)]);
            b.at(4).invoke_write(2).attempt(2, 1, 0);
            b.at(5)
                .through_channel(2)
                .batch(2, vec![second.clone()], &[2]);
            b.at(6).acked(2, 1, 2);
            b.at(7).crash();
            let page2 = if broken { (1, 20) } else { (2, 21) };
            let state = vec![
                PageVersion {
                    page: 1,
                    commit_seq: 2,
                    value: 11,
                },
                PageVersion {
                    page: 2,
                    commit_seq: page2.0,
                    value: page2.1,
                },
            ];
            b.at(8)
                .recovered(vec![entry(1, &first), entry(2, &second)], Some(state));
            b.build()
        },
    );
}

#[test]
fn d3_a_recovered_commit_that_was_never_submitted_is_rejected() {
    assert_only(
        InvariantId::D3,
        "d3_a_recovered_commit_that_was_never_submitted_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let req = one_committed_write(&mut b, &[w(1, 10)]);
            b.at(5).crash();
            let mut log = vec![entry(1, &req)];
            if broken {
                log.push(LogEntry {
                    seq: 2,
                    txn_id: 99,
                    event_id: Some(999),
                    writes: vec![w(5, 1)],
                });
            }
            b.at(6).recovered(log, None);
            b.build()
        },
    );
}

#[test]
fn d4_a_delivery_out_of_reservation_order_is_rejected() {
    assert_only(
        InvariantId::D4,
        "d4_a_delivery_out_of_reservation_order_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1)
                .invoke_write(1)
                .attempt(1, 1, 0)
                .invoke_write(2)
                .attempt(2, 1, 0);
            b.at(2).reserve(1).reserve(2).send(2).send(1);
            let order = if broken { [2, 1] } else { [1, 2] };
            for permit in order {
                b.deliver(permit);
            }
            let requests = vec![
                request(1, 1, 17, 0, &[w(1, 10)]),
                request(2, 1, 18, 0, &[w(2, 20)]),
            ];
            b.at(3).batch(1, requests, &[1, 2]);
            b.at(4).acked(1, 1, 1).acked(2, 1, 2);
            b.build()
        },
    );
}

#[test]
fn d5_a_batch_published_before_its_fsync_returned_is_rejected() {
    assert_only(
        InvariantId::D5,
        "d5_a_batch_published_before_its_fsync_returned_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1).invoke_write(1).attempt(1, 1, 0);
            b.at(2).through_channel(1);
            b.push(EventKind::BatchValidated {
                batch: 1,
                requests: vec![request(1, 1, 17, 0, &[w(1, 10)])],
            });
            b.push(EventKind::WalAppended { batch: 1, ok: true });
            let fsync = EventKind::FsyncReturned { batch: 1, ok: true };
            let publish = EventKind::Published {
                batch: 1,
                commit_seqs: vec![1],
            };
            if broken {
                b.push(publish).push(fsync);
            } else {
                b.push(fsync).push(publish);
            }
            b.at(3).acked(1, 1, 1);
            b.build()
        },
    );
}

/// A client whose response was lost retries and is told `receipt-exists`:
/// it may report its commit once a recovery exposed it (durable evidence),
/// but not when nothing published or recovered it.
#[test]
fn d5_an_ack_backed_only_by_a_recovery_must_match_what_the_recovery_exposed() {
    assert_only(
        InvariantId::D5,
        "d5_an_ack_backed_only_by_a_recovery_must_match_what_the_recovery_exposed",
        |broken| {
            let mut b = Builder::new();
            b.at(1).invoke_write(1).attempt(1, 1, 0);
            b.at(2).through_channel(1);
            let req = request(1, 1, 17, 0, &[w(1, 10)]);
            b.push(EventKind::BatchValidated {
                batch: 1,
                requests: vec![req.clone()],
            });
            b.push(EventKind::WalAppended { batch: 1, ok: true });
            // The server dies during the fsync; recovery finds the batch.
            b.at(3).crash();
            let log = if broken { vec![] } else { vec![entry(1, &req)] };
            b.at(4).recovered(log, None);
            b.at(5).attempt_ended(1, 1, AttemptResult::Unknown);
            b.at(6).attempt(1, 2, 1_000_000);
            b.at(7).attempt_ended(1, 2, permanent()).committed(1, 1);
            b.build()
        },
    );
}

#[test]
fn d6_a_write_still_outstanding_at_quiescence_is_rejected() {
    assert_only(
        InvariantId::D6,
        "d6_a_write_still_outstanding_at_quiescence_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1).invoke_write(1);
            if !broken {
                b.at(2).complete(
                    1,
                    Outcome::Failed {
                        error: "shutting down".into(),
                        definite: true,
                    },
                );
            }
            b.at(3).quiescence();
            b.build()
        },
    );
}

#[test]
fn d7_an_event_committed_twice_after_a_lost_response_is_rejected() {
    assert_only(
        InvariantId::D7,
        "d7_an_event_committed_twice_after_a_lost_response_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1).invoke_write(1).attempt(1, 1, 0);
            b.at(2)
                .through_channel(1)
                .batch(1, vec![request(1, 1, 17, 0, &[w(1, 10)])], &[1]);
            b.at(4).attempt_ended(1, 1, AttemptResult::Unknown); // the ack was lost
            b.at(5).attempt(1, 2, MS).through_channel(2);
            let retry = request(1, 2, 17, 1, &[w(1, 11)]);
            if broken {
                b.batch(2, vec![retry], &[2]);
                b.at(6).acked(1, 2, 2);
            } else {
                b.batch(2, vec![conflict(retry, "receipt-exists")], &[]);
                b.at(6).attempt_ended(1, 2, permanent()).complete(
                    1,
                    Outcome::Failed {
                        error: "receipt-exists".into(),
                        definite: false,
                    },
                );
            }
            b.build()
        },
    );
}

#[test]
fn d8_two_overlapping_commits_from_one_snapshot_are_rejected() {
    assert_only(
        InvariantId::D8,
        "d8_two_overlapping_commits_from_one_snapshot_are_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1)
                .invoke_write(1)
                .attempt(1, 1, 0)
                .invoke_write(2)
                .attempt(2, 1, 0);
            b.at(2).through_channel(1).through_channel(2);
            let first = request(1, 1, 17, 0, &[w(1, 10)]);
            let second = request(2, 1, 18, 0, &[w(1, 20)]);
            if broken {
                b.batch(1, vec![first, second], &[1, 2]);
                b.at(3).acked(2, 1, 2);
            } else {
                b.batch(
                    1,
                    vec![
                        first,
                        conflict(second, "page 1 written by an earlier request"),
                    ],
                    &[1],
                );
                b.at(3).attempt_ended(2, 1, transient());
                b.at(4).attempt(2, 2, MS).through_channel(3);
                b.batch(2, vec![request(2, 2, 18, 1, &[w(1, 21)])], &[2]);
                b.at(5).acked(2, 2, 2);
            }
            b.at(6).acked(1, 1, 1);
            b.build()
        },
    );
}

#[test]
fn d9_a_repair_left_pending_at_quiescence_is_rejected() {
    assert_only(
        InvariantId::D9,
        "d9_a_repair_left_pending_at_quiescence_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let events = [
                RepairEventKind::CommitDurable,
                RepairEventKind::DurableButNotRepairable,
                RepairEventKind::CommitAcked,
                RepairEventKind::RepairStarted,
                RepairEventKind::RepairCompleted,
            ];
            let shown = if broken { 3 } else { 5 };
            for (index, kind) in events.iter().take(shown).enumerate() {
                b.at(1 + index as u64).repair(1, index as u32 + 1, *kind);
            }
            b.at(10).quiescence();
            let systematic = b"systematic bytes".to_vec();
            let (state, symbols) = if broken {
                (RepairState::Pending, None)
            } else {
                let parity = xor_parity(&systematic, 4);
                (
                    RepairState::Completed,
                    Some(Box::new(RepairSymbols {
                        shard_size: 4,
                        systematic,
                        parity,
                    })),
                )
            };
            b.push(EventKind::RepairSettled {
                commit_seq: 1,
                state,
                symbols,
            });
            b.build()
        },
    );
}

#[test]
fn d9_a_completed_repair_whose_symbols_a_crash_lost_is_rejected() {
    assert_only(
        InvariantId::D9,
        "d9_a_completed_repair_whose_symbols_a_crash_lost_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let events = [
                RepairEventKind::CommitDurable,
                RepairEventKind::DurableButNotRepairable,
                RepairEventKind::CommitAcked,
                RepairEventKind::RepairStarted,
                RepairEventKind::RepairCompleted,
            ];
            for (index, kind) in events.iter().enumerate() {
                b.at(1 + index as u64).push(EventKind::Repair {
                    commit_seq: 1,
                    event_seq: index as u32 + 1,
                    kind: *kind,
                });
            }
            b.at(7).crash();
            // Recovery finds the symbols (fixed) or not (broken), and
            // re-derives the state from what it found.
            let found = if broken {
                RepairEventKind::RecoveredPending
            } else {
                RepairEventKind::RecoveredCompleted
            };
            b.at(8).push(EventKind::Repair {
                commit_seq: 1,
                event_seq: 6,
                kind: found,
            });
            if broken {
                for (event_seq, kind) in [
                    (7, RepairEventKind::RepairStarted),
                    (8, RepairEventKind::RepairCompleted),
                ] {
                    b.at(9).push(EventKind::Repair {
                        commit_seq: 1,
                        event_seq,
                        kind,
                    });
                }
            }
            b.at(10).quiescence();
            let systematic = b"systematic bytes".to_vec();
            let parity = xor_parity(&systematic, 4);
            b.push(EventKind::RepairSettled {
                commit_seq: 1,
                state: RepairState::Completed,
                symbols: Some(Box::new(RepairSymbols {
                    shard_size: 4,
                    systematic,
                    parity,
                })),
            });
            b.build()
        },
    );
}

#[test]
fn d9_completed_repair_symbols_that_do_not_regenerate_the_data_are_rejected() {
    assert_only(
        InvariantId::D9,
        "d9_completed_repair_symbols_that_do_not_regenerate_the_data_are_rejected",
        |broken| {
            let mut b = Builder::new();
            let events = [
                RepairEventKind::CommitDurable,
                RepairEventKind::DurableButNotRepairable,
                RepairEventKind::CommitAcked,
                RepairEventKind::RepairStarted,
                RepairEventKind::RepairCompleted,
            ];
            for (index, kind) in events.iter().enumerate() {
                b.at(1 + index as u64).repair(7, index as u32 + 1, *kind);
            }
            b.at(10).quiescence();
            let systematic = b"systematic bytes!".to_vec();
            let mut parity = xor_parity(&systematic, 4);
            if broken {
                parity[1] ^= 0x40;
            }
            let symbols = Some(Box::new(RepairSymbols {
                shard_size: 4,
                systematic,
                parity,
            }));
            b.push(EventKind::RepairSettled {
                commit_seq: 7,
                state: RepairState::Completed,
                symbols,
            });
            b.build()
        },
    );
}

#[test]
fn d10_a_rerun_recovery_that_answers_differently_is_rejected() {
    assert_only(
        InvariantId::D10,
        "d10_a_rerun_recovery_that_answers_differently_is_rejected",
        |broken| {
            let mut b = Builder::new();
            let req = one_committed_write(&mut b, &[w(1, 10)]);
            b.at(5).crash();
            b.at(6).recovered(vec![entry(1, &req)], None);
            b.at(7).push(EventKind::ServerCrash {
                process: 0,
                during_recovery: true,
            });
            let log = if broken { vec![] } else { vec![entry(1, &req)] };
            b.at(8).recovered(log, None);
            b.build()
        },
    );
}

#[test]
fn d11_a_retry_after_a_permanent_rejection_is_rejected() {
    assert_only(
        InvariantId::D11,
        "d11_a_retry_after_a_permanent_rejection_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1).invoke_write(1).attempt(1, 1, 0);
            b.at(2).attempt_ended(1, 1, permanent());
            if broken {
                b.at(4).attempt(1, 2, MS);
                b.at(6).attempt_ended(1, 2, AttemptResult::Unknown);
            }
            b.complete(
                1,
                Outcome::Failed {
                    error: "receipt-exists".into(),
                    definite: false,
                },
            );
            b.build()
        },
    );
}

#[test]
fn d12_a_block_queue_that_overfills_instead_of_waiting_is_rejected() {
    assert_only(
        InvariantId::D12,
        "d12_a_block_queue_that_overfills_instead_of_waiting_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1).push(EventKind::QueueDeclared {
                queue: 0,
                capacity: 1,
                overflow: OverflowPolicy::Block,
            });
            b.push(EventKind::QueueEnqueued {
                queue: 0,
                item: 1,
                occupancy_after: 1,
            });
            if broken {
                b.at(2).push(EventKind::QueueEnqueued {
                    queue: 0,
                    item: 2,
                    occupancy_after: 2,
                });
                b.at(3).push(EventKind::QueueDequeued {
                    queue: 0,
                    item: 1,
                    occupancy_after: 1,
                });
            } else {
                b.at(2)
                    .push(EventKind::QueueSenderBlocked { queue: 0, item: 2 });
                b.at(3).push(EventKind::QueueDequeued {
                    queue: 0,
                    item: 1,
                    occupancy_after: 0,
                });
                b.push(EventKind::QueueEnqueued {
                    queue: 0,
                    item: 2,
                    occupancy_after: 1,
                });
            }
            b.at(4).push(EventKind::QueueDequeued {
                queue: 0,
                item: 2,
                occupancy_after: 0,
            });
            b.build()
        },
    );
}

#[test]
fn l1_an_operation_completing_past_the_heal_bound_is_rejected() {
    assert_only(
        InvariantId::L1,
        "l1_an_operation_completing_past_the_heal_bound_is_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(5).push(EventKind::Invoke {
                op: 1,
                process: 1,
                call: Call::Read { page: 3 },
            });
            b.at(10).push(EventKind::Phase(Phase::Heal {
                bound: 5 * MS,
                resolves_unknown: false,
            }));
            b.at(if broken { 20 } else { 12 })
                .complete(1, Outcome::Ok(OkValue::Read { version: None }));
            b.build()
        },
    );
}

/// A correct history touching every event kind: conflicts and a retry, a
/// lost acknowledgement resolved by a receipt, a read, queue drops, an
/// unpublished frame exposed by recovery (an unknown outcome that took
/// effect once), repairs across a crash, heal, quiescence, final crash.
#[test]
fn a_correct_history_using_every_event_kind_passes() {
    let mut b = Builder::new();
    b.at(1).push(EventKind::QueueDeclared {
        queue: 0,
        capacity: 1,
        overflow: OverflowPolicy::DropOldest,
    });
    b.invoke_write(1)
        .attempt(1, 1, 0)
        .invoke_write(2)
        .attempt(2, 1, 0);
    b.at(2)
        .reserve(1)
        .reserve(2)
        .reserve(3)
        .abort(2)
        .send(3)
        .send(1)
        .deliver(1)
        .deliver(3);
    let op1 = request(1, 1, 17, 0, &[w(1, 10), w(2, 20)]);
    b.batch(
        1,
        vec![
            op1.clone(),
            conflict(request(2, 1, 17, 0, &[w(2, 21)]), "page 2"),
        ],
        &[1],
    );
    for (event_seq, kind) in [
        RepairEventKind::CommitDurable,
        RepairEventKind::DurableButNotRepairable,
        RepairEventKind::CommitAcked,
    ]
    .into_iter()
    .enumerate()
    {
        b.repair(1, event_seq as u32 + 1, kind);
    }
    b.at(3).acked(1, 1, 1).attempt_ended(2, 1, transient());
    b.at(4).attempt(2, 2, 800_000).through_channel(4);
    let op2 = request(2, 2, 17, 1, &[w(2, 22)]);
    b.batch(2, vec![op2.clone()], &[2]);
    b.repair(2, 1, RepairEventKind::CommitDurable)
        .repair(2, 2, RepairEventKind::CommitAcked);
    b.at(6).attempt_ended(2, 2, AttemptResult::Unknown);
    b.at(8).attempt(2, 3, 1_500_000).through_channel(5);
    b.batch(
        3,
        vec![conflict(
            request(2, 3, 17, 2, &[w(2, 23)]),
            "receipt-exists",
        )],
        &[],
    );
    b.at(9).attempt_ended(2, 3, permanent()).complete(
        2,
        Outcome::Failed {
            error: "receipt-exists".into(),
            definite: false,
        },
    );
    b.at(10).push(EventKind::Invoke {
        op: 3,
        process: 3,
        call: Call::Read { page: 2 },
    });
    b.complete(
        3,
        Outcome::Ok(OkValue::Read {
            version: Some(Box::new(PageVersion {
                page: 2,
                commit_seq: 2,
                value: 22,
            })),
        }),
    );
    b.push(EventKind::QueueEnqueued {
        queue: 0,
        item: 1,
        occupancy_after: 1,
    })
    .push(EventKind::QueueDroppedOldest { queue: 0, item: 1 })
    .push(EventKind::QueueDropReported { queue: 0, item: 1 })
    .push(EventKind::QueueEnqueued {
        queue: 0,
        item: 2,
        occupancy_after: 1,
    })
    .push(EventKind::QueueDequeued {
        queue: 0,
        item: 2,
        occupancy_after: 0,
    });
    b.at(11).repair(1, 4, RepairEventKind::RepairStarted);
    b.at(12).crash();
    b.at(13)
        .recovered(vec![entry(1, &op1), entry(2, &op2)], None);
    b.push(EventKind::ChannelDeclared {
        channel: 0,
        capacity: 4,
    });
    b.repair(1, 5, RepairEventKind::RepairStarted);
    b.at(14).repair(1, 6, RepairEventKind::RepairCompleted);
    // op 4's frame reaches the WAL, then the server crashes before fsync.
    let op4 = request(4, 1, 40, 2, &[w(3, 30)]);
    b.at(15).invoke_write(4).attempt(4, 1, 0).through_channel(1);
    b.push(EventKind::BatchValidated {
        batch: 4,
        requests: vec![op4.clone()],
    });
    b.push(EventKind::WalAppended { batch: 4, ok: true });
    b.at(16).crash();
    b.at(17).push(EventKind::Phase(Phase::Heal {
        bound: 100 * MS,
        resolves_unknown: false,
    }));
    let log = vec![entry(1, &op1), entry(2, &op2), entry(3, &op4)];
    let state = vec![
        PageVersion {
            page: 1,
            commit_seq: 1,
            value: 10,
        },
        PageVersion {
            page: 2,
            commit_seq: 2,
            value: 22,
        },
        PageVersion {
            page: 3,
            commit_seq: 3,
            value: 30,
        },
    ];
    b.at(19).recovered(log.clone(), Some(state.clone()));
    b.at(20)
        .attempt_ended(4, 1, AttemptResult::Unknown)
        .complete(4, Outcome::Unknown(UnknownReason::TimedOut));
    b.at(30).quiescence();
    let systematic = b"commit one".to_vec();
    let parity = xor_parity(&systematic, 4);
    b.push(EventKind::RepairSettled {
        commit_seq: 1,
        state: RepairState::Completed,
        symbols: Some(Box::new(RepairSymbols {
            shard_size: 4,
            systematic,
            parity,
        })),
    });
    b.push(EventKind::RepairSettled {
        commit_seq: 2,
        state: RepairState::NotScheduled,
        symbols: None,
    });
    b.at(31).push(EventKind::Phase(Phase::FinalCrash)).crash();
    b.at(32).recovered(log, Some(state));
    let history = b.build();
    assert_eq!(check(&history), vec![], "{}", render(&history));
    let json = serde_json::to_string(&history).expect("a history serialises");
    let back: History = serde_json::from_str(&json).expect("and deserialises");
    assert_eq!(back, history);
}
