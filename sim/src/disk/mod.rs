//! `SimDisk`: each simulated machine's disk, with the crash semantics of
//! spec 07 (see [`model`] for the durability model itself).
//!
//! Systems under test use it like `tokio::fs`: [`Disk`] for paths, [`File`]
//! for open files. Every operation takes simulated time (a latency drawn per
//! operation), and completes — becomes visible to reads and, for writes,
//! eligible for the next fsync — when that time has passed. A handle belongs
//! to one incarnation of its process: after a crash it fails with `ESTALE`,
//! so work left behind by a killed task can never land on the new
//! incarnation's disk.

pub mod model;

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::model::{normalize, DiskState, Entry};
use crate::clock;
use crate::profile::Span;
use crate::trace::{DiskOp, EventKind};
use crate::world::{lock, ProcessId, Shared, State};

/// Disk geometry, capacity and latencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskConfig {
    /// Sector size in bytes: the unit of tearing (512 or 4096).
    pub sector_size: u32,
    /// Capacity in bytes (`None`: unbounded); past it writes fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Latency of reads, µs.
    pub read_us: Span,
    /// Latency of writes, appends and length changes, µs.
    pub write_us: Span,
    /// Latency of file and directory syncs, µs.
    pub sync_us: Span,
    /// Latency of namespace operations (open, create, rename, …), µs.
    pub meta_us: Span,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            sector_size: 4096,
            capacity_bytes: None,
            read_us: Span::new(5, 50),
            write_us: Span::new(5, 50),
            sync_us: Span::new(200, 2000),
            meta_us: Span::new(5, 30),
        }
    }
}

impl DiskConfig {
    /// Check the geometry is usable.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.sector_size.is_power_of_two() && (512..=65536).contains(&self.sector_size)) {
            return Err(format!(
                "sector_size must be a power of two in 512..=65536, got {}",
                self.sector_size
            ));
        }
        Ok(())
    }
}

/// `errno`-style errors, as `std::io::Error`s (Linux numbering).
pub mod errors {
    use std::io;

    fn os(code: i32, what: &str) -> io::Error {
        let base = io::Error::from_raw_os_error(code);
        io::Error::new(base.kind(), format!("{base}: {what}"))
    }

    /// EIO: the device failed the operation.
    pub fn eio(what: &str) -> io::Error {
        os(5, what)
    }
    /// ENOSPC: no space left.
    pub fn enospc(what: &str) -> io::Error {
        os(28, what)
    }
    /// ESTALE: the handle's process incarnation is gone.
    pub fn estale(what: &str) -> io::Error {
        os(116, what)
    }
    /// ENOENT.
    pub fn enoent(path: &str) -> io::Error {
        os(2, path)
    }
    /// EEXIST.
    pub fn eexist(path: &str) -> io::Error {
        os(17, path)
    }
    /// ENOTDIR.
    pub fn enotdir(path: &str) -> io::Error {
        os(20, path)
    }
    /// EISDIR.
    pub fn eisdir(path: &str) -> io::Error {
        os(21, path)
    }
    /// ENOTEMPTY.
    pub fn enotempty(path: &str) -> io::Error {
        os(39, path)
    }
    /// EINVAL.
    pub fn einval(what: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, what)
    }

    /// True when `err` is EIO.
    pub fn is_eio(err: &io::Error) -> bool {
        err.raw_os_error() == Some(5) || err.to_string().contains("os error 5)")
    }
}

/// Power loss on `process`'s machine: apply the crash model to its disk
/// and trace each fault it injected.
pub(crate) fn power_fail(state: &mut State, process: ProcessId) {
    let mut notes = Vec::new();
    let faults = state.disk_faults_now();
    let State { disks, chooser, .. } = state;
    if let Some(disk) = disks.get_mut(process as usize) {
        disk.power_fail(chooser, &faults, &mut notes);
    }
    emit_notes(state, process, notes);
}

fn emit_notes(state: &mut State, process: ProcessId, notes: Vec<model::FaultNote>) {
    for note in notes {
        state.fault_fired_at(Some(process), &note.site, note.at, note.value, note.detail);
    }
}

/// A process's view of its machine's disk.
#[derive(Clone)]
pub struct Disk {
    shared: Shared,
    process: ProcessId,
    incarnation: u32,
}

/// An open file.
#[derive(Clone)]
pub struct File {
    disk: Disk,
    ino: u64,
    path: String,
}

#[derive(Clone, Copy)]
enum Cost {
    Read,
    Write,
    Sync,
    Meta,
}

impl Disk {
    pub(crate) fn new(shared: Shared, process: ProcessId, incarnation: u32) -> Disk {
        Disk {
            shared,
            process,
            incarnation,
        }
    }

