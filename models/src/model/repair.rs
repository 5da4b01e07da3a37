//! The repair lifecycle of one commit (spec 03) and the XOR parity code
//! its repair symbols use.
//!
//! Lifecycle, one event at a time with per-commit event numbers 1, 2, 3, …:
//! `CommitDurable`, then either `CommitAcked` (repair disabled:
//! `NotScheduled`) or `DurableButNotRepairable` (`Pending`) and
//! `CommitAcked`; then `RepairStarted` → `RepairCompleted` | `RepairFailed`,
//! or `RepairFailed` straight away (scheduling failed, or cancelled before
//! start). A crash sends a running repair back to `Pending`; recovery must
//! start it again or mark it `Failed` — which, after a crash, is allowed
//! even for a commit whose acknowledgement the crash swallowed.
//!
//! Recovery may also say what it found on disk, once per commit after each
//! crash: `RecoveredPending` (no valid repair symbols: re-scheduled) or
//! `RecoveredCompleted` (valid symbols: `Completed`). Either may be the
//! first event of a commit whose durability the crash kept from being
//! reported, and either may follow `Failed` (the failure is not durable;
//! recovery re-derives the state from disk). Never allowed: a recovery
//! event without a crash since the commit's last event, for a commit acked
//! without repair, and `RecoveredPending` after `Completed` (the symbols of
//! a completed repair were not durable).
//!
//! Parity: the systematic bytes are cut into `shard_size` shards (last one
//! zero-padded) and the parity shard is their XOR. Verification recomputes
//! the parity; a parity that matches is exactly one from which a decoder
//! rebuilds every shard as if it alone were lost (see [`verify_symbols`]).
//!
//! Not modelled: other erasure codes (more than one lost shard per stripe),
//! the timing of repairs (L1 and D9 look at quiescence only).

use crate::history::{RepairEventKind, RepairState, RepairSymbols};

/// Where a commit is in its repair lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No event yet.
    Unknown,
    /// `CommitDurable` seen.
    Durable,
    /// Acked with repair disabled.
    AckedWithoutRepair,
    /// Waiting for a repair task.
    Pending {
        /// Whether `CommitAcked` has been seen.
        acked: bool,
    },
    /// A repair task is running.
    Running {
        /// Whether `CommitAcked` has been seen.
        acked: bool,
    },
    /// Repair symbols durable.
    Completed,
    /// Failed, loudly.
    Failed,
}

/// A break of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairBreach {
    /// Per-commit event numbers must go 1, 2, 3, …
    EventOutOfSequence {
        /// Expected number.
        expected: u32,
        /// Recorded number.
        got: u32,
    },
    /// The event is not allowed in the current stage.
    UnexpectedEvent {
        /// The stage.
        stage: Stage,
        /// The event.
        event: RepairEventKind,
    },
}

/// One commit's lifecycle; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct RepairLifecycle {
    /// The stage's index in [`STAGES`].
    stage: u8,
    events_seen: u32,
    crashed_while_open: bool,
    /// A crash happened since the last event (recovery may speak).
    crashed_since_event: bool,
    /// The crash count as of the last event (see [`Self::apply_after_crashes`]).
    crashes_at_event: u64,
}

/// Every stage, in a fixed order: a stage's index here is its code.
const STAGES: [Stage; 9] = [
    Stage::Unknown,
    Stage::Durable,
    Stage::AckedWithoutRepair,
    Stage::Pending { acked: false },
    Stage::Pending { acked: true },
    Stage::Running { acked: false },
    Stage::Running { acked: true },
    Stage::Completed,
    Stage::Failed,
];

/// Every event, in the order of their codes.
const EVENTS: [RepairEventKind; 8] = RepairEventKind::ALL;

/// "No transition" in [`TRANSITIONS`].
const NONE: u8 = u8::MAX;

