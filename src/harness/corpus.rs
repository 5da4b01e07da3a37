//! The regression corpus: one small JSON file per shrunk failure, at
//! `corpus/<scenario>/<name>.json`, replayed by `cargo test`.
//!
//! An entry keeps everything that determines its run (scenario, seed,
//! profile and its resolved faults, size, bugs, shrunk tape), the verdict
//! it must keep giving, the trace digest it had, and one line saying what
//! bug it pins, its symptom and its fix. Entries recorded with a known bug
//! on are checked from both sides: with the bug the verdict must still be
//! the recorded one, and without it the same tape must pass.
//!
//! Writes are atomic (temp file + rename) and never replace an existing
//! entry unless asked to; a malformed entry is an error naming the file and
//! the field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use durasim_sim::{FaultConfig, Profile, Tape, TraceDigest, TraceMode};
use serde::{Deserialize, Serialize};

use super::error::HarnessError;
use super::runner::{run_seed, RunSpec};
use super::scenario::{RunParams, Scenario};

/// The corpus file format version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// One corpus entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusEntry {
    /// File format version.
    pub schema: u32,
    /// Scenario name.
    pub scenario: String,
    /// One line: the bug, its symptom, its fix.
    pub description: String,
    /// The seed.
    pub seed: u64,
    /// The profile the run was found under.
    pub profile: Profile,
    /// The resolved fault configuration (exact, whatever the profile's
    /// defaults become later).
    pub faults: FaultConfig,
    /// Workload size.
    pub size: u32,
    /// Known bugs switched on.
    #[serde(default)]
    pub bugs: BTreeSet<String>,
    /// The shrunk tape.
    pub tape: Tape,
    /// Expected verdict key: "pass", an invariant id, or a failure class.
    pub expected: String,
    /// The trace digest when recorded (drift is reported, not failed: a
    /// change of trace format changes digests without changing verdicts).
    pub digest: TraceDigest,
}

impl CorpusEntry {
    /// The run this entry describes.
    pub fn spec(&self) -> RunSpec {
        RunSpec {
            scenario: self.scenario.clone(),
            seed: self.seed,
            profile: self.profile,
            faults: self.faults.clone(),
            params: RunParams {
                size: self.size,
                bugs: self.bugs.clone(),
            },
            tape: Some(self.tape.clone()),
            trace: TraceMode::DigestOnly,
        }
    }

    /// An entry recording `spec`'s run, which gave `expected` and `digest`.
    pub fn from_run(
        spec: &RunSpec,
        expected: &str,
        digest: TraceDigest,
        description: &str,
    ) -> Self {
        CorpusEntry {
            schema: SCHEMA_VERSION,
            scenario: spec.scenario.clone(),
            description: description.to_string(),
            seed: spec.seed,
            profile: spec.profile,
            faults: spec.faults.clone(),
            size: spec.params.size,
            bugs: spec.params.bugs.clone(),
            tape: spec.tape.clone().unwrap_or_default(),
            expected: expected.to_string(),
            digest,
        }
    }
}

/// Path of entry `name` of `scenario` under `root`.
pub fn entry_path(root: &Path, scenario: &str, name: &str) -> Result<PathBuf, HarnessError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid(name) {
        return Err(HarnessError::Invalid(format!(
            "corpus entry name `{name}` must be non-empty and use only letters, digits, '-' and '_'"
        )));
    }
    Ok(root.join(scenario).join(format!("{name}.json")))
}

