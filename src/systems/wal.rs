//! Spec 01 / spec 07: the write-ahead log on `SimDisk` that the group
//! commit coordinator makes durable (format in [`super::wal_format`]).
//!
//! Guarantees:
//! - [`Wal::append_batch`] writes one batch with one sequential write and
//!   returns one offset per frame; [`Wal::sync`] is the batch's one fsync.
//! - Recovery ([`Wal::open`]) never exposes a frame that was not fully
//!   written: batches are checksummed whole. A torn or never-synced tail is
//!   cut off; damage followed by valid data (mid-log corruption of
//!   acknowledged frames) is **reported** as [`WalError::Corrupt`], never
//!   truncated away.
//! - Recovery does not trust what the page cache shows. After a failed
//!   fsync (here or in an earlier incarnation whose page cache survived a
//!   process crash) the cache may show bytes that never reach the disk, so
//!   recovery writes the valid prefix it found into a fresh file, syncs it
//!   and renames it over the log: whatever it reports is then durable, and
//!   nothing already durable is ever rewritten in place (a torn rewrite
//!   could damage acknowledged sectors).
//! - Recovery is idempotent: a crash at any point of it leaves either the
//!   old log or the new one, with the same valid prefix; running it again
//!   gives the same frames.
//! - After a failed write or fsync the log refuses further appends until
//!   [`Wal::discard_unsynced`] has rewritten the durably synced prefix (the
//!   fsyncgate lesson: a failed fsync is not retried, and bytes it covered
//!   are never claimed).

use std::future::Future;
use std::io;

use durasim_sim::{Disk, File};

use super::record::Recorder;
use super::wal_format::{self, Frame, Scan, ScanOutcome, DEFAULT_BLOCK};

/// Where and how a log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Directory of the log (created if missing).
    pub dir: String,
    /// Batches start on multiples of this (at least the disk's sector size).
    pub block_size: u64,
    /// Whether commit seqs must run 1, 2, 3, … through the log.
    pub contiguous_seqs: bool,
    /// Known bug (spec 01; off by default): recovery trusts a torn tail
    /// batch's frames without their checksums
    /// ([`wal_format::trust_torn_batch`]).
    pub bug_accept_torn_tail: bool,
}

impl WalConfig {
    /// A log in `dir` with 4096-byte blocks and contiguous seqs.
    pub fn new(dir: &str) -> WalConfig {
        WalConfig {
            dir: dir.to_string(),
            block_size: DEFAULT_BLOCK,
            contiguous_seqs: true,
            bug_accept_torn_tail: false,
        }
    }

    /// Path of the log file.
    pub fn log_path(&self) -> String {
        format!("{}/log", self.dir)
    }

    fn tmp_path(&self) -> String {
        format!("{}/log.rewrite", self.dir)
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The disk failed an operation.
    #[error("wal I/O error: {0}")]
    Io(#[from] io::Error),
    /// Recovery found acknowledged data damaged (not a torn tail).
    #[error("wal corrupt: {0:?}")]
    Corrupt(ScanOutcome),
    /// An append or fsync failed earlier: the unsynced bytes must be
    /// discarded before anything else is appended.
    #[error("wal needs its unsynced bytes discarded after a failed write or fsync")]
    NeedsDiscard,
    /// A batch's first commit seq does not follow the last one appended.
    #[error("wal batch out of order: expected seq {expected}, got {found}")]
    OutOfOrder {
        /// The seq the log needed next.
        expected: u64,
        /// The seq the batch starts with.
        found: u64,
    },
}

/// What the log did, for checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEvent {
    /// Recovery finished: `frames` valid frames, last seq, a torn tail of
    /// `torn_tail_bytes` cut off.
    Recovered {
        /// Valid frames found.
        frames: u64,
        /// Highest commit seq found (0 when empty).
        last_seq: u64,
        /// Bytes cut off the tail.
        torn_tail_bytes: u64,
    },
    /// Recovery stopped: acknowledged data is damaged.
    CorruptionDetected(ScanOutcome),
    /// A batch was written (not yet synced).
    Appended {
        /// First commit seq of the batch.
        first_seq: u64,
        /// Frames in the batch.
        frames: u64,
        /// Offset of the batch.
        offset: u64,
    },
    /// An fsync returned OK: everything up to `synced_len` is durable.
    Synced {
        /// Durable length.
        synced_len: u64,
    },
    /// An fsync failed: the bytes it covered have an unknown fate.
    SyncFailed,
    /// The unsynced bytes were discarded; the log is back to `len`.
    Discarded {
        /// Length of the log after the discard.
        len: u64,
    },
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Every recovered frame with its offset, in log order.
    pub frames: Vec<(u64, Frame)>,
    /// Bytes of torn or unsynced tail cut off.
    pub torn_tail_bytes: u64,
}

impl Recovery {
    /// Highest recovered commit seq (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.frames.last().map_or(0, |(_, f)| f.commit_seq)
    }
}

