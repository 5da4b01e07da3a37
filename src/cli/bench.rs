//! `durasim bench`: seeds/s per scenario on one thread and on all threads,
//! simulated seconds per wall second, events/s, the memory a sweep keeps,
//! and how long shrinking each catalogue bug takes.

use std::time::{Duration, Instant};

use durasim_sim::Profile;

use super::Outcome;
use crate::harness::{
    run_seed, shrink, sweep, HarnessError, Registry, RunParams, RunSpec, SweepPlan,
};

pub fn bench(
    registry: &Registry,
    seeds: u64,
    only: Option<&str>,
    shrink_bugs: bool,
) -> Result<Outcome, HarnessError> {
    let targets = match only {
        Some(name) => vec![registry.find(name)?],
        None => registry.all().to_vec(),
    };
    let cores = crate::default_jobs();
    // Columns as wide as the longest name, so user scenarios line up too.
    let name_width = targets
        .iter()
        .map(|s| s.name().len())
        .max()
        .unwrap_or(0)
        .max(8);
    println!("durasim bench: {seeds} seeds per row, profile chaos, default sizes, {cores} core(s)");
    println!(
        "{:<name_width$} {:>7} {:>10} {:>12} {:>14} {:>12} {:>8} {:>10}",
        "scenario",
        "threads",
        "seeds/s",
        "seeds/s/core",
        "sim s/wall s",
        "events/s",
        "ops/seed",
        "peak MiB"
    );
    for scenario in targets {
        let mut single = 0.0;
        for jobs in [1, cores] {
            let plan = SweepPlan {
                scenario,
                seeds: (0..seeds).collect(),
                profile: Profile::Chaos,
                params: RunParams {
                    size: scenario.default_size(),
                    bugs: Default::default(),
                },
                jobs,
                watchdog: Duration::from_secs(60),
            };
            reset_peak_memory();
            let (_, s) = sweep(&plan, &|_| {});
            // The row's peak resident memory: a sweep that kept something
            // per seed (a leaked run, a stored result) grows with the seeds.
            let peak = peak_resident_mib().map_or("n/a".to_string(), |mib| format!("{mib:.1}"));
            let wall = s.wall_secs.max(1e-9);
            let rate = s.seeds as f64 / wall;
            if jobs == 1 {
                single = rate;
            }
            println!(
                "{:<name_width$} {:>7} {:>10.0} {:>12.0} {:>14.0} {:>12.0} {:>8.0} {:>10}{}",
                scenario.name(),
                jobs,
                rate,
                rate / jobs as f64,
                s.sim_nanos as f64 / 1e9 / wall,
                s.events as f64 / wall,
                s.operations as f64 / s.seeds.max(1) as f64,
                peak,
                if jobs > 1 && single > 0.0 {
                    format!("   scaling {:.2}x", rate / single)
                } else {
                    String::new()
                }
            );
            if cores == 1 {
                break;
            }
        }
    }
    if shrink_bugs {
        let bug_width = registry
            .bugs()
            .iter()
            .map(|b| b.name.len())
            .max()
            .unwrap_or(0)
            .max(3);
        println!();
        println!(
            "{:<bug_width$} {:>12} {:>8} {:>8} {:>10}",
            "bug", "first seed", "faults", "shrunk", "shrink s"
        );
        for bug in registry.bugs() {
            if only.is_some_and(|o| o != bug.scenario) {
                continue;
            }
            let scenario = registry.find(bug.scenario)?;
            let found = (0..200u64).find_map(|seed| {
                let mut spec = RunSpec::new(scenario, seed, Profile::Swarm);
                spec.params.bugs.insert(bug.name.to_string());
                let result = run_seed(scenario, &spec, None);
                (!result.verdict.passed()).then_some((spec, result))
            });
            let Some((spec, result)) = found else {
                println!("{:<bug_width$} {:>12}", bug.name, "not found");
                continue;
            };
            // Wall-clock timing of shrinking, outside every run.
            #[allow(clippy::disallowed_methods)]
            let started = Instant::now();
            let shrunk = shrink(scenario, &spec, &result);
            let secs = started.elapsed().as_secs_f64();
            match shrunk {
                Some(s) => println!(
                    "{:<bug_width$} {:>12} {:>8} {:>8} {:>10.2}",
                    bug.name, spec.seed, s.faults_before, s.faults_after, secs
                ),
                None => println!(
                    "{:<bug_width$} {:>12} {:>8} {:>8}",
                    bug.name, spec.seed, "?", "nondet."
                ),
            }
        }
    }
    Ok(Outcome::Held)
}

/// Start a new peak: the kernel resets the peak resident size to the
/// current one (Linux; elsewhere the peak stays the process's).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, from
/// `/proc/self/status` (Linux); `None` where that does not exist.
fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