/// The two facts about past crashes a transition depends on; see
/// [`next_stage`].
#[derive(Clone, Copy)]
struct CrashContext {
    /// A crash hit the commit while its repair was open (or recovery
    /// re-scheduled it): it may start or fail without an acknowledgement.
    recovered: bool,
    /// A crash happened since the commit's last event: recovery may speak.
    crashed_since_event: bool,
}

impl CrashContext {
    /// The index of this context in [`TRANSITIONS`].
    const fn code(self) -> usize {
        (self.recovered as usize) * 2 + self.crashed_since_event as usize
    }

    const fn from_code(code: usize) -> Self {
        Self {
            recovered: code / 2 == 1,
            crashed_since_event: code % 2 == 1,
        }
    }
}

/// `TRANSITIONS[context][stage][event]`: the code of the next stage, or
/// [`NONE`]; computed at compile time from [`next_stage`], which is the
/// definition. One table look-up per event instead of a branchy match.
const TRANSITIONS: [[[u8; 8]; 9]; 4] = {
    let mut table = [[[NONE; 8]; 9]; 4];
    let mut context = 0;
    while context < 4 {
        let mut stage = 0;
        while stage < STAGES.len() {
            let mut event = 0;
            while event < EVENTS.len() {
                let next = next_stage(
                    STAGES[stage],
                    EVENTS[event],
                    CrashContext::from_code(context),
                );
                if let Some(next) = next {
                    table[context][stage][event] = stage_code(next);
                }
                event += 1;
            }
            stage += 1;
        }
        context += 1;
    }
    table
};

const fn stage_code(stage: Stage) -> u8 {
    match stage {
        Stage::Unknown => 0,
        Stage::Durable => 1,
        Stage::AckedWithoutRepair => 2,
        Stage::Pending { acked: false } => 3,
        Stage::Pending { acked: true } => 4,
        Stage::Running { acked: false } => 5,
        Stage::Running { acked: true } => 6,
        Stage::Completed => 7,
        Stage::Failed => 8,
    }
}

const fn event_code(event: RepairEventKind) -> usize {
    match event {
        RepairEventKind::CommitDurable => 0,
        RepairEventKind::DurableButNotRepairable => 1,
        RepairEventKind::CommitAcked => 2,
        RepairEventKind::RepairStarted => 3,
        RepairEventKind::RepairCompleted => 4,
        RepairEventKind::RepairFailed => 5,
        RepairEventKind::RecoveredPending => 6,
        RepairEventKind::RecoveredCompleted => 7,
    }
}

/// The lifecycle's definition: the stage `event` leads to from `stage`.
const fn next_stage(stage: Stage, event: RepairEventKind, crashes: CrashContext) -> Option<Stage> {
    use RepairEventKind as E;
    let recovered = crashes.recovered;
    match (stage, event) {
        (Stage::Unknown, E::CommitDurable) => Some(Stage::Durable),
        (Stage::Durable, E::CommitAcked) => Some(Stage::AckedWithoutRepair),
        (Stage::Durable, E::DurableButNotRepairable) => Some(Stage::Pending { acked: false }),
        (Stage::Pending { acked: false }, E::CommitAcked) => Some(Stage::Pending { acked: true }),
        (Stage::Pending { acked }, E::RepairStarted) if acked || recovered => {
            Some(Stage::Running { acked })
        }
        (Stage::Pending { acked }, E::RepairFailed) if acked || recovered => Some(Stage::Failed),
        (Stage::Running { .. }, E::RepairCompleted) => Some(Stage::Completed),
        (Stage::Running { .. }, E::RepairFailed) => Some(Stage::Failed),
        (stage, E::RecoveredPending) if crashes.crashed_since_event => match stage {
            Stage::Unknown | Stage::Durable | Stage::Failed => {
                Some(Stage::Pending { acked: false })
            }
            Stage::Pending { acked } | Stage::Running { acked } => Some(Stage::Pending { acked }),
            Stage::AckedWithoutRepair | Stage::Completed => None,
        },
        (stage, E::RecoveredCompleted) if crashes.crashed_since_event => match stage {
            Stage::AckedWithoutRepair => None,
            _ => Some(Stage::Completed),
        },
        _ => None,
    }
}

