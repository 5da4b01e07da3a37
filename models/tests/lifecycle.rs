//! D14 lifecycle-consistent (spec 06): hand-built histories (each broken
//! version rejected with exactly D14 and snapshotted, the fixed version
//! passing), malformed records reported rather than panicking, and the
//! property that every history of the trivially correct reference
//! ([`durasim_models::model::lifecycle::reference_history`]) is accepted.

mod common;

use common::*;
use durasim_models::model::lifecycle::reference_history;
use durasim_models::*;
use proptest::prelude::*;

fn entry(name: &str, version: u32) -> LockfileEntry {
    LockfileEntry {
        name: name.into(),
        version,
        files: vec![format!("{name}/{version}/f0")],
    }
}

fn row(name: &str, version: u32) -> CatalogRow {
    CatalogRow {
        name: name.into(),
        version,
        indexed: true,
    }
}

fn state(catalog: Vec<CatalogRow>, entries: Vec<LockfileEntry>, files: &[&str]) -> LifecycleState {
    LifecycleState {
        catalog,
        lockfile: LockfileView::Entries(entries),
        files: files.iter().map(|f| f.to_string()).collect(),
    }
}

fn ended(b: &mut Builder, iteration: u32, actor: u32, op: LifecycleOp, outcome: LifecycleOutcome) {
    b.push(EventKind::LifecycleActorEnded {
        iteration,
        actor,
        op: Box::new(op),
        outcome: Box::new(outcome),
    });
}

fn observed(b: &mut Builder, iteration: u32, after_reconcile: bool, state: LifecycleState) {
    b.push(EventKind::LifecycleObserved {
        iteration,
        after_reconcile,
        state: Box::new(state),
    });
}

fn install(item: &str) -> LifecycleOp {
    LifecycleOp::Install { item: item.into() }
}

/// Assert the fixed history passes and the broken one reports only D14;
/// snapshot the broken report.
fn assert_only_d14(snapshot: &str, history: impl Fn(bool) -> History) {
    let broken = assert_only(InvariantId::D14, history);
    insta::assert_snapshot!(snapshot, render(&broken));
}

#[test]
fn d14_an_orphan_and_an_unmatched_row_after_reconcile_are_rejected() {
    assert_only_d14(
        "d14_an_orphan_and_an_unmatched_row_after_reconcile_are_rejected",
        |broken| {
            let mut b = Builder::new();
            b.at(1);
            ended(
                &mut b,
                0,
                0,
                install("A"),
                LifecycleOutcome::PartiallyApplied,
            );
            ended(&mut b, 0, 1, install("B"), LifecycleOutcome::Done);
            b.at(2);
            // The documented transient: A's entry has no row yet.
            observed(
                &mut b,
                0,
                false,
                state(
                    vec![row("B", 1)],
                    vec![entry("A", 1), entry("B", 1)],
                    &["A/1/f0", "B/1/f0"],
                ),
            );
            b.at(3);
            ended(&mut b, 1, 0, LifecycleOp::Reconcile, LifecycleOutcome::Done);
            let end = if broken {
                // A crashed install's files left behind and a stale row.
                state(
                    vec![row("A", 1), row("B", 1), row("C", 2)],
                    vec![entry("A", 1), entry("B", 1)],
                    &["A/1/f0", "B/1/f0", "C/2/f0"],
                )
            } else {
                state(
                    vec![row("A", 1), row("B", 1)],
                    vec![entry("A", 1), entry("B", 1)],
                    &["A/1/f0", "B/1/f0"],
                )
            };
            b.at(4);
            observed(&mut b, 1, true, end);
            b.build()
        },
    );
}

