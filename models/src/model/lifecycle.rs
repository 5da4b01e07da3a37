//! Spec 06: installed items kept in three durable parts that must agree —
//! a catalog (rows: name, version, indexed), a lockfile (entries: name,
//! version, files) and a file tree.
//!
//! [`LifecycleModel`] is the sequential reference: install, remove,
//! update-all and reconcile applied one at a time, each leaving the three
//! parts in agreement (install may stop at the documented transient:
//! files and lockfile written, catalog row rolled back). [`breaches`]
//! judges a state read back from disk against spec 06's invariants 1, 4
//! and 5; [`outcome_breach`] judges an actor's reported outcome against
//! invariants 2 and 3. [`reference_history`] runs the model as a
//! trivially correct system and records its history.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{
    CatalogRow, EventKind, History, LifecycleOp, LifecycleOutcome, LifecycleState, LockfileEntry,
    LockfileView, SimTime,
};
use crate::reference::SplitMix64;

/// One way a read-back state breaks spec 06's invariants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Breach {
    /// Invariant 1, catalog → lockfile: an indexed row no entry matches by
    /// name and version (never tolerated).
    CatalogRowUnmatched {
        /// The row's item.
        name: String,
        /// The row's version.
        version: u32,
    },
    /// Invariant 1, lockfile → catalog: an entry no indexed row matches.
    LockfileEntryUnmatched {
        /// The entry's item.
        name: String,
        /// The entry's version.
        version: u32,
    },
    /// Invariant 1: an item indexed twice in the catalog or listed twice
    /// in the lockfile (a bijection has one of each).
    Duplicate {
        /// `"catalog"` or `"lockfile"`.
        part: &'static str,
        /// The item.
        name: String,
    },
    /// Invariant 4: the lockfile is not well-formed.
    MalformedLockfile {
        /// The parser's complaint.
        error: String,
    },
    /// Invariant 5: a file no lockfile entry references.
    Orphan {
        /// The file.
        path: String,
    },
}

impl Breach {
    /// The spec 06 invariant number (1–5) it breaks.
    pub fn invariant(&self) -> u8 {
        match self {
            Breach::CatalogRowUnmatched { .. }
            | Breach::LockfileEntryUnmatched { .. }
            | Breach::Duplicate { .. } => 1,
            Breach::MalformedLockfile { .. } => 4,
            Breach::Orphan { .. } => 5,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Breach::CatalogRowUnmatched { name, version } => format!(
                "catalog row {name}@{version} has no lockfile entry with that name and version"
            ),
            Breach::LockfileEntryUnmatched { name, version } => format!(
                "lockfile entry {name}@{version} has no indexed catalog row with that name and version"
            ),
            Breach::Duplicate { part, name } => format!("{part} lists item {name} more than once"),
            Breach::MalformedLockfile { error } => {
                format!("the lockfile is not well-formed JSON: {error}")
            }
            Breach::Orphan { path } => {
                format!("file {path} is referenced by no lockfile entry (orphan)")
            }
        }
    }
}

/// Judge a read-back state against invariants 1, 4 and 5. With
/// `tolerate_partial` the lockfile → catalog direction of invariant 1 is
/// skipped (the documented transient); nothing else is ever skipped. A
/// malformed lockfile also makes invariants 1 and 5 unjudgeable: only the
/// malformation is reported.
pub fn breaches(state: &LifecycleState, tolerate_partial: bool) -> Vec<Breach> {
    let entries = match &state.lockfile {
        LockfileView::Entries(entries) => entries,
        LockfileView::Malformed { error } => {
            return vec![Breach::MalformedLockfile {
                error: error.clone(),
            }]
        }
    };
    let mut found = Vec::new();
    let mut rows: BTreeSet<(&str, u32)> = BTreeSet::new();
    let mut row_names: BTreeSet<&str> = BTreeSet::new();
    for row in state.catalog.iter().filter(|row| row.indexed) {
        if !row_names.insert(&row.name) {
            found.push(Breach::Duplicate {
                part: "catalog",
                name: row.name.clone(),
            });
        }
        rows.insert((&row.name, row.version));
    }
    let mut listed: BTreeSet<(&str, u32)> = BTreeSet::new();
    let mut entry_names: BTreeSet<&str> = BTreeSet::new();
    let mut referenced: BTreeSet<&str> = BTreeSet::new();
    for entry in entries {
        if !entry_names.insert(&entry.name) {
            found.push(Breach::Duplicate {
                part: "lockfile",
                name: entry.name.clone(),
            });
        }
        listed.insert((&entry.name, entry.version));
        referenced.extend(entry.files.iter().map(String::as_str));
    }
    for &(name, version) in rows.difference(&listed) {
        found.push(Breach::CatalogRowUnmatched {
            name: name.to_string(),
            version,
        });
    }
    if !tolerate_partial {
        for &(name, version) in listed.difference(&rows) {
            found.push(Breach::LockfileEntryUnmatched {
                name: name.to_string(),
                version,
            });
        }
    }
    for path in &state.files {
        if !referenced.contains(path.as_str()) {
            found.push(Breach::Orphan { path: path.clone() });
        }
    }
    found
}

