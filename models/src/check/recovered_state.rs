//! D2 atomic (and D3 for the page state): the recovered page state is
//! exactly what the recovered log implies.
//!
//! Verifies, for each recovery that exposes a page state: replaying the
//! recovered log through the page store gives each page's latest version;
//! every page the log wrote shows that version (an older version, or a
//! missing page, means the newer commit is only partly visible: D2); every
//! version shown was written by a recovered commit with that value
//! (otherwise a phantom or corrupt page: D3); no page appears twice (D3).
//!
//! The page state a log implies is kept from one recovery to the next:
//! when a recovery's log begins with the previous one's (the durable log
//! model says so), only the new entries are replayed. The first-committer-
//! wins checker rebuilds its store from the same replay.
//!
//! Does not verify: the log itself (see `recovered_log`), runtime reads
//! (see `reads`).

use std::collections::BTreeMap;

use crate::history::{CommitSeq, LogEntry, PageVersion, SimTime};
use crate::id_map::IdSet;
use crate::model::page_store::PageStore;
use crate::violation::{InvariantId, Secs};

use super::Report;

/// Each recovery is judged on its own; only the replay carries over.
#[derive(Debug, Default)]
pub(crate) struct RecoveredState<'h> {
    /// The page state `replayed_log` implies.
    replayed: PageStore,
    /// The last recovered log.
    replayed_log: &'h [LogEntry],
}

/// Finds log entries by seq: by index when numbered 1, 2, 3, …, else
/// through a map built on first need.
struct EntryFinder<'a> {
    log: &'a [LogEntry],
    map: Option<BTreeMap<CommitSeq, &'a LogEntry>>,
}

impl<'a> EntryFinder<'a> {
    fn get(&mut self, seq: CommitSeq) -> Option<&'a LogEntry> {
        let log = self.log;
        let by_index = usize::try_from(seq.saturating_sub(1))
            .ok()
            .and_then(|index| log.get(index))
            .filter(|entry| entry.seq == seq);
        if by_index.is_some() {
            return by_index;
        }
        let map = self.map.get_or_insert_with(|| {
            let mut map = BTreeMap::new();
            for entry in log {
                map.entry(entry.seq).or_insert(entry);
            }
            map
        });
        map.get(&seq).copied()
    }
}

impl<'h> RecoveredState<'h> {
    /// A recovery exposed `log` (which begins with the previous recovery's
    /// log when `extends_previous`) and, maybe, a page `state`.
    pub(crate) fn on_recovered(
        &mut self,
        time: SimTime,
        log: &'h [LogEntry],
        extends_previous: bool,
        state: Option<&[PageVersion]>,
        report: &mut Report,
    ) {
        let from = match self.replay_from(log.len(), extends_previous) {
            Some(from) => from,
            None => {
                self.replayed = PageStore::new();
                0
            }
        };
        for entry in log.get(from..).unwrap_or(&[]) {
            self.replay(entry);
        }
        self.end_replay(time, log, state, report);
    }

    /// Where [`RecoveredState::on_recovered`] resumes replaying a log of
    /// `log_len` entries; `None` when it starts over from an empty page
    /// state. (A caller may replay the rest itself, through
    /// [`RecoveredState::replay`] and [`RecoveredState::end_replay`].)
    pub(crate) fn replay_from(&self, log_len: usize, extends_previous: bool) -> Option<usize> {
        let replayed = self.replayed_log.len();
        (extends_previous && replayed <= log_len).then_some(replayed)
    }

    /// Replay one recovered entry.
    #[inline]
    pub(crate) fn replay(&mut self, entry: &LogEntry) {
        self.replayed.apply(entry.seq, &entry.writes);
    }

    /// The replay of `log` is over: check the page `state` it exposed.
    pub(crate) fn end_replay(
        &mut self,
        time: SimTime,
        log: &'h [LogEntry],
        state: Option<&[PageVersion]>,
        report: &mut Report,
    ) {
        self.replayed_log = log;
        if let Some(state) = state {
            self.check_state(time, log, state, report);
        }
    }

    /// The page state the last recovered log implies.
    pub(crate) fn replayed(&self) -> &PageStore {
        &self.replayed
    }

    fn check_state(
        &self,
        time: SimTime,
        log: &[LogEntry],
        state: &[PageVersion],
        report: &mut Report,
    ) {
        let replayed = &self.replayed;
        let mut finder = EntryFinder { log, map: None };
        let mut shown = IdSet::default();
        let at = Secs(time);
        for version in state {
            let page = version.page;
            if !shown.insert(u64::from(page)) {
                report.add(
                    InvariantId::D3,
                    time,
                    vec![],
                    format!("the recovered state at {at} lists page {page} twice"),
                );
                continue;
            }
            let Some(latest) = replayed.version(page) else {
                report.add(
                    InvariantId::D3,
                    time,
                    vec![],
                    format!(
                        "the recovered state at {at} shows page {page} at commit seq {}, but no recovered commit wrote page {page}",
                        version.commit_seq
                    ),
                );
                continue;
            };
            if latest == *version {
                continue;
            }
            let writer = finder.get(version.commit_seq);
            let wrote_it = writer.is_some_and(|entry| {
                entry
                    .writes
                    .iter()
                    .any(|write| write.page == page && write.value == version.value)
            });
            if wrote_it && version.commit_seq < latest.commit_seq {
                partly_visible(
                    time,
                    &mut finder,
                    latest.commit_seq,
                    format_args!("page {page} still shows commit seq {}", version.commit_seq),
                    report,
                );
            } else {
                report.add(
                    InvariantId::D3,
                    time,
                    vec![],
                    format!(
                        "the recovered state at {at} shows page {page} = {} at commit seq {}, which no recovered commit wrote",
                        version.value, version.commit_seq
                    ),
                );
            }
        }
        for latest in replayed.versions() {
            if !shown.contains(u64::from(latest.page)) {
                partly_visible(
                    time,
                    &mut finder,
                    latest.commit_seq,
                    format_args!("its page {} is missing from the state", latest.page),
                    report,
                );
            }
        }
    }
}

/// Report that commit `seq` is only partly visible (D2): `detail` says how.
fn partly_visible(
    time: SimTime,
    finder: &mut EntryFinder<'_>,
    seq: CommitSeq,
    detail: std::fmt::Arguments<'_>,
    report: &mut Report,
) {
    let txn = finder.get(seq).map_or(0, |entry| entry.txn_id);
    report.add(
        InvariantId::D2,
        time,
        vec![],
        format!(
            "commit seq {seq} (txn {txn}) is only partly visible after the recovery at {}: {detail}",
            Secs(time)
        ),
    );
}
