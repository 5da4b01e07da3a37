//! Shrinking a failing run to a minimal reproduction.
//!
//! The unit of shrinking is the choice tape. Removing a fault is zeroing its
//! entry; every candidate is replayed and kept only if the *same* verdict
//! key (invariant id or failure class) still comes out. After every accepted
//! candidate the tape is re-recorded from the run itself, because removing
//! one fault can shift later decisions of the same site.
//!
//! 1. Delta debugging (ddmin) over the injected faults.
//! 2. A one-at-a-time pass until removing any single remaining fault makes
//!    the failure disappear: the result is verified **1-minimal**.
//! 3. A smaller workload (halving the size while it still fails), then
//!    value streams zeroed (latencies at their minimum), each followed by
//!    the 1-minimal pass again.
//! 4. A last run with the full trace gives the story: the remaining faults
//!    in simulated-time order, what each did, and the violation.

use durasim_sim::trace::EventKind;
use durasim_sim::{FaultRef, Tape, TraceMode};

use super::runner::{run_seed, RunSpec, SeedResult};
use super::scenario::Scenario;
use super::verdict::Verdict;

/// The outcome of shrinking.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The minimal run: seed, profile, size, bugs and shrunk tape.
    pub spec: RunSpec,
    /// Its verdict (same key as the original).
    pub verdict: Verdict,
    /// Faults on the original tape.
    pub faults_before: usize,
    /// Faults on the minimal tape.
    pub faults_after: usize,
    /// Workload size before shrinking.
    pub size_before: u32,
    /// Runs the shrinker made.
    pub runs: u64,
    /// The minimal run's result, with its full trace.
    pub result: SeedResult,
}

/// One line of the minimal story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryLine {
    /// Simulated time.
    pub time: durasim_sim::SimTime,
    /// Process name ("supervisor" for faults drawn outside any process).
    pub process: String,
    /// `site#index` on the tape.
    pub fault: String,
    /// What it did.
    pub detail: String,
}

struct Shrinker<'a> {
    scenario: &'a dyn Scenario,
    key: String,
    runs: u64,
}

impl Shrinker<'_> {
    /// Replay `spec`; `Some(result)` when it fails with the same key.
    fn still_fails(&mut self, spec: &RunSpec) -> Option<SeedResult> {
        self.runs += 1;
        let result = run_seed(self.scenario, spec, None);
        (result.verdict.key() == self.key).then_some(result)
    }

    /// Accept `result` as the new current run: its own tape, exactly.
    fn adopt(spec: &mut RunSpec, result: &SeedResult) {
        spec.tape = Some(result.tape.clone());
    }

    fn tape(spec: &RunSpec) -> Tape {
        spec.tape.clone().unwrap_or_default()
    }

    /// Classic ddmin over the current tape's faults.
    fn ddmin(&mut self, spec: &mut RunSpec) {
        let mut granularity = 2usize;
        loop {
            let faults = Self::tape(spec).faults();
            if faults.len() < 2 {
                return;
            }
            let n = granularity.min(faults.len());
            let chunk = faults.len().div_ceil(n);
            let mut reduced = false;
            for start in (0..faults.len()).step_by(chunk) {
                let removed: Vec<FaultRef> =
                    faults[start..(start + chunk).min(faults.len())].to_vec();
                let mut candidate = spec.clone();
                candidate.tape = Some(Self::tape(spec).without(&removed));
                if let Some(result) = self.still_fails(&candidate) {
                    Self::adopt(spec, &result);
                    granularity = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                if n >= faults.len() {
                    return;
                }
                granularity = (n * 2).min(faults.len());
            }
        }
    }

    /// Remove single faults until none can go: 1-minimal.
    fn one_minimal(&mut self, spec: &mut RunSpec) {
        'restart: loop {
            for fault in Self::tape(spec).faults() {
                let mut candidate = spec.clone();
                candidate.tape = Some(Self::tape(spec).without(std::slice::from_ref(&fault)));
                if let Some(result) = self.still_fails(&candidate) {
                    Self::adopt(spec, &result);
                    continue 'restart;
                }
            }
            return;
        }
    }

    /// Halve the workload while it still fails.
    fn smaller_workload(&mut self, spec: &mut RunSpec) -> bool {
        let mut shrank = false;
        while spec.params.size > 1 {
            let mut candidate = spec.clone();
            candidate.params.size = spec.params.size / 2;
            match self.still_fails(&candidate) {
                Some(result) => {
                    *spec = candidate;
                    Self::adopt(spec, &result);
                    shrank = true;
                }
                None => break,
            }
        }
        shrank
    }

    /// Zero whole value streams (latencies, drawn values) while it still fails.
    fn smaller_values(&mut self, spec: &mut RunSpec) -> bool {
        let tape = Self::tape(spec);
        let value_sites: Vec<String> = tape
            .sites()
            .filter(|(_, kind)| kind.is_none())
            .map(|(name, _)| name.to_string())
            .collect();
        let mut shrank = false;
        for site in value_sites {
            let mut candidate = spec.clone();
            candidate.tape = Some(Self::tape(spec).with_site_zeroed(&site));
            if candidate.tape == spec.tape {
                continue;
            }
            if let Some(result) = self.still_fails(&candidate) {
                Self::adopt(spec, &result);
                shrank = true;
            }
        }
        shrank
    }
}