impl RepairLifecycle {
    /// A commit with no events yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current stage.
    #[inline]
    pub fn stage(&self) -> Stage {
        STAGES
            .get(usize::from(self.stage))
            .copied()
            .unwrap_or(Stage::Unknown)
    }

    /// The state `repair_state_for(seq)` should report now.
    #[inline]
    pub fn state(&self) -> RepairState {
        match self.stage() {
            Stage::Unknown | Stage::Durable | Stage::AckedWithoutRepair => {
                RepairState::NotScheduled
            }
            Stage::Pending { .. } | Stage::Running { .. } => RepairState::Pending,
            Stage::Completed => RepairState::Completed,
            Stage::Failed => RepairState::Failed,
        }
    }

    /// The server crashed: a running repair is pending again.
    pub fn crash(&mut self) {
        self.crashed_since_event = true;
        match self.stage() {
            Stage::Running { acked } | Stage::Pending { acked } => {
                self.stage = stage_code(Stage::Pending { acked });
                self.crashed_while_open = true;
            }
            _ => {}
        }
    }

    /// Apply event number `event_seq`; returns what it broke: its
    /// numbering, its place in the lifecycle, or both (in that order).
    #[inline]
    pub fn apply(&mut self, event_seq: u32, event: RepairEventKind) -> [Option<RepairBreach>; 2] {
        self.apply_after_crashes(self.crashes_at_event, event_seq, event)
    }

    /// Apply event number `event_seq`, knowing the history has seen
    /// `crashes` server crashes so far: a count above the one at the
    /// previous event means a crash came in between, and it is applied
    /// here ([`Self::crash`]) whether or not it was called for this commit
    /// at the time. Nothing moved the commit between its previous event
    /// and this one, so it stood at each of those crashes where it stands
    /// now, and a crash applied late leaves it exactly where one applied
    /// on time would (applying it twice changes nothing). That lets a
    /// checker count crashes instead of visiting every open repair at each
    /// one; [`Self::state`] is the same either way, since a running repair
    /// and a pending one are both `Pending`. Returns what [`Self::apply`]
    /// returns.
    #[inline]
    pub fn apply_after_crashes(
        &mut self,
        crashes: u64,
        event_seq: u32,
        event: RepairEventKind,
    ) -> [Option<RepairBreach>; 2] {
        if crashes > self.crashes_at_event {
            self.crash();
            self.crashes_at_event = crashes;
        }
        let context = CrashContext {
            recovered: self.crashed_while_open,
            crashed_since_event: self.crashed_since_event,
        };
        self.crashed_since_event = false;
        let expected = self.events_seen.saturating_add(1);
        self.events_seen = self.events_seen.max(event_seq);
        let next = TRANSITIONS
            .get(context.code())
            .and_then(|by_stage| by_stage.get(usize::from(self.stage)))
            .and_then(|by_event| by_event.get(event_code(event)))
            .copied()
            .unwrap_or(NONE);
        if next != NONE && matches!(event, RepairEventKind::RecoveredPending) {
            // Re-scheduled by recovery: it may start without an ack.
            self.crashed_while_open = true;
        }
        if next != NONE && event_seq == expected {
            self.stage = next;
            return [None, None];
        }
        let numbering = (event_seq != expected).then_some(RepairBreach::EventOutOfSequence {
            expected,
            got: event_seq,
        });
        let order = if next == NONE {
            Some(RepairBreach::UnexpectedEvent {
                stage: self.stage(),
                event,
            })
        } else {
            self.stage = next;
            None
        };
        [numbering, order]
    }
}

/// Why repair symbols do not protect their systematic bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParityError {
    /// Shard size 0.
    ZeroShardSize,
    /// The parity is not one shard long.
    ParityLength {
        /// `shard_size`.
        expected: usize,
        /// Its length.
        got: usize,
    },
    /// The parity is not the XOR of the shards (so some shard, if lost,
    /// would not be rebuilt from the others and the parity).
    ParityMismatch {
        /// First differing byte of the parity shard.
        offset: usize,
    },
}

