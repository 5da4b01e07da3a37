//! Reads against visibility: D5 (no version visible before its batch was
//! published, i.e. after a successful fsync) and D3 (nothing visible that
//! was never committed).
//!
//! Verifies, for each read that returned a version `(page, seq, value)`:
//! the page is the one asked for, and some commit numbered `seq` wrote that
//! value to that page and had become visible — published, or exposed by a
//! recovery — no later than the read's completion. A version that became
//! visible only later is D5; one no commit wrote is D3. Commit sequence
//! numbers reused after a recovery dropped an unpublished commit are kept
//! apart: every version a seq has stood for is remembered.
//!
//! Does not verify: reads that saw "never written", staleness (a read may
//! return an older version: the store is not claimed linearizable here).

use std::collections::BTreeMap;

use crate::history::{
    BatchRequest, CommitSeq, LogEntry, OkValue, OpId, Outcome, PageId, PageVersion, PageWrite, SimTime, Verdict,
};
use crate::id_map::IdMap;
use crate::violation::{InvariantId, Secs};

use super::Report;

#[derive(Debug, Clone, Copy)]
struct Visible<'h> {
    since: SimTime,
    writes: &'h [PageWrite],
}

/// When each commit became visible.
#[derive(Debug, Default)]
pub(crate) struct Reads<'h> {
    visible: IdMap<Visible<'h>>,
    superseded: BTreeMap<CommitSeq, Vec<Visible<'h>>>,
    /// Length of the log the previous recovery exposed: its entries are
    /// registered already (a recovery that changes them is D1's to report).
    registered_log_len: usize,
    /// Reads to judge at the end, when every visibility is known (a read
    /// that saw a version published later must be told from one that saw
    /// a version never published).
    reads: Vec<(SimTime, OpId, PageId, PageVersion)>,
}

impl<'h> Reads<'h> {
    fn register(&mut self, seq: CommitSeq, since: SimTime, writes: &'h [PageWrite]) {
        match self.visible.get(seq) {
            Some(existing) if existing.writes == writes => {}
            Some(existing) => {
                let old = *existing;
                self.superseded.entry(seq).or_default().push(old);
                self.visible.insert(seq, Visible { since, writes });
            }
            None => {
                self.visible.insert(seq, Visible { since, writes });
            }
        }
    }

    pub(crate) fn on_published(&mut self, time: SimTime, requests: &'h [BatchRequest], commit_seqs: &[CommitSeq]) {
        let valid = requests.iter().filter(|r| r.verdict == Verdict::Valid);
        for (request, seq) in valid.zip(commit_seqs) {
            self.register(*seq, time, &request.writes);
        }
    }

    pub(crate) fn on_recovered(&mut self, time: SimTime, log: &'h [LogEntry]) {
        let start = if log.len() >= self.registered_log_len {
            self.registered_log_len
        } else {
            0
        };
        for entry in log.get(start..).unwrap_or(&[]) {
            self.register(entry.seq, time, &entry.writes);
        }
        self.registered_log_len = log.len();
    }

    pub(crate) fn on_complete(&mut self, time: SimTime, op: OpId, read_page: Option<PageId>, outcome: &Outcome) {
        if let (Some(page), Outcome::Ok(OkValue::Read { version: Some(version) })) = (read_page, outcome) {
            self.reads.push((time, op, page, *version));
        }
    }

    pub(crate) fn finish(&self, report: &mut Report) {
        for &(time, op, page, version) in &self.reads {
            self.check_read(time, op, page, version, report);
        }
    }

    fn check_read(&self, time: SimTime, op: OpId, page: PageId, version: PageVersion, report: &mut Report) {
        let seq = version.commit_seq;
        if version.page != page {
            report.add(
                InvariantId::D3,
                time,
                vec![op],
                format!("op {op} read page {page} but was answered with a version of page {}", version.page),
            );
            return;
        }
        let candidates = self
            .visible
            .get(seq)
            .into_iter()
            .chain(self.superseded.get(&seq).into_iter().flatten());
        let earliest = candidates
            .filter(|visible| {
                visible
                    .writes
                    .iter()
                    .any(|write| write.page == page && write.value == version.value)
            })
            .map(|visible| visible.since)
            .min();
        match earliest {
            Some(since) if since <= time => {}
            Some(since) => report.add(
                InvariantId::D5,
                time,
                vec![op],
                format!(
                    "op {op} read page {page} at commit seq {seq} at {}, but that version became visible only at {}",
                    Secs(time),
                    Secs(since)
                ),
            ),
            None => report.add(
                InvariantId::D3,
                time,
                vec![op],
                format!(
                    "op {op} read page {page} = {} at commit seq {seq}, which no commit wrote",
                    version.value
                ),
            ),
        }
    }
}
