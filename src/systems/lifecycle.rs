//! Spec 06: concurrent lifecycle operations (install, remove, update-all)
//! over one shared durable state of three parts that must agree — a
//! catalog table, a JSON lockfile and a file tree — on one machine's
//! simulated disk.
//!
//! - [`store`]: where the parts live, their formats, and the writing
//!   steps (atomic replace of the lockfile and the catalog; fsynced item
//!   files and directories).
//! - [`lock`]: the lock on the lockfile, acquired with retries within a
//!   budget; contention comes from the other actors and from the fault
//!   scheduler's tape.
//! - [`actor`]: the operations and the repair pass, with the write order
//!   that keeps every crash prefix repairable.
//! - [`repo`]: the items (type ids, versioned files).
//!
//! [`run_actor`] runs one operation the way an actor process does: it may
//! crash at any writing step ([`ACTOR_CRASH`], the step drawn at
//! [`CRASH_STEP`]); a crashed actor restarts and its restart runs the
//! repair pass (itself crashable at [`RECOVERY_CRASH`]) until it
//! completes. An operation that fails with an I/O error or storage busy
//! also runs the repair pass before reporting (fail, then recover: a
//! failed fsync is never retried as if nothing happened).
//!
//! Known bugs (off by default, [`LifecycleBugs`]):
//! `non-atomic-lockfile-replace` rewrites the lockfile in place, so a
//! crash or power loss mid-write leaves malformed JSON;
//! `install-orphan-files` makes the repair pass skip deleting files no
//! lockfile entry references, so a crashed or failed install's files stay
//! behind.

pub mod actor;
pub mod lock;
pub mod repo;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use durasim_sim::{buggify, choose_between, Disk, Site};

pub use actor::{ActorError, Applied};
pub use lock::LockfileLock;
pub use repo::ItemSpec;
pub use store::{Catalog, Lockfile, Store};

/// Injected: this actor run crashes at a writing step.
pub const ACTOR_CRASH: Site = Site::fault("lifecycle.actor_crash", "actor-crash");
/// Injected: this repair pass (after a restart) crashes at a writing step.
pub const RECOVERY_CRASH: Site = Site::fault("lifecycle.recovery_crash", "actor-crash");
/// Which writing step a crashing run dies at (1-based; a step beyond the
/// run's last means it finishes after all).
pub const CRASH_STEP: Site = Site::value("lifecycle.crash_step");
/// Largest crash step drawn.
const MAX_CRASH_STEP: u64 = 40;
/// A repair pass is re-run at most this many times after crashing or
/// failing (each attempt crashes with the app fault rate, at most 1).
const RECOVERY_ATTEMPTS: u32 = 64;

/// The known-bug switches (all off: correct behaviour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleBugs {
    /// Rewrite the lockfile in place instead of an atomic replace.
    pub non_atomic_lockfile_replace: bool,
    /// The repair pass leaves unreferenced files behind.
    pub install_orphan_files: bool,
}

/// The system's configuration.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// The installable items.
    pub items: Vec<ItemSpec>,
    /// How long lock acquisition and storage-busy retries may take.
    pub lock_budget: Duration,
    /// Whether the fault scheduler may inject faults (crashes, contention,
    /// storage busy) at the system's sites.
    pub buggify: bool,
    /// Known bugs.
    pub bugs: LifecycleBugs,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            items: vec![
                ItemSpec::new("A", &[101, 102], 2, 300),
                ItemSpec::new("B", &[201, 202], 2, 300),
            ],
            lock_budget: Duration::from_secs(5),
            buggify: true,
            bugs: LifecycleBugs::default(),
        }
    }
}

/// What an actor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Install `item` at `version`.
    Install {
        /// The item.
        item: String,
        /// The version to install.
        version: u32,
    },
    /// Remove `item`.
    Remove {
        /// The item.
        item: String,
    },
    /// Update every installed item to its latest version (with repair).
    UpdateAll {
        /// The latest version of each item.
        latest: BTreeMap<String, u32>,
    },
}

/// How an actor run ended, as its caller learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorOutcome {
    /// The operation returned.
    Applied(Applied),
    /// The actor crashed; its restart ran the repair pass.
    Crashed,
    /// The operation failed with this error (after the repair pass, for
    /// errors that may leave partial writes).
    Failed(ActorError),
}

fn crash_step(site: &Site, config: &LifecycleConfig) -> Option<u32> {
    (config.buggify && buggify(site)).then(|| choose_between(&CRASH_STEP, 1, MAX_CRASH_STEP) as u32)
}

fn actor(
    id: u32,
    disk: &Disk,
    lock: &Arc<LockfileLock>,
    config: &Arc<LifecycleConfig>,
    crash_at: Option<u32>,
) -> actor::Actor {
    actor::Actor {
        id,
        store: Store::new(
            disk.clone(),
            config.bugs.non_atomic_lockfile_replace,
            crash_at,
        ),
        lock: lock.clone(),
        config: config.clone(),
    }
}

/// Run `operation` as actor `id` on `disk`, serialised by `lock`.
pub async fn run_actor(
    id: u32,
    disk: &Disk,
    lock: &Arc<LockfileLock>,
    config: &Arc<LifecycleConfig>,
    operation: &Operation,
) -> ActorOutcome {
    let crash_at = crash_step(&ACTOR_CRASH, config);
    let runner = actor(id, disk, lock, config, crash_at);
    let result = match operation {
        Operation::Install { item, version } => runner.install(item, *version).await,
        Operation::Remove { item } => runner.remove(item).await,
        Operation::UpdateAll { latest } => runner.update_all(latest).await,
    };
    match result {
        Ok(applied) => ActorOutcome::Applied(applied),
        Err(ActorError::Crashed) => {
            let _ = recover(id, disk, lock, config).await;
            ActorOutcome::Crashed
        }
        Err(error @ (ActorError::Io(_) | ActorError::StorageBusy | ActorError::Malformed(_))) => {
            let _ = recover(id, disk, lock, config).await;
            ActorOutcome::Failed(error)
        }
        Err(error) => ActorOutcome::Failed(error),
    }
}

/// The repair pass, re-run after crashes and I/O failures until it
/// completes (at most [`RECOVERY_ATTEMPTS`] times). A malformed lockfile
/// cannot be repaired: the error is returned at once.
pub async fn recover(
    id: u32,
    disk: &Disk,
    lock: &Arc<LockfileLock>,
    config: &Arc<LifecycleConfig>,
) -> Result<(), ActorError> {
    let mut last = Ok(());
    for _ in 0..RECOVERY_ATTEMPTS {
        let crash_at = crash_step(&RECOVERY_CRASH, config);
        let runner = actor(id, disk, lock, config, crash_at);
        last = runner.recover().await;
        match &last {
            Ok(()) | Err(ActorError::Malformed(_)) => return last,
            Err(_) => {}
        }
    }
    last
}

/// Create the store's directories (run once per machine start, before
/// recovery).
pub async fn init(disk: &Disk) -> Result<(), ActorError> {
    Ok(Store::new(disk.clone(), false, None).init().await?)
}