/// The XOR parity shard of `systematic` cut into `shard_size` shards.
pub fn xor_parity(systematic: &[u8], shard_size: usize) -> Vec<u8> {
    let mut parity = vec![0_u8; shard_size];
    if shard_size == 0 {
        return parity;
    }
    for shard in systematic.chunks(shard_size) {
        for (p, byte) in parity.iter_mut().zip(shard) {
            *p ^= byte;
        }
    }
    parity
}

/// Check `symbols`: the parity is one shard long and is the XOR of the
/// shards.
///
/// That is exactly what a decoder needs. Shard `i`, if lost, is rebuilt as
/// `parity ⊕ (⊕ shards j ≠ i)` = `parity ⊕ recomputed ⊕ shard i`, which is
/// `shard i` (zero-padded) for every `i` if and only if `parity =
/// recomputed`. So one recomputation decides whether every single-shard
/// loss is recoverable. It runs over 8-byte little-endian words (a byte's
/// offset is its position in its word), without allocating for shards up
/// to [`STACK_SHARD_BYTES`].
pub fn verify_symbols(symbols: &RepairSymbols) -> Result<(), ParityError> {
    let shard_size = usize::try_from(symbols.shard_size).unwrap_or(usize::MAX);
    if shard_size == 0 {
        return Err(ParityError::ZeroShardSize);
    }
    if symbols.parity.len() != shard_size {
        return Err(ParityError::ParityLength {
            expected: shard_size,
            got: symbols.parity.len(),
        });
    }
    if WORD % shard_size == 0 {
        // Shards of 1, 2, 4 or 8 bytes tile a word: XOR whole words, then
        // fold the word onto one shard.
        let mut words = symbols.systematic.chunks_exact(WORD);
        let mut folded = 0;
        for word in &mut words {
            folded ^= le_word(word);
        }
        folded ^= le_word(words.remainder());
        let mut width = WORD;
        while width > shard_size {
            width /= 2;
            folded ^= folded >> (width * 8);
        }
        let mask = u64::MAX >> ((WORD - shard_size) * 8);
        return parity_matches(0, folded & mask, &symbols.parity);
    }
    if shard_size <= WORD {
        // One word per shard: no buffer at all.
        let mut shards = symbols.systematic.chunks_exact(shard_size);
        let mut recomputed = 0;
        for shard in &mut shards {
            recomputed ^= le_word(shard);
        }
        recomputed ^= le_word(shards.remainder());
        return parity_matches(0, recomputed, &symbols.parity);
    }
    let words = shard_size.div_ceil(WORD);
    let mut on_stack = [0_u64; STACK_SHARD_BYTES / WORD];
    let mut on_heap = Vec::new();
    let recomputed: &mut [u64] = match on_stack.get_mut(..words) {
        Some(words) => words,
        None => {
            on_heap.resize(words, 0);
            &mut on_heap
        }
    };
    for shard in symbols.systematic.chunks(shard_size) {
        for (word, bytes) in recomputed.iter_mut().zip(shard.chunks(WORD)) {
            *word ^= le_word(bytes);
        }
    }
    for (index, (word, bytes)) in recomputed
        .iter()
        .zip(symbols.parity.chunks(WORD))
        .enumerate()
    {
        parity_matches(index, *word, bytes)?;
    }
    Ok(())
}

/// Compare word `index` of the recomputed parity with the recorded bytes.
#[inline]
fn parity_matches(index: usize, recomputed: u64, recorded: &[u8]) -> Result<(), ParityError> {
    let difference = recomputed ^ le_word(recorded);
    if difference == 0 {
        return Ok(());
    }
    let byte = (difference.trailing_zeros() / 8) as usize;
    Err(ParityError::ParityMismatch {
        offset: index * WORD + byte,
    })
}

/// Bytes per word of the parity computation.
const WORD: usize = 8;

/// Shards up to this many bytes are verified without a heap allocation.
pub const STACK_SHARD_BYTES: usize = 256;

