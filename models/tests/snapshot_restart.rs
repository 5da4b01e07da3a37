//! D13 snapshot-restart (spec 05): hand-built histories (the broken
//! version rejected with exactly D13, its message snapshotted; the fixed
//! version accepted), the failure policy, malformed records, and
//! properties over the correct reference manager's histories
//! (`durasim_models::snapshot_reference`): all accepted, and a flush that
//! loses an append always rejected.

mod common;

use common::{assert_only, ids, render};
use durasim_models::snapshot_reference::generate;
use durasim_models::*;
use proptest::prelude::*;

const MS: SimTime = 1_000_000;

/// A history builder for spec 05 records, one event per millisecond.
#[derive(Default)]
struct Snap {
    history: History,
    now: SimTime,
}

fn meta(lamport: u64) -> SnapMeta {
    SnapMeta {
        lamport,
        ..SnapMeta::default()
    }
}

impl Snap {
    fn push(&mut self, kind: EventKind) -> &mut Self {
        self.now += MS;
        self.history.push(self.now, kind);
        self
    }

    fn invoke(&mut self, op: OpId, kind: SnapOpKind, channel: Option<SnapChannelId>) -> &mut Self {
        self.push(EventKind::SnapInvoked { op, kind, channel })
    }

    fn save(&mut self, op: OpId, lamport: u64, history: &[SnapMsgId], ok: bool) -> &mut Self {
        self.push(EventKind::SnapSaveIssued {
            op,
            channel: 0,
            point: Box::new(SnapChannelState {
                meta: Some(meta(lamport)),
                history: history.to_vec(),
            }),
        });
        self.returned_call(op, SnapCall::SaveMeta, ok)
    }

    fn flush(
        &mut self,
        op: OpId,
        appends: &[SnapMsgId],
        evicts: &[SnapMsgId],
        ok: bool,
    ) -> &mut Self {
        self.push(EventKind::SnapFlushIssued {
            op,
            channel: 0,
            delta: Box::new(SnapDelta {
                appends: appends.to_vec(),
                evicts: evicts.to_vec(),
            }),
        });
        self.returned_call(op, SnapCall::UpdateHistory, ok)
    }

    fn returned_call(&mut self, op: OpId, call: SnapCall, ok: bool) -> &mut Self {
        self.push(EventKind::SnapCallReturned {
            op,
            channel: 0,
            call,
            ok,
        })
    }

    fn done(&mut self, op: OpId, result: SnapResult) -> &mut Self {
        self.push(EventKind::SnapReturned { op, result })
    }

    fn load(&mut self, op: OpId, lamport: Option<u64>, history: &[SnapMsgId]) -> &mut Self {
        self.push(EventKind::SnapLoaded {
            op,
            channel: 0,
            loaded: Some(Box::new(SnapChannelState {
                meta: lamport.map(meta),
                history: history.to_vec(),
            })),
        })
    }

    /// Op `op` receives a message on channel 0: one save point.
    fn receive(
        &mut self,
        op: OpId,
        lamport: u64,
        memory: &[SnapMsgId],
        flush: Option<(&[SnapMsgId], &[SnapMsgId], bool)>,
    ) -> &mut Self {
        self.invoke(op, SnapOpKind::Receive, Some(0))
            .save(op, lamport, memory, true);
        if let Some((appends, evicts, ok)) = flush {
            self.flush(op, appends, evicts, ok);
        }
        self.done(op, SnapResult::Ok)
    }
}

/// The fixed history passes; the broken one reports only D13.
fn assert_only_d13(history: impl Fn(bool) -> History) -> History {
    assert_only(InvariantId::D13, history)
}

#[test]
fn d13_a_history_delta_lost_after_a_failed_flush_is_rejected() {
    // Capacity 2. Op 2 delivers 3 (evicting 1) but its flush fails; op 3
    // delivers 4 (evicting 2). The fixed manager retries the whole queue;
    // the broken one lost op 2's delta. Then a crash and a bootstrap.
    let broken = assert_only_d13(|broken| {
        let mut b = Snap::default();
        b.invoke(1, SnapOpKind::Bootstrap, None)
            .load(1, None, &[])
            .done(1, SnapResult::Ok);
        b.receive(2, 1, &[1], Some((&[1], &[], true)));
        b.receive(3, 2, &[1, 2], Some((&[2], &[], true)));
        b.receive(4, 3, &[2, 3], Some((&[3], &[1], false)));
        if broken {
            b.receive(5, 4, &[3, 4], Some((&[4], &[2], true)));
        } else {
            b.receive(5, 4, &[3, 4], Some((&[3, 4], &[1, 2], true)));
        }
        b.invoke(6, SnapOpKind::Bootstrap, None);
        if broken {
            b.load(6, Some(4), &[1, 4]);
        } else {
            b.load(6, Some(4), &[3, 4]);
        }
        b.done(6, SnapResult::Ok);
        b.history.clone()
    });
    insta::assert_snapshot!(
        "d13_a_history_delta_lost_after_a_failed_flush_is_rejected",
        render(&broken)
    );
}