/// The spec 06 invariant (2 or 3) an actor's outcome breaks, with a line
/// for humans; `None` for the outcomes a correct system may report.
pub fn outcome_breach(outcome: &LifecycleOutcome) -> Option<(u8, String)> {
    match outcome {
        LifecycleOutcome::Collision { item, with } if item != with => Some((
            2,
            format!("cross-item collision error between distinct items {item} and {with}"),
        )),
        LifecycleOutcome::LockBudgetExhausted => Some((
            3,
            "the lock-retry budget ran out (it exists to absorb expected contention)".into(),
        )),
        LifecycleOutcome::StorageBusy => {
            Some((3, "a storage-busy failure surfaced as an error".into()))
        }
        _ => None,
    }
}

/// An item's release: its version and the files that version installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The version.
    pub version: u32,
    /// Its files.
    pub files: Vec<String>,
}

/// The sequential reference: what a correct system's three parts hold.
#[derive(Debug, Clone, Default)]
pub struct LifecycleModel {
    catalog: BTreeMap<String, u32>,
    lockfile: BTreeMap<String, Release>,
    files: BTreeSet<String>,
}

impl LifecycleModel {
    /// An empty installation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Install `name` at `release`, replacing an installed version. With
    /// `catalog_busy` the catalog write fails and is rolled back: the
    /// documented transient ([`LifecycleOutcome::PartiallyApplied`]).
    pub fn install(
        &mut self,
        name: &str,
        release: Release,
        catalog_busy: bool,
    ) -> LifecycleOutcome {
        self.files.extend(release.files.iter().cloned());
        let old = self.lockfile.insert(name.to_string(), release);
        self.drop_unreferenced(old);
        if catalog_busy {
            self.catalog.remove(name);
            return LifecycleOutcome::PartiallyApplied;
        }
        self.sync_catalog_row(name);
        LifecycleOutcome::Done
    }

    /// Remove `name` (nothing to do when it is not installed).
    pub fn remove(&mut self, name: &str) -> LifecycleOutcome {
        self.catalog.remove(name);
        let old = self.lockfile.remove(name);
        self.drop_unreferenced(old);
        LifecycleOutcome::Done
    }

    /// Bring every installed item to `latest(name)` and the catalog back
    /// in line with the lockfile.
    pub fn update_all(&mut self, latest: impl Fn(&str) -> Release) -> LifecycleOutcome {
        let names: Vec<String> = self.lockfile.keys().cloned().collect();
        for name in names {
            let release = latest(&name);
            if self.lockfile.get(&name) != Some(&release) {
                self.files.extend(release.files.iter().cloned());
                let old = self.lockfile.insert(name.clone(), release);
                self.drop_unreferenced(old);
            }
        }
        self.catalog = self
            .lockfile
            .iter()
            .map(|(name, release)| (name.clone(), release.version))
            .collect();
        LifecycleOutcome::Done
    }

    /// The state as a reader of the disk would see it.
    pub fn state(&self) -> LifecycleState {
        LifecycleState {
            catalog: self
                .catalog
                .iter()
                .map(|(name, &version)| CatalogRow {
                    name: name.clone(),
                    version,
                    indexed: true,
                })
                .collect(),
            lockfile: LockfileView::Entries(
                self.lockfile
                    .iter()
                    .map(|(name, release)| LockfileEntry {
                        name: name.clone(),
                        version: release.version,
                        files: release.files.clone(),
                    })
                    .collect(),
            ),
            files: self.files.iter().cloned().collect(),
        }
    }

    fn sync_catalog_row(&mut self, name: &str) {
        match self.lockfile.get(name) {
            Some(release) => self.catalog.insert(name.to_string(), release.version),
            None => self.catalog.remove(name),
        };
    }

    /// Delete the files of a replaced release that no entry references.
    fn drop_unreferenced(&mut self, old: Option<Release>) {
        let Some(old) = old else { return };
        let referenced: BTreeSet<&String> = self
            .lockfile
            .values()
            .flat_map(|r| r.files.iter())
            .collect();
        let gone: Vec<String> = old
            .files
            .into_iter()
            .filter(|f| !referenced.contains(f))
            .collect();
        for file in gone {
            self.files.remove(&file);
        }
    }
}

/// The release of `name` at `version` in the reference: two files under
/// `name/version/`.
pub fn reference_release(name: &str, version: u32) -> Release {
    Release {
        version,
        files: (0..2).map(|i| format!("{name}/{version}/f{i}")).collect(),
    }
}

