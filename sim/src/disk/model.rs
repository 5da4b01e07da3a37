//! The durability model of one machine's disk (spec 07), without time.
//!
//! Each file (inode) has a **durable image**, an ordered **volatile log** of
//! writes and length changes since its last sync, and the **current** bytes
//! that reads see. Each directory has durable entries plus an ordered list
//! of **pending entry operations** (link, unlink, rename).
//!
//! - `fsync(file)` folds into the durable image exactly the log entries
//!   with a sequence number at or below the one current when the fsync was
//!   *issued*; later writes stay volatile. Names are untouched.
//! - `sync_dir(dir)` makes that directory's pending entry operations durable.
//! - A failed fsync (EIO) settles every dirty sector now (persisted,
//!   dropped or torn), drops the covered log entries and leaves `current`
//!   alone: reads still see the new bytes, a later fsync succeeds without
//!   bringing the dropped ones back, and a crash reveals the loss.
//! - Power loss: each directory keeps a prefix of its pending operations
//!   (a journal commits in order); each file keeps all of its log, a prefix
//!   of it, or an arbitrary subset of sectors, some torn inside (new prefix
//!   then old bytes, zeros, or garbage), and its length persists
//!   independently of its data. Files no durable name refers to vanish.
//! - Media faults (latent sector errors, silent corruption, misdirected and
//!   lost writes) are placed within a per-file budget unless over-budget
//!   mode is on.
//!
//! Every random decision is a draw on the run's [`Chooser`]; value 0 is
//! always the benign outcome, so a tape with its faults zeroed behaves like
//! a perfect disk.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use crate::profile::DiskFaults;
use crate::tape::{Chooser, Site};

use super::errors::{eexist, einval, eio, eisdir, enoent, enospc, enotdir, enotempty};
use super::DiskConfig;

/// Decision sites of the disk model.
pub mod sites {
    use crate::tape::Site;
    /// Latency of each operation.
    pub const LATENCY: Site = Site::value("disk.latency");
    /// Power loss: pending entry operations dropped from a directory's tail.
    pub const CRASH_DIR: Site = Site::fault("disk.crash.dir", "lost-metadata");
    /// Power loss: what survives of a file's unsynced log (0 all, 1..=n
    /// drop that many from the tail, n+1 per-sector fates).
    pub const CRASH_UNSYNCED: Site = Site::fault("disk.crash.unsynced", "torn-write");
    /// Per-sector fate after power loss.
    pub const CRASH_SECTOR: Site = Site::fault("disk.crash.sector", "torn-write");
    /// Whether the new length persisted after power loss.
    pub const CRASH_LEN: Site = Site::fault("disk.crash.len", "torn-write");
    /// An fsync fails with EIO.
    pub const FSYNC_EIO: Site = Site::fault("disk.fsync.eio", "fsync-eio");
    /// Per-sector fate decided by a failed fsync.
    pub const EIO_SECTOR: Site = Site::fault("disk.eio.sector", "fsync-eio");
    /// Whether the new length persisted through a failed fsync.
    pub const EIO_LEN: Site = Site::fault("disk.eio.len", "fsync-eio");
    /// A write fails with ENOSPC.
    pub const ENOSPC: Site = Site::fault("disk.enospc", "enospc");
    /// A latent sector error appears (value: 1 + sector).
    pub const LATENT: Site = Site::fault("disk.media.latent", "media");
    /// A bit flips in durable data (value: 1 + bit position).
    pub const CORRUPT: Site = Site::fault("disk.media.corrupt", "media");
    /// A synced write lands one sector further on.
    pub const MISDIRECT: Site = Site::fault("disk.media.misdirect", "media");
    /// A synced write is silently lost.
    pub const LOST_WRITE: Site = Site::fault("disk.media.lost", "media");
}

/// A fault the model injected, for the trace.
#[derive(Debug, Clone)]
pub struct FaultNote {
    /// Where it was drawn.
    pub site: Site,
    /// The stream and position it was drawn at (`stream#index` on the tape).
    pub at: (std::borrow::Cow<'static, str>, u32),
    /// The drawn value.
    pub value: u64,
    /// What it did.
    pub detail: String,
}

/// A namespace entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A file, by inode number.
    File(u64),
    /// A directory.
    Dir,
}

