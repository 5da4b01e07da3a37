//! The reliability manager: protocol operations over per-channel state,
//! save points, the pending-write queue and the failure policy (spec 05).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use durasim_models::{EventKind, SnapCall, SnapChannelState, SnapDelta, SnapOpKind, SnapResult};
use durasim_sim::clock;

use super::pending::{PendingOp, PendingQueue};
use super::state::{ChannelState, DeliveredHistory, OutgoingEntry};
use super::store::{PersistError, Persistence};
use super::{ChannelId, MsgId};
use crate::systems::record::Recorder;

/// Spec 05's known bugs; every switch is off (correct) by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotBugs {
    /// The pending queue merges "evict wins": re-adding an id evicted
    /// during an outage never reaches the disk.
    pub evict_wins_merge: bool,
    /// A failed history flush clears the pending queue: its delta is lost.
    pub failed_flush_drops_delta: bool,
    /// Foreground operations return persistence errors to the caller.
    pub foreground_surfaces_persistence_error: bool,
    /// Bootstrap, remove and reset swallow persistence errors.
    pub durability_intent_swallows_error: bool,
}

/// How the manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The channels it serves: bootstrap loads them, reset drops them.
    pub channels: Vec<ChannelId>,
    /// Delivered-history capacity per channel.
    pub history_capacity: usize,
    /// Delay of repair entries, ms (absolute due time = now + this).
    pub repair_delay_ms: u64,
    /// Sweeps resend an unacknowledged message at most this often.
    pub max_resends: u32,
    /// Known bugs.
    pub bugs: SnapshotBugs,
    /// Where `Snap*` events go (none: not recorded).
    pub recorder: Option<Recorder<EventKind>>,
    /// Operation ids, shared by every incarnation of one run.
    pub op_ids: Arc<AtomicU64>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            channels: vec![0, 1, 2],
            history_capacity: 8,
            repair_delay_ms: 20,
            max_resends: 3,
            bugs: SnapshotBugs::default(),
            recorder: None,
            op_ids: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Storage failed and the operation is one the caller must hear of.
    #[error(transparent)]
    Persistence(#[from] PersistError),
    /// The channel is not served or not open.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// No such message in the buffer the operation targets.
    #[error("unknown message {0}")]
    UnknownMessage(MsgId),
}

/// A message arriving on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Its id.
    pub id: MsgId,
    /// The sender's Lamport time.
    pub lamport: u64,
    /// Ids it depends on.
    pub deps: Vec<MsgId>,
}

/// What a receive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Delivered, with these ids in delivery order (itself, then its cascade).
    Delivered(Vec<MsgId>),
    /// Buffered until these dependencies are met.
    Buffered(Vec<MsgId>),
    /// Already delivered or buffered: a repair answer was scheduled.
    Duplicate,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Channels it changed and saved.
    pub saved: Vec<ChannelId>,
    /// Messages resent.
    pub resent: u32,
    /// Repair entries that came due.
    pub repairs_due: u32,
}

struct Channel {
    state: ChannelState,
    pending: PendingQueue,
}

/// The reliability manager; see the module docs of
/// [`snapshot_persistence`](super).
pub struct ReliabilityManager<S: Persistence> {
    store: S,
    config: ManagerConfig,
    channels: BTreeMap<ChannelId, Channel>,
    failures_logged: u64,
}

impl<S: Persistence> ReliabilityManager<S> {
    /// Load every configured channel (durability intent: a persistence
    /// failure is returned).
    pub async fn bootstrap(store: S, config: ManagerConfig) -> Result<Self, OpError> {
        let mut manager = ReliabilityManager {
            store,
            config,
            channels: BTreeMap::new(),
            failures_logged: 0,
        };
        let op = manager.begin(SnapOpKind::Bootstrap, None);
        let ids = manager.config.channels.clone();
        for channel in ids {
            match manager.store.load_channel(channel).await {
                Ok(data) => {
                    let loaded = SnapChannelState {
                        meta: data.meta.as_ref().map(|m| m.to_model()),
                        history: data.history.clone(),
                    };
                    manager.record(EventKind::SnapLoaded {
                        op,
                        channel,
                        loaded: Some(Box::new(loaded)),
                    });
                    if data.meta.is_some() || !data.history.is_empty() {
                        let capacity = manager.config.history_capacity;
                        let state = ChannelState {
                            meta: data.meta.unwrap_or_default(),
                            history: DeliveredHistory::from_ids(capacity, &data.history),
                        };
                        manager.channels.insert(channel, manager.fresh(state));
                    }
                }
                Err(error) => {
                    manager.record(EventKind::SnapLoaded {
                        op,
                        channel,
                        loaded: None,
                    });
                    manager.failures_logged += 1;
                    if !manager.config.bugs.durability_intent_swallows_error {
                        manager.returned(op, SnapResult::PersistenceError);
                        return Err(error.into());
                    }
                }
            }
        }
        manager.returned(op, SnapResult::Ok);
        Ok(manager)
    }