/// A trivially correct lifecycle run of `iterations` iterations, recorded:
/// per iteration the four actors of spec 06 (install A, install B, remove
/// A, update-all) run one after another in a seed-drawn order against
/// [`LifecycleModel`], each install may hit the documented transient, and
/// the state is observed at the iteration's end; then a reconcile and the
/// strict observation. Versions advance with the iteration.
pub fn reference_history(seed: u64, iterations: u32) -> History {
    const MILLIS: SimTime = 1_000_000;
    let mut rng = SplitMix64::new(seed);
    let mut model = LifecycleModel::new();
    let mut history = History::new();
    let mut now: SimTime = 0;
    for iteration in 0..iterations {
        let mut actors = [
            LifecycleOp::Install { item: "A".into() },
            LifecycleOp::Install { item: "B".into() },
            LifecycleOp::Remove { item: "A".into() },
            LifecycleOp::UpdateAll,
        ];
        for i in (1..actors.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            actors.swap(i, j);
        }
        let version = 1 + iteration + rng.below(2) as u32;
        for (actor, op) in actors.into_iter().enumerate() {
            now += 1 + rng.below(5) * MILLIS;
            let outcome = match &op {
                LifecycleOp::Install { item } => {
                    let busy = rng.below(4) == 0;
                    model.install(item, reference_release(item, version), busy)
                }
                LifecycleOp::Remove { item } => model.remove(item),
                LifecycleOp::UpdateAll | LifecycleOp::Reconcile => {
                    model.update_all(|name| reference_release(name, version))
                }
            };
            history.push(
                now,
                EventKind::LifecycleActorEnded {
                    iteration,
                    actor: actor as u32,
                    op: Box::new(op),
                    outcome: Box::new(outcome),
                },
            );
        }
        now += MILLIS;
        history.push(
            now,
            EventKind::LifecycleObserved {
                iteration,
                after_reconcile: false,
                state: Box::new(model.state()),
            },
        );
    }
    now += MILLIS;
    let outcome = model.update_all(|name| reference_release(name, iterations + 1));
    history.push(
        now,
        EventKind::LifecycleActorEnded {
            iteration: iterations,
            actor: 0,
            op: Box::new(LifecycleOp::Reconcile),
            outcome: Box::new(outcome),
        },
    );
    history.push(
        now + MILLIS,
        EventKind::LifecycleObserved {
            iteration: iterations,
            after_reconcile: true,
            state: Box::new(model.state()),
        },
    );
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_install_breaks_only_the_tolerable_direction() {
        let mut model = LifecycleModel::new();
        assert_eq!(
            model.install("A", reference_release("A", 1), true),
            LifecycleOutcome::PartiallyApplied
        );
        let state = model.state();
        assert_eq!(breaches(&state, true), vec![]);
        assert_eq!(
            breaches(&state, false),
            vec![Breach::LockfileEntryUnmatched {
                name: "A".into(),
                version: 1
            }]
        );
        model.update_all(|name| reference_release(name, 1));
        assert_eq!(breaches(&model.state(), false), vec![]);
    }

    #[test]
    fn update_and_remove_leave_no_orphans() {
        let mut model = LifecycleModel::new();
        model.install("A", reference_release("A", 1), false);
        model.install("B", reference_release("B", 1), false);
        model.update_all(|name| reference_release(name, 2));
        assert_eq!(model.state().files.len(), 4);
        model.remove("A");
        let state = model.state();
        assert_eq!(
            state.files,
            vec!["B/2/f0".to_string(), "B/2/f1".to_string()]
        );
        assert_eq!(breaches(&state, false), vec![]);
    }

    #[test]
    fn an_unmatched_catalog_row_is_never_tolerated() {
        let state = LifecycleState {
            catalog: vec![CatalogRow {
                name: "A".into(),
                version: 3,
                indexed: true,
            }],
            ..LifecycleState::default()
        };
        assert_eq!(
            breaches(&state, true),
            vec![Breach::CatalogRowUnmatched {
                name: "A".into(),
                version: 3
            }]
        );
    }

    #[test]
    fn outcomes_a_correct_system_may_report_are_not_breaches() {
        assert_eq!(outcome_breach(&LifecycleOutcome::Done), None);
        assert_eq!(outcome_breach(&LifecycleOutcome::PartiallyApplied), None);
        assert_eq!(outcome_breach(&LifecycleOutcome::Crashed), None);
        assert_eq!(
            outcome_breach(&LifecycleOutcome::LockBudgetExhausted).map(|b| b.0),
            Some(3)
        );
        assert_eq!(
            outcome_breach(&LifecycleOutcome::Collision {
                item: "A".into(),
                with: "B".into()
            })
            .map(|b| b.0),
            Some(2)
        );
    }
}
