//! The built-in scenarios and the known-bug catalogue.

mod toy;

use crate::harness::{HarnessError, KnownBug, Scenario};

pub use toy::ToyLog;

/// Every built-in scenario, in listing order.
pub fn all() -> Vec<&'static dyn Scenario> {
    vec![&ToyLog]
}

/// The scenarios a bare `sweep` runs.
pub fn defaults() -> Vec<&'static dyn Scenario> {
    all()
}

/// Look a scenario up by name.
pub fn find(name: &str) -> Result<&'static dyn Scenario, HarnessError> {
    all()
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| HarnessError::UnknownScenario {
            name: name.to_string(),
            known: all()
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The known-bug catalogue: historical bugs from the specs that can be
/// switched on at run time. The default behaviour is always the correct one.
pub const BUGS: &[KnownBug] = &[KnownBug {
    name: toy::ACK_BEFORE_FSYNC,
    scenario: "toy-log",
    spec: "07",
    summary: "server acknowledges a record before its fsync; a power loss then loses it (D1)",
}];

/// Check that `bug` exists for `scenario`.
pub fn check_bug(scenario: &str, bug: &str) -> Result<&'static KnownBug, HarnessError> {
    BUGS.iter()
        .find(|b| b.name == bug && b.scenario == scenario)
        .ok_or_else(|| HarnessError::UnknownBug {
            name: bug.to_string(),
            scenario: scenario.to_string(),
            known: BUGS
                .iter()
                .filter(|b| b.scenario == scenario)
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}
