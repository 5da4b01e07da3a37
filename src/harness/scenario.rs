//! The scenario trait: how the harness sees a system under test.
//!
//! A scenario builds its world (processes, network, disks), runs its
//! workload through the phases, hands what happened to its checker, and
//! returns the findings. The harness runs scenarios by seed and never looks
//! inside them; it only reads [`ScenarioReport`]s.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use durasim_sim::{DiskConfig, Sim, SimTime};
use serde::{Deserialize, Serialize};

/// One broken invariant, as a checker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable invariant id ("D1", "L1", or a scenario's own).
    pub invariant: String,
    /// Simulated time of the violation.
    pub time: SimTime,
    /// Operation ids involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<u64>,
    /// One-line human explanation.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.invariant, self.time, self.message)
    }
}

/// What a scenario run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioReport {
    /// Every violation the checker found (empty: everything held).
    pub findings: Vec<Finding>,
    /// Operations the workload performed (for throughput figures).
    pub operations: u64,
}

/// Knobs of one scenario run besides the seed and the faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunParams {
    /// Workload size (operations, commits, … as the scenario defines).
    pub size: u32,
    /// Known bugs switched on (names from the catalogue).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub bugs: BTreeSet<String>,
}

impl RunParams {
    /// True when known bug `name` is switched on for this run.
    pub fn bug(&self, name: &str) -> bool {
        self.bugs.contains(name)
    }
}

/// The future a scenario returns.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = ScenarioReport> + 'a>>;

/// A system under test plus its workload and checker.
pub trait Scenario: Send + Sync {
    /// Name used on the command line and in corpus paths.
    fn name(&self) -> &'static str;

    /// One line: what runs and what is checked.
    fn summary(&self) -> &'static str;

    /// The spec the scenario implements (e.g. "01, 02, 03").
    fn spec(&self) -> &'static str {
        "-"
    }

    /// Workload size used when none is given.
    fn default_size(&self) -> u32 {
        100
    }

    /// Disk geometry and latencies of the scenario's machines.
    fn disk(&self) -> DiskConfig {
        DiskConfig::default()
    }

    /// Simulated-time limit of one run.
    fn time_limit(&self) -> Duration {
        Duration::from_secs(600)
    }

    /// Run one simulation: build the world on `sim`, drive the workload
    /// through the phases, check, and report.
    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a>;
}