    // ----- protocol operations (foreground: persistence is non-fatal) -----

    /// Send message `id` on `channel` (opening the channel if needed);
    /// returns its Lamport time.
    pub async fn send(&mut self, channel: ChannelId, id: MsgId) -> Result<u64, OpError> {
        let op = self.begin(SnapOpKind::Send, Some(channel));
        let ch = self.open_channel(channel);
        if ch.state.meta.outgoing.contains_key(&id) {
            return self.reject(op, OpError::UnknownMessage(id));
        }
        ch.state.meta.lamport += 1;
        let stamp = ch.state.meta.lamport;
        ch.state
            .meta
            .outgoing
            .insert(id, OutgoingEntry { resend_count: 0 });
        let mut failed = self.set_hint(op, channel, id, stamp).await;
        failed |= self.save_point(op, channel).await;
        self.foreground_result(op, failed, stamp)
    }

    /// Receive `msg` on `channel` (opening the channel if needed).
    pub async fn receive(
        &mut self,
        channel: ChannelId,
        msg: Incoming,
    ) -> Result<Received, OpError> {
        let op = self.begin(SnapOpKind::Receive, Some(channel));
        let now_ms = now_ms();
        let repair_delay = self.config.repair_delay_ms;
        let ch = self.open_channel(channel);
        let meta = &mut ch.state.meta;
        meta.lamport = meta.lamport.max(msg.lamport) + 1;
        let outcome = if ch.state.history.contains(msg.id) || meta.incoming.contains_key(&msg.id) {
            // The sender did not hear of our delivery: answer it again.
            meta.repair_out.insert(msg.id, now_ms + repair_delay);
            Received::Duplicate
        } else {
            let missing: BTreeSet<MsgId> = msg
                .deps
                .iter()
                .copied()
                .filter(|dep| *dep != msg.id && !ch.state.history.contains(*dep))
                .collect();
            if missing.is_empty() {
                Received::Delivered(deliver_cascade(ch, msg.id))
            } else {
                for dep in &missing {
                    meta.repair_in.entry(*dep).or_insert(now_ms + repair_delay);
                }
                meta.incoming.insert(msg.id, missing.clone());
                Received::Buffered(missing.into_iter().collect())
            }
        };
        let failed = self.save_point(op, channel).await;
        self.foreground_result(op, failed, outcome)
    }

