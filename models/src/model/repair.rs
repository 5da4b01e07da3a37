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
const EVENTS: [RepairEventKind; 6] = [
    RepairEventKind::CommitDurable,
    RepairEventKind::DurableButNotRepairable,
    RepairEventKind::CommitAcked,
    RepairEventKind::RepairStarted,
    RepairEventKind::RepairCompleted,
    RepairEventKind::RepairFailed,
];

/// "No transition" in [`TRANSITIONS`].
const NONE: u8 = u8::MAX;

/// `TRANSITIONS[recovered][stage][event]`: the code of the next stage, or
/// [`NONE`]; computed at compile time from [`next_stage`], which is the
/// definition. One table look-up per event instead of a branchy match.
const TRANSITIONS: [[[u8; 6]; 9]; 2] = {
    let mut table = [[[NONE; 6]; 9]; 2];
    let mut recovered = 0;
    while recovered < 2 {
        let mut stage = 0;
        while stage < STAGES.len() {
            let mut event = 0;
            while event < EVENTS.len() {
                if let Some(next) = next_stage(STAGES[stage], EVENTS[event], recovered == 1) {
                    table[recovered][stage][event] = stage_code(next);
                }
                event += 1;
            }
            stage += 1;
        }
        recovered += 1;
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
    }
}

/// The lifecycle's definition: the stage `event` leads to from `stage`
/// (`recovered`: a crash hit the commit while its repair was open).
const fn next_stage(stage: Stage, event: RepairEventKind, recovered: bool) -> Option<Stage> {
    use RepairEventKind as E;
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
        let expected = self.events_seen.saturating_add(1);
        self.events_seen = self.events_seen.max(event_seq);
        let next = TRANSITIONS
            .get(usize::from(self.crashed_while_open))
            .and_then(|by_stage| by_stage.get(usize::from(self.stage)))
            .and_then(|by_event| by_event.get(event_code(event)))
            .copied()
            .unwrap_or(NONE);
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

    fn run(events: &[RepairEventKind]) -> (RepairLifecycle, Vec<RepairBreach>) {
        let mut lifecycle = RepairLifecycle::new();
        let mut breaches = Vec::new();
        for (index, event) in events.iter().enumerate() {
            breaches.extend(
                lifecycle
                    .apply(index as u32 + 1, *event)
                    .into_iter()
                    .flatten(),
            );
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
        for recovered in [false, true] {
            for stage in STAGES {
                for event in EVENTS {
                    let mut lifecycle = RepairLifecycle {
                        stage: stage_code(stage),
                        events_seen: 3,
                        crashed_while_open: recovered,
                    };
                    let breaches = lifecycle.apply(4, event);
                    let next = next_stage(stage, event, recovered);
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
        assert_eq!(lifecycle.apply(5, E::RepairStarted), [None, None]);
        assert_eq!(lifecycle.apply(6, E::RepairCompleted), [None, None]);
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
            lifecycle.apply(2, E::CommitDurable),
            [
                Some(RepairBreach::EventOutOfSequence {
                    expected: 1,
                    got: 2
                }),
                None
            ]
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
