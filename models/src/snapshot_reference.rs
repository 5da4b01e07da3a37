//! A trivially correct spec 05 reliability manager that records its
//! [`History`], for the D13 property tests.
//!
//! Each channel's protocol state is reduced to what the checker sees: a
//! Lamport clock, a set of unacknowledged sends, and a FIFO delivered
//! history of 4 ids. The disk is two maps: what the last successful call
//! of each kind left (the mirror every call builds on) and what the disk
//! actually holds (a failed call lands there or not, by a coin flip).
//! Operations end with one meta save and, when the pending-write queue
//! (latest wins) is not empty, one flush; remove and reset drop channels
//! and report failures; crashes lose memory and the bootstrap reloads
//! what the disk holds (retried until it succeeds). Some crashes strike
//! in the middle of a save point, leaving a call unanswered.

use std::collections::{BTreeMap, VecDeque};

use crate::history::{
    EventKind, History, SimTime, SnapCall, SnapChannelId, SnapChannelState, SnapDelta, SnapMeta,
    SnapMsgId, SnapOpKind, SnapResult,
};
use crate::reference::SplitMix64;

const CHANNELS: SnapChannelId = 3;
const CAPACITY: usize = 4;

#[derive(Debug, Clone, Default)]
struct Channel {
    lamport: u64,
    outgoing: Vec<(SnapMsgId, u32)>,
    history: VecDeque<SnapMsgId>,
    pending: Vec<(SnapMsgId, bool)>, // (id, is_append), latest wins
}

impl Channel {
    fn meta(&self) -> SnapMeta {
        SnapMeta {
            lamport: self.lamport,
            outgoing: self.outgoing.clone(),
            ..SnapMeta::default()
        }
    }

    fn queue(&mut self, id: SnapMsgId, append: bool) {
        self.pending.retain(|(queued, _)| *queued != id);
        self.pending.push((id, append));
    }

    fn delta(&self) -> SnapDelta {
        SnapDelta {
            appends: self.pending.iter().filter(|p| p.1).map(|p| p.0).collect(),
            evicts: self.pending.iter().filter(|p| !p.1).map(|p| p.0).collect(),
        }
    }
}

/// What the disk holds for one channel.
type Stored = SnapChannelState;

struct Reference {
    rng: SplitMix64,
    history: History,
    now: SimTime,
    next_op: u64,
    memory: BTreeMap<SnapChannelId, Channel>,
    /// Last successful state per channel (what calls build on).
    mirror: BTreeMap<SnapChannelId, Stored>,
    /// What the disk holds.
    disk: BTreeMap<SnapChannelId, Stored>,
    next_msg: u64,
    fail_per_million: u32,
}

impl Reference {
    fn push(&mut self, kind: EventKind) {
        self.now += 1_000 + self.rng.below(1_000_000);
        self.history.push(self.now, kind);
    }

    fn begin(&mut self, kind: SnapOpKind, channel: Option<SnapChannelId>) -> u64 {
        self.next_op += 1;
        let op = self.next_op;
        self.push(EventKind::SnapInvoked { op, kind, channel });
        op
    }

    /// One call on the disk: `change` applied to the mirror. Returns
    /// whether it succeeded.
    fn call(&mut self, channel: SnapChannelId, change: impl Fn(&mut Stored)) -> bool {
        let mut next = self.mirror.get(&channel).cloned().unwrap_or_default();
        change(&mut next);
        let ok = !self.rng.chance(self.fail_per_million);
        if ok {
            self.mirror.insert(channel, next.clone());
            self.disk.insert(channel, next);
        } else if self.rng.chance(500_000) {
            self.disk.insert(channel, next);
        }
        ok
    }

    /// A save point; `Err(())` when a crash struck in the middle of it.
    fn save_point(&mut self, op: u64, channel: SnapChannelId) -> Result<bool, ()> {
        let Some(ch) = self.memory.get(&channel) else {
            return Ok(true);
        };
        let meta = ch.meta();
        let point = SnapChannelState {
            meta: Some(meta.clone()),
            history: ch.history.iter().copied().collect(),
        };
        let delta = ch.delta();
        self.push(EventKind::SnapSaveIssued {
            op,
            channel,
            point: Box::new(point),
        });
        if self.rng.chance(20_000) {
            if self.rng.chance(500_000) {
                self.disk.entry(channel).or_default().meta = Some(meta);
            }
            return Err(());
        }
        let saved = self.call(channel, |s| s.meta = Some(meta.clone()));
        self.push(EventKind::SnapCallReturned {
            op,
            channel,
            call: SnapCall::SaveMeta,
            ok: saved,
        });
        if delta.appends.is_empty() && delta.evicts.is_empty() {
            return Ok(saved);
        }
        self.push(EventKind::SnapFlushIssued {
            op,
            channel,
            delta: Box::new(delta.clone()),
        });
        let apply = |s: &mut Stored| {
            s.history
                .retain(|id| !delta.evicts.contains(id) && !delta.appends.contains(id));
            s.history.extend_from_slice(&delta.appends);
        };
        let flushed = self.call(channel, apply);
        self.push(EventKind::SnapCallReturned {
            op,
            channel,
            call: SnapCall::UpdateHistory,
            ok: flushed,
        });
        if flushed {
            if let Some(ch) = self.memory.get_mut(&channel) {
                ch.pending.clear();
            }
        }
        Ok(saved && flushed)
    }