#[test]
fn d14_the_transient_is_tolerated_only_where_it_was_reported_and_one_way() {
    let history = |partial_reported: bool, stale_row: bool| {
        let mut b = Builder::new();
        b.at(1);
        let outcome = if partial_reported {
            LifecycleOutcome::PartiallyApplied
        } else {
            LifecycleOutcome::Done
        };
        ended(&mut b, 0, 0, install("A"), outcome);
        let catalog = if stale_row { vec![row("A", 1)] } else { vec![] };
        b.at(2);
        observed(
            &mut b,
            0,
            false,
            state(catalog, vec![entry("A", 2)], &["A/2/f0"]),
        );
        b.at(3);
        ended(&mut b, 1, 0, LifecycleOp::Reconcile, LifecycleOutcome::Done);
        observed(
            &mut b,
            1,
            true,
            state(vec![row("A", 2)], vec![entry("A", 2)], &["A/2/f0"]),
        );
        b.build()
    };
    assert_eq!(check(&history(true, false)), vec![]);
    assert_eq!(ids(&history(false, false)), vec![InvariantId::D14]);
    // A stale catalog row is a real rollback bug even with the transient.
    let stale = check(&history(true, true));
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].message.contains("catalog row A@1"), "{}", stale[0]);
}

#[test]
fn d14_errors_actors_must_not_surface_are_rejected() {
    for (outcome, number) in [
        (LifecycleOutcome::LockBudgetExhausted, "3"),
        (LifecycleOutcome::StorageBusy, "3"),
        (
            LifecycleOutcome::Collision {
                item: "A".into(),
                with: "B".into(),
            },
            "2",
        ),
    ] {
        let mut b = Builder::new();
        b.at(1);
        ended(&mut b, 0, 0, install("A"), outcome.clone());
        observed(&mut b, 0, false, LifecycleState::default());
        ended(&mut b, 1, 0, LifecycleOp::Reconcile, LifecycleOutcome::Done);
        observed(&mut b, 1, true, LifecycleState::default());
        let violations = check(&b.build());
        assert_eq!(violations.len(), 1, "{outcome:?}: {violations:?}");
        assert!(
            violations[0]
                .message
                .contains(&format!("invariant {number}")),
            "{}",
            violations[0]
        );
    }
}

#[test]
fn d14_a_malformed_lockfile_is_rejected() {
    let mut b = Builder::new();
    b.at(1);
    observed(
        &mut b,
        0,
        false,
        LifecycleState {
            lockfile: LockfileView::Malformed {
                error: "EOF while parsing".into(),
            },
            ..LifecycleState::default()
        },
    );
    ended(&mut b, 1, 0, LifecycleOp::Reconcile, LifecycleOutcome::Done);
    observed(&mut b, 1, true, LifecycleState::default());
    let violations = check(&b.build());
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].message.contains("invariant 4"));
}

#[test]
fn d14_malformed_records_are_reported_not_trusted() {
    let mut b = Builder::new();
    b.at(1);
    observed(&mut b, 3, false, LifecycleState::default());
    // Observed twice, an actor for a closed iteration, a duplicate actor.
    observed(&mut b, 3, false, LifecycleState::default());
    ended(&mut b, 2, 0, install("A"), LifecycleOutcome::Done);
    ended(&mut b, 4, 0, install("A"), LifecycleOutcome::Done);
    ended(&mut b, 4, 0, install("A"), LifecycleOutcome::Done);
    // Never observed, and no reconcile observation at all.
    let violations = check(&b.build());
    assert!(violations.iter().all(|v| v.invariant == InvariantId::D14));
    let malformed = violations
        .iter()
        .filter(|v| v.message.contains("malformed"))
        .count();
    assert_eq!(malformed, 4, "{violations:#?}");
    assert!(violations
        .iter()
        .any(|v| v.message.contains("eventual consistency is unjudged")));
    // Records after the final observation.
    let mut b = Builder::new();
    b.at(1);
    observed(&mut b, 0, true, LifecycleState::default());
    ended(&mut b, 1, 0, install("A"), LifecycleOutcome::Done);
    observed(&mut b, 1, false, LifecycleState::default());
    assert!(ids(&b.build()).contains(&InvariantId::D14));
}

