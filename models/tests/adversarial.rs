//! Malformed and adversarial histories: the checker never panics, reports
//! malformed records under the documented invariant, and stays
//! deterministic.

mod common;

use common::*;
use durasim_models::*;
use proptest::prelude::*;

#[test]
fn a_completion_before_its_invocation_is_reported_as_d6() {
    let mut b = Builder::new();
    b.at(5).push(EventKind::Invoke {
        op: 1,
        process: 1,
        call: Call::Read { page: 1 },
    });
    b.at(4)
        .complete(1, Outcome::Ok(OkValue::Read { version: None }));
    assert_eq!(ids(&b.build()), vec![InvariantId::D6]);
    insta::assert_snapshot!("completion_before_invocation", render(&b.build()));
}

#[test]
fn records_for_unknown_operations_batches_and_channels_are_reported() {
    let mut b = Builder::new();
    b.at(1)
        .complete(9, Outcome::Unknown(UnknownReason::TimedOut));
    b.attempt(8, 1, 0);
    b.push(EventKind::FsyncReturned {
        batch: 77,
        ok: true,
    });
    b.push(EventKind::PermitSent {
        channel: 5,
        permit: 1,
    });
    b.push(EventKind::QueueDequeued {
        queue: 3,
        item: 1,
        occupancy_after: 0,
    });
    b.repair(4, 1, RepairEventKind::RepairCompleted);
    let reported = ids(&b.build());
    for expected in [
        InvariantId::D6,
        InvariantId::D11,
        InvariantId::D5,
        InvariantId::D12,
        InvariantId::D9,
    ] {
        assert!(
            reported.contains(&expected),
            "{expected} missing from {reported:?}"
        );
    }
    insta::assert_snapshot!("records_for_unknown_things", render(&b.build()));
}

#[test]
fn huge_and_colliding_ids_do_not_break_the_checker() {
    let mut b = Builder::new();
    for op in [u64::MAX, 0, 1 << 63, u64::MAX] {
        b.at(1).push(EventKind::Invoke {
            op,
            process: u32::MAX,
            call: Call::Write {
                event_id: Some(u64::MAX),
            },
        });
    }
    b.push(EventKind::Recovered(Box::new(Recovery {
        process: 0,
        log: vec![
            LogEntry {
                seq: u64::MAX,
                txn_id: 1,
                event_id: Some(1),
                writes: vec![w(u32::MAX, 1)],
            },
            LogEntry {
                seq: 0,
                txn_id: 1,
                event_id: Some(1),
                writes: vec![],
            },
            LogEntry {
                seq: u64::MAX,
                txn_id: 2,
                event_id: None,
                writes: vec![],
            },
        ],
        state: Some(vec![PageVersion {
            page: u32::MAX,
            commit_seq: u64::MAX,
            value: 1,
        }]),
        corruption_reported_from: Some(0),
    })));
    b.push(EventKind::Published {
        batch: u64::MAX,
        commit_seqs: vec![u64::MAX],
    });
    b.reserve(u64::MAX)
        .deliver(u64::MAX)
        .repair(u64::MAX, u32::MAX, RepairEventKind::CommitAcked);
    b.push(EventKind::RepairSettled {
        commit_seq: u64::MAX,
        state: RepairState::Completed,
        symbols: Some(Box::new(RepairSymbols {
            shard_size: u32::MAX,
            systematic: vec![1, 2, 3],
            parity: vec![],
        })),
    });
    b.push(EventKind::BackoffPolicyDeclared(BackoffPolicy {
        base_delay: u64::MAX,
        max_delay: 0,
        jitter: f64::NAN,
        retry_window: 0,
    }));
    b.at(u64::MAX / MS).push(EventKind::Phase(Phase::Heal {
        bound: u64::MAX,
        resolves_unknown: true,
    }));
    let history = b.build();
    let first = check(&history);
    assert!(!first.is_empty());
    assert_eq!(first, check(&history), "checking is deterministic");
}