/// A pending (not yet directory-synced) entry operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryOp {
    Link {
        path: String,
        entry: Entry,
    },
    Unlink {
        path: String,
    },
    /// An atomic same-directory rename.
    Rename {
        from: String,
        to: String,
    },
}

/// One volatile change to a file's bytes.
#[derive(Debug, Clone)]
struct LogOp {
    seq: u64,
    change: Change,
}

#[derive(Debug, Clone)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            Change::Write { offset, data } => {
                let start = *offset as usize;
                let end = start + data.len();
                reserve_for(image, end);
                if start == image.len() {
                    // An append: no zero fill to overwrite.
                    image.extend_from_slice(data);
                    return;
                }
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[start..end].copy_from_slice(data);
            }
            Change::SetLen(len) => {
                reserve_for(image, *len as usize);
                image.resize(*len as usize, 0)
            }
        }
    }
}

/// Make room for `image` to reach `len` bytes. Files grow by small appends
/// (a log's batches) and every copy of an image (the current one, the
/// durable one, a rewrite's new file) grows from empty: starting at a few
/// KiB and doubling spares most of the reallocations, each of which copies
/// the whole image.
fn reserve_for(image: &mut Vec<u8>, len: usize) {
    if len > image.capacity() {
        let target = len.max(MIN_IMAGE_CAPACITY).next_power_of_two();
        image.reserve_exact(target - image.len());
    }
}

/// Smallest capacity a growing file image is given.
const MIN_IMAGE_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Default)]
struct Inode {
    /// The path the file was created at, and its fault-stream key: ENOSPC
    /// and fsync-EIO decisions are drawn per file, so removing a fault on
    /// one file (when shrinking) leaves every other file's decisions in
    /// place, whatever the number of operations in between.
    created_as: String,
    stream: u64,
    current: Vec<u8>,
    durable: Vec<u8>,
    log: Vec<LogOp>,
    /// Sectors whose reads fail (latent sector errors).
    bad_sectors: BTreeSet<u64>,
    /// Media faults placed on this file so far (against the budget).
    media_faults: u32,
}

/// One machine's disk state.
#[derive(Debug, Clone)]
pub struct DiskState {
    config: DiskConfig,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    next_seq: u64,
    live: BTreeMap<String, Entry>,
    durable: BTreeMap<String, Entry>,
    pending: BTreeMap<String, Vec<EntryOp>>,
}

/// Normalise a path: no leading/trailing '/', no empty, `.` or `..`
/// components. The root is "".
pub fn normalize(path: &str) -> io::Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(einval(format!("path `{path}` has `.` or `..` components")));
    }
    Ok(parts.join("/"))
}

/// The directory holding `path` ("" for the root).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

impl DiskState {
    /// An empty disk.
    pub fn new(config: DiskConfig) -> DiskState {
        DiskState {
            config,
            inodes: BTreeMap::new(),
            next_inode: 1,
            next_seq: 1,
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    fn sector(&self) -> u64 {
        self.config.sector_size as u64
    }

    fn require_dir(&self, dir: &str) -> io::Result<()> {
        if dir.is_empty() {
            return Ok(());
        }
        match self.live.get(dir) {
            Some(Entry::Dir) => Ok(()),
            Some(Entry::File(_)) => Err(enotdir(dir)),
            None => Err(enoent(dir)),
        }
    }

    fn push_entry_op(&mut self, dir: &str, op: EntryOp) {
        self.pending.entry(dir.to_string()).or_default().push(op);
    }

    /// Look up a file by path.
    pub fn lookup(&self, path: &str) -> io::Result<u64> {
        match self.live.get(path) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir) => Err(eisdir(path)),
            None => Err(enoent(path)),
        }
    }

    /// True when `path` names a file or directory.
    pub fn exists(&self, path: &str) -> bool {
        path.is_empty() || self.live.contains_key(path)
    }

