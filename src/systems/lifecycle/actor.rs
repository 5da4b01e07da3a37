//! The actors' operations: install, remove, update-all, and the repair
//! pass that recovery and reconcile run.
//!
//! Every operation takes the lock on the lockfile first and holds it to
//! the end. Write order, chosen so that whatever prefix a crash leaves is
//! repairable from the lockfile (the source of truth):
//! - **install** — un-index the item's old catalog row (state
//!   `installing`), write and fsync the new version's files, replace the
//!   lockfile, delete the old version's files, index the new row. If that
//!   last catalog write finds storage busy it is rolled back (not
//!   written) and the install reports the documented transient
//!   [`Applied::PartiallyApplied`]: files and lockfile are in, the catalog
//!   row is not (the next update-all indexes it).
//! - **remove** — drop the catalog row, replace the lockfile, delete the
//!   files.
//! - **update-all** — repair, then for every item behind its latest
//!   version write the new files, replace the lockfile once, index the
//!   catalog, delete the old files.
//! - **repair** — (after a crash or failure: fsync every directory, so
//!   names a dead writer left unsynced cannot vanish later) delete temp files of interrupted replaces; re-extract
//!   any file of a lockfile entry that is missing or not its expected
//!   bytes (a half-install, or a file a power loss tore); delete every
//!   file no entry references (orphans of a crashed or failed install);
//!   make the catalog index exactly the lockfile's entries.
//!
//! Storage busy on any other catalog write is retried within the budget.
//! A malformed lockfile cannot be repaired (it is the source of truth):
//! the operation fails with [`ActorError::Malformed`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use durasim_sim::{buggify, choose_between, clock, Site};

use super::lock::LockfileLock;
use super::repo::ItemSpec;
use super::store::{Catalog, LockedItem, Lockfile, RowState, Store, StoreError};
use super::LifecycleConfig;

/// Injected: the catalog's storage is busy for this write.
pub const STORAGE_BUSY: Site = Site::fault("lifecycle.storage_busy", "storage-busy");
/// Pause between storage-busy retries, µs.
const BUSY_BACKOFF_US: Site = Site::value("lifecycle.busy_backoff_us");

/// How a successful operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Fully applied.
    Done,
    /// The documented transient: files and lockfile written, catalog
    /// write failed with storage busy and rolled back.
    PartiallyApplied,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorError {
    /// The actor crashed at a step (injected).
    Crashed,
    /// The lock could not be taken within the budget.
    LockBudgetExhausted,
    /// Storage stayed busy for the whole budget.
    StorageBusy,
    /// `item` declares a type id installed item `with` declares.
    Collision {
        /// The item being installed.
        item: String,
        /// The installed item.
        with: String,
    },
    /// An I/O error.
    Io(String),
    /// The lockfile or catalog is not well-formed.
    Malformed(String),
    /// The item is not known.
    UnknownItem(String),
}

impl std::fmt::Display for ActorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActorError::Crashed => write!(f, "crashed"),
            ActorError::LockBudgetExhausted => write!(f, "lock retry budget exhausted"),
            ActorError::StorageBusy => write!(f, "storage busy"),
            ActorError::Collision { item, with } => {
                write!(f, "{item} collides with installed {with}")
            }
            ActorError::Io(e) => write!(f, "I/O error: {e}"),
            ActorError::Malformed(e) => write!(f, "malformed state: {e}"),
            ActorError::UnknownItem(name) => write!(f, "unknown item {name}"),
        }
    }
}

impl From<StoreError> for ActorError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Crashed => ActorError::Crashed,
            StoreError::Io(e) => ActorError::Io(e),
            StoreError::Malformed(e) => ActorError::Malformed(e),
        }
    }
}

/// One actor run: its store handle, the shared lock and the config.
pub struct Actor {
    /// Who holds the lock.
    pub id: u32,
    /// Its handle on the disk.
    pub store: Store,
    /// The lock of this machine incarnation.
    pub lock: Arc<LockfileLock>,
    /// The system's config.
    pub config: Arc<LifecycleConfig>,
}

