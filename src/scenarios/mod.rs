//! The built-in scenarios and the known-bug catalogue.

mod backoff;
mod channel;
mod commit_service;
mod history_check;
mod lifecycle;
mod queued_writer;
mod repair;
mod repair_history;
mod rmw_client;
mod snapshot_persistence;
mod toy;

use crate::harness::{HarnessError, KnownBug, Registry, Scenario};

pub use channel::ChannelScenario;
pub use commit_service::CommitService;
pub use lifecycle::{drive as drive_lifecycle, LifecycleRun, LifecycleScenario};
pub use repair::RepairScenario;
pub use toy::ToyLog;

/// The built-in scenarios and bugs.
pub fn registry() -> Registry {
    let mut registry = Registry::new()
        .with_scenario(&ToyLog)
        .with_scenario(&CommitService)
        .with_scenario(&ChannelScenario)
        .with_scenario(&backoff::BackoffScenario)
        .with_scenario(&RepairScenario)
        .with_scenario(&queued_writer::QueuedWriterScenario)
        .with_scenario(&LifecycleScenario)
        .with_scenario(&snapshot_persistence::SnapshotScenario);
    for bug in BUGS {
        registry = registry.with_bug(*bug);
    }
    registry
}

/// Look a built-in scenario up by name.
pub fn find(name: &str) -> Result<&'static dyn Scenario, HarnessError> {
    registry().find(name)
}

/// The known-bug catalogue: historical bugs from the specs that can be
/// switched on at run time. The default behaviour is always the correct one.
pub const BUGS: &[KnownBug] = &[
    KnownBug {
        name: toy::ACK_BEFORE_FSYNC,
        scenario: "toy-log",
        spec: "07",
        summary: "server acknowledges a record before its fsync; a power loss then loses it (D1)",
    },
    KnownBug {
        name: commit_service::PUBLISH_BEFORE_FSYNC,
        scenario: "commit-service",
        spec: "01",
        summary: "coordinator publishes and acknowledges a batch before its fsync (D5; D1 after a power loss)",
    },
    KnownBug {
        name: commit_service::ACK_FAILED_FSYNC,
        scenario: "commit-service",
        spec: "01",
        summary: "coordinator treats a failed fsync as success and acknowledges the batch (D5)",
    },
    KnownBug {
        name: commit_service::ACCEPT_TORN_TAIL,
        scenario: "commit-service",
        spec: "01",
        summary: "recovery trusts the last batch's frames without their checksums, exposing a torn tail (D3)",
    },
    KnownBug {
        name: commit_service::IN_BATCH_CONFLICT_MISSED,
        scenario: "commit-service",
        spec: "01",
        summary: "validation ignores earlier requests of the same batch; two writes read at one seq both commit, one update lost (D8)",
    },
    KnownBug {
        name: channel::DELIVER_IN_SEND_ORDER,
        scenario: "channel",
        spec: "01",
        summary: "channel delivers a later send before an earlier, still unsent reservation (D4)",
    },
    KnownBug {
        name: backoff::FIXED_RETRY_BUDGET,
        scenario: "backoff",
        spec: "02",
        summary: "a fixed budget of 5 retries instead of the retry window; a storm of conflicts drops the write silently, no terminal error (D6)",
    },
    KnownBug {
        name: backoff::PERMANENT_RETRIED,
        scenario: "backoff",
        spec: "02",
        summary: "a permanent rejection (receipt-exists) is retried like a transient one (D11)",
    },
    KnownBug {
        name: repair::PANIC_ABANDONS_OTHERS,
        scenario: "repair",
        spec: "03",
        summary: "a panicking repair worker poisons the pool; repairs that start later give up silently and stay Pending (D9)",
    },
    KnownBug {
        name: repair::PENDING_FORGOTTEN,
        scenario: "repair",
        spec: "03",
        summary: "after a crash, recovery does not re-schedule commits whose parity is missing (D9)",
    },
    KnownBug {
        name: queued_writer::SHUTDOWN_SKIPS_FLUSH,
        scenario: "queued-writer",
        spec: "04",
        summary: "shutdown stops the writer without flushing the queue; queued messages never land nor fail (D6)",
    },
    KnownBug {
        name: queued_writer::COALESCE_ACROSS_STREAMS,
        scenario: "queued-writer",
        spec: "04",
        summary: "coalescing merges consecutive messages of different streams into one call; they land on the wrong stream (D3)",
    },
    KnownBug {
        name: lifecycle::NON_ATOMIC_LOCKFILE_REPLACE,
        scenario: "lifecycle",
        spec: "06",
        summary: "the lockfile is truncated and rewritten in place; a crash or power loss mid-write leaves malformed JSON (D14)",
    },
    KnownBug {
        name: lifecycle::INSTALL_ORPHAN_FILES,
        scenario: "lifecycle",
        spec: "06",
        summary: "a crashed or failed install's files stay behind unreferenced and reconcile does not delete them (D14)",
    },
    KnownBug {
        name: snapshot_persistence::EVICT_WINS_MERGE,
        scenario: "snapshot-persistence",
        spec: "05",
        summary: "the pending-write queue merges evict-wins: a message evicted during an outage and re-delivered never reaches the disk (D13)",
    },
    KnownBug {
        name: snapshot_persistence::FAILED_FLUSH_DROPS_DELTA,
        scenario: "snapshot-persistence",
        spec: "05",
        summary: "a failed history flush clears the pending queue; its delta is never retried and the disk's history diverges (D13)",
    },
    KnownBug {
        name: snapshot_persistence::FOREGROUND_SURFACES_ERROR,
        scenario: "snapshot-persistence",
        spec: "05",
        summary: "foreground ops return a failed snapshot save as an error although memory (and the next snapshot) keeps the change (D13)",
    },
    KnownBug {
        name: snapshot_persistence::DURABILITY_INTENT_SWALLOWS,
        scenario: "snapshot-persistence",
        spec: "05",
        summary: "bootstrap, remove and reset return Ok when storage fails; the caller is told a disk fact that is not true (D13)",
    },
];
