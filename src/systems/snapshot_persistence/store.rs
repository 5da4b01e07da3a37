//! The persistence interface of spec 05: five operations, each returning a
//! result.

use std::collections::BTreeMap;
use std::io;

use super::codec::CodecError;
use super::state::ChannelMeta;
use super::{ChannelId, MsgId};

/// What one channel's bootstrap load finds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelData {
    /// The last meta snapshot (`None`: never saved).
    pub meta: Option<ChannelMeta>,
    /// The delivered history, oldest first.
    pub history: Vec<MsgId>,
    /// Retrieval hints by message id.
    pub hints: BTreeMap<MsgId, u64>,
}

impl ChannelData {
    /// True when nothing of the channel is stored.
    pub fn is_absent(&self) -> bool {
        self.meta.is_none() && self.history.is_empty() && self.hints.is_empty()
    }
}

/// A persistence failure.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The storage failed (EIO, ENOSPC, …).
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    /// Stored bytes do not decode: a loud error, never a silent truncation.
    #[error("channel {channel}: {source}")]
    Corrupt {
        /// The channel.
        channel: ChannelId,
        /// What is wrong.
        source: CodecError,
    },
}

/// Where a reliability manager persists its channels.
///
/// Contract:
/// - `save_channel_meta` replaces the channel's meta snapshot atomically:
///   after a crash the old one or the new one, never a mix; after `Ok`,
///   the new one.
/// - `update_history` applies one combined delta atomically: every
///   evicted id removed, then each appended id moved (in order) to the end
///   of the stored history. After `Ok` the stored history is the last
///   successfully stored one with this delta applied; a failed call may
///   or may not have landed.
/// - `load_channel` returns the stored channel and makes it durable
///   before returning `Ok` (a later crash cannot take back what a load
///   returned).
/// - `drop_channel` removes the channel in one transaction (meta, history
///   and hints together).
/// - `set_retrieval_hint` records a hint for one message.
///
/// Every error may leave the call applied or not.
#[allow(async_fn_in_trait)] // simulations run on one thread: no Send bound wanted
pub trait Persistence {
    /// Replace `channel`'s meta snapshot.
    async fn save_channel_meta(
        &self,
        channel: ChannelId,
        meta: &ChannelMeta,
    ) -> Result<(), PersistError>;

    /// Apply one history delta (never called with both lists empty).
    async fn update_history(
        &self,
        channel: ChannelId,
        appends: &[MsgId],
        evicts: &[MsgId],
    ) -> Result<(), PersistError>;

    /// Load `channel` (absent: an empty [`ChannelData`]).
    async fn load_channel(&self, channel: ChannelId) -> Result<ChannelData, PersistError>;

    /// Remove `channel` entirely.
    async fn drop_channel(&self, channel: ChannelId) -> Result<(), PersistError>;

    /// Record where message `id` can be retrieved from.
    async fn set_retrieval_hint(
        &self,
        channel: ChannelId,
        id: MsgId,
        hint: u64,
    ) -> Result<(), PersistError>;
}

/// Apply a history delta the way the contract says.
pub fn apply_history_delta(history: &mut Vec<MsgId>, appends: &[MsgId], evicts: &[MsgId]) {
    history.retain(|id| !evicts.contains(id) && !appends.contains(id));
    history.extend_from_slice(appends);
}