impl Actor {
    fn item(&self, name: &str) -> Result<&ItemSpec, ActorError> {
        self.config
            .items
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| ActorError::UnknownItem(name.to_string()))
    }

    async fn lock(&self) -> Result<super::lock::LockGuard, ActorError> {
        self.lock
            .acquire(self.id, self.config.lock_budget, self.config.buggify)
            .await
            .map_err(|_| ActorError::LockBudgetExhausted)
    }

    fn busy(&self) -> bool {
        self.config.buggify && buggify(&STORAGE_BUSY)
    }

    /// Write the catalog, retrying storage busy within the budget.
    async fn write_catalog(&self, catalog: &Catalog) -> Result<(), ActorError> {
        let start = clock::now();
        while self.busy() {
            if clock::now().since(start) >= self.config.lock_budget {
                return Err(ActorError::StorageBusy);
            }
            let pause = choose_between(&BUSY_BACKOFF_US, 200, 3000);
            clock::sleep(Duration::from_micros(pause)).await;
        }
        Ok(self.store.write_catalog(catalog).await?)
    }

    /// Install `name` at `version`.
    pub async fn install(&self, name: &str, version: u32) -> Result<Applied, ActorError> {
        let spec = self.item(name)?.clone();
        let _guard = self.lock().await?;
        let mut lockfile = self.store.read_lockfile().await?;
        for entry in &lockfile.items {
            let other = self.item(&entry.name)?;
            if spec.collides_with(other) {
                return Err(ActorError::Collision {
                    item: name.to_string(),
                    with: other.name.clone(),
                });
            }
        }
        let mut catalog = self.store.read_catalog().await?;
        let installed = lockfile.get(name).map(|e| e.version) == Some(version);
        let indexed = catalog
            .get(name)
            .is_some_and(|r| r.version == version && r.state == RowState::Installed);
        if installed && indexed {
            return Ok(Applied::Done);
        }
        if let Some(row) = catalog.get(name).cloned() {
            if row.state == RowState::Installed {
                catalog.set(name, row.version, RowState::Installing);
                self.write_catalog(&catalog).await?;
            }
        }
        let files = spec.paths(version);
        self.store
            .write_files(&files, |path| spec.expected(path).unwrap_or_default())
            .await?;
        let old = lockfile.put(LockedItem {
            name: name.to_string(),
            version,
            files,
        });
        self.store.write_lockfile(&lockfile).await?;
        self.remove_unreferenced(&lockfile, old.map(|o| o.files).unwrap_or_default())
            .await?;
        catalog.set(name, version, RowState::Installed);
        if self.busy() {
            return Ok(Applied::PartiallyApplied);
        }
        self.store.write_catalog(&catalog).await?;
        Ok(Applied::Done)
    }

    /// Remove `name` (done at once when it is not installed).
    pub async fn remove(&self, name: &str) -> Result<Applied, ActorError> {
        let _guard = self.lock().await?;
        let mut lockfile = self.store.read_lockfile().await?;
        let mut catalog = self.store.read_catalog().await?;
        if catalog.get(name).is_some() {
            catalog.remove(name);
            self.write_catalog(&catalog).await?;
        }
        if let Some(old) = lockfile.take(name) {
            self.store.write_lockfile(&lockfile).await?;
            self.remove_unreferenced(&lockfile, old.files).await?;
        }
        Ok(Applied::Done)
    }

    /// Repair, then bring every installed item to `latest[name]`.
    pub async fn update_all(&self, latest: &BTreeMap<String, u32>) -> Result<Applied, ActorError> {
        let _guard = self.lock().await?;
        let mut lockfile = self.repair_tree().await?;
        let mut replaced = Vec::new();
        let behind: Vec<(String, u32)> = lockfile
            .items
            .iter()
            .filter_map(|e| {
                let to = *latest.get(&e.name)?;
                (to > e.version).then(|| (e.name.clone(), to))
            })
            .collect();
        for (name, version) in &behind {
            let spec = self.item(name)?.clone();
            let files = spec.paths(*version);
            self.store
                .write_files(&files, |path| spec.expected(path).unwrap_or_default())
                .await?;
            if let Some(old) = lockfile.put(LockedItem {
                name: name.clone(),
                version: *version,
                files,
            }) {
                replaced.extend(old.files);
            }
        }
        if !behind.is_empty() {
            self.store.write_lockfile(&lockfile).await?;
        }
        self.sync_catalog(&lockfile).await?;
        self.remove_unreferenced(&lockfile, replaced).await?;
        Ok(Applied::Done)
    }

    /// The repair pass under the lock (recovery after a crash or failure),
    /// starting by making every directory entry durable.
    pub async fn recover(&self) -> Result<(), ActorError> {
        let _guard = self.lock().await?;
        self.store.sync_dirs().await?;
        let lockfile = self.repair_tree().await?;
        self.sync_catalog(&lockfile).await
    }

    /// Temp files, half-installs and (unless the bug is on) orphans.
    async fn repair_tree(&self) -> Result<Lockfile, ActorError> {
        self.store.remove_temps().await?;
        let lockfile = self.store.read_lockfile().await?;
        for entry in &lockfile.items {
            let spec = self.item(&entry.name)?.clone();
            let mut broken = Vec::new();
            for path in &entry.files {
                let expected = spec.expected(path);
                if self.store.read_file(path).await? != expected {
                    broken.push(path.clone());
                }
            }
            if !broken.is_empty() {
                self.store
                    .write_files(&broken, |path| spec.expected(path).unwrap_or_default())
                    .await?;
            }
        }
        if !self.config.bugs.install_orphan_files {
            let orphans: Vec<String> = self
                .store
                .list_files()
                .await?
                .into_iter()
                .filter(|path| !lockfile.references(path))
                .collect();
            self.store.remove_files(&orphans).await?;
        }
        Ok(lockfile)
    }

    /// Make the catalog index exactly the lockfile's entries.
    async fn sync_catalog(&self, lockfile: &Lockfile) -> Result<(), ActorError> {
        let wanted = Catalog::matching(lockfile);
        let current = match self.store.read_catalog().await {
            Ok(catalog) => Some(catalog),
            // A catalog that does not parse is rewritten from the lockfile.
            Err(StoreError::Malformed(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if current.as_ref() != Some(&wanted) {
            self.write_catalog(&wanted).await?;
        }
        Ok(())
    }

    /// Delete `candidates` that `lockfile` no longer references.
    async fn remove_unreferenced(
        &self,
        lockfile: &Lockfile,
        candidates: Vec<String>,
    ) -> Result<(), ActorError> {
        let gone: Vec<String> = candidates
            .into_iter()
            .filter(|path| !lockfile.references(path))
            .collect();
        Ok(self.store.remove_files(&gone).await?)
    }
}
