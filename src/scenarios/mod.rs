//! The built-in scenarios and the known-bug catalogue.

mod channel;
mod commit_service;
mod history_check;
mod repair;
mod repair_history;
mod toy;

use crate::harness::{HarnessError, KnownBug, Registry, Scenario};

pub use channel::ChannelScenario;
pub use commit_service::CommitService;
pub use repair::RepairScenario;
pub use toy::ToyLog;

/// The built-in scenarios and bugs.
pub fn registry() -> Registry {
    let mut registry = Registry::new()
        .with_scenario(&ToyLog)
        .with_scenario(&CommitService)
        .with_scenario(&ChannelScenario)
        .with_scenario(&RepairScenario);
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
];