/// Read and validate one entry.
pub fn read_entry(path: &Path) -> Result<CorpusEntry, HarnessError> {
    let bad = |problem: String| HarnessError::Corpus {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let entry: CorpusEntry =
        serde_json::from_str(&text).map_err(|e| bad(format!("malformed: {e}")))?;
    if entry.schema != SCHEMA_VERSION {
        return Err(bad(format!(
            "field `schema`: version {} is not supported (this build reads {SCHEMA_VERSION})",
            entry.schema
        )));
    }
    entry
        .faults
        .validate()
        .map_err(|e| bad(format!("field `faults`: {e}")))?;
    if entry.size == 0 {
        return Err(bad("field `size`: must be at least 1".into()));
    }
    Ok(entry)
}

/// Every entry file under `root`, sorted (`corpus/<scenario>/<name>.json`).
pub fn list(root: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let mut files = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Ok(files); // no corpus yet
    };
    for dir in dirs {
        let dir = dir.map_err(|e| HarnessError::io(format!("listing {}", root.display()), e))?;
        if !dir.path().is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(dir.path())
            .map_err(|e| HarnessError::io(format!("listing {}", dir.path().display()), e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| HarnessError::io(format!("listing {}", dir.path().display()), e))?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Write `entry` at `path` atomically. Refuses to replace an existing file
/// unless `overwrite`.
pub fn write_entry(path: &Path, entry: &CorpusEntry, overwrite: bool) -> Result<(), HarnessError> {
    if path.exists() && !overwrite {
        return Err(HarnessError::CorpusCollision(path.to_path_buf()));
    }
    let dir = path
        .parent()
        .ok_or_else(|| HarnessError::Invalid(format!("no directory in {}", path.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
    let mut text = serde_json::to_string_pretty(entry)
        .map_err(|e| HarnessError::Invalid(format!("cannot encode entry: {e}")))?;
    text.push('\n');
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)
        .map_err(|e| HarnessError::io(format!("writing {}", tmp.display()), e))?;
    // A collision between the check and the rename (another writer) must not
    // clobber either: hard-link instead of renaming when not overwriting.
    let placed = if overwrite {
        std::fs::rename(&tmp, path)
    } else {
        std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
    };
    placed.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            HarnessError::CorpusCollision(path.to_path_buf())
        } else {
            HarnessError::io(format!("placing {}", path.display()), e)
        }
    })
}

/// The outcome of replaying one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// The entry's file.
    pub path: PathBuf,
    /// Recorded verdict key.
    pub expected: String,
    /// Verdict key now.
    pub actual: String,
    /// With bugs switched off: the verdict key now (entries with bugs only).
    pub without_bugs: Option<String>,
    /// Whether the digest differs from the recorded one.
    pub digest_drift: bool,
    /// The digest the replay gave.
    pub digest: TraceDigest,
}

impl EntryCheck {
    /// True when the verdict is unchanged and, for bug entries, the fixed
    /// side passes.
    pub fn holds(&self) -> bool {
        self.actual == self.expected && self.without_bugs.as_deref().is_none_or(|v| v == "pass")
    }
}

/// Replay `entry` (read from `path`) on `scenario`.
pub fn check_entry(scenario: &dyn Scenario, path: &Path, entry: &CorpusEntry) -> EntryCheck {
    let spec = entry.spec();
    let result = run_seed(scenario, &spec, None);
    let without_bugs = (!entry.bugs.is_empty()).then(|| {
        let mut fixed = spec.clone();
        fixed.params.bugs.clear();
        run_seed(scenario, &fixed, None).verdict.key().to_string()
    });
    EntryCheck {
        path: path.to_path_buf(),
        expected: entry.expected.clone(),
        actual: result.verdict.key().to_string(),
        without_bugs,
        digest_drift: result.digest != entry.digest,
        digest: result.digest,
    }
}

#[cfg(test)]
mod tests {
    use durasim_sim::FaultConfig;

    /// A corpus entry must replay the very run it recorded, so every fault
    /// rate must come back from JSON bit for bit (serde_json's default
    /// float parser may be one ulp off; durasim enables `float_roundtrip`).
    #[test]
    fn fault_configs_round_trip_through_json_exactly() {
        for seed in 0..2000 {
            let config = FaultConfig::swarm(seed);
            let text = serde_json::to_string_pretty(&config).expect("serialises");
            let back: FaultConfig = serde_json::from_str(&text).expect("parses");
            assert_eq!(back, config, "seed {seed}: {text}");
        }
    }
}