#[test]
fn histories_without_lifecycle_records_have_nothing_to_judge() {
    assert_eq!(check_invariant(&History::new(), InvariantId::D14), vec![]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_reference_lifecycle_history_is_accepted(seed in any::<u64>(), iterations in 0_u32..12) {
        let history = reference_history(seed, iterations);
        let violations = check(&history);
        prop_assert!(violations.is_empty(), "seed {seed}:\n{}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }

    #[test]
    fn a_reference_history_with_an_orphan_is_rejected(seed in any::<u64>(), iterations in 1_u32..8, pick in any::<u32>()) {
        let mut history = reference_history(seed, iterations);
        let observed: Vec<usize> = history.events.iter().enumerate().filter(|(_, e)| matches!(e.kind, EventKind::LifecycleObserved { .. })).map(|(i, _)| i).collect();
        let at = observed[pick as usize % observed.len()];
        if let EventKind::LifecycleObserved { state, .. } = &mut history.events[at].kind {
            state.files.push("Z/9/orphan".into());
        }
        prop_assert_eq!(ids(&history), vec![InvariantId::D14]);
    }
}

fn arbitrary_lifecycle_event() -> impl Strategy<Value = EventKind> {
    let name = prop_oneof![
        Just("A".to_string()),
        Just("B".to_string()),
        Just(String::new())
    ];
    let op = prop_oneof![
        name.clone().prop_map(|item| LifecycleOp::Install { item }),
        name.clone().prop_map(|item| LifecycleOp::Remove { item }),
        Just(LifecycleOp::UpdateAll),
        Just(LifecycleOp::Reconcile),
    ];
    let outcome = prop_oneof![
        Just(LifecycleOutcome::Done),
        Just(LifecycleOutcome::PartiallyApplied),
        Just(LifecycleOutcome::Crashed),
        Just(LifecycleOutcome::LockBudgetExhausted),
        Just(LifecycleOutcome::StorageBusy),
        (name.clone(), name.clone())
            .prop_map(|(item, with)| LifecycleOutcome::Collision { item, with }),
    ];
    let row =
        (name.clone(), 0_u32..3, any::<bool>()).prop_map(|(name, version, indexed)| CatalogRow {
            name,
            version,
            indexed,
        });
    let entry = (
        name.clone(),
        0_u32..3,
        prop::collection::vec("[a-z/]{0,6}", 0..3),
    )
        .prop_map(|(name, version, files)| LockfileEntry {
            name,
            version,
            files,
        });
    let lockfile = prop_oneof![
        prop::collection::vec(entry, 0..4).prop_map(LockfileView::Entries),
        Just(LockfileView::Malformed {
            error: "EOF".into()
        }),
    ];
    let state = (
        prop::collection::vec(row, 0..4),
        lockfile,
        prop::collection::vec("[a-z/]{0,6}", 0..4),
    )
        .prop_map(|(catalog, lockfile, files)| LifecycleState {
            catalog,
            lockfile,
            files,
        });
    prop_oneof![
        (0_u32..4, 0_u32..3, op, outcome).prop_map(|(iteration, actor, op, outcome)| {
            EventKind::LifecycleActorEnded {
                iteration,
                actor,
                op: Box::new(op),
                outcome: Box::new(outcome),
            }
        }),
        (0_u32..4, any::<bool>(), state).prop_map(|(iteration, after_reconcile, state)| {
            EventKind::LifecycleObserved {
                iteration,
                after_reconcile,
                state: Box::new(state),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary (mostly malformed) lifecycle records: the checker reports,
    /// never panics, and reports nothing but D14.
    #[test]
    fn arbitrary_lifecycle_records_never_panic_the_checker(
        events in prop::collection::vec((0_u64..5, arbitrary_lifecycle_event()), 0..12)
    ) {
        let mut history = History::new();
        for (time, kind) in events {
            history.push(time, kind);
        }
        let violations = check(&history);
        prop_assert!(violations.iter().all(|v| v.invariant == InvariantId::D14));
    }
}