/// Shrink the failing run `spec` (whose result was `failing`) of `scenario`.
/// Returns `None` when `failing` passed, or when its replay does not fail
/// the same way (a nondeterministic failure cannot be shrunk).
pub fn shrink(scenario: &dyn Scenario, spec: &RunSpec, failing: &SeedResult) -> Option<Shrunk> {
    if failing.verdict.passed() {
        return None;
    }
    let mut shrinker = Shrinker {
        scenario,
        key: failing.verdict.key().to_string(),
        runs: 0,
    };
    let mut current = spec.clone();
    current.trace = TraceMode::DigestOnly;
    current.tape = Some(failing.tape.clone());
    let replayed = shrinker.still_fails(&current)?;
    Shrinker::adopt(&mut current, &replayed);
    let faults_before = failing.tape.fault_count();
    let size_before = spec.params.size;

    shrinker.ddmin(&mut current);
    shrinker.one_minimal(&mut current);
    if shrinker.smaller_workload(&mut current) {
        shrinker.one_minimal(&mut current);
    }
    if shrinker.smaller_values(&mut current) {
        shrinker.one_minimal(&mut current);
    }

    current.trace = TraceMode::Full;
    let result = shrinker.still_fails(&current)?;
    current.tape = Some(result.tape.clone());
    Some(Shrunk {
        verdict: result.verdict.clone(),
        faults_before,
        faults_after: result.tape.fault_count(),
        size_before,
        runs: shrinker.runs,
        spec: current,
        result,
    })
}

impl Shrunk {
    /// The remaining faults in simulated-time order, with what each did.
    pub fn story(&self) -> Vec<StoryLine> {
        story(&self.result)
    }

    /// One line: what was shrunk, from what to what, in how many runs.
    pub fn headline(&self) -> String {
        let spec = &self.spec;
        let bugs = if spec.params.bugs.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = spec.params.bugs.iter().map(String::as_str).collect();
            format!(", bug {}", names.join(","))
        };
        format!(
            "shrunk {} seed {} ({}{bugs}): {} → {} faults, size {} → {}, {} runs",
            spec.scenario,
            spec.seed,
            spec.profile,
            self.faults_before,
            self.faults_after,
            self.size_before,
            spec.params.size,
            self.runs
        )
    }

    /// The minimal story as text: the faults, then the violation.
    pub fn render_story(&self) -> String {
        format!(
            "minimal story (faults in simulated-time order):\n{}",
            render_story(&self.story(), &self.result)
        )
    }
}

/// Story lines as text, one per fault, then the violation (or verdict).
pub fn render_story(lines: &[StoryLine], result: &SeedResult) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&format!(
            "  {:>12.6} s  {:<12} {:<26} {}\n",
            line.time.as_secs_f64(),
            line.process,
            line.fault,
            line.detail
        ));
    }
    match result.findings.first() {
        Some(f) => out.push_str(&format!(
            "  violation: {} at {:.6} s: {}\n",
            f.invariant,
            f.time.as_secs_f64(),
            f.message
        )),
        None => out.push_str(&format!("  verdict: {}\n", result.verdict)),
    }
    out
}

/// The faults of a fully traced run, in simulated-time order.
pub fn story(result: &SeedResult) -> Vec<StoryLine> {
    let Some(events) = &result.events else {
        return Vec::new();
    };
    let mut names: std::collections::BTreeMap<u32, String> = Default::default();
    for e in events {
        if let (EventKind::ProcessStart { name, .. }, Some(p)) = (&e.kind, e.process) {
            names.entry(p).or_insert_with(|| format!("{name}#{p}"));
        }
    }
    let name_of = |p: Option<u32>| match p {
        Some(p) => names
            .get(&p)
            .cloned()
            .unwrap_or_else(|| format!("process#{p}")),
        None => "supervisor".to_string(),
    };
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fault {
                site,
                index,
                detail,
                ..
            } => Some(StoryLine {
                time: e.time,
                process: name_of(e.process),
                fault: format!("{site}#{index}"),
                detail: detail.clone(),
            }),
            _ => None,
        })
        .collect()
}