fn arbitrary_event() -> impl Strategy<Value = EventKind> {
    let small = 0_u64..6;
    let write = (0_u32..4, 0_u64..3).prop_map(|(page, value)| PageWrite { page, value });
    let request = (
        small.clone(),
        1_u32..3,
        small.clone(),
        proptest::option::of(small.clone()),
        0_u64..4,
        proptest::collection::vec(write.clone(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(op, attempt, txn_id, event_id, snapshot_seq, writes, valid)| BatchRequest {
                origin: Some(AttemptRef { op, attempt }),
                txn_id,
                event_id,
                snapshot_seq,
                writes,
                verdict: if valid {
                    Verdict::Valid
                } else {
                    Verdict::Conflict { reason: "x".into() }
                },
            },
        );
    let entry = (
        0_u64..6,
        small.clone(),
        proptest::option::of(small.clone()),
        proptest::collection::vec(write, 0..3),
    )
        .prop_map(|(seq, txn_id, event_id, writes)| LogEntry {
            seq,
            txn_id,
            event_id,
            writes,
        });
    let result = prop_oneof![
        (0_u64..6).prop_map(|commit_seq| AttemptResult::Committed { commit_seq }),
        Just(AttemptResult::Unknown),
        Just(transient()),
        Just(permanent()),
    ];
    let outcome = prop_oneof![
        (0_u64..6).prop_map(|commit_seq| Outcome::Ok(OkValue::Committed { commit_seq })),
        Just(Outcome::Ok(OkValue::Read {
            version: Some(Box::new(PageVersion {
                page: 1,
                commit_seq: 1,
                value: 0
            }))
        })),
        any::<bool>().prop_map(|definite| Outcome::Failed {
            error: "e".into(),
            definite
        }),
        Just(Outcome::Unknown(UnknownReason::TimedOut)),
    ];
    prop_oneof![
        (small.clone(), any::<bool>(), 0_u32..4).prop_map(|(op, write, page)| EventKind::Invoke {
            op,
            process: 1,
            call: if write {
                Call::Write { event_id: Some(op) }
            } else {
                Call::Read { page }
            },
        }),
        (small.clone(), outcome).prop_map(|(op, outcome)| EventKind::Complete { op, outcome }),
        (small.clone(), 1_u32..4, 0_u64..5_000_000).prop_map(|(op, attempt, delay_before)| {
            EventKind::AttemptStarted {
                op,
                attempt,
                delay_before,
            }
        }),
        (small.clone(), 1_u32..4, result).prop_map(|(op, attempt, result)| {
            EventKind::AttemptEnded {
                op,
                attempt,
                result,
            }
        }),
        Just(EventKind::BackoffPolicyDeclared(POLICY)),
        (0_u32..3).prop_map(|capacity| EventKind::ChannelDeclared {
            channel: 0,
            capacity
        }),
        (1_u64..5).prop_map(|permit| EventKind::PermitReserved { channel: 0, permit }),
        (1_u64..5).prop_map(|permit| EventKind::PermitSent { channel: 0, permit }),
        (1_u64..5).prop_map(|permit| EventKind::PermitAborted { channel: 0, permit }),
        (1_u64..5).prop_map(|permit| EventKind::PermitDelivered { channel: 0, permit }),
        (0_u64..3, proptest::collection::vec(request, 0..3))
            .prop_map(|(batch, requests)| EventKind::BatchValidated { batch, requests }),
        (0_u64..3, any::<bool>()).prop_map(|(batch, ok)| EventKind::WalAppended { batch, ok }),
        (0_u64..3, any::<bool>()).prop_map(|(batch, ok)| EventKind::FsyncReturned { batch, ok }),
        (0_u64..3, proptest::collection::vec(0_u64..6, 0..3))
            .prop_map(|(batch, commit_seqs)| EventKind::Published { batch, commit_seqs }),
        any::<bool>().prop_map(|during_recovery| EventKind::ServerCrash {
            process: 0,
            during_recovery
        }),
        (
            proptest::collection::vec(entry, 0..4),
            proptest::option::of(0_u64..4)
        )
            .prop_map(
                |(log, corruption_reported_from)| EventKind::Recovered(Box::new(Recovery {
                    process: 0,
                    state: Some(
                        log.iter()
                            .flat_map(|e| e.writes.iter().map(|w| PageVersion {
                                page: w.page,
                                commit_seq: e.seq,
                                value: w.value
                            }))
                            .collect()
                    ),
                    log,
                    corruption_reported_from,
                }))
            ),
        (0_u64..3, 0_u32..5, 0_usize..8).prop_map(|(commit_seq, event_seq, kind)| {
            EventKind::Repair {
                commit_seq,
                event_seq,
                kind: RepairEventKind::ALL[kind],
            }
        }),
        (
            0_u64..3,
            proptest::collection::vec(any::<u8>(), 0..9),
            0_u32..4
        )
            .prop_map(
                |(commit_seq, systematic, shard_size)| EventKind::RepairSettled {
                    commit_seq,
                    state: RepairState::Completed,
                    symbols: Some(Box::new(RepairSymbols {
                        shard_size,
                        parity: vec![0; shard_size as usize],
                        systematic
                    })),
                }
            ),
        (0_u32..3, 0_usize..3).prop_map(|(capacity, policy)| EventKind::QueueDeclared {
            queue: 0,
            capacity,
            overflow: [
                OverflowPolicy::Block,
                OverflowPolicy::DropOldest,
                OverflowPolicy::Fail
            ][policy],
        }),
        (0_u64..4, 0_u32..4).prop_map(|(item, occupancy_after)| EventKind::QueueEnqueued {
            queue: 0,
            item,
            occupancy_after
        }),
        (0_u64..4, 0_u32..4).prop_map(|(item, occupancy_after)| EventKind::QueueDequeued {
            queue: 0,
            item,
            occupancy_after
        }),
        (0_u64..4).prop_map(|item| EventKind::QueueDroppedOldest { queue: 0, item }),
        (0_u64..4).prop_map(|item| EventKind::QueueDropReported { queue: 0, item }),
        (0_u64..4).prop_map(|item| EventKind::QueueSenderBlocked { queue: 0, item }),
        Just(EventKind::Phase(Phase::Quiescence)),
        (0_u64..3).prop_map(|bound| EventKind::Phase(Phase::Heal {
            bound: bound * MS,
            resolves_unknown: bound == 0
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random event soup: the checker returns (never panics), and its answer
    /// is a pure function of the history.
    #[test]
    fn arbitrary_histories_are_checked_without_panicking(
        events in proptest::collection::vec((0_u64..20, arbitrary_event()), 0..60)
    ) {
        let mut history = History::new();
        for (ms, kind) in events {
            history.push(ms * MS, kind);
        }
        let first = check(&history);
        prop_assert_eq!(&first, &check(&history));
        let mut sorted = first.clone();
        sorted.sort_by(|a, b| (a.time, a.invariant, &a.ops, &a.message).cmp(&(b.time, b.invariant, &b.ops, &b.message)));
        prop_assert_eq!(first, sorted);
    }
}
