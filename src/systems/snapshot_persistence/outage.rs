//! Storage outages as an application-level fault: a [`Persistence`]
//! wrapper that, at fault site [`STORAGE_OUTAGE`] (drawn from the tape,
//! fault phase only, at the profile's application-fault rate), makes the
//! storage unavailable for a while (a stuck device, a full volume being
//! cleaned): every call fails at once, without touching the disk, until
//! the outage ends.
//!
//! `SimDisk` failures (fsync EIO, ENOSPC) strike one call at a time; an
//! outage spans several operations, which is what spec 05's pending-write
//! queue is for (history changes that pile up, merge and must all land
//! once storage is back).

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use durasim_sim::{buggify_with, choose_between, clock, SimTime, Site};

use super::state::ChannelMeta;
use super::store::{ChannelData, PersistError, Persistence};
use super::{ChannelId, MsgId};
use crate::systems::record::lock_recovering;

/// Fault site: the storage becomes unavailable.
pub const STORAGE_OUTAGE: Site = Site::fault("snapshot.storage_outage", "storage-outage");
/// Length of an outage, ms.
pub const OUTAGE_MS: Site = Site::value("snapshot.outage_ms");

/// A store that may go through outages.
pub struct OutageStore<S> {
    inner: S,
    down_until: Mutex<Option<SimTime>>,
}

impl<S: Persistence> OutageStore<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        OutageStore {
            inner,
            down_until: Mutex::new(None),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// `Err` when the storage is down for this call.
    fn available(&self, call: &str, channel: ChannelId) -> Result<(), PersistError> {
        let now = clock::now();
        let mut down = lock_recovering(&self.down_until);
        if down.is_some_and(|until| now < until) {
            return Err(unavailable());
        }
        if buggify_with(&STORAGE_OUTAGE, || {
            format!("storage unavailable from {call} on channel {channel}")
        }) {
            let ms = choose_between(&OUTAGE_MS, 5, 80);
            *down = Some(now.plus(Duration::from_millis(ms)));
            return Err(unavailable());
        }
        Ok(())
    }
}

fn unavailable() -> PersistError {
    PersistError::Io(io::Error::other("storage unavailable (outage)"))
}

impl<S: Persistence> Persistence for OutageStore<S> {
    async fn save_channel_meta(
        &self,
        channel: ChannelId,
        meta: &ChannelMeta,
    ) -> Result<(), PersistError> {
        self.available("save_channel_meta", channel)?;
        self.inner.save_channel_meta(channel, meta).await
    }

    async fn update_history(
        &self,
        channel: ChannelId,
        appends: &[MsgId],
        evicts: &[MsgId],
    ) -> Result<(), PersistError> {
        self.available("update_history", channel)?;
        self.inner.update_history(channel, appends, evicts).await
    }

    async fn load_channel(&self, channel: ChannelId) -> Result<ChannelData, PersistError> {
        self.available("load_channel", channel)?;
        self.inner.load_channel(channel).await
    }

    async fn drop_channel(&self, channel: ChannelId) -> Result<(), PersistError> {
        self.available("drop_channel", channel)?;
        self.inner.drop_channel(channel).await
    }

    async fn set_retrieval_hint(
        &self,
        channel: ChannelId,
        id: MsgId,
        hint: u64,
    ) -> Result<(), PersistError> {
        self.available("set_retrieval_hint", channel)?;
        self.inner.set_retrieval_hint(channel, id, hint).await
    }
}
