//! `scenarios`, `bugs`, `run`, `sweep`, `shrink`, `replay`.

use std::path::Path;
use std::time::{Duration, Instant};

use durasim_sim::TraceMode;

use super::output::{read_tape, shrink_text, write_trace, Progress};
use super::{Outcome, RunArgs, SweepArgs};
use crate::harness::corpus::{self, CorpusEntry};
use crate::harness::{
    render_story, run_seed, shrink, story, sweep as run_sweep, HarnessError, Registry, RunParams,
    RunSpec, Scenario, SeedRange, Shard, SweepPlan, SweepSummary,
};

pub fn scenarios(registry: &Registry) -> Result<Outcome, HarnessError> {
    let spec_width = registry
        .all()
        .iter()
        .map(|s| s.spec().len())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:<18} {:<spec_width$} {:>6}  summary",
        "scenario", "spec", "size"
    );
    for s in registry.all() {
        println!(
            "{:<18} {:<spec_width$} {:>6}  {}",
            s.name(),
            s.spec(),
            s.default_size(),
            s.summary()
        );
    }
    Ok(Outcome::Held)
}

pub fn bugs(registry: &Registry) -> Result<Outcome, HarnessError> {
    println!("{:<34} {:<18} {:<5} summary", "bug", "scenario", "spec");
    for b in registry.bugs() {
        println!(
            "{:<34} {:<18} {:<5} {}",
            b.name, b.scenario, b.spec, b.summary
        );
    }
    Ok(Outcome::Held)
}

/// Resolve and validate the scenario, bugs and size of `args`.
pub fn spec_for(
    registry: &Registry,
    args: &RunArgs,
    seed: u64,
) -> Result<(&'static dyn Scenario, RunSpec), HarnessError> {
    let scenario = registry.find(&args.scenario)?;
    for bug in &args.bugs {
        registry.check_bug(scenario.name(), bug)?;
    }
    let mut spec = RunSpec::new(scenario, seed, args.profile);
    spec.params = RunParams {
        size: args.size.unwrap_or_else(|| scenario.default_size()),
        bugs: args.bugs.iter().cloned().collect(),
    };
    if spec.params.size == 0 {
        return Err(HarnessError::Invalid("--size must be at least 1".into()));
    }
    Ok((scenario, spec))
}

fn verdict_outcome(passed: bool) -> Outcome {
    if passed {
        Outcome::Held
    } else {
        Outcome::Violation
    }
}

pub fn run(
    registry: &Registry,
    args: &RunArgs,
    seed: u64,
    tape: Option<&Path>,
    trace: Option<&Path>,
    check_determinism: bool,
) -> Result<Outcome, HarnessError> {
    let (scenario, mut spec) = spec_for(registry, args, seed)?;
    if let Some(path) = tape {
        spec.tape = Some(read_tape(path)?);
    }
    spec.trace = TraceMode::Full;
    println!(
        "{} seed {} profile {}: faults {}",
        spec.scenario,
        seed,
        spec.profile,
        spec.faults.summary()
    );
    let result = run_seed(scenario, &spec, None);
    println!("verdict: {}", result.verdict);
    for finding in result.findings.iter().skip(1) {
        println!("  also: {finding}");
    }
    println!(
        "digest {}  faults {}  events {}  simulated {:.3} s",
        result.digest,
        result.stats.faults(),
        result.stats.events,
        result.stats.sim_nanos as f64 / 1e9
    );
    if !result.verdict.passed() {
        println!("faults injected, in simulated-time order:");
        print!("{}", render_story(&story(&result), &result));
        println!("shrink: {}", spec.command("shrink"));
    }
    if let (Some(path), Some(events)) = (trace, &result.events) {
        write_trace(path, events)?;
        println!("trace written to {}", path.display());
    }
    if check_determinism {
        let again = run_seed(scenario, &spec, None);
        if again.digest != result.digest {
            println!(
                "NONDETERMINISTIC: digest {} then {}",
                result.digest, again.digest
            );
            return Ok(Outcome::Violation);
        }
        println!("deterministic: both runs gave digest {}", result.digest);
    }
    Ok(verdict_outcome(result.verdict.passed()))
}

