//! Reads against visibility: D5 (no version visible before its batch was
//! published, i.e. after a successful fsync) and D3 (nothing visible that
//! was never committed).
//!
//! Verifies, for each read that returned a version `(page, seq, value)`:
//! the page is the one asked for, and when the read completed the commit
//! numbered `seq` in the current lineage — exposed by the last recovery, or
//! published since — had written that value to that page. A version that
//! only became visible later (published or recovered after the read) is
//! D5; one that never did is D3. Reads are judged against the durable log
//! model's lineage, so a sequence number reused after a recovery dropped
//! an unpublished commit is judged by what it stood for at the time.
//!
//! Does not verify: reads that saw "never written", staleness (a read may
//! return an older version: the store is not claimed linearizable here).

use std::collections::BTreeMap;

use crate::history::{
    BatchRequest, CommitSeq, LogEntry, OkValue, OpId, Outcome, PageId, PageVersion, PageWrite,
    SimTime, Verdict,
};
use crate::model::durable_log::DurableLog;
use crate::violation::{InvariantId, Secs};

use super::Report;

/// A read whose version was not visible yet when it completed.
#[derive(Debug, Clone, Copy)]
struct EarlyRead {
    time: SimTime,
    op: OpId,
    version: PageVersion,
}

/// Reads waiting to learn whether their version ever became visible.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    early: BTreeMap<CommitSeq, Vec<EarlyRead>>,
}

fn wrote(writes: &[PageWrite], version: &PageVersion) -> bool {
    writes
        .iter()
        .any(|write| write.page == version.page && write.value == version.value)
}

/// What commit `seq` had written as of now in the model's lineage, if it
/// was visible (recovered, or published).
fn visible_writes<'m>(model: &'m DurableLog<'_>, seq: CommitSeq) -> Option<&'m [PageWrite]> {
    let base = model.base();
    let base_len = base.len() as u64;
    if (1..=base_len).contains(&seq) {
        let by_index = usize::try_from(seq - 1)
            .ok()
            .and_then(|i| base.get(i))
            .filter(|e| e.seq == seq);
        let entry = by_index.or_else(|| base.iter().find(|e| e.seq == seq))?;
        return Some(&entry.writes);
    }
    let position = usize::try_from(seq.checked_sub(base_len.saturating_add(1))?).ok()?;
    let frame = model.frames().get(position)?;
    frame.published_at.map(|_| frame.request.writes.as_slice())
}

impl Reads {
    pub(crate) fn on_complete(
        &mut self,
        time: SimTime,
        op: OpId,
        read_page: Option<PageId>,
        outcome: &Outcome,
        model: &DurableLog<'_>,
        report: &mut Report,
    ) {
        let (
            Some(page),
            Outcome::Ok(OkValue::Read {
                version: Some(version),
            }),
        ) = (read_page, outcome)
        else {
            return;
        };
        let seq = version.commit_seq;
        if version.page != page {
            report.add(
                InvariantId::D3,
                time,
                vec![op],
                format!(
                    "op {op} read page {page} but was answered with a version of page {}",
                    version.page
                ),
            );
            return;
        }
        match visible_writes(model, seq) {
            Some(writes) if wrote(writes, version) => {}
            Some(_) => report.add(
                InvariantId::D3,
                time,
                vec![op],
                format!("op {op} read page {page} = {} at commit seq {seq}, which that commit did not write", version.value),
            ),
            None => self.early.entry(seq).or_default().push(EarlyRead {
                time,
                op,
                version: **version,
            }),
        }
    }

    /// Commit `seq` became visible at `since` with `writes`.
    fn became_visible(
        &mut self,
        seq: CommitSeq,
        since: SimTime,
        writes: &[PageWrite],
        report: &mut Report,
    ) {
        let Some(reads) = self.early.get_mut(&seq) else {
            return;
        };
        reads.retain(|read| {
            if !wrote(writes, &read.version) {
                return true;
            }
            let op = read.op;
            report.add(
                InvariantId::D5,
                read.time,
                vec![op],
                format!(
                    "op {op} read page {} at commit seq {seq} at {}, but that version became visible only at {}",
                    read.version.page,
                    Secs(read.time),
                    Secs(since)
                ),
            );
            false
        });
        if reads.is_empty() {
            self.early.remove(&seq);
        }
    }

    pub(crate) fn on_published(
        &mut self,
        time: SimTime,
        requests: &[BatchRequest],
        commit_seqs: &[CommitSeq],
        report: &mut Report,
    ) {
        if self.early.is_empty() {
            return;
        }
        let valid = requests.iter().filter(|r| r.verdict == Verdict::Valid);
        for (request, seq) in valid.zip(commit_seqs) {
            self.became_visible(*seq, time, &request.writes, report);
        }
    }

    pub(crate) fn on_recovered(&mut self, time: SimTime, log: &[LogEntry], report: &mut Report) {
        if self.early.is_empty() {
            return;
        }
        for entry in log {
            self.became_visible(entry.seq, time, &entry.writes, report);
        }
    }

    pub(crate) fn finish(&self, report: &mut Report) {
        for (seq, reads) in &self.early {
            for read in reads {
                report.add(
                    InvariantId::D3,
                    read.time,
                    vec![read.op],
                    format!(
                        "op {} read page {} = {} at commit seq {seq}, which no commit wrote",
                        read.op, read.version.page, read.version.value
                    ),
                );
            }
        }
    }
}
