//! The shared durable state on the simulated disk: where each part lives,
//! its format, and the steps that write it.
//!
//! - `lifecycle/lockfile.json`: the lockfile, a JSON document
//!   ([`Lockfile`]) replaced atomically: write a temp file, fsync it,
//!   rename it over the lockfile, fsync the directory. It is the source of
//!   truth: whatever it lists is installed.
//! - `lifecycle/catalog.json`: the catalog table ([`Catalog`]), replaced
//!   the same way (a table commit is all or nothing).
//! - `lifecycle/tree/<item>/<version>/<file>`: the item files, each
//!   written, fsynced, and made durable by fsyncing its directory.
//!
//! Every writing step (create, write, fsync, rename, remove, directory
//! fsync) is a point where the actor may crash ([`Store::crash_at`]): the
//! step does not happen and nothing after it does; what the page cache
//! holds stays.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use durasim_sim::Disk;
use serde::{Deserialize, Serialize};

/// The directory everything lives in.
pub const ROOT: &str = "lifecycle";
/// The lockfile.
pub const LOCKFILE: &str = "lifecycle/lockfile.json";
/// The catalog.
pub const CATALOG: &str = "lifecycle/catalog.json";
/// The item tree.
pub const TREE: &str = "lifecycle/tree";

/// The lockfile document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockfile {
    /// Installed items, sorted by name.
    pub items: Vec<LockedItem>,
}

/// One lockfile entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedItem {
    /// The item's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Its files, relative to the tree.
    pub files: Vec<String>,
}

impl Lockfile {
    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&LockedItem> {
        self.items.iter().find(|item| item.name == name)
    }

    /// Insert or replace the entry of `item.name`, keeping names sorted;
    /// returns the replaced entry.
    pub fn put(&mut self, item: LockedItem) -> Option<LockedItem> {
        let old = self.take(&item.name);
        let at = self.items.partition_point(|i| i.name < item.name);
        self.items.insert(at, item);
        old
    }

    /// Remove and return the entry of `name`.
    pub fn take(&mut self, name: &str) -> Option<LockedItem> {
        let at = self.items.iter().position(|i| i.name == name)?;
        Some(self.items.remove(at))
    }

    /// Whether some entry lists tree-relative `path`.
    pub fn references(&self, path: &str) -> bool {
        self.items.iter().any(|i| i.files.iter().any(|f| f == path))
    }
}

/// A catalog row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowState {
    /// Indexed: the item counts as installed at this version.
    Installed,
    /// Being replaced: not indexed until the install finishes.
    Installing,
}

/// One catalog row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRow {
    /// The item's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Its state.
    pub state: RowState,
}

/// The catalog table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Rows, sorted by name, one per item.
    pub rows: Vec<CatalogRow>,
}

impl Catalog {
    /// The catalog that indexes exactly the lockfile's entries.
    pub fn matching(lockfile: &Lockfile) -> Catalog {
        Catalog {
            rows: lockfile
                .items
                .iter()
                .map(|item| CatalogRow {
                    name: item.name.clone(),
                    version: item.version,
                    state: RowState::Installed,
                })
                .collect(),
        }
    }

    /// Set `name`'s row (sorted insert or replace).
    pub fn set(&mut self, name: &str, version: u32, state: RowState) {
        self.remove(name);
        let at = self.rows.partition_point(|r| r.name.as_str() < name);
        self.rows.insert(
            at,
            CatalogRow {
                name: name.to_string(),
                version,
                state,
            },
        );
    }

    /// Drop `name`'s row.
    pub fn remove(&mut self, name: &str) {
        self.rows.retain(|r| r.name != name);
    }

    /// `name`'s row.
    pub fn get(&self, name: &str) -> Option<&CatalogRow> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// Why a store step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The actor crashed at this step (injected).
    Crashed,
    /// An I/O error.
    Io(String),
    /// The lockfile (or catalog) is not well-formed.
    Malformed(String),
}

impl From<io::Error> for StoreError {
    fn from(error: io::Error) -> Self {
        StoreError::Io(error.to_string())
    }
}