#[test]
fn d13_a_restart_that_loses_a_flushed_message_is_rejected() {
    let broken = assert_only_d13(|broken| {
        let mut b = Snap::default();
        b.receive(1, 1, &[7], Some((&[7], &[], true)));
        b.receive(2, 2, &[7, 8], Some((&[8], &[], true)));
        // A save in doubt: issued, then the process died.
        b.invoke(3, SnapOpKind::Receive, Some(0))
            .push(EventKind::SnapSaveIssued {
                op: 3,
                channel: 0,
                point: Box::new(SnapChannelState {
                    meta: Some(meta(3)),
                    history: vec![7, 8, 9],
                }),
            });
        b.invoke(4, SnapOpKind::Bootstrap, None);
        // Either the old meta or the one in doubt may come back; the
        // flushed history must.
        if broken {
            b.load(4, Some(3), &[7]);
        } else {
            b.load(4, Some(3), &[7, 8]);
        }
        b.done(4, SnapResult::Ok);
        b.history.clone()
    });
    insta::assert_snapshot!(
        "d13_a_restart_that_loses_a_flushed_message_is_rejected",
        render(&broken)
    );
}

#[test]
fn d13_a_foreground_op_surfacing_a_persistence_error_is_rejected() {
    assert_only_d13(|broken| {
        let mut b = Snap::default();
        b.invoke(1, SnapOpKind::Send, Some(0))
            .save(1, 1, &[], false)
            .done(
                1,
                if broken {
                    SnapResult::PersistenceError
                } else {
                    SnapResult::Ok
                },
            );
        b.history.clone()
    });
}

#[test]
fn d13_a_remove_swallowing_a_failed_drop_is_rejected() {
    assert_only_d13(|broken| {
        let mut b = Snap::default();
        b.receive(1, 1, &[1], Some((&[1], &[], true)));
        b.invoke(2, SnapOpKind::Remove, Some(0))
            .push(EventKind::SnapDropIssued { op: 2, channel: 0 })
            .returned_call(2, SnapCall::Drop, false)
            .done(
                2,
                if broken {
                    SnapResult::Ok
                } else {
                    SnapResult::PersistenceError
                },
            );
        b.history.clone()
    });
}

#[test]
fn d13_a_bootstrap_swallowing_a_failed_load_is_rejected() {
    assert_only_d13(|broken| {
        let mut b = Snap::default();
        b.invoke(1, SnapOpKind::Bootstrap, None)
            .push(EventKind::SnapLoaded {
                op: 1,
                channel: 0,
                loaded: None,
            })
            .done(
                1,
                if broken {
                    SnapResult::Ok
                } else {
                    SnapResult::PersistenceError
                },
            );
        b.history.clone()
    });
}

#[test]
fn malformed_spec_05_records_are_reported_not_panicked_on() {
    let mut b = Snap::default();
    b.returned_call(9, SnapCall::SaveMeta, true);
    b.invoke(1, SnapOpKind::Ack, Some(0));
    b.invoke(1, SnapOpKind::Ack, Some(0));
    b.returned_call(1, SnapCall::UpdateHistory, true);
    b.flush(1, &[1], &[], true);
    b.done(1, SnapResult::Ok).done(1, SnapResult::Ok);
    let reported = check(&b.history);
    assert!(reported.len() >= 5, "{}", render(&b.history));
    assert!(reported.iter().all(|v| v.invariant == InvariantId::D13));
}