    fn crash_and_bootstrap(&mut self) {
        self.memory.clear();
        loop {
            let op = self.begin(SnapOpKind::Bootstrap, None);
            let mut ok = true;
            for channel in 0..CHANNELS {
                if self.rng.chance(self.fail_per_million) {
                    self.push(EventKind::SnapLoaded {
                        op,
                        channel,
                        loaded: None,
                    });
                    ok = false;
                    break;
                }
                let stored = self.disk.get(&channel).cloned().unwrap_or_default();
                // The load republishes what it read: now durable.
                self.mirror.insert(channel, stored.clone());
                self.push(EventKind::SnapLoaded {
                    op,
                    channel,
                    loaded: Some(Box::new(stored.clone())),
                });
                if stored.meta.is_some() || !stored.history.is_empty() {
                    let meta = stored.meta.clone().unwrap_or_default();
                    self.memory.insert(
                        channel,
                        Channel {
                            lamport: meta.lamport,
                            outgoing: meta.outgoing,
                            history: stored.history.iter().copied().collect(),
                            pending: Vec::new(),
                        },
                    );
                }
            }
            let result = if ok {
                SnapResult::Ok
            } else {
                self.memory.clear();
                SnapResult::PersistenceError
            };
            self.push(EventKind::SnapReturned { op, result });
            if ok {
                return;
            }
        }
    }

    fn drop_channel(&mut self, op: u64, channel: SnapChannelId) -> bool {
        self.push(EventKind::SnapDropIssued { op, channel });
        let ok = !self.rng.chance(self.fail_per_million);
        if ok {
            self.mirror.remove(&channel);
            self.disk.remove(&channel);
        } else if self.rng.chance(500_000) {
            self.disk.remove(&channel);
        }
        self.push(EventKind::SnapCallReturned {
            op,
            channel,
            call: SnapCall::Drop,
            ok,
        });
        if ok {
            self.memory.remove(&channel);
        }
        ok
    }

    fn step(&mut self) {
        let channel = self.rng.below(u64::from(CHANNELS)) as SnapChannelId;
        let roll = self.rng.below(100);
        let kind = match roll {
            0..=29 => SnapOpKind::Send,
            30..=69 => SnapOpKind::Receive,
            70..=84 => SnapOpKind::Ack,
            85..=92 => SnapOpKind::Sweep,
            93..=97 => SnapOpKind::Remove,
            _ => SnapOpKind::Reset,
        };
        match kind {
            SnapOpKind::Remove => {
                let op = self.begin(kind, Some(channel));
                let ok = self.drop_channel(op, channel);
                let result = if ok {
                    SnapResult::Ok
                } else {
                    SnapResult::PersistenceError
                };
                self.push(EventKind::SnapReturned { op, result });
            }
            SnapOpKind::Reset => {
                let op = self.begin(kind, None);
                let mut result = SnapResult::Ok;
                for channel in 0..CHANNELS {
                    if !self.drop_channel(op, channel) {
                        result = SnapResult::PersistenceError;
                        break;
                    }
                }
                self.push(EventKind::SnapReturned { op, result });
            }
            _ => {
                let op = self.begin(kind, (kind != SnapOpKind::Sweep).then_some(channel));
                let touched = self.mutate(kind, channel);
                for channel in touched {
                    if self.save_point(op, channel).is_err() {
                        self.crash_and_bootstrap();
                        return;
                    }
                }
                self.push(EventKind::SnapReturned {
                    op,
                    result: SnapResult::Ok,
                });
            }
        }
        if self.rng.chance(30_000) {
            self.crash_and_bootstrap();
        }
    }

    /// Apply a foreground operation to memory; the channels to save.
    fn mutate(&mut self, kind: SnapOpKind, channel: SnapChannelId) -> Vec<SnapChannelId> {
        self.next_msg += 1;
        let id = self.next_msg;
        let back = self.rng.below(8);
        match kind {
            SnapOpKind::Send => {
                let ch = self.memory.entry(channel).or_default();
                ch.lamport += 1;
                ch.outgoing.push((id, 0));
                vec![channel]
            }
            SnapOpKind::Receive => {
                let ch = self.memory.entry(channel).or_default();
                ch.lamport += 1;
                // Sometimes an old id again: delivered anew once evicted.
                let id = if back < 3 {
                    id.saturating_sub(back * 2)
                } else {
                    id
                };
                if !ch.history.contains(&id) {
                    if ch.history.len() >= CAPACITY {
                        if let Some(evicted) = ch.history.pop_front() {
                            ch.queue(evicted, false);
                        }
                    }
                    ch.history.push_back(id);
                    ch.queue(id, true);
                }
                vec![channel]
            }
            SnapOpKind::Ack => match self.memory.get_mut(&channel) {
                Some(ch) if !ch.outgoing.is_empty() => {
                    ch.outgoing.remove(0);
                    vec![channel]
                }
                _ => Vec::new(),
            },
            _ => {
                // Sweep: bump resend counts below 2.
                let mut touched = Vec::new();
                for (channel, ch) in &mut self.memory {
                    let mut dirty = false;
                    for entry in &mut ch.outgoing {
                        if entry.1 < 2 {
                            entry.1 += 1;
                            dirty = true;
                        }
                    }
                    if dirty {
                        touched.push(*channel);
                    }
                }
                touched
            }
        }
    }
}

/// A history of `steps` operations from a correct manager, driven by
/// `seed`; storage calls fail with probability `fail_per_million`.
pub fn generate(seed: u64, steps: u32, fail_per_million: u32) -> History {
    let mut reference = Reference {
        rng: SplitMix64::new(seed),
        history: History::new(),
        now: 0,
        next_op: 0,
        memory: BTreeMap::new(),
        mirror: BTreeMap::new(),
        disk: BTreeMap::new(),
        next_msg: 0,
        fail_per_million,
    };
    reference.crash_and_bootstrap();
    for _ in 0..steps {
        reference.step();
    }
    reference.crash_and_bootstrap();
    reference.history
}