/// Up to [`WORD`] bytes as a little-endian word, zero-padded.
#[inline]
fn le_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|four| <[u8; 4]>::try_from(four).ok())
            .map_or(0, |four| u64::from(u32::from_le_bytes(four)))
    };
    let byte_at = |at: usize| bytes.get(at).map_or(0, |byte| u64::from(*byte));
    match len {
        0 => 0,
        // Two, possibly overlapping, 4-byte reads: the overlap ORs equal bytes.
        4..=7 => u32_at(0) | u32_at(len - 4) << ((len - 4) * 8),
        1..=3 => {
            byte_at(0) | byte_at(len / 2) << (len / 2 * 8) | byte_at(len - 1) << ((len - 1) * 8)
        }
        _ => <[u8; WORD]>::try_from(bytes).map_or(0, u64::from_le_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RepairEventKind as E;

    /// [`RepairLifecycle::apply`]'s breaches as a list.
    fn apply(lifecycle: &mut RepairLifecycle, seq: u32, event: E) -> Vec<RepairBreach> {
        lifecycle.apply(seq, event).into_iter().flatten().collect()
    }

    /// [`RepairLifecycle::apply_after_crashes`]'s breaches as a list.
    fn after(
        lifecycle: &mut RepairLifecycle,
        crashes: u64,
        seq: u32,
        event: E,
    ) -> Vec<RepairBreach> {
        lifecycle
            .apply_after_crashes(crashes, seq, event)
            .into_iter()
            .flatten()
            .collect()
    }

    fn run(events: &[RepairEventKind]) -> (RepairLifecycle, Vec<RepairBreach>) {
        let mut lifecycle = RepairLifecycle::new();
        let mut breaches = Vec::new();
        for (index, event) in events.iter().enumerate() {
            breaches.extend(apply(&mut lifecycle, index as u32 + 1, *event));
        }
        (lifecycle, breaches)
    }

    #[test]
    fn the_spec_03_paths_are_accepted() {
        let completed = [
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::CommitAcked,
            E::RepairStarted,
            E::RepairCompleted,
        ];
        let (lifecycle, breaches) = run(&completed);
        assert!(breaches.is_empty());
        assert_eq!(lifecycle.state(), RepairState::Completed);
        let (lifecycle, breaches) = run(&[E::CommitDurable, E::CommitAcked]);
        assert!(breaches.is_empty());
        assert_eq!(lifecycle.state(), RepairState::NotScheduled);
        let (lifecycle, breaches) = run(&[
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::CommitAcked,
            E::RepairFailed,
        ]);
        assert!(breaches.is_empty());
        assert_eq!(lifecycle.state(), RepairState::Failed);
    }

    #[test]
    fn the_transition_table_is_the_lifecycle_definition() {
        for context in (0..4).map(CrashContext::from_code) {
            for stage in STAGES {
                for event in EVENTS {
                    let mut lifecycle = RepairLifecycle {
                        stage: stage_code(stage),
                        events_seen: 3,
                        crashed_while_open: context.recovered,
                        crashed_since_event: context.crashed_since_event,
                        crashes_at_event: 0,
                    };
                    let breaches = lifecycle.apply(4, event);
                    let next = next_stage(stage, event, context);
                    assert_eq!(lifecycle.stage(), next.unwrap_or(stage));
                    let unexpected = Some(RepairBreach::UnexpectedEvent { stage, event });
                    assert_eq!(breaches, [None, next.map_or(unexpected, |_| None)]);
                }
            }
        }
    }

    #[test]
    fn a_crash_sends_a_running_repair_back_to_pending() {
        let (mut lifecycle, _) = run(&[
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::CommitAcked,
            E::RepairStarted,
        ]);
        lifecycle.crash();
        assert_eq!(lifecycle.state(), RepairState::Pending);
        assert_eq!(
            apply(&mut lifecycle, 5, E::RepairStarted),
            Vec::<RepairBreach>::new()
        );
        assert_eq!(
            apply(&mut lifecycle, 6, E::RepairCompleted),
            Vec::<RepairBreach>::new()
        );
    }

    #[test]
    fn a_crash_only_counted_reaches_the_commit_at_its_next_event() {
        let running = [
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::CommitAcked,
            E::RepairStarted,
        ];
        for crash_applied_on_time in [false, true] {
            let (mut lifecycle, _) = run(&running);
            if crash_applied_on_time {
                lifecycle.crash();
            }
            // Started again after the crash, as if the crash had reached it.
            assert!(after(&mut lifecycle, 1, 5, E::RepairStarted).is_empty());
            assert_eq!(lifecycle.stage(), Stage::Running { acked: true });
            // The same crash, counted again, does not apply twice.
            assert_eq!(
                after(&mut lifecycle, 1, 6, E::RepairStarted),
                vec![RepairBreach::UnexpectedEvent {
                    stage: Stage::Running { acked: true },
                    event: E::RepairStarted,
                }]
            );
        }
        // Without a crash, a second start is a breach.
        let (mut lifecycle, _) = run(&running);
        assert_eq!(apply(&mut lifecycle, 5, E::RepairStarted).len(), 1);
    }

    #[test]
    fn recovery_re_derives_the_state_from_disk_only_after_a_crash() {
        let acked = [E::CommitDurable, E::DurableButNotRepairable, E::CommitAcked];
        // Without a crash, recovery events are breaches.
        let (mut lifecycle, _) = run(&acked);
        assert_eq!(apply(&mut lifecycle, 4, E::RecoveredPending).len(), 1);
        // An open repair is re-scheduled, then runs to its end.
        let (mut lifecycle, _) = run(&acked);
        lifecycle.crash();
        assert!(apply(&mut lifecycle, 4, E::RecoveredPending).is_empty());
        assert!(apply(&mut lifecycle, 5, E::RepairStarted).is_empty());
        assert!(apply(&mut lifecycle, 6, E::RepairCompleted).is_empty());
        assert_eq!(lifecycle.state(), RepairState::Completed);
        // A commit first seen by recovery, after a crash counted elsewhere.
        let mut unseen = RepairLifecycle::new();
        assert_eq!(apply(&mut unseen, 1, E::RecoveredPending).len(), 1);
        let mut unseen = RepairLifecycle::new();
        assert!(after(&mut unseen, 1, 1, E::RecoveredPending).is_empty());
        assert!(after(&mut unseen, 1, 2, E::RepairStarted).is_empty());
        // A failed repair may be retried, or found complete, after a crash.
        let (mut failed, _) = run(&[
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::CommitAcked,
            E::RepairFailed,
        ]);
        assert!(after(&mut failed, 1, 5, E::RecoveredCompleted).is_empty());
        assert_eq!(failed.state(), RepairState::Completed);
        // Once per crash: a second recovery event needs a second crash.
        assert_eq!(after(&mut failed, 1, 6, E::RecoveredCompleted).len(), 1);
        assert!(after(&mut failed, 2, 7, E::RecoveredCompleted).is_empty());
    }

    #[test]
    fn a_completed_repair_whose_symbols_a_crash_lost_is_a_breach() {
        let (mut lifecycle, _) = run(&[
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::CommitAcked,
            E::RepairStarted,
            E::RepairCompleted,
        ]);
        assert_eq!(
            after(&mut lifecycle, 1, 6, E::RecoveredPending),
            vec![RepairBreach::UnexpectedEvent {
                stage: Stage::Completed,
                event: E::RecoveredPending
            }]
        );
        let (mut without_repair, _) = run(&[E::CommitDurable, E::CommitAcked]);
        assert_eq!(
            after(&mut without_repair, 1, 3, E::RecoveredCompleted).len(),
            1
        );
    }

    #[test]
    fn acked_before_durable_and_numbering_gaps_are_breaches() {
        let (_, breaches) = run(&[E::CommitAcked]);
        assert!(matches!(
            breaches[..],
            [RepairBreach::UnexpectedEvent {
                stage: Stage::Unknown,
                ..
            }]
        ));
        let mut lifecycle = RepairLifecycle::new();
        assert_eq!(
            apply(&mut lifecycle, 2, E::CommitDurable),
            vec![RepairBreach::EventOutOfSequence {
                expected: 1,
                got: 2
            }]
        );
        let (_, breaches) = run(&[
            E::CommitDurable,
            E::DurableButNotRepairable,
            E::RepairStarted,
        ]);
        assert_eq!(
            breaches.len(),
            1,
            "repair may not start before the ack unless a crash intervened"
        );
    }

    #[test]
    fn parity_is_recomputed_and_every_shard_rebuilds() {
        let systematic: Vec<u8> = (0..23).map(|i| (i * 37 + 5) as u8).collect();
        let parity = xor_parity(&systematic, 4);
        let good = RepairSymbols {
            shard_size: 4,
            systematic: systematic.clone(),
            parity: parity.clone(),
        };
        assert_eq!(verify_symbols(&good), Ok(()));
        let mut flipped = good.clone();
        flipped.parity[2] ^= 1;
        assert_eq!(
            verify_symbols(&flipped),
            Err(ParityError::ParityMismatch { offset: 2 })
        );
        let short = RepairSymbols {
            parity: parity[..3].to_vec(),
            ..good.clone()
        };
        assert!(matches!(
            verify_symbols(&short),
            Err(ParityError::ParityLength { .. })
        ));
        let zero = RepairSymbols {
            shard_size: 0,
            ..good
        };
        assert_eq!(verify_symbols(&zero), Err(ParityError::ZeroShardSize));
        let empty = RepairSymbols {
            shard_size: 8,
            systematic: vec![],
            parity: vec![0; 8],
        };
        assert_eq!(verify_symbols(&empty), Ok(()));
    }

    /// Shard `index` rebuilt from the parity and every other shard, the
    /// way a decoder would, zero-padded to the shard size.
    fn rebuild(systematic: &[u8], parity: &[u8], shard_size: usize, index: usize) -> Vec<u8> {
        let mut rebuilt = parity.to_vec();
        for (other, shard) in systematic.chunks(shard_size).enumerate() {
            if other != index {
                for (r, byte) in rebuilt.iter_mut().zip(shard) {
                    *r ^= byte;
                }
            }
        }
        rebuilt
    }

    #[test]
    fn a_parity_verifies_exactly_when_every_shard_rebuilds() {
        // Shard sizes around the word size and past the stack buffer.
        for shard_size in [1, 2, 3, 4, 7, 8, 9, 12, 16, 17, STACK_SHARD_BYTES + 5] {
            for len in [0, 1, shard_size - 1, shard_size, 3 * shard_size + 2] {
                let systematic: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
                let parity = xor_parity(&systematic, shard_size);
                let mut tampered = parity.clone();
                tampered[shard_size - 1] ^= 0x10;
                for (parity, verifies) in [(&parity, true), (&tampered, false)] {
                    let symbols = RepairSymbols {
                        shard_size: shard_size as u32,
                        systematic: systematic.clone(),
                        parity: parity.clone(),
                    };
                    let every_shard_rebuilds =
                        systematic
                            .chunks(shard_size)
                            .enumerate()
                            .all(|(index, shard)| {
                                let rebuilt = rebuild(&systematic, parity, shard_size, index);
                                rebuilt.iter().enumerate().all(|(offset, byte)| {
                                    *byte == shard.get(offset).copied().unwrap_or(0)
                                })
                            });
                    assert_eq!(verify_symbols(&symbols).is_ok(), verifies);
                    if !systematic.is_empty() {
                        assert_eq!(every_shard_rebuilds, verifies, "shard size {shard_size}");
                    }
                    if !verifies {
                        assert_eq!(
                            verify_symbols(&symbols),
                            Err(ParityError::ParityMismatch {
                                offset: shard_size - 1
                            })
                        );
                    }
                }
            }
        }
    }
}
