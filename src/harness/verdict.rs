//! Verdicts: the outcome of one seed, reduced to what sweeps, shrinking
//! and the corpus compare.

use serde::{Deserialize, Serialize};

use durasim_sim::RunFailure;

use super::scenario::Finding;

/// How a run broke down without a checker verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Every task blocked forever.
    Deadlock,
    /// Simulated time ran past the limit.
    Hang,
    /// The wall-clock watchdog stopped a busy run.
    Livelock,
    /// Code in the run panicked.
    Panic,
}

impl FailureClass {
    /// Stable name, used where an invariant id would be.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Deadlock => "deadlock",
            FailureClass::Hang => "hang",
            FailureClass::Livelock => "livelock",
            FailureClass::Panic => "panic",
        }
    }
}

/// The verdict of one seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every invariant held.
    Pass,
    /// The checker found violations; the first (earliest) is named.
    Violation {
        /// Its invariant id.
        invariant: String,
        /// Its explanation.
        message: String,
        /// How many violations the checker reported in all.
        count: usize,
    },
    /// The run broke down.
    Failure {
        /// How.
        class: FailureClass,
        /// The message it broke down with.
        message: String,
    },
}

impl Verdict {
    /// Reduce a run's result to a verdict.
    pub fn from_findings(findings: &[Finding]) -> Verdict {
        let first = findings
            .iter()
            .min_by(|a, b| (a.time, &a.invariant).cmp(&(b.time, &b.invariant)));
        match first {
            None => Verdict::Pass,
            Some(f) => Verdict::Violation {
                invariant: f.invariant.clone(),
                message: f.message.clone(),
                count: findings.len(),
            },
        }
    }

    /// The verdict of a run that broke down.
    pub fn from_failure(failure: &RunFailure) -> Verdict {
        let (class, message) = match failure {
            RunFailure::Deadlock(m) => (FailureClass::Deadlock, m),
            RunFailure::TimeLimit(m) => (FailureClass::Hang, m),
            RunFailure::Livelock(m) => (FailureClass::Livelock, m),
            RunFailure::Panic(m) => (FailureClass::Panic, m),
        };
        Verdict::Failure {
            class,
            message: message.clone(),
        }
    }

    /// True when everything held.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// What must stay the same while shrinking and in the corpus: "pass",
    /// the invariant id, or the failure class.
    pub fn key(&self) -> &str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Violation { invariant, .. } => invariant,
            Verdict::Failure { class, .. } => class.name(),
        }
    }

    /// The one-line explanation ("" for a pass).
    pub fn message(&self) -> &str {
        match self {
            Verdict::Pass => "",
            Verdict::Violation { message, .. } | Verdict::Failure { message, .. } => message,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::Violation {
                invariant,
                message,
                count,
            } => {
                write!(f, "{invariant} violated: {message}")?;
                if *count > 1 {
                    write!(f, " (+{} more)", count - 1)?;
                }
                Ok(())
            }
            Verdict::Failure { class, message } => write!(f, "{}: {message}", class.name()),
        }
    }
}