    /// Let the operation's latency pass (fails at once if this handle's
    /// incarnation has ended).
    async fn wait(&self, cost: Cost, path: &str) -> io::Result<()> {
        let crashed = {
            let mut s = lock(&self.shared);
            self.check(&s)?;
            let what = match cost {
                Cost::Write => Some("write"),
                Cost::Sync => Some("sync"),
                Cost::Read | Cost::Meta => None,
            };
            what.is_some_and(|what| s.maybe_crash_at_io(self.process, what, path))
        };
        if crashed {
            // The machine went down with this operation in flight: it never
            // completes (the supervisor kills the task at once).
            std::future::pending::<()>().await;
        }
        let latency = {
            let mut s = lock(&self.shared);
            let c = &s.disk_config;
            let span = match cost {
                Cost::Read => c.read_us,
                Cost::Write => c.write_us,
                Cost::Sync => c.sync_us,
                Cost::Meta => c.meta_us,
            };
            s.chooser.between(&model::sites::LATENCY, span.lo, span.hi)
        };
        clock::sleep(Duration::from_micros(latency)).await;
        Ok(())
    }

    fn check(&self, s: &State) -> io::Result<()> {
        if s.is_live(self.process, self.incarnation) {
            Ok(())
        } else {
            Err(errors::estale("process incarnation ended"))
        }
    }

    /// Complete an operation: check liveness, run `f` on this machine's
    /// disk with the chooser, trace it and any faults it injected.
    fn complete<R>(
        &self,
        op: DiskOp,
        f: impl FnOnce(&mut DiskState, &mut Ctx<'_>) -> io::Result<(R, u64, u64, u64)>,
    ) -> io::Result<R> {
        let mut s = lock(&self.shared);
        self.check(&s)?;
        let mut notes = Vec::new();
        let faults = s.disk_faults_now();
        let result = {
            let State { disks, chooser, .. } = &mut *s;
            let disk = disks
                .get_mut(self.process as usize)
                .ok_or_else(|| errors::estale("no disk"))?;
            let mut ctx = Ctx {
                chooser,
                faults: &faults,
                notes: &mut notes,
            };
            f(disk, &mut ctx)
        };
        emit_notes(&mut s, self.process, notes);
        s.stats.disk_ops += 1;
        let (ok, inode, a, b) = match &result {
            Ok((_, inode, a, b)) => (true, *inode, *a, *b),
            Err(_) => (false, 0, 0, 0),
        };
        s.emit(
            Some(self.process),
            EventKind::Disk {
                op,
                inode,
                a,
                b,
                ok,
            },
        );
        result.map(|(r, ..)| r)
    }

    async fn open_with(
        &self,
        path: &str,
        op: DiskOp,
        create: bool,
        truncate: bool,
    ) -> io::Result<File> {
        let path = normalize(path)?;
        self.wait(Cost::Meta, &path).await?;
        let ino = self.complete(op, |d, _| {
            let ino = if create {
                d.create(&path, truncate)?
            } else {
                d.lookup(&path)?
            };
            Ok((ino, ino, 0, 0))
        })?;
        Ok(File {
            disk: self.clone(),
            ino,
            path,
        })
    }

    /// Open an existing file.
    pub async fn open(&self, path: &str) -> io::Result<File> {
        self.open_with(path, DiskOp::Open, false, false).await
    }

    /// Create a file, truncating it if it exists. The name is durable only
    /// after [`Disk::sync_dir`] of its directory.
    pub async fn create(&self, path: &str) -> io::Result<File> {
        self.open_with(path, DiskOp::Create, true, true).await
    }

    /// Open a file, creating it (empty) if it does not exist.
    pub async fn open_or_create(&self, path: &str) -> io::Result<File> {
        self.open_with(path, DiskOp::Create, true, false).await
    }

    /// Rename a file (replacing the target). Durable only after syncing the
    /// directory (both directories when they differ).
    pub async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (normalize(from)?, normalize(to)?);
        self.wait(Cost::Meta, &to).await?;
        self.complete(DiskOp::Rename, |d, ctx| {
            let atomic = !ctx.faults.non_atomic_rename;
            d.rename(&from, &to, atomic)?;
            Ok(((), 0, 0, 0))
        })
    }

    /// Remove a file or an empty directory (durable after syncing its directory).
    pub async fn remove(&self, path: &str) -> io::Result<()> {
        let path = normalize(path)?;
        self.wait(Cost::Meta, &path).await?;
        self.complete(DiskOp::Remove, |d, _| {
            d.remove(&path)?;
            Ok(((), 0, 0, 0))
        })
    }

    /// Create a directory (durable after syncing its parent).
    pub async fn create_dir(&self, path: &str) -> io::Result<()> {
        let path = normalize(path)?;
        self.wait(Cost::Meta, &path).await?;
        self.complete(DiskOp::CreateDir, |d, _| {
            d.create_dir(&path)?;
            Ok(((), 0, 0, 0))
        })
    }

