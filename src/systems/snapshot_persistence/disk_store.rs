//! [`Persistence`] on `SimDisk`: one file per channel, replaced atomically.
//!
//! Layout: directory `snap/`, file `snap/c<channel>` holding the whole
//! channel ([`codec`](super::codec): meta blob, history, hints). Every
//! mutating call publishes a new version of the file by the atomic-replace
//! idiom — write `snap/c<channel>.tmp`, fsync it, rename it over the file,
//! fsync `snap/` — so a crash leaves the old version or the new one, and
//! a torn write can only hit the temporary file, which is never read.
//! `drop_channel` is one unlink plus a directory fsync: one transaction.
//!
//! The store keeps a mirror of what it last stored successfully per
//! channel, and builds each new version from it. A failed call leaves the
//! mirror alone: whatever the failed attempt left on disk (spec 07: after
//! a failed fsync, reads may show bytes that a crash takes back), the next
//! success rewrites the whole file from the mirror, so the durable state
//! after it is exactly "last success + this call". This is why a failed
//! history flush can simply be retried by sending the same (merged) delta.
//!
//! A load reads the file, decodes it (an unknown schema or a bad checksum
//! is [`PersistError::Corrupt`]), and republishes it before returning, so
//! what it returns is durable even when the previous incarnation died
//! after a rename whose directory fsync never happened.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use durasim_sim::Disk;

use super::codec::{decode_file, encode_file};
use super::state::ChannelMeta;
use super::store::{apply_history_delta, ChannelData, PersistError, Persistence};
use super::{ChannelId, MsgId};
use crate::systems::record::lock_recovering;

const DIR: &str = "snap";
/// Hints kept per channel (the oldest ids' hints go first).
const HINTS_MAX: usize = 32;

/// A [`Persistence`] on one machine's simulated disk.
pub struct DiskStore {
    disk: Disk,
    mirror: Mutex<BTreeMap<ChannelId, ChannelData>>,
}

fn path(channel: ChannelId) -> String {
    format!("{DIR}/c{channel}")
}

impl DiskStore {
    /// A store on `disk` (one incarnation's handle). Its mirror starts
    /// empty: load every channel before mutating it.
    pub fn new(disk: Disk) -> Self {
        DiskStore {
            disk,
            mirror: Mutex::new(BTreeMap::new()),
        }
    }

    fn mirrored(&self, channel: ChannelId) -> ChannelData {
        lock_recovering(&self.mirror)
            .get(&channel)
            .cloned()
            .unwrap_or_default()
    }

    /// Publish `data` as `channel`'s file; on success it becomes the mirror.
    async fn publish(&self, channel: ChannelId, data: ChannelData) -> Result<(), PersistError> {
        let bytes = encode_file(&data);
        let tmp = format!("{}.tmp", path(channel));
        let file = self.disk.create(&tmp).await?;
        file.write_at(0, &bytes).await?;
        file.sync_all().await?;
        self.disk.rename(&tmp, &path(channel)).await?;
        self.disk.sync_dir(DIR).await?;
        lock_recovering(&self.mirror).insert(channel, data);
        Ok(())
    }

    async fn ensure_dir(&self) -> io::Result<()> {
        if !self.disk.exists(DIR).await? {
            self.disk.create_dir(DIR).await?;
        }
        self.disk.sync_dir("").await
    }
}

impl Persistence for DiskStore {
    async fn save_channel_meta(
        &self,
        channel: ChannelId,
        meta: &ChannelMeta,
    ) -> Result<(), PersistError> {
        let mut next = self.mirrored(channel);
        next.meta = Some(meta.clone());
        self.publish(channel, next).await
    }

    async fn update_history(
        &self,
        channel: ChannelId,
        appends: &[MsgId],
        evicts: &[MsgId],
    ) -> Result<(), PersistError> {
        debug_assert!(!appends.is_empty() || !evicts.is_empty());
        let mut next = self.mirrored(channel);
        apply_history_delta(&mut next.history, appends, evicts);
        self.publish(channel, next).await
    }

    async fn load_channel(&self, channel: ChannelId) -> Result<ChannelData, PersistError> {
        self.ensure_dir().await?;
        let data = match self.disk.read(&path(channel)).await {
            Ok(bytes) => {
                decode_file(&bytes).map_err(|source| PersistError::Corrupt { channel, source })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => ChannelData::default(),
            Err(e) => return Err(e.into()),
        };
        if data.is_absent() {
            // Make the absence durable too (an unsynced unlink of the
            // previous incarnation could otherwise come back).
            self.disk.sync_dir(DIR).await?;
            lock_recovering(&self.mirror).remove(&channel);
        } else {
            self.publish(channel, data.clone()).await?;
        }
        Ok(data)
    }

    async fn drop_channel(&self, channel: ChannelId) -> Result<(), PersistError> {
        match self.disk.remove(&path(channel)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // Even when the file is already gone from view: its unlink may be
        // an unsynced one left by a failed attempt.
        self.disk.sync_dir(DIR).await?;
        lock_recovering(&self.mirror).remove(&channel);
        Ok(())
    }

    async fn set_retrieval_hint(
        &self,
        channel: ChannelId,
        id: MsgId,
        hint: u64,
    ) -> Result<(), PersistError> {
        let mut next = self.mirrored(channel);
        next.hints.insert(id, hint);
        while next.hints.len() > HINTS_MAX {
            next.hints.pop_first();
        }
        self.publish(channel, next).await
    }
}
