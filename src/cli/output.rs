//! Printing and files for the CLI: stories, traces, progress.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use durasim_sim::TraceEvent;
use indicatif::{ProgressBar, ProgressStyle};

use crate::harness::{HarnessError, Shrunk, SweepItem};

/// Write `events` as a JSON array to `path`.
pub fn write_trace(path: &Path, events: &[TraceEvent]) -> Result<(), HarnessError> {
    let text = serde_json::to_string_pretty(events)
        .map_err(|e| HarnessError::Invalid(format!("cannot encode trace: {e}")))?;
    std::fs::write(path, text)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

/// Read a tape (JSON) from `path`.
pub fn read_tape(path: &Path) -> Result<durasim_sim::Tape, HarnessError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::io(format!("reading tape {}", path.display()), e))?;
    serde_json::from_str(&text)
        .map_err(|e| HarnessError::Invalid(format!("tape {}: malformed: {e}", path.display())))
}

/// The shrink report printed by `durasim shrink`: the deterministic story
/// plus how long shrinking took.
pub fn shrink_text(shrunk: &Shrunk, wall_secs: f64) -> String {
    format!(
        "{} in {wall_secs:.2} s\n{}",
        shrunk.headline(),
        shrunk.render_story()
    )
}

/// Progress for sweeps: a bar on a terminal, a plain line every 10%
/// otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
}

impl Progress {
    /// Progress over `total` seeds of `label`.
    pub fn new(total: u64, label: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>16} [{bar:40}] {pos}/{len} seeds {per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.to_string());
            bar
        });
        if bar.is_none() {
            eprintln!("sweeping {label}: {total} seeds");
        }
        Progress {
            bar,
            total,
            done: AtomicU64::new(0),
        }
    }

    /// One seed finished.
    pub fn tick(&self, item: &SweepItem) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                if !item.result.verdict.passed() {
                    bar.println(format!(
                        "  seed {}: {}",
                        item.spec.seed, item.result.verdict
                    ));
                }
            }
            None => {
                if !item.result.verdict.passed() {
                    eprintln!("  seed {}: {}", item.spec.seed, item.result.verdict);
                }
                let step = (self.total / 10).max(1);
                if done % step == 0 || done == self.total {
                    eprintln!("  {done}/{} seeds", self.total);
                }
            }
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