    /// Acknowledge outgoing message `id`: it leaves the outgoing buffer.
    pub async fn ack(&mut self, channel: ChannelId, id: MsgId) -> Result<(), OpError> {
        let op = self.begin(SnapOpKind::Ack, Some(channel));
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.reject(op, OpError::UnknownChannel(channel));
        };
        if ch.state.meta.outgoing.remove(&id).is_none() {
            return self.reject(op, OpError::UnknownMessage(id));
        }
        let failed = self.save_point(op, channel).await;
        self.foreground_result(op, failed, ())
    }

    /// The application vouches that buffered message `id`'s dependencies
    /// are met: deliver it and everything waiting on it.
    pub async fn mark_deps_met(
        &mut self,
        channel: ChannelId,
        id: MsgId,
    ) -> Result<Vec<MsgId>, OpError> {
        let op = self.begin(SnapOpKind::MarkDepsMet, Some(channel));
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.reject(op, OpError::UnknownChannel(channel));
        };
        if ch.state.meta.incoming.remove(&id).is_none() {
            return self.reject(op, OpError::UnknownMessage(id));
        }
        let delivered = deliver_cascade(ch, id);
        let failed = self.save_point(op, channel).await;
        self.foreground_result(op, failed, delivered)
    }

    /// Background sweep: resend unacknowledged messages (up to
    /// `max_resends` times each) and fire repair entries that came due;
    /// save each channel it changed, once.
    pub async fn sweep(&mut self) -> Result<SweepReport, OpError> {
        let op = self.begin(SnapOpKind::Sweep, None);
        let now_ms = now_ms();
        let max_resends = self.config.max_resends;
        let mut report = SweepReport::default();
        for (channel, ch) in &mut self.channels {
            let meta = &mut ch.state.meta;
            let mut dirty = false;
            for entry in meta.outgoing.values_mut() {
                if entry.resend_count < max_resends {
                    entry.resend_count += 1;
                    report.resent += 1;
                    dirty = true;
                }
            }
            for repairs in [&mut meta.repair_out, &mut meta.repair_in] {
                let before = repairs.len();
                repairs.retain(|_, due_ms| *due_ms > now_ms);
                let due = (before - repairs.len()) as u32;
                report.repairs_due += due;
                dirty |= due > 0;
            }
            if dirty {
                report.saved.push(*channel);
            }
        }
        let mut failed = false;
        for channel in report.saved.clone() {
            failed |= self.save_point(op, channel).await;
        }
        self.foreground_result(op, failed, report)
    }

    // ----- durability-intent operations (persistence errors propagate) -----

    /// Remove `channel` from disk and memory. On a persistence error the
    /// channel stays in memory (the caller may retry).
    pub async fn remove_channel(&mut self, channel: ChannelId) -> Result<(), OpError> {
        let op = self.begin(SnapOpKind::Remove, Some(channel));
        self.drop_propagating(op, channel).await?;
        self.channels.remove(&channel);
        self.returned(op, SnapResult::Ok);
        Ok(())
    }

    /// Drop every served channel from disk and memory. Stops at the first
    /// persistence error (channels dropped so far are gone).
    pub async fn reset(&mut self) -> Result<(), OpError> {
        let op = self.begin(SnapOpKind::Reset, None);
        for channel in self.config.channels.clone() {
            self.drop_propagating(op, channel).await?;
            self.channels.remove(&channel);
        }
        self.returned(op, SnapResult::Ok);
        Ok(())
    }

    /// Drop `channel` from disk for durability-intent operation `op`: a
    /// persistence error ends `op` and propagates (unless the known bug
    /// swallows it).
    async fn drop_propagating(&mut self, op: u64, channel: ChannelId) -> Result<(), OpError> {
        if let Err(error) = self.drop_one(op, channel).await {
            if !self.config.bugs.durability_intent_swallows_error {
                self.returned(op, SnapResult::PersistenceError);
                return Err(error.into());
            }
        }
        Ok(())
    }

    // ----- inspection -----

    /// `channel`'s state, when open.
    pub fn channel(&self, channel: ChannelId) -> Option<&ChannelState> {
        self.channels.get(&channel).map(|c| &c.state)
    }

    /// `channel`'s pending-write queue, when open.
    pub fn pending(&self, channel: ChannelId) -> Option<&PendingQueue> {
        self.channels.get(&channel).map(|c| &c.pending)
    }

    /// Open channels.
    pub fn channel_ids(&self) -> Vec<ChannelId> {
        self.channels.keys().copied().collect()
    }

    /// Persistence failures logged (non-fatal ones and propagated ones).
    pub fn failures_logged(&self) -> u64 {
        self.failures_logged
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    // ----- internals -----

    fn fresh(&self, state: ChannelState) -> Channel {
        Channel {
            state,
            pending: PendingQueue::new(self.config.bugs.evict_wins_merge),
        }
    }

    fn open_channel(&mut self, channel: ChannelId) -> &mut Channel {
        if !self.channels.contains_key(&channel) {
            let fresh = self.fresh(ChannelState::new(self.config.history_capacity));
            self.channels.insert(channel, fresh);
        }
        self.channels
            .get_mut(&channel)
            .unwrap_or_else(|| unreachable!("channel {channel} was just opened"))
    }

    fn record(&self, kind: EventKind) {
        if let Some(recorder) = &self.config.recorder {
            recorder.record(kind);
        }
    }

    fn begin(&self, kind: SnapOpKind, channel: Option<ChannelId>) -> u64 {
        let op = self.config.op_ids.fetch_add(1, Ordering::Relaxed) + 1;
        self.record(EventKind::SnapInvoked { op, kind, channel });
        op
    }

    fn returned(&self, op: u64, result: SnapResult) {
        self.record(EventKind::SnapReturned { op, result });
    }

    fn reject<T>(&self, op: u64, error: OpError) -> Result<T, OpError> {
        self.returned(op, SnapResult::Rejected);
        Err(error)
    }

    /// A foreground operation ends: persistence failures were logged and
    /// do not reach the caller (unless the known bug says otherwise).
    fn foreground_result<T>(&self, op: u64, failed: bool, value: T) -> Result<T, OpError> {
        if failed && self.config.bugs.foreground_surfaces_persistence_error {
            self.returned(op, SnapResult::PersistenceError);
            return Err(OpError::Persistence(PersistError::Io(
                std::io::Error::other("a snapshot save or history flush failed"),
            )));
        }
        self.returned(op, SnapResult::Ok);
        Ok(value)
    }

    fn logged(&mut self, op: u64, channel: ChannelId, call: SnapCall, ok: bool) {
        self.record(EventKind::SnapCallReturned {
            op,
            channel,
            call,
            ok,
        });
        if !ok {
            self.failures_logged += 1;
            tracing::debug!(op, channel, ?call, "persistence call failed (non-fatal)");
        }
    }

    async fn set_hint(&mut self, op: u64, channel: ChannelId, id: MsgId, hint: u64) -> bool {
        let ok = self
            .store
            .set_retrieval_hint(channel, id, hint)
            .await
            .is_ok();
        self.logged(op, channel, SnapCall::SetHint, ok);
        !ok
    }

    /// One meta save, then one history flush when anything is pending.
    /// Returns whether a call failed.
    async fn save_point(&mut self, op: u64, channel: ChannelId) -> bool {
        let Some(ch) = self.channels.get(&channel) else {
            return false;
        };
        debug_assert!(
            ch.pending.appends().all(|id| ch.state.history.contains(id)),
            "every pending append is in the in-memory history"
        );
        let meta = ch.state.meta.clone();
        self.record(EventKind::SnapSaveIssued {
            op,
            channel,
            point: Box::new(ch.state.to_model()),
        });
        let saved = self.store.save_channel_meta(channel, &meta).await.is_ok();
        self.logged(op, channel, SnapCall::SaveMeta, saved);
        let Some(ch) = self.channels.get(&channel) else {
            return !saved;
        };
        if ch.pending.is_empty() {
            return !saved;
        }
        let (appends, evicts) = ch.pending.delta();
        self.record(EventKind::SnapFlushIssued {
            op,
            channel,
            delta: Box::new(SnapDelta {
                appends: appends.clone(),
                evicts: evicts.clone(),
            }),
        });
        let flushed = self
            .store
            .update_history(channel, &appends, &evicts)
            .await
            .is_ok();
        self.logged(op, channel, SnapCall::UpdateHistory, flushed);
        if let Some(ch) = self.channels.get_mut(&channel) {
            if flushed || self.config.bugs.failed_flush_drops_delta {
                ch.pending.clear();
            }
        }
        !(saved && flushed)
    }

    async fn drop_one(&mut self, op: u64, channel: ChannelId) -> Result<(), PersistError> {
        self.record(EventKind::SnapDropIssued { op, channel });
        let result = self.store.drop_channel(channel).await;
        self.logged(op, channel, SnapCall::Drop, result.is_ok());
        result
    }
}

/// Deliver `first` and every buffered message whose last missing
/// dependency that delivers; queues the history changes. Returns the ids
/// delivered, in order.
fn deliver_cascade(ch: &mut Channel, first: MsgId) -> Vec<MsgId> {
    let mut delivered = Vec::new();
    let mut ready = vec![first];
    while let Some(id) = ready.pop() {
        if ch.state.history.contains(id) {
            continue;
        }
        if let Some(evicted) = ch.state.history.push(id) {
            ch.pending.queue(evicted, PendingOp::Evict);
        }
        ch.pending.queue(id, PendingOp::Append);
        ch.state.meta.repair_in.remove(&id);
        delivered.push(id);
        let meta = &mut ch.state.meta;
        let mut unblocked = Vec::new();
        for (waiting, missing) in &mut meta.incoming {
            if missing.remove(&id) && missing.is_empty() {
                unblocked.push(*waiting);
            }
        }
        for waiting in unblocked.iter().rev() {
            meta.incoming.remove(waiting);
            ready.push(*waiting);
        }
    }
    delivered
}

/// The process's wall clock in whole milliseconds: repair due times are
/// absolute and stored with millisecond precision.
fn now_ms() -> u64 {
    clock::wall_now().as_nanos() / 1_000_000
}