    /// Create a directory and its missing parents.
    pub async fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let path = normalize(path)?;
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.exists(&prefix).await? {
                self.create_dir(&prefix).await?;
            }
        }
        Ok(())
    }

    /// Names directly inside `dir`, sorted.
    pub async fn read_dir(&self, dir: &str) -> io::Result<Vec<String>> {
        let dir = normalize(dir)?;
        self.wait(Cost::Meta, &dir).await?;
        self.complete(DiskOp::ReadDir, |d, _| {
            let names = d.read_dir(&dir)?;
            let n = names.len() as u64;
            Ok((names, 0, n, 0))
        })
    }

    /// Make `dir`'s entry operations (create, rename, remove) durable.
    pub async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        let dir = normalize(dir)?;
        self.wait(Cost::Sync, &dir).await?;
        self.complete(DiskOp::SyncDir, |d, _| {
            d.sync_dir(&dir)?;
            Ok(((), 0, 0, 0))
        })
    }

    /// True when `path` exists.
    pub async fn exists(&self, path: &str) -> io::Result<bool> {
        let path = normalize(path)?;
        self.wait(Cost::Meta, &path).await?;
        self.complete(DiskOp::Open, |d, _| Ok((d.exists(&path), 0, 0, 0)))
    }

    /// Read a whole file.
    pub async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let file = self.open(path).await?;
        let len = file.len().await?;
        file.read_at(0, len as usize).await
    }

    /// Current bytes of the file at `path`, if there is one (test and
    /// checker helper; no latency, no faults).
    pub fn current_bytes(&self, path: &str) -> Option<Vec<u8>> {
        let s = lock(&self.shared);
        s.disks
            .get(self.process as usize)
            .and_then(|d| d.current_bytes(path))
    }

    /// Current bytes of every file of this machine (test helper; no latency).
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        let s = lock(&self.shared);
        s.disks
            .get(self.process as usize)
            .map(DiskState::snapshot)
            .unwrap_or_default()
    }
}

/// What a completing operation may use besides the disk itself.
struct Ctx<'a> {
    chooser: &'a mut crate::tape::Chooser,
    faults: &'a crate::profile::DiskFaults,
    notes: &'a mut Vec<model::FaultNote>,
}

impl File {
    /// The path the file was opened by.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Read up to `len` bytes at `offset` (short at end of file).
    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.disk.wait(Cost::Read, &self.path).await?;
        let ino = self.ino;
        self.disk.complete(DiskOp::Read, |d, _| {
            let bytes = d.read_at(ino, offset, len)?;
            let n = bytes.len() as u64;
            Ok((bytes, ino, offset, n))
        })
    }

    /// Write `data` at `offset`.
    pub async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.wait(Cost::Write, &self.path).await?;
        let ino = self.ino;
        self.disk.complete(DiskOp::Write, |d, c| {
            d.write_at(ino, offset, data, c.chooser, c.faults, c.notes)?;
            Ok(((), ino, offset, data.len() as u64))
        })
    }

    /// Append `data`; returns the offset it landed at.
    pub async fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.disk.wait(Cost::Write, &self.path).await?;
        let ino = self.ino;
        self.disk.complete(DiskOp::Write, |d, c| {
            let offset = d.append(ino, data, c.chooser, c.faults, c.notes)?;
            Ok((offset, ino, offset, data.len() as u64))
        })
    }

    /// Truncate or extend (with zeros).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.wait(Cost::Write, &self.path).await?;
        let ino = self.ino;
        self.disk.complete(DiskOp::SetLen, |d, c| {
            d.set_len(ino, len, c.chooser, c.faults, c.notes)?;
            Ok(((), ino, len, 0))
        })
    }

    /// Current length.
    pub async fn len(&self) -> io::Result<u64> {
        let s = lock(&self.disk.shared);
        self.disk.check(&s)?;
        s.disks
            .get(self.disk.process as usize)
            .ok_or_else(|| errors::estale("no disk"))?
            .len(self.ino)
    }

    /// Make durable every write to this file that completed before this
    /// call; writes completing while it runs are not covered.
    pub async fn sync_all(&self) -> io::Result<()> {
        let issued = {
            let s = lock(&self.disk.shared);
            self.disk.check(&s)?;
            s.disks
                .get(self.disk.process as usize)
                .map_or(0, DiskState::issue_seq)
        };
        self.disk.wait(Cost::Sync, &self.path).await?;
        let ino = self.ino;
        self.disk.complete(DiskOp::Fsync, |d, c| {
            d.fsync(ino, issued, c.chooser, c.faults, c.notes)?;
            Ok(((), ino, issued, 0))
        })
    }

    /// Same as [`File::sync_all`]: the model does not separate metadata
    /// (file length) from data, so `fdatasync` is as strong as `fsync`.
    pub async fn sync_data(&self) -> io::Result<()> {
        self.sync_all().await
    }
}