    /// Create `path` (truncating an existing file). The name is durable
    /// only after `sync_dir(parent)`.
    pub fn create(&mut self, path: &str, truncate: bool) -> io::Result<u64> {
        if path.is_empty() {
            return Err(eisdir(path));
        }
        self.require_dir(parent(path))?;
        if let Some(entry) = self.live.get(path) {
            return match *entry {
                Entry::Dir => Err(eisdir(path)),
                Entry::File(ino) => {
                    if truncate {
                        self.log(ino, Change::SetLen(0));
                    }
                    Ok(ino)
                }
            };
        }
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            ino,
            Inode {
                created_as: path.to_string(),
                stream: crate::world::stream_key(&[path.as_bytes()]),
                ..Inode::default()
            },
        );
        let entry = Entry::File(ino);
        self.live.insert(path.to_string(), entry);
        self.push_entry_op(
            parent(path),
            EntryOp::Link {
                path: path.to_string(),
                entry,
            },
        );
        Ok(ino)
    }

    /// Create directory `path`.
    pub fn create_dir(&mut self, path: &str) -> io::Result<()> {
        if path.is_empty() || self.live.contains_key(path) {
            return Err(eexist(path));
        }
        self.require_dir(parent(path))?;
        self.live.insert(path.to_string(), Entry::Dir);
        self.push_entry_op(
            parent(path),
            EntryOp::Link {
                path: path.to_string(),
                entry: Entry::Dir,
            },
        );
        Ok(())
    }

    /// Rename file `from` to `to` (replacing `to`).
    pub fn rename(&mut self, from: &str, to: &str, atomic: bool) -> io::Result<()> {
        let ino = self.lookup(from)?;
        if to.is_empty() {
            return Err(eisdir(to));
        }
        self.require_dir(parent(to))?;
        if let Some(Entry::Dir) = self.live.get(to) {
            return Err(eisdir(to));
        }
        if from == to {
            return Ok(());
        }
        self.live.remove(from);
        self.live.insert(to.to_string(), Entry::File(ino));
        let (from_dir, to_dir) = (parent(from).to_string(), parent(to).to_string());
        if atomic && from_dir == to_dir {
            self.push_entry_op(
                &from_dir,
                EntryOp::Rename {
                    from: from.to_string(),
                    to: to.to_string(),
                },
            );
        } else {
            self.push_entry_op(
                &to_dir,
                EntryOp::Link {
                    path: to.to_string(),
                    entry: Entry::File(ino),
                },
            );
            self.push_entry_op(
                &from_dir,
                EntryOp::Unlink {
                    path: from.to_string(),
                },
            );
        }
        Ok(())
    }

    /// Remove a file or an empty directory.
    pub fn remove(&mut self, path: &str) -> io::Result<()> {
        match self.live.get(path) {
            None => return Err(enoent(path)),
            Some(Entry::Dir) if !self.children(path).is_empty() => return Err(enotempty(path)),
            Some(_) => {}
        }
        self.live.remove(path);
        self.push_entry_op(
            parent(path),
            EntryOp::Unlink {
                path: path.to_string(),
            },
        );
        Ok(())
    }

    /// Names directly inside `dir`, sorted.
    pub fn children(&self, dir: &str) -> Vec<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.live
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p[prefix.len()..].contains('/') && p.len() > prefix.len())
            .map(|(p, _)| p[prefix.len()..].to_string())
            .collect()
    }

    /// List `dir`.
    pub fn read_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        self.require_dir(dir)?;
        Ok(self.children(dir))
    }

    /// Make `dir`'s pending entry operations durable.
    pub fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
        self.require_dir(dir)?;
        if let Some(ops) = self.pending.remove(dir) {
            for op in ops {
                Self::apply_entry_op(&mut self.durable, op);
            }
        }
        Ok(())
    }

    fn apply_entry_op(namespace: &mut BTreeMap<String, Entry>, op: EntryOp) {
        match op {
            EntryOp::Link { path, entry } => {
                namespace.insert(path, entry);
            }
            EntryOp::Unlink { path } => {
                namespace.remove(&path);
            }
            EntryOp::Rename { from, to } => {
                if let Some(entry) = namespace.remove(&from) {
                    namespace.insert(to, entry);
                }
            }
        }
    }

    fn inode(&self, ino: u64) -> io::Result<&Inode> {
        self.inodes
            .get(&ino)
            .ok_or_else(|| enoent(&format!("inode {ino}")))
    }

    fn log(&mut self, ino: u64, change: Change) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(inode) = self.inodes.get_mut(&ino) {
            change.apply(&mut inode.current);
            inode.log.push(LogOp { seq, change });
        }
    }

    /// Current length of a file.
    pub fn len(&self, ino: u64) -> io::Result<u64> {
        Ok(self.inode(ino)?.current.len() as u64)
    }

    /// Read up to `len` bytes at `offset` (short at end of file). Fails
    /// with EIO when the range touches a latent sector error.
    pub fn read_at(&self, ino: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let size = inode.current.len() as u64;
        let start = offset.min(size);
        let end = offset.saturating_add(len as u64).min(size);
        if start < end {
            let sector = self.sector();
            let (first, last) = (start / sector, (end - 1) / sector);
            if inode.bad_sectors.range(first..=last).next().is_some() {
                return Err(eio("latent sector error"));
            }
        }
        Ok(inode.current[start as usize..end as usize].to_vec())
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }

    /// Check a growth of the file to `new_len` fits, and draw an injected
    /// ENOSPC.
    fn check_space(
        &self,
        ino: u64,
        new_len: u64,
        chooser: &mut Chooser,
        faults: &DiskFaults,
        notes: &mut Vec<FaultNote>,
    ) -> io::Result<()> {
        let old_len = self.len(ino)?;
        if let Some(capacity) = self.config.capacity_bytes {
            let growth = new_len.saturating_sub(old_len);
            if self.used_bytes().saturating_add(growth) > capacity {
                return Err(enospc("disk full"));
            }
        }
        let inode = self.inode(ino)?;
        let label = || inode.created_as.clone();
        if faults.enospc > 0.0
            && chooser.chance_keyed(&sites::ENOSPC, inode.stream, label, faults.enospc)
        {
            notes.push(FaultNote {
                site: sites::ENOSPC,
                at: chooser.last_draw(),
                value: 1,
                detail: format!("write to inode {ino} fails with ENOSPC"),
            });
            return Err(enospc("injected ENOSPC"));
        }
        Ok(())
    }

    /// Write `data` at `offset` (volatile until fsync).
    pub fn write_at(
        &mut self,
        ino: u64,
        offset: u64,
        data: &[u8],
        chooser: &mut Chooser,
        faults: &DiskFaults,
        notes: &mut Vec<FaultNote>,
    ) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| einval("write past the largest offset".to_string()))?;
        let new_len = end.max(self.len(ino)?);
        self.check_space(ino, new_len, chooser, faults, notes)?;
        // Rewriting a sector remaps it: its latent error is gone.
        let sector = self.sector();
        if let Some(inode) = self.inodes.get_mut(&ino) {
            if !data.is_empty() {
                let (first, last) = (offset / sector, (end - 1) / sector);
                let healed: Vec<u64> = inode.bad_sectors.range(first..=last).copied().collect();
                for s in healed {
                    inode.bad_sectors.remove(&s);
                }
            }
        }
        self.log(
            ino,
            Change::Write {
                offset,
                data: data.to_vec(),
            },
        );
        Ok(())
    }

    /// Append `data`; returns the offset it was written at.
    pub fn append(
        &mut self,
        ino: u64,
        data: &[u8],
        chooser: &mut Chooser,
        faults: &DiskFaults,
        notes: &mut Vec<FaultNote>,
    ) -> io::Result<u64> {
        let offset = self.len(ino)?;
        self.write_at(ino, offset, data, chooser, faults, notes)?;
        Ok(offset)
    }

    /// Change a file's length (volatile until fsync).
    pub fn set_len(
        &mut self,
        ino: u64,
        len: u64,
        chooser: &mut Chooser,
        faults: &DiskFaults,
        notes: &mut Vec<FaultNote>,
    ) -> io::Result<()> {
        self.check_space(ino, len, chooser, faults, notes)?;
        self.log(ino, Change::SetLen(len));
        Ok(())
    }

    /// The sequence number an fsync issued now covers up to (inclusive).
    pub fn issue_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Complete an fsync of `ino` issued when [`issue_seq`](Self::issue_seq)
    /// was `issued`.
    pub fn fsync(
        &mut self,
        ino: u64,
        issued: u64,
        chooser: &mut Chooser,
        faults: &DiskFaults,
        notes: &mut Vec<FaultNote>,
    ) -> io::Result<()> {
        let sector = self.sector();
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return Err(enoent(&format!("inode {ino}")));
        };
        let covered = inode.log.iter().take_while(|op| op.seq <= issued).count();
        if covered == 0 {
            return Ok(());
        }
        let ops: Vec<LogOp> = inode.log.drain(..covered).collect();
        let label = || inode.created_as.clone();
        if faults.fsync_eio > 0.0
            && chooser.chance_keyed(&sites::FSYNC_EIO, inode.stream, label, faults.fsync_eio)
        {
            notes.push(FaultNote {
                site: sites::FSYNC_EIO,
                at: chooser.last_draw(),
                value: 1,
                detail: format!(
                    "fsync of inode {ino} fails with EIO; its {covered} unsynced write(s) settle sector by sector"
                ),
            });
            let mut target = inode.durable.clone();
            for op in &ops {
                op.change.apply(&mut target);
            }
            let (eio_sector, eio_len) = (sites::EIO_SECTOR, sites::EIO_LEN);
            inode.durable = settle_sectors(
                &inode.durable,
                &target,
                sector,
                faults.tear_within_sector,
                chooser,
                (&eio_sector, &eio_len),
                notes,
                ino,
            );
            return Err(eio("fsync failed"));
        }
        for op in ops {
            let mut change = op.change;
            if let Change::Write { offset, data } = &mut change {
                let may_fault =
                    faults.over_budget || inode.media_faults < faults.media_faults_per_file_max;
                if may_fault
                    && faults.lost_write > 0.0
                    && chooser.chance(&sites::LOST_WRITE, faults.lost_write)
                {
                    inode.media_faults += 1;
                    notes.push(FaultNote {
                        site: sites::LOST_WRITE,
                        at: chooser.last_draw(),
                        value: 1,
                        detail: format!(
                            "write of {} bytes at {offset} to inode {ino} silently lost",
                            data.len()
                        ),
                    });
                    continue;
                }
                if may_fault
                    && faults.misdirected_write > 0.0
                    && chooser.chance(&sites::MISDIRECT, faults.misdirected_write)
                {
                    inode.media_faults += 1;
                    notes.push(FaultNote {
                        site: sites::MISDIRECT,
                        at: chooser.last_draw(),
                        value: 1,
                        detail: format!(
                            "write at {offset} to inode {ino} lands at {} instead",
                            *offset + sector
                        ),
                    });
                    *offset += sector;
                }
            }
            change.apply(&mut inode.durable);
        }
        Ok(())
    }

    /// Power loss: settle every directory and file by the crash model, then
    /// drop unreferenced files and place media faults.
    pub fn power_fail(
        &mut self,
        chooser: &mut Chooser,
        faults: &DiskFaults,
        notes: &mut Vec<FaultNote>,
    ) {
        let pending = std::mem::take(&mut self.pending);
        for (dir, ops) in pending {
            let n = ops.len() as u64;
            let dropped = if faults.tear_unsynced {
                let keep_all = faults.crash_keep_all_fraction;
                chooser.draw(&sites::CRASH_DIR, n + 1, |rng| {
                    use rand::Rng;
                    if rng.gen::<f64>() < keep_all {
                        0
                    } else {
                        rng.gen_range(0..=n)
                    }
                })
            } else {
                0
            };
            if dropped > 0 {
                let shown = if dir.is_empty() { "/" } else { dir.as_str() };
                notes.push(FaultNote {
                    site: sites::CRASH_DIR,
                    at: chooser.last_draw(),
                    value: dropped,
                    detail: format!(
                        "power loss reverts the last {dropped} of {n} unsynced entry op(s) in `{shown}`"
                    ),
                });
            }
            for op in ops.into_iter().take((n - dropped) as usize) {
                Self::apply_entry_op(&mut self.durable, op);
            }
        }
        self.live = self.durable.clone();
        let referenced: BTreeSet<u64> = self
            .durable
            .values()
            .filter_map(|e| match e {
                Entry::File(ino) => Some(*ino),
                Entry::Dir => None,
            })
            .collect();
        self.inodes.retain(|ino, _| referenced.contains(ino));
        let sector = self.sector();
        for (&ino, inode) in self.inodes.iter_mut() {
            settle_file_after_power_loss(ino, inode, sector, chooser, faults, notes);
            place_media_faults(ino, inode, sector, chooser, faults, notes);
        }
    }

    /// Current bytes of the file at `path` (for tests and checkers).
    pub fn current_bytes(&self, path: &str) -> Option<Vec<u8>> {
        match self.live.get(path)? {
            Entry::File(ino) => self.inodes.get(ino).map(|i| i.current.clone()),
            Entry::Dir => None,
        }
    }

    /// Current bytes of every file, by path (for tests and debugging).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.live
            .iter()
            .filter_map(|(path, e)| match e {
                Entry::File(ino) => self
                    .inodes
                    .get(ino)
                    .map(|i| (path.clone(), i.current.clone())),
                Entry::Dir => None,
            })
            .collect()
    }
}