/// The log the group commit coordinator writes through. [`Wal`] is the
/// real one; tests wrap it to inject misbehaviour.
pub trait CommitLog {
    /// Write `frames` as one batch; one offset per frame.
    fn append_batch(
        &mut self,
        frames: &[Frame],
    ) -> impl Future<Output = Result<Vec<u64>, WalError>> + Send;
    /// Make every appended batch durable (the batch's one fsync).
    fn sync(&mut self) -> impl Future<Output = Result<(), WalError>> + Send;
    /// Throw away everything not covered by a successful sync, durably.
    fn discard_unsynced(&mut self) -> impl Future<Output = Result<(), WalError>> + Send;
}

/// A write-ahead log on a simulated disk.
pub struct Wal {
    disk: Disk,
    config: WalConfig,
    file: File,
    /// Where the next batch goes (file length as this log wrote it).
    end: u64,
    /// Length covered by the last successful fsync.
    synced_len: u64,
    /// Last commit seq appended, and last one synced.
    appended_seq: u64,
    synced_seq: u64,
    /// Set by a failed write or fsync until the unsynced bytes are discarded.
    needs_discard: bool,
    recorder: Option<Recorder<WalEvent>>,
}

impl Wal {
    /// Open (and recover) the log: see the module notes.
    pub async fn open(
        disk: &Disk,
        config: WalConfig,
        recorder: Option<Recorder<WalEvent>>,
    ) -> Result<(Wal, Recovery), WalError> {
        disk.create_dir_all(&config.dir).await?;
        // The directory's own entry must be durable before the log's is.
        disk.sync_dir(parent_dir(&config.dir)).await?;
        let bytes = match disk.read(&config.log_path()).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let scan = wal_format::scan(&bytes, config.block_size, config.contiguous_seqs);
        let (mut valid_len, mut torn_tail_bytes) = match scan.outcome {
            ScanOutcome::Clean {
                valid_len,
                torn_tail_bytes,
            } => (valid_len, torn_tail_bytes),
            other => {
                if let Some(r) = &recorder {
                    r.record(WalEvent::CorruptionDetected(other.clone()));
                }
                return Err(WalError::Corrupt(other));
            }
        };
        let Scan { mut batches, .. } = scan;
        if config.bug_accept_torn_tail && torn_tail_bytes > 0 {
            if let Some(tail) = wal_format::trust_torn_batch(&bytes, valid_len, config.block_size) {
                valid_len = tail.end;
                torn_tail_bytes = 0;
                batches.push(tail);
            }
        }
        // The valid prefix, padded back to its block-aligned length if the
        // last batch lost some of its zero padding.
        let mut prefix = bytes;
        prefix.resize(valid_len as usize, 0);
        let file = rewrite(disk, &config, &prefix).await?;
        let frames: Vec<(u64, Frame)> = batches.into_iter().flat_map(|b| b.frames).collect();
        let recovery = Recovery {
            frames,
            torn_tail_bytes,
        };
        let last_seq = recovery.last_seq();
        if let Some(r) = &recorder {
            r.record(WalEvent::Recovered {
                frames: recovery.frames.len() as u64,
                last_seq,
                torn_tail_bytes,
            });
        }
        let wal = Wal {
            disk: disk.clone(),
            config,
            file,
            end: valid_len,
            synced_len: valid_len,
            appended_seq: last_seq,
            synced_seq: last_seq,
            needs_discard: false,
            recorder,
        };
        Ok((wal, recovery))
    }

