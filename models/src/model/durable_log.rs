//! The durable commit log model (spec 08, "How the durable-log model
//! thinks").
//!
//! Between two recoveries (an *epoch*) the WAL only grows: every valid
//! request of a batch that reached `WalAppended` becomes the next frame, and
//! frame `p` of the epoch is commit sequence number `base + p + 1`, where
//! `base` is the length of the log the last recovery exposed. For a
//! recovery, each commit is in one of three sets:
//! - **must exist**: everything the previous recovery exposed (D1, second
//!   clause) and every published frame (published = answered `Committed`
//!   and made visible);
//! - **may exist**: appended but unpublished frames (fsync pending, failed,
//!   or crash before publish; outcome unknown to the client);
//! - **must not exist**: anything never appended — including requests
//!   validation rejected.
//!
//! The recovered log must be the previous log, then a prefix of this
//! epoch's frames containing every published one, numbered 1, 2, 3, … with
//! no gaps. A frame is matched by its txn id, event id and writes. Because
//! the next epoch starts from what recovery exposed, an operation with an
//! unknown outcome takes effect at most once and every later recovery
//! agrees on whether it did: a frame dropped by one recovery can never
//! reappear, and one exposed can never disappear.
//!
//! A system that keeps appending after a failed fsync therefore breaks the
//! numbering unless it also exposes the failed frames: the model assumes
//! fail-stop after a failed fsync (the fsyncgate lesson, spec 07).
//!
//! Not modelled here: page state (see [`crate::model::page_store`]), batch
//! phases, client acknowledgements.

use std::collections::BTreeMap;

use crate::growth::reserve_ahead;
use crate::history::{
    AttemptRef, BatchRequest, CommitSeq, EventId, LogEntry, PageVersion, PageWrite, SimTime, TxnId,
};
use crate::id_map::IdSet;

/// One frame appended in the current epoch (kept small: an epoch can hold
/// hundreds of thousands of frames).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'h> {
    /// The request it holds.
    pub request: &'h BatchRequest,
    /// When its batch published it, once it did. (The sequence number it
    /// was published as is checked against its position at publication.)
    pub published_at: Option<SimTime>,
}

/// A commit the model expected, for explaining findings.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'h> {
    /// A commit the previous recovery exposed (observed at `observed_at`).
    Observed {
        /// The entry.
        entry: &'h LogEntry,
        /// When it was observed.
        observed_at: SimTime,
    },
    /// A frame of the current epoch.
    Frame {
        /// Its commit sequence number by log position.
        seq: CommitSeq,
        /// The request.
        request: &'h BatchRequest,
        /// When it was published, if it was.
        published_at: Option<SimTime>,
    },
}

impl Expected<'_> {
    /// The expected commit's txn id.
    pub fn txn_id(&self) -> TxnId {
        match self {
            Expected::Observed { entry, .. } => entry.txn_id,
            Expected::Frame { request, .. } => request.txn_id,
        }
    }

    /// The client attempt behind it, when known.
    pub fn origin(&self) -> Option<AttemptRef> {
        match self {
            Expected::Observed { .. } => None,
            Expected::Frame { request, .. } => request.origin,
        }
    }
}

