//! `durasim corpus list|add|check`.

use std::path::Path;

use super::commands::spec_for;
use super::{CorpusAction, Outcome, RunArgs};
use crate::harness::corpus::{self, CorpusEntry};
use crate::harness::{run_seed, shrink, HarnessError, Registry};

pub fn dispatch(registry: &Registry, action: CorpusAction) -> Result<Outcome, HarnessError> {
    match action {
        CorpusAction::List { corpus } => list(&corpus),
        CorpusAction::Add {
            run,
            seed,
            name,
            description,
            force,
            corpus,
        } => add(registry, &run, seed, &name, &description, force, &corpus),
        CorpusAction::Check {
            corpus,
            update_digests,
        } => check(registry, &corpus, update_digests),
    }
}

fn list(root: &Path) -> Result<Outcome, HarnessError> {
    let files = corpus::list(root)?;
    if files.is_empty() {
        println!("no corpus entries under {}", root.display());
    }
    for path in files {
        let entry = corpus::read_entry(&path)?;
        let bugs: Vec<&str> = entry.bugs.iter().map(String::as_str).collect();
        println!(
            "{}  expect {}  seed {}  {}  faults {}  bugs [{}]\n    {}",
            path.display(),
            entry.expected,
            entry.seed,
            entry.profile,
            entry.tape.fault_count(),
            bugs.join(","),
            entry.description
        );
    }
    Ok(Outcome::Held)
}

fn add(
    registry: &Registry,
    args: &RunArgs,
    seed: u64,
    name: &str,
    description: &str,
    force: bool,
    root: &Path,
) -> Result<Outcome, HarnessError> {
    let (scenario, spec) = spec_for(registry, args, seed)?;
    let path = corpus::entry_path(root, scenario.name(), name)?;
    if path.exists() && !force {
        return Err(HarnessError::CorpusCollision(path));
    }
    let result = run_seed(scenario, &spec, None);
    let entry = if result.verdict.passed() {
        let mut recorded = spec.clone();
        recorded.tape = Some(result.tape.clone());
        CorpusEntry::from_run(&recorded, "pass", result.digest, description)
    } else {
        let shrunk = shrink(scenario, &spec, &result).ok_or_else(|| {
            HarnessError::Invalid(format!("seed {seed} does not fail the same way twice"))
        })?;
        println!(
            "shrunk: {} → {} faults, size {} → {}",
            shrunk.faults_before, shrunk.faults_after, shrunk.size_before, shrunk.spec.params.size
        );
        CorpusEntry::from_run(
            &shrunk.spec,
            shrunk.verdict.key(),
            shrunk.result.digest,
            description,
        )
    };
    corpus::write_entry(&path, &entry, force)?;
    println!("saved {} (expect {})", path.display(), entry.expected);
    Ok(Outcome::Held)
}

fn check(registry: &Registry, root: &Path, update_digests: bool) -> Result<Outcome, HarnessError> {
    let files = corpus::list(root)?;
    let mut changed = 0;
    for path in &files {
        let entry = corpus::read_entry(path)?;
        let scenario = registry.find(&entry.scenario)?;
        let outcome = corpus::check_entry(scenario, path, &entry);
        let status = if outcome.holds() { "ok" } else { "CHANGED" };
        let fixed = outcome
            .without_bugs
            .as_deref()
            .map(|v| format!(", without bugs {v}"))
            .unwrap_or_default();
        let repin = update_digests && outcome.digest_drift && outcome.holds();
        if repin {
            let updated = CorpusEntry {
                digest: outcome.digest,
                ..entry
            };
            corpus::write_entry(path, &updated, true)?;
        }
        let drift = match (outcome.digest_drift, repin) {
            (true, true) => " (digest drifted, re-pinned)",
            (true, false) => " (digest drifted)",
            (false, _) => "",
        };
        println!(
            "{status:<8} {}: expected {}, got {}{fixed}{drift}",
            path.display(),
            outcome.expected,
            outcome.actual
        );
        if !outcome.holds() {
            changed += 1;
        }
    }
    println!("{} entries, {changed} changed", files.len());
    Ok(if changed == 0 {
        Outcome::Held
    } else {
        Outcome::Violation
    })
}