    /// Length made durable by the last successful fsync.
    pub fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// Highest commit seq made durable.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// The log's configuration.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    fn record(&self, event: WalEvent) {
        if let Some(r) = &self.recorder {
            r.record(event);
        }
    }

    async fn append_inner(&mut self, frames: &[Frame]) -> Result<Vec<u64>, WalError> {
        if self.needs_discard {
            return Err(WalError::NeedsDiscard);
        }
        let Some(first) = frames.first() else {
            return Ok(Vec::new());
        };
        if self.config.contiguous_seqs && first.commit_seq != self.appended_seq + 1 {
            return Err(WalError::OutOfOrder {
                expected: self.appended_seq + 1,
                found: first.commit_seq,
            });
        }
        let (bytes, relative) = wal_format::encode_batch(frames, self.config.block_size);
        let offset = self.end;
        if let Err(e) = self.file.write_at(offset, &bytes).await {
            // Part of the batch may be in the file: it must go before
            // anything else is appended after it.
            self.needs_discard = true;
            return Err(e.into());
        }
        self.end += bytes.len() as u64;
        self.appended_seq = frames
            .last()
            .map_or(self.appended_seq, |f| f.commit_seq.max(self.appended_seq));
        self.record(WalEvent::Appended {
            first_seq: first.commit_seq,
            frames: frames.len() as u64,
            offset,
        });
        Ok(relative.into_iter().map(|r| offset + r).collect())
    }

    async fn sync_inner(&mut self) -> Result<(), WalError> {
        if self.needs_discard {
            return Err(WalError::NeedsDiscard);
        }
        match self.file.sync_all().await {
            Ok(()) => {
                self.synced_len = self.end;
                self.synced_seq = self.appended_seq;
                self.record(WalEvent::Synced {
                    synced_len: self.synced_len,
                });
                Ok(())
            }
            Err(e) => {
                // The covered bytes' fate is decided and unknown; a retried
                // fsync would "succeed" without making them durable.
                self.needs_discard = true;
                self.record(WalEvent::SyncFailed);
                Err(e.into())
            }
        }
    }

    async fn discard_inner(&mut self) -> Result<(), WalError> {
        // Everything below `synced_len` was covered by a successful fsync,
        // so what the cache shows there is what the disk holds.
        let prefix = self.file.read_at(0, self.synced_len as usize).await?;
        if prefix.len() as u64 != self.synced_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "synced prefix of the wal is shorter than recorded",
            )
            .into());
        }
        self.file = rewrite(&self.disk, &self.config, &prefix).await?;
        self.end = self.synced_len;
        self.appended_seq = self.synced_seq;
        self.needs_discard = false;
        self.record(WalEvent::Discarded { len: self.end });
        Ok(())
    }
}

impl CommitLog for Wal {
    fn append_batch(
        &mut self,
        frames: &[Frame],
    ) -> impl Future<Output = Result<Vec<u64>, WalError>> + Send {
        self.append_inner(frames)
    }

    fn sync(&mut self) -> impl Future<Output = Result<(), WalError>> + Send {
        self.sync_inner()
    }

    fn discard_unsynced(&mut self) -> impl Future<Output = Result<(), WalError>> + Send {
        self.discard_inner()
    }
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Make `prefix` the whole, durable log: write it to a fresh file, sync
/// it, rename it over the log and sync the directory. Returns the new log
/// file, open for appending.
async fn rewrite(disk: &Disk, config: &WalConfig, prefix: &[u8]) -> Result<File, WalError> {
    let tmp = config.tmp_path();
    // A leftover from an interrupted rewrite may share its inode with the
    // log (a non-atomic rename can leave both names): unlink the name
    // rather than truncating through it.
    if disk.exists(&tmp).await? {
        disk.remove(&tmp).await?;
    }
    let file = disk.create(&tmp).await?;
    if !prefix.is_empty() {
        file.write_at(0, prefix).await?;
    }
    file.sync_all().await?;
    disk.rename(&tmp, &config.log_path()).await?;
    disk.sync_dir(&config.dir).await?;
    Ok(file)
}