/// Something the model does not allow, found at publish or recovery.
#[derive(Debug, Clone)]
pub enum LogFinding<'h> {
    /// A frame was published under a sequence number other than its log
    /// position's.
    PublishedOutOfPosition {
        /// Its position's sequence number.
        expected: CommitSeq,
        /// The one assigned.
        assigned: CommitSeq,
        /// The request.
        request: &'h BatchRequest,
    },
    /// An event id already applied in this lineage was published again.
    EventPublishedTwice {
        /// The event id.
        event_id: EventId,
        /// The second commit's sequence number.
        seq: CommitSeq,
        /// The request.
        request: &'h BatchRequest,
    },
    /// Recovered sequence numbers are not 1, 2, 3, … in log order.
    SeqOutOfOrder {
        /// The entry's index in the recovered log.
        index: usize,
        /// Its sequence number.
        seq: CommitSeq,
        /// The one expected there.
        expected: CommitSeq,
    },
    /// A must-exist commit is absent from the recovered log.
    MustExistMissing {
        /// What was expected.
        expected: Expected<'h>,
        /// Its sequence number.
        seq: CommitSeq,
    },
    /// A recovered entry holds a strict subset of its commit's writes.
    Partial {
        /// The entry.
        entry: &'h LogEntry,
        /// How many writes the commit has.
        writes_expected: usize,
    },
    /// A recovered entry is its commit with different data.
    Corrupt {
        /// The entry.
        entry: &'h LogEntry,
    },
    /// A recovered entry is an issued commit at the wrong sequence number.
    Misplaced {
        /// The entry.
        entry: &'h LogEntry,
        /// The sequence number it was issued at.
        issued_seq: CommitSeq,
    },
    /// A recovered entry is a request validation rejected.
    RejectedPresent {
        /// The entry.
        entry: &'h LogEntry,
        /// The request as rejected.
        request: &'h BatchRequest,
    },
    /// A recovered entry was never issued.
    Phantom {
        /// The entry.
        entry: &'h LogEntry,
    },
    /// Two recovered entries carry one event id.
    EventRecoveredTwice {
        /// The event id.
        event_id: EventId,
        /// The later entry's sequence number.
        seq: CommitSeq,
    },
    /// Recovery ran again over the same durable state (nothing appended in
    /// between) and exposed something different.
    NotIdempotent {
        /// When the previous recovery finished.
        previous_at: SimTime,
        /// What differs, for humans.
        difference: String,
    },
}

type Identity = (TxnId, Option<EventId>);

/// How many recovered entries [`DurableLog::recover_visiting`] checks
/// before recording them.
const RECORD_CHUNK: usize = 256;

/// What the last recovery exposed: when, its log, its page state.
type LastRecovery<'h> = (SimTime, &'h [LogEntry], Option<&'h [PageVersion]>);

/// Issued commits by identity: their sequence numbers and writes.
type IssuedIndex<'h> = BTreeMap<Identity, Vec<(CommitSeq, &'h [PageWrite])>>;

/// The requests validation rejected, in the order they were noted, and an
/// index of them by identity that is brought up to date only when a
/// recovery has something to explain: noting a rejection (thousands per
/// run) is a push, and each request is indexed once however many
/// recoveries look.
#[derive(Debug, Default)]
struct RejectedRequests<'h> {
    noted: Vec<&'h BatchRequest>,
    /// The first `indexed` of `noted`, by identity, in noted order.
    by_identity: BTreeMap<Identity, Vec<&'h BatchRequest>>,
    indexed: usize,
}

impl RejectedRequests<'_> {
    /// Index the requests noted since the last call.
    fn catch_up(&mut self) {
        for request in self.noted.get(self.indexed..).unwrap_or(&[]) {
            self.by_identity
                .entry((request.txn_id, request.event_id))
                .or_default()
                .push(request);
        }
        self.indexed = self.noted.len();
    }
}

/// The durable log's state; see the module docs.
#[derive(Debug, Default)]
pub struct DurableLog<'h> {
    base: &'h [LogEntry],
    base_observed_at: SimTime,
    frames: Vec<Frame<'h>>,
    base_events: IdSet,
    epoch_events: IdSet,
    ever_applied: IdSet,
    rejected: RejectedRequests<'h>,
    last_recovery: Option<LastRecovery<'h>>,
    appended_since_recovery: bool,
    /// Whether the last recovery's log began with the log of the one
    /// before it (entry for entry).
    extends_previous: bool,
}

impl<'h> DurableLog<'h> {
    /// An empty log before any commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequence number frame `position` of this epoch stands for.
    pub fn seq_of_position(&self, position: usize) -> CommitSeq {
        (self.base.len() as u64)
            .saturating_add(position as u64)
            .saturating_add(1)
    }

    /// The frames appended in this epoch.
    pub fn frames(&self) -> &[Frame<'h>] {
        &self.frames
    }