/// The three parts as read back from a machine's files (path → bytes),
/// in the models' terms; `Err` carries the catalog's parse error (the
/// catalog is replaced atomically, so a correct system never tears it).
pub fn read_back(
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> (durasim_models::LifecycleState, Option<String>) {
    use durasim_models::{CatalogRow as Row, LifecycleState, LockfileEntry, LockfileView};
    let lockfile = match files.get(LOCKFILE).map(|bytes| parse_lockfile(bytes)) {
        None => LockfileView::Entries(Vec::new()),
        Some(Ok(lockfile)) => LockfileView::Entries(
            lockfile
                .items
                .into_iter()
                .map(|i| LockfileEntry {
                    name: i.name,
                    version: i.version,
                    files: i.files,
                })
                .collect(),
        ),
        Some(Err(error)) => LockfileView::Malformed { error },
    };
    let (catalog, catalog_error) = match files.get(CATALOG).map(|bytes| parse_catalog(bytes)) {
        None => (Vec::new(), None),
        Some(Ok(catalog)) => (
            catalog
                .rows
                .into_iter()
                .map(|r| Row {
                    name: r.name,
                    version: r.version,
                    indexed: r.state == RowState::Installed,
                })
                .collect(),
            None,
        ),
        Some(Err(error)) => (Vec::new(), Some(error)),
    };
    let prefix = format!("{TREE}/");
    let files = files
        .keys()
        .filter_map(|path| path.strip_prefix(&prefix))
        .map(str::to_string)
        .collect();
    (
        LifecycleState {
            catalog,
            lockfile,
            files,
        },
        catalog_error,
    )
}

/// Parse lockfile bytes.
pub fn parse_lockfile(bytes: &[u8]) -> Result<Lockfile, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Parse catalog bytes.
pub fn parse_catalog(bytes: &[u8]) -> Result<Catalog, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// The directory `path` is in.
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and integers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

/// One actor's handle on the store.
pub struct Store {
    disk: Disk,
    non_atomic_lockfile: bool,
    /// Writing steps taken so far.
    steps: AtomicU32,
    /// The writing step the actor dies at (1-based), if it crashes.
    crash_at: Option<u32>,
}

impl Store {
    /// A handle on `disk` that crashes at writing step `crash_at`; with
    /// `non_atomic_lockfile` the lockfile is rewritten in place (the
    /// `non-atomic-lockfile-replace` bug).
    pub fn new(disk: Disk, non_atomic_lockfile: bool, crash_at: Option<u32>) -> Store {
        Store {
            disk,
            non_atomic_lockfile,
            steps: AtomicU32::new(0),
            crash_at,
        }
    }

    /// The disk.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Writing steps taken so far.
    pub fn steps(&self) -> u32 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Count one writing step; fail if the actor dies here.
    fn step(&self) -> Result<(), StoreError> {
        let n = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if self.crash_at == Some(n) {
            return Err(StoreError::Crashed);
        }
        Ok(())
    }

    /// Create the directories the store needs (durably).
    pub async fn init(&self) -> Result<(), StoreError> {
        for dir in [ROOT, TREE] {
            if !self.disk.exists(dir).await? {
                self.step()?;
                self.disk.create_dir(dir).await?;
                self.step()?;
                self.disk.sync_dir(parent(dir)).await?;
            }
        }
        Ok(())
    }

    /// Read the lockfile (absent: no entries).
    pub async fn read_lockfile(&self) -> Result<Lockfile, StoreError> {
        match self.read_optional(LOCKFILE).await? {
            None => Ok(Lockfile::default()),
            Some(bytes) => parse_lockfile(&bytes).map_err(StoreError::Malformed),
        }
    }

    /// Read the catalog (absent: empty).
    pub async fn read_catalog(&self) -> Result<Catalog, StoreError> {
        match self.read_optional(CATALOG).await? {
            None => Ok(Catalog::default()),
            Some(bytes) => parse_catalog(&bytes).map_err(StoreError::Malformed),
        }
    }

    async fn read_optional(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.disk.read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace the lockfile (atomically unless the bug is on).
    pub async fn write_lockfile(&self, lockfile: &Lockfile) -> Result<(), StoreError> {
        let bytes = encode(lockfile);
        if self.non_atomic_lockfile {
            // The bug: truncate and rewrite in place. A crash between the
            // steps, or a power loss before the fsync, leaves a prefix.
            self.step()?;
            let file = self.disk.open_or_create(LOCKFILE).await?;
            self.step()?;
            file.set_len(0).await?;
            self.step()?;
            file.write_at(0, &bytes).await?;
            self.step()?;
            file.sync_all().await?;
            self.step()?;
            self.disk.sync_dir(ROOT).await?;
            return Ok(());
        }
        self.replace(LOCKFILE, &bytes).await
    }

    /// Replace the catalog atomically.
    pub async fn write_catalog(&self, catalog: &Catalog) -> Result<(), StoreError> {
        self.replace(CATALOG, &encode(catalog)).await
    }

    /// Atomic replace: temp, fsync, rename, fsync directory.
    async fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let temp = format!("{path}.tmp");
        self.step()?;
        let file = self.disk.create(&temp).await?;
        self.step()?;
        file.write_at(0, bytes).await?;
        self.step()?;
        file.sync_all().await?;
        self.step()?;
        self.disk.rename(&temp, path).await?;
        self.step()?;
        self.disk.sync_dir(ROOT).await?;
        Ok(())
    }

    /// Remove leftover temp files of interrupted replaces.
    pub async fn remove_temps(&self) -> Result<(), StoreError> {
        let mut removed = false;
        for path in [LOCKFILE, CATALOG] {
            let temp = format!("{path}.tmp");
            if self.disk.exists(&temp).await? {
                self.step()?;
                self.disk.remove(&temp).await?;
                removed = true;
            }
        }
        if removed {
            self.step()?;
            self.disk.sync_dir(ROOT).await?;
        }
        Ok(())
    }

    /// Write tree-relative `paths` with `contents`, each fsynced, then make
    /// their names durable.
    pub async fn write_files(
        &self,
        paths: &[String],
        contents: impl Fn(&str) -> Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut dirs = std::collections::BTreeSet::new();
        for path in paths {
            let full = format!("{TREE}/{path}");
            let dir = parent(&full).to_string();
            if !dirs.contains(&dir) {
                self.ensure_dir(&dir).await?;
            }
            self.step()?;
            let file = self.disk.create(&full).await?;
            self.step()?;
            file.write_at(0, &contents(path)).await?;
            self.step()?;
            file.sync_all().await?;
            dirs.insert(dir);
        }
        for dir in dirs {
            self.step()?;
            self.disk.sync_dir(&dir).await?;
        }
        Ok(())
    }

    /// Create `dir` and its missing parents, each made durable (one
    /// lookup when it exists).
    async fn ensure_dir(&self, dir: &str) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        let mut at = dir;
        while !at.is_empty() && !self.disk.exists(at).await? {
            missing.push(at);
            at = parent(at);
        }
        for dir in missing.into_iter().rev() {
            self.step()?;
            self.disk.create_dir(dir).await?;
            self.step()?;
            self.disk.sync_dir(parent(dir)).await?;
        }
        Ok(())
    }

    /// Remove tree-relative `paths` (missing ones are skipped), then make
    /// the removals durable.
    pub async fn remove_files(&self, paths: &[String]) -> Result<(), StoreError> {
        let mut dirs = std::collections::BTreeSet::new();
        for path in paths {
            let full = format!("{TREE}/{path}");
            self.step()?;
            match self.disk.remove(&full).await {
                Ok(()) => {
                    dirs.insert(parent(&full).to_string());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        for dir in dirs {
            self.step()?;
            self.disk.sync_dir(&dir).await?;
        }
        Ok(())
    }

    /// Every file under the tree, tree-relative, sorted.
    pub async fn list_files(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.walk().await?.0)
    }

    /// Make every directory entry operation durable: fsync the root and
    /// every directory of the tree. A crashed writer may have created or
    /// removed names without fsyncing their directory; recovery must not
    /// build on names a power loss could still take back.
    pub async fn sync_dirs(&self) -> Result<(), StoreError> {
        let (_, dirs) = self.walk().await?;
        for dir in std::iter::once(ROOT.to_string()).chain(dirs) {
            self.step()?;
            self.disk.sync_dir(&dir).await?;
        }
        Ok(())
    }

    /// The tree's files (tree-relative, sorted) and directories (full
    /// paths, the tree itself included).
    async fn walk(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let mut files = Vec::new();
        let mut dirs = vec![TREE.to_string()];
        let mut pending = vec![(String::new(), self.disk.read_dir(TREE).await?)];
        while let Some((rel, names)) = pending.pop() {
            for name in names {
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let full = format!("{TREE}/{child}");
                // Listing a file fails: one lookup tells both apart and
                // lists the directories.
                match self.disk.read_dir(&full).await {
                    Ok(names) => {
                        dirs.push(full);
                        pending.push((child, names));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotADirectory => files.push(child),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        files.sort();
        dirs.sort();
        Ok((files, dirs))
    }

    /// The bytes of tree-relative `path`, if it exists.
    pub async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_optional(&format!("{TREE}/{path}")).await
    }
}
