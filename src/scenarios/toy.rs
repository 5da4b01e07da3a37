//! `toy-log`: the world's self-test workload as a scenario — a durable-log
//! server and two clients, checked for acknowledged-record durability (D1)
//! and for clients finishing once faults heal (L1). Its canary bug
//! `toy-ack-before-fsync` proves the harness can fail.

use std::time::Duration;

use durasim_sim::selftest::{toy_disk, toy_workload};
use durasim_sim::{DiskConfig, Sim};

use crate::harness::{Finding, RunParams, Scenario, ScenarioFuture, ScenarioReport};

/// The toy-log scenario.
pub struct ToyLog;

/// Canary: the server acknowledges a record before it is synced.
pub const ACK_BEFORE_FSYNC: &str = "toy-ack-before-fsync";

impl Scenario for ToyLog {
    fn name(&self) -> &'static str {
        "toy-log"
    }

    fn summary(&self) -> &'static str {
        "self-test: durable log server + 2 retrying clients; D1 acked records survive, L1 clients finish"
    }

    fn spec(&self) -> &'static str {
        "07"
    }

    fn default_size(&self) -> u32 {
        30
    }

    fn disk(&self) -> DiskConfig {
        toy_disk()
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(120)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        Box::pin(async move {
            let bug = params.bug(ACK_BEFORE_FSYNC);
            let report = toy_workload(sim.clone(), 2, u64::from(params.size), 1000, bug).await;
            let now = sim.now();
            let mut findings = Vec::new();
            if report.lost > 0 {
                let missing: Vec<String> = report
                    .acked
                    .difference(&report.recovered)
                    .take(3)
                    .map(|(c, s)| format!("client {c} seq {s}"))
                    .collect();
                findings.push(Finding {
                    invariant: "D1".into(),
                    time: now,
                    ops: Vec::new(),
                    message: format!(
                        "{} acknowledged record(s) missing after the final crash and recovery (e.g. {})",
                        report.lost,
                        missing.join(", ")
                    ),
                });
            }
            if !report.clients_done {
                findings.push(Finding {
                    invariant: "L1".into(),
                    time: now,
                    ops: Vec::new(),
                    message: "clients did not finish within 10 s after faults healed".into(),
                });
            }
            ScenarioReport {
                findings,
                operations: report.acked.len() as u64,
            }
        })
    }
}