    /// The log the last recovery exposed.
    pub fn base(&self) -> &'h [LogEntry] {
        self.base
    }

    /// Whether the last recovery's log began, entry for entry, with the
    /// log the recovery before it exposed (vacuously true for the first).
    pub fn extends_previous(&self) -> bool {
        self.extends_previous
    }

    /// Whether `event_id` was ever published or exposed by a recovery.
    pub fn ever_applied(&self, event_id: EventId) -> bool {
        self.ever_applied.contains(event_id)
    }

    /// Validation rejected `request`: it must never be exposed.
    pub fn note_rejected(&mut self, request: &'h BatchRequest) {
        self.rejected.noted.push(request);
    }

    /// `request` becomes the next frame; returns its position.
    pub fn append(&mut self, request: &'h BatchRequest) -> usize {
        self.appended_since_recovery = true;
        let len_needed = self.frames.len() + 1;
        reserve_ahead(&mut self.frames, len_needed);
        self.frames.push(Frame {
            request,
            published_at: None,
        });
        self.frames.len() - 1
    }

    /// Frame `position` was published as `seq` at `time`.
    pub fn publish(
        &mut self,
        position: usize,
        seq: CommitSeq,
        time: SimTime,
    ) -> Vec<LogFinding<'h>> {
        let expected = self.seq_of_position(position);
        let Some(frame) = self.frames.get_mut(position) else {
            return Vec::new();
        };
        if frame.published_at.is_some() {
            return Vec::new();
        }
        frame.published_at = Some(time);
        let request = frame.request;
        let mut findings = Vec::new();
        if seq != expected {
            findings.push(LogFinding::PublishedOutOfPosition {
                expected,
                assigned: seq,
                request,
            });
        }
        if let Some(event_id) = request.event_id {
            self.ever_applied.insert(event_id);
            if self.base_events.contains(event_id) || !self.epoch_events.insert(event_id) {
                findings.push(LogFinding::EventPublishedTwice {
                    event_id,
                    seq,
                    request,
                });
            }
        }
        findings
    }

    /// Recovery at `time` exposed `log` (and `state`); a new epoch starts
    /// from it. `corruption_from` excuses must-exist commits from that
    /// sequence number on (recovery detected and reported their loss).
    pub fn recover(
        &mut self,
        time: SimTime,
        log: &'h [LogEntry],
        state: Option<&'h [PageVersion]>,
        corruption_from: Option<CommitSeq>,
    ) -> Vec<LogFinding<'h>> {
        self.recover_visiting(time, log, state, corruption_from, |_| {})
            .0
    }

    /// [`DurableLog::recover`], and when `log` begins with the base (the
    /// previous log, entry for entry, numbered 1, 2, 3, …) after appends,
    /// `visit` is called with each entry past the base, in log order,
    /// during the one walk that checks and records them. Returns the
    /// findings and whether `visit` saw those entries, so that a caller
    /// keeping state derived from the recovered log can bring it up to
    /// date without walking it again.
    pub fn recover_visiting(
        &mut self,
        time: SimTime,
        log: &'h [LogEntry],
        state: Option<&'h [PageVersion]>,
        corruption_from: Option<CommitSeq>,
        mut visit: impl FnMut(&'h LogEntry),
    ) -> (Vec<LogFinding<'h>>, bool) {
        let mut findings = Vec::new();
        if let Some((previous_at, previous_log, previous_state)) = self.last_recovery {
            if !self.appended_since_recovery {
                // Same durable state as last time: the answer must not change.
                let same_log = previous_log == log;
                let difference = if !same_log {
                    Some(describe_log_difference(previous_log, log))
                } else if previous_state != state {
                    Some("the recovered page state differs".to_string())
                } else {
                    None
                };
                self.extends_previous = same_log;
                if let Some(difference) = difference {
                    findings.push(LogFinding::NotIdempotent {
                        previous_at,
                        difference,
                    });
                    self.start_epoch(time, log, false, &mut findings);
                }
                self.last_recovery = Some((time, log, state));
                return (findings, false);
            }
        }
        if self.base_kept(log) {
            // Whatever follows the base, the new epoch keeps it and records
            // the entries past it: one walk records them and checks that
            // they are the next frames, each the very commit appended. Only
            // when they are not does the full diagnosis run (its findings
            // would be the same after a separate walk: it reads the base and
            // the frames, not the event ids recorded). It keeps the base
            // intact too, so the epoch starts the same either way.
            self.extends_previous = true;
            let base_len = self.base.len();
            let new = log.get(base_len..).unwrap_or(&[]);
            let mut clean = new.len() <= self.frames.len();
            // A chunk at a time: the check of a chunk is a tight loop whose
            // cache misses (on the frames' requests) overlap, and recording
            // it next finds its entries still in cache.
            for (chunk_index, chunk) in new.chunks(RECORD_CHUNK).enumerate() {
                let first = chunk_index * RECORD_CHUNK;
                let frames = self.frames.get(first..).unwrap_or(&[]);
                clean = clean
                    && chunk.len() <= frames.len()
                    && chunk
                        .iter()
                        .zip(frames)
                        .enumerate()
                        .all(|(offset, (entry, frame))| {
                            entry.seq == (base_len + first + offset) as u64 + 1
                                && same_commit(entry, frame.request)
                        });
                for entry in chunk {
                    visit(entry);
                    self.record_recovered(entry, &mut findings);
                }
            }
            if !(clean && self.lost_frames_excused(new.len(), corruption_from)) {
                self.diagnose(log, corruption_from, &mut findings);
            }
            self.finish_epoch(time, log);
            self.last_recovery = Some((time, log, state));
            return (findings, true);
        }
        let base_intact = self.diagnose(log, corruption_from, &mut findings);
        self.extends_previous = log.starts_with(self.base);
        self.start_epoch(time, log, base_intact, &mut findings);
        self.last_recovery = Some((time, log, state));
        (findings, false)
    }

    /// Report what `log` breaks; returns whether every entry of the base is
    /// found, unchanged, at its sequence number.
    fn diagnose(
        &mut self,
        log: &'h [LogEntry],
        corruption_from: Option<CommitSeq>,
        findings: &mut Vec<LogFinding<'h>>,
    ) -> bool {
        let excused = |seq: CommitSeq| corruption_from.is_some_and(|from| seq >= from);
        self.rejected.catch_up();
        let ordered = check_numbering(log, findings);
        let by_seq = SeqLookup::new(log, ordered);
        let mut indexes = LazyIndexes::default();
        let mut base_intact = true;

        for observed in self.base {
            let expected = Expected::Observed {
                entry: observed,
                observed_at: self.base_observed_at,
            };
            base_intact &= by_seq.get(observed.seq) == Some(observed);
            if !self.explain_mismatch(
                by_seq.get(observed.seq),
                observed.seq,
                &expected,
                &mut indexes,
                findings,
            ) {
                continue;
            }
            if !excused(observed.seq)
                && !indexes.log_holds(log, observed.txn_id, observed.event_id, &observed.writes)
            {
                findings.push(LogFinding::MustExistMissing {
                    expected,
                    seq: observed.seq,
                });
            }
        }

        for (position, frame) in self.frames.iter().enumerate() {
            let seq = self.seq_of_position(position);
            let request = frame.request;
            let expected = Expected::Frame {
                seq,
                request,
                published_at: frame.published_at,
            };
            if !self.explain_mismatch(by_seq.get(seq), seq, &expected, &mut indexes, findings) {
                continue;
            }
            if frame.published_at.is_some()
                && !excused(seq)
                && !indexes.log_holds(log, request.txn_id, request.event_id, &request.writes)
            {
                findings.push(LogFinding::MustExistMissing { expected, seq });
            }
        }

        let issued_top = self.seq_of_position(self.frames.len()).saturating_sub(1);
        for entry in log {
            if entry.seq == 0 || entry.seq > issued_top {
                findings.push(self.classify(entry, None, &mut indexes));
            }
        }
        base_intact
    }

    /// Whether `log` begins with the base, entry for entry, numbered 1, 2,
    /// 3, …
    ///
    /// Then, if the entries past it are a prefix of this epoch's frames,
    /// each numbered in turn and the very commit appended, and every
    /// published frame beyond that prefix is excused by reported
    /// corruption (see [`DurableLog::lost_frames_excused`]), the log is
    /// exactly what a correct recovery exposes: the full diagnosis has
    /// nothing to report (each of its loops finds its expected entry in
    /// place, and no entry is numbered past the last issued seq).
    fn base_kept(&self, log: &[LogEntry]) -> bool {
        let Some(old) = log.get(..self.base.len()) else {
            return false;
        };
        old.iter()
            .zip(self.base)
            .enumerate()
            .all(|(index, (entry, observed))| entry.seq == index as u64 + 1 && entry == observed)
    }

    /// Whether every published frame past the first `kept` of this epoch
    /// is excused by reported corruption (from `corruption_from` on).
    fn lost_frames_excused(&self, kept: usize, corruption_from: Option<CommitSeq>) -> bool {
        let lost = self.frames.get(kept..).unwrap_or(&[]);
        lost.iter().enumerate().all(|(offset, frame)| {
            let seq = self.seq_of_position(kept + offset);
            frame.published_at.is_none() || corruption_from.is_some_and(|from| seq >= from)
        })
    }

    /// Adopt `log` as the new base and record its event ids: only the
    /// entries past the old base when that is intact, else all of them.
    fn start_epoch(
        &mut self,
        time: SimTime,
        log: &'h [LogEntry],
        base_intact: bool,
        findings: &mut Vec<LogFinding<'h>>,
    ) {
        let new_entries = if base_intact {
            log.get(self.base.len()..).unwrap_or(&[])
        } else {
            self.base_events.clear();
            log
        };
        for entry in new_entries {
            self.record_recovered(entry, findings);
        }
        self.finish_epoch(time, log);
    }

    /// Record the event id of `entry`, which joins the base.
    #[inline]
    fn record_recovered(&mut self, entry: &'h LogEntry, findings: &mut Vec<LogFinding<'h>>) {
        if let Some(event_id) = entry.event_id {
            self.ever_applied.insert(event_id);
            if !self.base_events.insert(event_id) {
                findings.push(LogFinding::EventRecoveredTwice {
                    event_id,
                    seq: entry.seq,
                });
            }
        }
    }

    /// `log` is the new base; the epoch starts with no frames.
    fn finish_epoch(&mut self, time: SimTime, log: &'h [LogEntry]) {
        self.base = log;
        self.base_observed_at = time;
        self.frames.clear();
        self.epoch_events.clear();
        self.appended_since_recovery = false;
    }

    /// Compare what recovery exposes at `seq` with what was expected there.
    /// Returns whether the expected commit may be missing from the log (so
    /// the caller checks the must-exist rule): not when it is there, nor
    /// when it is there damaged (partial or corrupt: one diagnosis).
    fn explain_mismatch(
        &self,
        found: Option<&'h LogEntry>,
        seq: CommitSeq,
        expected: &Expected<'h>,
        indexes: &mut LazyIndexes<'h>,
        findings: &mut Vec<LogFinding<'h>>,
    ) -> bool {
        let Some(entry) = found else {
            return true;
        };
        let matches = match expected {
            Expected::Observed {
                entry: observed, ..
            } => entry == *observed,
            Expected::Frame { request, .. } => same_commit(entry, request),
        };
        if matches || entry.seq != seq {
            return !matches;
        }
        let finding = self.classify(entry, Some(expected), indexes);
        let damaged_in_place = matches!(
            finding,
            LogFinding::Partial { .. } | LogFinding::Corrupt { .. }
        );
        findings.push(finding);
        !damaged_in_place
    }

    /// Explain a recovered entry that is not the commit expected at its
    /// sequence number (`expected`, or nothing issued there).
    fn classify(
        &self,
        entry: &'h LogEntry,
        expected: Option<&Expected<'h>>,
        indexes: &mut LazyIndexes<'h>,
    ) -> LogFinding<'h> {
        if let Some(expected) = expected {
            let (txn_id, event_id, writes) = match expected {
                Expected::Observed { entry, .. } => (entry.txn_id, entry.event_id, &entry.writes),
                Expected::Frame { request, .. } => {
                    (request.txn_id, request.event_id, &request.writes)
                }
            };
            if entry.txn_id == txn_id && entry.event_id == event_id {
                let subset = entry.writes.len() < writes.len()
                    && entry.writes.iter().all(|w| writes.contains(w));
                return if subset {
                    LogFinding::Partial {
                        entry,
                        writes_expected: writes.len(),
                    }
                } else {
                    LogFinding::Corrupt { entry }
                };
            }
        }
        if let Some(issued_seq) = indexes.issued_seq_of(self, entry) {
            return LogFinding::Misplaced { entry, issued_seq };
        }
        let rejected = self
            .rejected
            .by_identity
            .get(&(entry.txn_id, entry.event_id))
            .and_then(|requests| {
                requests
                    .iter()
                    .copied()
                    .find(|request| same_commit(entry, request))
            });
        match rejected {
            Some(request) => LogFinding::RejectedPresent { entry, request },
            None => LogFinding::Phantom { entry },
        }
    }
}

