//! Replays every entry of the regression corpus (`corpus/<scenario>/*.json`)
//! and fails when a verdict changed. Entries recorded with a known bug on
//! are checked from both sides: the bug is still found with it on, and the
//! same tape passes with it off.

use std::path::Path;

use durasim::harness::corpus;
use durasim::scenarios;

#[test]
fn every_corpus_entry_keeps_its_verdict() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let files = corpus::list(&root).expect("corpus lists");
    assert!(!files.is_empty(), "the corpus holds at least the canary");
    let mut changed = Vec::new();
    for path in &files {
        let entry = corpus::read_entry(path).unwrap_or_else(|e| panic!("{e}"));
        let scenario = scenarios::find(&entry.scenario).unwrap_or_else(|e| panic!("{e}"));
        let outcome = corpus::check_entry(scenario, path, &entry);
        if !outcome.holds() {
            changed.push(format!(
                "{}: expected {}, got {} (without bugs: {:?})",
                path.display(),
                outcome.expected,
                outcome.actual,
                outcome.without_bugs
            ));
        }
    }
    assert!(
        changed.is_empty(),
        "corpus verdicts changed:\n{}",
        changed.join("\n")
    );
}