pub fn sweep(registry: &Registry, args: &SweepArgs) -> Result<Outcome, HarnessError> {
    let range: SeedRange = args.seeds.parse()?;
    let shard: Shard = match &args.shard {
        Some(s) => s.parse()?,
        None => Shard::ALL,
    };
    let targets = if args.scenario == "all" {
        if !args.bugs.is_empty() {
            return Err(HarnessError::Invalid(
                "--bug needs a single --scenario".into(),
            ));
        }
        registry.defaults()
    } else {
        vec![registry.find(&args.scenario)?]
    };
    for bug in &args.bugs {
        registry.check_bug(&args.scenario, bug)?;
    }
    if args.size == Some(0) {
        return Err(HarnessError::Invalid("--size must be at least 1".into()));
    }
    let seeds: Vec<u64> = shard.seeds(&range).collect();
    let jobs = args.jobs.unwrap_or_else(crate::default_jobs).max(1);
    let mut total = SweepSummary::default();
    for scenario in targets {
        let plan = SweepPlan {
            scenario,
            seeds: seeds.clone(),
            profile: args.profile,
            params: RunParams {
                size: args.size.unwrap_or_else(|| scenario.default_size()),
                bugs: args.bugs.iter().cloned().collect(),
            },
            jobs,
            watchdog: Duration::from_secs(args.watchdog_secs.max(1)),
        };
        let progress = Progress::new(seeds.len() as u64, scenario.name());
        let json = args.json;
        let (_, summary) = run_sweep(&plan, &|item| {
            progress.tick(item);
            if json {
                if let Ok(line) = serde_json::to_string(&item.result.line(&item.spec)) {
                    println!("{line}");
                }
            }
        });
        progress.finish();
        let title = format!(
            "{} — profile {}, seeds {}..{}{}, {jobs} thread(s)",
            scenario.name(),
            args.profile,
            range.0.start,
            range.0.end,
            if shard == Shard::ALL {
                String::new()
            } else {
                format!(", shard {}/{}", shard.index, shard.count)
            }
        );
        emit_table(&summary.table(&title), json);
        total.merge(&summary);
    }
    if total.failed() > 0 || total.nondeterministic > 0 {
        Ok(Outcome::Violation)
    } else {
        Ok(Outcome::Held)
    }
}

/// With `--json`, stdout carries only JSON lines: the table goes to stderr.
fn emit_table(table: &str, json: bool) {
    if json {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
}

pub fn shrink_cmd(
    registry: &Registry,
    args: &RunArgs,
    seed: u64,
    trace: Option<&Path>,
    save: Option<&str>,
    description: Option<&str>,
    corpus_root: &Path,
) -> Result<Outcome, HarnessError> {
    let (scenario, spec) = spec_for(registry, args, seed)?;
    // Validate the entry name before spending time shrinking.
    let save_path = save
        .map(|name| corpus::entry_path(corpus_root, scenario.name(), name))
        .transpose()?;
    if let Some(path) = &save_path {
        if path.exists() {
            return Err(HarnessError::CorpusCollision(path.clone()));
        }
    }
    let failing = run_seed(scenario, &spec, None);
    if failing.verdict.passed() {
        println!(
            "{} seed {} passes under {}: nothing to shrink",
            spec.scenario, seed, spec.profile
        );
        return Ok(Outcome::Held);
    }
    // Shrinking time is a wall-clock figure taken outside every run.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let shrunk = shrink(scenario, &spec, &failing).ok_or_else(|| {
        HarnessError::Invalid(format!(
            "seed {seed} failed ({}) but its replay did not fail the same way: nondeterminism",
            failing.verdict
        ))
    })?;
    print!("{}", shrink_text(&shrunk, started.elapsed().as_secs_f64()));
    if let (Some(path), Some(events)) = (trace, &shrunk.result.events) {
        write_trace(path, events)?;
        println!("trace of the minimal run written to {}", path.display());
    }
    if let Some(path) = save_path {
        let description = description.unwrap_or("shrunk failure; describe bug, symptom and fix");
        let entry = CorpusEntry::from_run(
            &shrunk.spec,
            shrunk.verdict.key(),
            shrunk.result.digest,
            description,
        );
        corpus::write_entry(&path, &entry, false)?;
        println!("saved {}", path.display());
    }
    Ok(Outcome::Violation)
}

pub fn replay(
    registry: &Registry,
    file: &Path,
    trace: Option<&Path>,
) -> Result<Outcome, HarnessError> {
    let entry = corpus::read_entry(file)?;
    let scenario = registry.find(&entry.scenario)?;
    let mut spec = entry.spec();
    spec.trace = TraceMode::Full;
    let result = run_seed(scenario, &spec, None);
    println!("{}: {}", file.display(), entry.description);
    println!("expected {}, got {}", entry.expected, result.verdict);
    print!("{}", render_story(&story(&result), &result));
    if result.digest != entry.digest {
        println!(
            "note: trace digest {} differs from recorded {}",
            result.digest, entry.digest
        );
    }
    if let (Some(path), Some(events)) = (trace, &result.events) {
        write_trace(path, events)?;
    }
    Ok(verdict_outcome(result.verdict.key() == entry.expected))
}