fn snap_event() -> impl Strategy<Value = EventKind> {
    let op = 0_u64..4;
    let channel = 0_u32..2;
    let ids = proptest::collection::vec(0_u64..5, 0..3);
    let kind = prop_oneof![
        Just(SnapOpKind::Send),
        Just(SnapOpKind::Remove),
        Just(SnapOpKind::Reset),
        Just(SnapOpKind::Bootstrap),
    ];
    let call = prop_oneof![
        Just(SnapCall::SaveMeta),
        Just(SnapCall::UpdateHistory),
        Just(SnapCall::Drop),
        Just(SnapCall::Load),
    ];
    let result = prop_oneof![
        Just(SnapResult::Ok),
        Just(SnapResult::PersistenceError),
        Just(SnapResult::Rejected),
    ];
    prop_oneof![
        (op.clone(), kind, proptest::option::of(channel.clone()))
            .prop_map(|(op, kind, channel)| EventKind::SnapInvoked { op, kind, channel }),
        (op.clone(), channel.clone(), ids.clone(), 0_u64..3).prop_map(
            |(op, channel, history, l)| {
                EventKind::SnapSaveIssued {
                    op,
                    channel,
                    point: Box::new(SnapChannelState {
                        meta: Some(meta(l)),
                        history,
                    }),
                }
            }
        ),
        (op.clone(), channel.clone(), ids.clone(), ids.clone()).prop_map(
            |(op, channel, appends, evicts)| EventKind::SnapFlushIssued {
                op,
                channel,
                delta: Box::new(SnapDelta { appends, evicts }),
            }
        ),
        (op.clone(), channel.clone())
            .prop_map(|(op, channel)| EventKind::SnapDropIssued { op, channel }),
        (op.clone(), channel.clone(), call, any::<bool>()).prop_map(|(op, channel, call, ok)| {
            EventKind::SnapCallReturned {
                op,
                channel,
                call,
                ok,
            }
        }),
        (op.clone(), channel, proptest::option::of(ids)).prop_map(|(op, channel, h)| {
            EventKind::SnapLoaded {
                op,
                channel,
                loaded: h.map(|history| {
                    Box::new(SnapChannelState {
                        meta: None,
                        history,
                    })
                }),
            }
        }),
        (op, result).prop_map(|(op, result)| EventKind::SnapReturned { op, result }),
    ]
}

/// Drop one appended id from the `pick`-th successful flush (one with
/// appends). `None` when there is none.
fn lose_an_append(history: &History, pick: usize) -> Option<History> {
    let flushes: Vec<usize> = history
        .events
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            matches!(&e.kind, EventKind::SnapFlushIssued { delta, .. } if !delta.appends.is_empty())
                && matches!(
                    history.events.get(i + 1).map(|n| &n.kind),
                    Some(EventKind::SnapCallReturned { ok: true, .. })
                )
        })
        .map(|(i, _)| i)
        .collect();
    let at = *flushes.get(pick % flushes.len().max(1))?;
    let mut mutated = history.clone();
    if let EventKind::SnapFlushIssued { delta, .. } = &mut mutated.events[at].kind {
        delta.appends.remove(0);
    }
    Some(mutated)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn histories_of_a_correct_manager_are_accepted(
        seed in any::<u64>(),
        steps in 0_u32..120,
        fail in prop_oneof![Just(0_u32), Just(50_000), Just(300_000)],
    ) {
        let history = generate(seed, steps, fail);
        prop_assert_eq!(check(&history), vec![], "{}", render(&history));
    }

    #[test]
    fn a_flush_that_loses_an_append_is_rejected(seed in any::<u64>(), pick in 0_usize..50) {
        let history = generate(seed, 80, 100_000);
        if let Some(mutated) = lose_an_append(&history, pick) {
            prop_assert!(ids(&mutated).contains(&InvariantId::D13), "{}", render(&mutated));
        }
    }

    #[test]
    fn arbitrary_spec_05_records_never_panic_the_checker(
        events in proptest::collection::vec(snap_event(), 0..40),
    ) {
        let mut history = History::new();
        for (i, kind) in events.into_iter().enumerate() {
            history.push(i as u64, kind);
        }
        let _ = check(&history);
    }
}

#[test]
fn the_reference_exercises_failures_crashes_and_mutation_targets() {
    let (mut failed, mut in_doubt_loads, mut drops, mut mutable) = (0, 0, 0, 0);
    for seed in 0..40 {
        let history = generate(seed, 100, 100_000);
        for event in &history.events {
            match &event.kind {
                EventKind::SnapCallReturned { ok: false, .. } => failed += 1,
                EventKind::SnapDropIssued { .. } => drops += 1,
                EventKind::SnapLoaded { loaded: None, .. } => in_doubt_loads += 1,
                _ => {}
            }
        }
        if lose_an_append(&history, 0).is_some() {
            mutable += 1;
        }
    }
    assert!(
        failed > 50 && drops > 20 && in_doubt_loads > 0 && mutable > 30,
        "failed {failed}, drops {drops}, failed loads {in_doubt_loads}, mutable {mutable}"
    );
}
