//! Errors of the harness: bad input, reported with exit code 2.

use std::path::PathBuf;

/// Bad input or an I/O failure outside a simulation.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No scenario by that name.
    #[error("unknown scenario `{name}` (known: {known})")]
    UnknownScenario {
        /// What was asked for.
        name: String,
        /// The registered names.
        known: String,
    },
    /// No known bug by that name (or not for that scenario).
    #[error("unknown bug `{name}` for scenario `{scenario}` (known: {known})")]
    UnknownBug {
        /// What was asked for.
        name: String,
        /// The scenario it was asked for.
        scenario: String,
        /// The bugs that scenario has.
        known: String,
    },
    /// A malformed seed range.
    #[error(
        "bad seed range `{0}`: expected N (a count), A..B, A..=B or a single seed with --seed"
    )]
    BadSeedRange(String),
    /// A malformed shard.
    #[error("bad shard `{0}`: expected K/N with 1 ≤ K ≤ N")]
    BadShard(String),
    /// A malformed environment override.
    #[error("bad value `{value}` in environment variable {var}: {reason}")]
    BadEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A corpus file that cannot be used.
    #[error("corpus file {path}: {problem}")]
    Corpus {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the field when one is).
        problem: String,
    },
    /// Refusing to overwrite an existing corpus entry.
    #[error("corpus entry {0} already exists: pick another --name or remove it first")]
    CorpusCollision(PathBuf),
    /// Any other bad input.
    #[error("{0}")]
    Invalid(String),
    /// An I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl HarnessError {
    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}
