//! D14 lifecycle-consistent (spec 06), through
//! [`crate::model::lifecycle::breaches`] and
//! [`crate::model::lifecycle::outcome_breach`]:
//!
//! | breach | invariant |
//! |--------|-----------|
//! | an iteration's read-back state breaks invariant 1 (catalog ↔ lockfile bijection), 4 (well-formed lockfile) or 5 (no orphan files) | D14 |
//! | an actor reported a cross-item collision (2), lock-budget exhaustion or a storage-busy error (3) | D14 |
//! | the lockfile → catalog direction of invariant 1 fails in an iteration where no actor reported the documented transient, or after reconcile | D14 |
//! | malformed records: an iteration observed twice, an actor outcome for an iteration already observed or for one before it, an actor reported twice, outcomes never observed, no observation after reconcile when the history has lifecycle records, records after it | D14 |
//!
//! Does not verify: which version an install or update picked, that an
//! entry's files exist (a missing file is not among spec 06's
//! invariants), how the actors interleaved.

use std::collections::BTreeSet;

use crate::history::{LifecycleOp, LifecycleOutcome, LifecycleState, SimTime};
use crate::model::lifecycle::{breaches, outcome_breach};
use crate::violation::InvariantId;

use super::Report;

/// Per-iteration bookkeeping of the lifecycle records.
#[derive(Debug, Default)]
pub(crate) struct LifecycleConsistent {
    /// Every iteration already observed.
    observed: BTreeSet<u32>,
    /// The highest observed iteration.
    last_observed: Option<u32>,
    /// Actors reported for iterations not yet observed.
    reported: BTreeSet<(u32, u32)>,
    /// Iterations where an actor reported the documented transient.
    partial: BTreeSet<u32>,
    /// When the strict after-reconcile observation came.
    reconciled: Option<SimTime>,
    /// Whether any lifecycle record was seen.
    seen: bool,
    /// When the last record came.
    last_time: SimTime,
}

impl LifecycleConsistent {
    pub(crate) fn on_actor_ended(
        &mut self,
        time: SimTime,
        iteration: u32,
        actor: u32,
        op: &LifecycleOp,
        outcome: &LifecycleOutcome,
        report: &mut Report,
    ) {
        self.touch(time, report);
        if self.observed.contains(&iteration) || self.last_observed.is_some_and(|l| iteration < l) {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "malformed lifecycle record: actor {actor} ({}) reports for iteration {iteration}, which was already observed or closed",
                    describe_op(op)
                ),
            );
            return;
        }
        if !self.reported.insert((iteration, actor)) {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "malformed lifecycle record: actor {actor} reports twice in iteration {iteration}"
                ),
            );
        }
        if *outcome == LifecycleOutcome::PartiallyApplied {
            self.partial.insert(iteration);
        }
        if let Some((number, line)) = outcome_breach(outcome) {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "iteration {iteration}: actor {actor} ({}) breaks spec 06 invariant {number}: {line}",
                    describe_op(op)
                ),
            );
        }
    }

    pub(crate) fn on_observed(
        &mut self,
        time: SimTime,
        iteration: u32,
        after_reconcile: bool,
        state: &LifecycleState,
        report: &mut Report,
    ) {
        self.touch(time, report);
        if !self.observed.insert(iteration) || self.last_observed.is_some_and(|l| iteration < l) {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "malformed lifecycle record: iteration {iteration} is observed twice or out of order"
                ),
            );
            return;
        }
        self.last_observed = Some(iteration);
        let before: Vec<(u32, u32)> = self
            .reported
            .iter()
            .copied()
            .filter(|&(i, _)| i < iteration)
            .collect();
        for (i, actor) in before {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "malformed lifecycle record: actor {actor} of iteration {i} was never observed (iteration {iteration} closes first)"
                ),
            );
        }
        self.reported.retain(|&(i, _)| i > iteration);
        let tolerate = !after_reconcile && self.partial.contains(&iteration);
        let when = if after_reconcile {
            format!("after reconcile (iteration {iteration})")
        } else {
            format!("after iteration {iteration}")
        };
        for breach in breaches(state, tolerate) {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "{when}: spec 06 invariant {} broken: {}",
                    breach.invariant(),
                    breach.describe()
                ),
            );
        }
        if after_reconcile {
            self.reconciled = Some(time);
        }
    }

    /// Common to every record: nothing may follow the final observation.
    fn touch(&mut self, time: SimTime, report: &mut Report) {
        self.seen = true;
        self.last_time = self.last_time.max(time);
        if let Some(at) = self.reconciled {
            report.add(
                InvariantId::D14,
                time,
                vec![],
                format!(
                    "malformed lifecycle record: a lifecycle record follows the after-reconcile observation at {}",
                    crate::violation::Secs(at)
                ),
            );
        }
    }

    pub(crate) fn finish(&self, report: &mut Report) {
        if !self.seen {
            return;
        }
        for &(iteration, actor) in &self.reported {
            report.add(
                InvariantId::D14,
                self.last_time,
                vec![],
                format!(
                    "malformed lifecycle record: actor {actor} of iteration {iteration} reported, but the iteration was never observed"
                ),
            );
        }
        if self.reconciled.is_none() {
            report.add(
                InvariantId::D14,
                self.last_time,
                vec![],
                "lifecycle records without a state observed after the final reconcile: eventual consistency is unjudged".into(),
            );
        }
    }
}

fn describe_op(op: &LifecycleOp) -> String {
    match op {
        LifecycleOp::Install { item } => format!("install {item}"),
        LifecycleOp::Remove { item } => format!("remove {item}"),
        LifecycleOp::UpdateAll => "update-all".into(),
        LifecycleOp::Reconcile => "reconcile".into(),
    }
}