/// Whether a recovered entry is the commit `request` asked for.
pub fn same_commit(entry: &LogEntry, request: &BatchRequest) -> bool {
    entry.txn_id == request.txn_id
        && entry.event_id == request.event_id
        && entry.writes == request.writes
}

/// Report every place where seq does not follow its predecessor by one
/// (the first must be 1). Returns whether the numbering is exactly
/// 1, 2, 3, … (then entry `seq` sits at index `seq − 1`).
fn check_numbering<'h>(log: &'h [LogEntry], findings: &mut Vec<LogFinding<'h>>) -> bool {
    let mut ordered = true;
    let mut previous: CommitSeq = 0;
    for (index, entry) in log.iter().enumerate() {
        let expected = previous.saturating_add(1);
        if entry.seq != expected {
            ordered = false;
            findings.push(LogFinding::SeqOutOfOrder {
                index,
                seq: entry.seq,
                expected,
            });
        }
        previous = entry.seq;
    }
    ordered
}

fn describe_log_difference(previous: &[LogEntry], now: &[LogEntry]) -> String {
    let first_difference = previous.iter().zip(now).position(|(a, b)| a != b);
    match first_difference {
        Some(index) => format!(
            "the recovered logs first differ at entry {} (seq {} before, seq {} now)",
            index + 1,
            previous.get(index).map_or(0, |e| e.seq),
            now.get(index).map_or(0, |e| e.seq)
        ),
        None => format!(
            "the recovered log held {} commit(s) before and {} now",
            previous.len(),
            now.len()
        ),
    }
}

