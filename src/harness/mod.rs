//! The harness: runs scenarios by seed, sweeps, shrinks failures, and keeps
//! the regression corpus. It sees scenarios only through [`Scenario`].

pub mod corpus;
mod error;
mod registry;
mod runner;
mod scenario;
mod seeds;
mod shrink;
mod sweep;
mod verdict;

pub use error::HarnessError;
pub use registry::Registry;
pub use runner::{run_seed, RunSpec, SeedLine, SeedResult};
pub use scenario::{Finding, RunParams, Scenario, ScenarioFuture, ScenarioReport};
pub use seeds::{SeedRange, Shard};
pub use shrink::{render_story, shrink, story, Shrunk, StoryLine};
pub use sweep::{sweep, SweepItem, SweepPlan, SweepSummary};
pub use verdict::{FailureClass, Verdict};

/// A historical bug from the specs that a scenario can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownBug {
    /// Name used with `--bug`.
    pub name: &'static str,
    /// The scenario that has it.
    pub scenario: &'static str,
    /// The spec it comes from.
    pub spec: &'static str,
    /// One line: the bug and its symptom.
    pub summary: &'static str,
}