fn settle_file_after_power_loss(
    ino: u64,
    inode: &mut Inode,
    sector: u64,
    chooser: &mut Chooser,
    faults: &DiskFaults,
    notes: &mut Vec<FaultNote>,
) {
    let log = std::mem::take(&mut inode.log);
    if !log.is_empty() {
        let n = log.len() as u64;
        let verdict = if faults.tear_unsynced {
            let keep_all = faults.crash_keep_all_fraction;
            // 0: all kept; 1..=n: that many dropped from the tail; n+1: sectors.
            let label = || inode.created_as.clone();
            chooser.draw_keyed(&sites::CRASH_UNSYNCED, inode.stream, label, n + 2, |rng| {
                use rand::Rng;
                if rng.gen::<f64>() < keep_all {
                    0
                } else if rng.gen_bool(0.5) {
                    rng.gen_range(1..=n)
                } else {
                    n + 1
                }
            })
        } else {
            0
        };
        if verdict <= n {
            if verdict > 0 {
                notes.push(FaultNote {
                    site: sites::CRASH_UNSYNCED,
                    at: chooser.last_draw(),
                    value: verdict,
                    detail: format!(
                        "power loss drops the last {verdict} of {n} unsynced write(s) to inode {ino}"
                    ),
                });
            }
            for op in log.iter().take((n - verdict) as usize) {
                op.change.apply(&mut inode.durable);
            }
        } else {
            notes.push(FaultNote {
                site: sites::CRASH_UNSYNCED,
                at: chooser.last_draw(),
                value: verdict,
                detail: format!(
                    "power loss leaves inode {ino}'s {n} unsynced write(s) settled sector by sector"
                ),
            });
            let mut target = inode.durable.clone();
            for op in &log {
                op.change.apply(&mut target);
            }
            let (crash_sector, crash_len) = (sites::CRASH_SECTOR, sites::CRASH_LEN);
            inode.durable = settle_sectors(
                &inode.durable,
                &target,
                sector,
                faults.tear_within_sector,
                chooser,
                (&crash_sector, &crash_len),
                notes,
                ino,
            );
        }
    }
    // Whatever a failed fsync dropped, and whatever was volatile, is gone.
    inode.current = inode.durable.clone();
}