/// Find a recovered entry by sequence number: by index when the log is
/// numbered 1, 2, 3, …, else through a map (first entry per seq wins).
struct SeqLookup<'h> {
    log: &'h [LogEntry],
    map: Option<BTreeMap<CommitSeq, &'h LogEntry>>,
}

impl<'h> SeqLookup<'h> {
    fn new(log: &'h [LogEntry], ordered: bool) -> Self {
        let map = (!ordered).then(|| {
            let mut map = BTreeMap::new();
            for entry in log {
                map.entry(entry.seq).or_insert(entry);
            }
            map
        });
        Self { log, map }
    }

    fn get(&self, seq: CommitSeq) -> Option<&'h LogEntry> {
        match &self.map {
            Some(map) => map.get(&seq).copied(),
            None => {
                let index = usize::try_from(seq.checked_sub(1)?).ok()?;
                self.log.get(index)
            }
        }
    }
}

/// Identity indexes built only when a recovery has something to explain,
/// so that a clean recovery stays linear without them.
#[derive(Default)]
struct LazyIndexes<'h> {
    log: Option<BTreeMap<Identity, Vec<&'h LogEntry>>>,
    issued: Option<IssuedIndex<'h>>,
}

impl<'h> LazyIndexes<'h> {
    fn log_holds(
        &mut self,
        log: &'h [LogEntry],
        txn_id: TxnId,
        event_id: Option<EventId>,
        writes: &[PageWrite],
    ) -> bool {
        let index = self.log.get_or_insert_with(|| {
            let mut index: BTreeMap<Identity, Vec<&'h LogEntry>> = BTreeMap::new();
            for entry in log {
                index
                    .entry((entry.txn_id, entry.event_id))
                    .or_default()
                    .push(entry);
            }
            index
        });
        index
            .get(&(txn_id, event_id))
            .is_some_and(|entries| entries.iter().any(|entry| entry.writes == writes))
    }

