//! Shared by the scenarios that run spec 03's repair workers: their events
//! and their state at quiescence, as `durasim_models` history records.
//!
//! - Each incarnation of the workers records into its own
//!   [`Recorder`]; its events are numbered 1, 2, 3, … per commit within
//!   that incarnation. The models number a commit's events across the
//!   whole run, so an incarnation's numbers are shifted by how many events
//!   the commit had in the earlier ones (a gap or a repeat the system
//!   makes inside one incarnation still shows).
//! - At quiescence each commit's repair state is settled
//!   ([`EventKind::RepairSettled`]); a `Completed` one carries its
//!   symbols as the disk holds them *after the final crash*: the
//!   systematic bytes from the durable log, the parity from the durable
//!   parity log. The models recompute the parity from those bytes, so a
//!   parity that is not durable, or protects other bytes, is D9.

use std::collections::BTreeMap;

use durasim_models as models;
use durasim_models::EventKind;

use super::history_check::{Merger, Rank};
use crate::systems::record::Recorder;
use crate::systems::repair::{ParityRecord, RepairEvent, RepairEventKind, RepairState};

/// The models' name for a repair event.
fn model_kind(kind: &RepairEventKind) -> models::RepairEventKind {
    use models::RepairEventKind as M;
    match kind {
        RepairEventKind::CommitDurable => M::CommitDurable,
        RepairEventKind::DurableButNotRepairable => M::DurableButNotRepairable,
        RepairEventKind::CommitAcked => M::CommitAcked,
        RepairEventKind::RecoveredPending => M::RecoveredPending,
        RepairEventKind::RecoveredCompleted => M::RecoveredCompleted,
        RepairEventKind::RepairStarted => M::RepairStarted,
        RepairEventKind::RepairCompleted => M::RepairCompleted,
        RepairEventKind::RepairFailed { .. } => M::RepairFailed,
    }
}

/// The models' name for a repair state.
pub(crate) fn model_state(state: RepairState) -> models::RepairState {
    match state {
        RepairState::NotScheduled => models::RepairState::NotScheduled,
        RepairState::Pending => models::RepairState::Pending,
        RepairState::Completed => models::RepairState::Completed,
        RepairState::Failed => models::RepairState::Failed,
    }
}

/// Push the events of successive worker incarnations (`incarnations`, in
/// the order they ran) into `merger`, numbered per commit across all.
pub(crate) fn push_repair_events(incarnations: &[Recorder<RepairEvent>], merger: &mut Merger) {
    let mut earlier: BTreeMap<u64, u32> = BTreeMap::new();
    for recorder in incarnations {
        let mut here: BTreeMap<u64, u32> = BTreeMap::new();
        recorder.with_events(|events| {
            for r in events {
                let seq = r.event.commit_seq;
                let shift = earlier.get(&seq).copied().unwrap_or(0);
                let count = here.entry(seq).or_insert(0);
                *count = (*count).max(r.event.event_seq);
                merger.push(
                    r.time,
                    Rank::Repair,
                    EventKind::Repair {
                        commit_seq: seq,
                        event_seq: shift.saturating_add(r.event.event_seq),
                        kind: model_kind(&r.event.kind),
                    },
                );
            }
        });
        for (seq, count) in here {
            *earlier.entry(seq).or_insert(0) += count;
        }
    }
}

/// One `RepairSettled` record per commit of `states` (the workers' states
/// at quiescence). `systematic` and `parity` are what the disk holds after
/// the final crash: a commit's systematic bytes by seq, and the parity
/// records in log order (the last one per commit counts, as recovery
/// reads it).
pub(crate) fn settled_records(
    states: &BTreeMap<u64, RepairState>,
    systematic: &BTreeMap<u64, Vec<u8>>,
    parity: &[ParityRecord],
) -> Vec<EventKind> {
    let parity: BTreeMap<u64, &ParityRecord> = parity.iter().map(|r| (r.commit_seq, r)).collect();
    states
        .iter()
        .map(|(&seq, &state)| {
            let symbols = (state == RepairState::Completed)
                .then(|| {
                    let record = parity.get(&seq)?;
                    Some(Box::new(models::RepairSymbols {
                        shard_size: u32::try_from(record.shard_size).unwrap_or(u32::MAX),
                        systematic: systematic.get(&seq)?.clone(),
                        parity: record.parity.clone(),
                    }))
                })
                .flatten();
            EventKind::RepairSettled {
                commit_seq: seq,
                state: model_state(state),
                symbols,
            }
        })
        .collect()
}