/// Number of sector fates (0 new, 1 old, 2 torn new→old, 3 zeros, 4 garbage).
const FATES: u64 = 5;

/// Settle the change from `old` to `target` sector by sector: each sector
/// that differs gets a drawn fate, and the length persists independently.
#[allow(clippy::too_many_arguments)]
fn settle_sectors(
    old: &[u8],
    target: &[u8],
    sector: u64,
    within: bool,
    chooser: &mut Chooser,
    (sector_site, len_site): (&Site, &Site),
    notes: &mut Vec<FaultNote>,
    ino: u64,
) -> Vec<u8> {
    let sector = sector as usize;
    let final_len = if target.len() != old.len() && chooser.below(len_site, 2) == 1 {
        notes.push(FaultNote {
            site: *len_site,
            at: chooser.last_draw(),
            value: 1,
            detail: format!(
                "inode {ino} keeps its old length {} instead of {}",
                old.len(),
                target.len()
            ),
        });
        old.len()
    } else {
        target.len()
    };
    let mut out = old.to_vec();
    out.resize(final_len, 0);
    // `target` zero-extended to `final_len`: the bytes each sector would
    // hold if its write landed.
    let mut landed = target.to_vec();
    landed.resize(final_len, 0);
    let mut start = 0;
    while start < final_len {
        let end = (start + sector).min(final_len);
        let differs = landed[start..end] != out[start..end];
        if differs {
            // Whole-sector mode only draws new (0) or old (1).
            let bound = if within { u64::MAX } else { 2 };
            let v = chooser.draw(sector_site, bound, |rng| {
                use rand::Rng;
                if within {
                    rng.gen_range(0..FATES) + FATES * rng.gen_range(0..sector as u64)
                } else {
                    rng.gen_range(0..2)
                }
            });
            let fate = v % FATES;
            let split = start + ((v / FATES) as usize % sector).min(end - start);
            match fate {
                0 => out[start..end].copy_from_slice(&landed[start..end]),
                1 => {}
                2 => out[start..split].copy_from_slice(&landed[start..split]),
                3 => out[start..end].fill(0),
                _ => {
                    let mut x = v | 1;
                    for b in &mut out[start..end] {
                        // xorshift64: deterministic garbage from the drawn value.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                }
            }
            if fate != 0 {
                let what = ["kept", "reverted", "torn", "zeroed", "garbage"][fate as usize];
                notes.push(FaultNote {
                    site: *sector_site,
                    at: chooser.last_draw(),
                    value: v,
                    detail: format!(
                        "inode {ino} bytes {start}..{end}: unsynced sector {what}{}",
                        if fate == 2 {
                            format!(" (new up to {split})")
                        } else {
                            String::new()
                        }
                    ),
                });
            }
        }
        start = end;
    }
    out
}

fn place_media_faults(
    ino: u64,
    inode: &mut Inode,
    sector: u64,
    chooser: &mut Chooser,
    faults: &DiskFaults,
    notes: &mut Vec<FaultNote>,
) {
    let sectors = (inode.durable.len() as u64).div_ceil(sector);
    if sectors == 0 {
        return;
    }
    let within_budget =
        |inode: &Inode| faults.over_budget || inode.media_faults < faults.media_faults_per_file_max;
    let per_file = |p: f64| (p * sectors as f64).min(1.0);
    if faults.latent_sector_error > 0.0 {
        let p = per_file(faults.latent_sector_error);
        let bound = if within_budget(inode) { sectors + 1 } else { 1 };
        let v = chooser.draw(&sites::LATENT, bound, |rng| {
            use rand::Rng;
            if rng.gen::<f64>() < p {
                1 + rng.gen_range(0..sectors)
            } else {
                0
            }
        });
        if v > 0 {
            inode.media_faults += 1;
            inode.bad_sectors.insert(v - 1);
            notes.push(FaultNote {
                site: sites::LATENT,
                at: chooser.last_draw(),
                value: v,
                detail: format!("inode {ino} sector {} becomes unreadable", v - 1),
            });
        }
    }
    if faults.silent_corruption > 0.0 {
        let p = per_file(faults.silent_corruption);
        let bits = inode.durable.len() as u64 * 8;
        let bound = if within_budget(inode) { bits + 1 } else { 1 };
        let v = chooser.draw(&sites::CORRUPT, bound, |rng| {
            use rand::Rng;
            if rng.gen::<f64>() < p {
                1 + rng.gen_range(0..bits)
            } else {
                0
            }
        });
        if v > 0 {
            let bit = v - 1;
            inode.media_faults += 1;
            inode.durable[(bit / 8) as usize] ^= 1 << (bit % 8);
            inode.current = inode.durable.clone();
            notes.push(FaultNote {
                site: sites::CORRUPT,
                at: chooser.last_draw(),
                value: v,
                detail: format!("inode {ino} bit {bit} flips silently"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> DiskState {
        DiskState::new(DiskConfig::default())
    }

    #[test]
    fn paths_are_normalised_and_dot_dot_refused() {
        assert_eq!(normalize("/a//b/").ok().as_deref(), Some("a/b"));
        assert!(normalize("a/../b").is_err());
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
    }

    #[test]
    fn read_dir_lists_direct_children_only() {
        let mut d = disk();
        d.create_dir("a").expect("dir");
        d.create("a/x", false).expect("x");
        d.create_dir("a/sub").expect("sub");
        d.create("a/sub/y", false).expect("y");
        d.create("ab", false).expect("ab");
        assert_eq!(d.read_dir("a").expect("list"), vec!["sub", "x"]);
        assert_eq!(d.read_dir("").expect("root"), vec!["a", "ab"]);
        assert!(d.remove("a").is_err(), "non-empty dir");
    }
}