    fn issued_seq_of(&mut self, model: &DurableLog<'h>, entry: &LogEntry) -> Option<CommitSeq> {
        let index = self.issued.get_or_insert_with(|| {
            let mut index: BTreeMap<Identity, Vec<(CommitSeq, &'h [PageWrite])>> = BTreeMap::new();
            for observed in model.base {
                index
                    .entry((observed.txn_id, observed.event_id))
                    .or_default()
                    .push((observed.seq, &observed.writes));
            }
            for (position, frame) in model.frames.iter().enumerate() {
                let request = frame.request;
                index
                    .entry((request.txn_id, request.event_id))
                    .or_default()
                    .push((model.seq_of_position(position), &request.writes));
            }
            index
        });
        index
            .get(&(entry.txn_id, entry.event_id))?
            .iter()
            .find(|(seq, writes)| *seq != entry.seq && *writes == entry.writes.as_slice())
            .map(|(seq, _)| *seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Verdict;

    fn request(txn_id: TxnId, event_id: EventId, page: u32) -> BatchRequest {
        BatchRequest {
            origin: Some(AttemptRef {
                op: event_id,
                attempt: 1,
            }),
            txn_id,
            event_id: Some(event_id),
            snapshot_seq: 0,
            writes: vec![PageWrite {
                page,
                value: txn_id,
            }],
            verdict: Verdict::Valid,
        }
    }

    fn entry(seq: CommitSeq, request: &BatchRequest) -> LogEntry {
        LogEntry {
            seq,
            txn_id: request.txn_id,
            event_id: request.event_id,
            writes: request.writes.clone(),
        }
    }

    #[test]
    fn a_prefix_holding_every_published_frame_is_accepted() {
        let requests = [request(1, 1, 1), request(2, 2, 2), request(3, 3, 3)];
        let mut model = DurableLog::new();
        for r in &requests {
            model.append(r);
        }
        assert!(model.publish(0, 1, 10).is_empty());
        let log = vec![entry(1, &requests[0]), entry(2, &requests[1])];
        assert!(model.recover(20, &log, None, None).is_empty());
        assert!(
            model.ever_applied(2),
            "recovered unknown frame counts as applied"
        );
        // Recovering again with nothing appended must give the same answer.
        assert!(model.recover(30, &log, None, None).is_empty());
        let shorter = vec![entry(1, &requests[0])];
        assert!(matches!(
            model.recover(40, &shorter, None, None)[..],
            [LogFinding::NotIdempotent {
                previous_at: 30,
                ..
            }]
        ));
    }

    #[test]
    fn a_recovery_extends_the_previous_log_only_entry_for_entry() {
        let requests = [request(1, 1, 1), request(2, 2, 2), request(3, 3, 3)];
        let mut model = DurableLog::new();
        model.append(&requests[0]);
        let first = vec![entry(1, &requests[0])];
        assert!(model.recover(10, &first, None, None).is_empty());
        assert!(model.extends_previous(), "the empty log is a prefix of any");
        model.append(&requests[1]);
        model.append(&requests[2]);
        model.publish(1, 3, 15);
        let lost = vec![entry(1, &requests[0]), entry(2, &requests[1])];
        assert!(matches!(
            model.recover(20, &lost, None, None)[..],
            [LogFinding::MustExistMissing { seq: 3, .. }]
        ));
        assert!(model.extends_previous(), "a finding past the base keeps it");
        model.append(&requests[2]);
        let rewritten = vec![entry(1, &requests[1])];
        assert!(!model.recover(30, &rewritten, None, None).is_empty());
        assert!(!model.extends_previous());
        assert!(model.recover(40, &rewritten, None, None).is_empty());
        assert!(model.extends_previous(), "the same log again");
    }

    #[test]
    fn losing_a_published_frame_or_an_observed_commit_is_found() {
        let requests = [request(1, 1, 1), request(2, 2, 2)];
        let mut model = DurableLog::new();
        model.append(&requests[0]);
        model.publish(0, 1, 10);
        assert!(matches!(
            model.recover(20, &[], None, None)[..],
            [LogFinding::MustExistMissing { seq: 1, .. }]
        ));

        let mut model = DurableLog::new();
        model.append(&requests[0]);
        let first = vec![entry(1, &requests[0])];
        assert!(model.recover(20, &first, None, None).is_empty());
        model.append(&requests[1]);
        assert!(matches!(
            model.recover(30, &[], None, None)[..],
            [LogFinding::MustExistMissing {
                expected: Expected::Observed {
                    observed_at: 20,
                    ..
                },
                seq: 1
            }]
        ));
    }

    #[test]
    fn strangers_in_the_log_are_classified() {
        let requests = [request(1, 1, 1), request(2, 2, 2)];
        let mut rejected = request(9, 9, 9);
        rejected.verdict = Verdict::Conflict {
            reason: "page 9".into(),
        };
        let mut model = DurableLog::new();
        model.note_rejected(&rejected);
        model.append(&requests[0]);
        model.append(&requests[1]);
        let mut torn = entry(1, &requests[0]);
        torn.writes[0].value = 77;
        let log = vec![torn, entry(2, &rejected), entry(3, &requests[1])];
        let findings = model.recover(20, &log, None, None);
        let kinds: Vec<&str> = findings
            .iter()
            .map(|f| match f {
                LogFinding::Corrupt { .. } => "corrupt",
                LogFinding::RejectedPresent { .. } => "rejected",
                LogFinding::Misplaced { issued_seq: 2, .. } => "misplaced",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, vec!["corrupt", "rejected", "misplaced"]);
    }
}
