//! D8 first-committer-wins: committed requests' write sets never overlap
//! pages committed after their snapshot, so the committed history is
//! serialisable in commit order.
//!
//! Verifies, for every request appended to the WAL (the log is the serial
//! order, whether or not the batch's fsync later succeeds): with `seq` its
//! place in the log and `snapshot` its basis, `snapshot < seq`, and no page
//! it writes was written by a commit in `(snapshot, seq)` — including an
//! earlier request of the same batch. After a recovery the page store is
//! the recovered log's (rebuilt when the log's length differs from what was
//! appended; a log of the same length but other content is reported by
//! `recovered_log`).
//!
//! Does not verify: that validation's `Conflict` verdicts were necessary
//! (a spurious conflict costs a retry, not safety), conflicted requests
//! reaching recovery (reported as D8 by `recovered_log`).

use crate::history::{BatchRequest, LogEntry, SimTime, Verdict};
use crate::model::page_store::PageStore;
use crate::violation::InvariantId;

use super::Report;

/// The lineage's page store.
#[derive(Debug, Default)]
pub(crate) struct FirstCommitterWins {
    store: PageStore,
    lineage_len: u64,
}

impl FirstCommitterWins {
    pub(crate) fn on_appended(
        &mut self,
        time: SimTime,
        requests: &[BatchRequest],
        report: &mut Report,
    ) {
        for request in requests.iter().filter(|r| r.verdict == Verdict::Valid) {
            let seq = self.lineage_len.saturating_add(1);
            let ops = || request.origin.map(|o| o.op).into_iter().collect();
            let snapshot = request.snapshot_seq;
            if snapshot >= seq {
                report.add(
                    InvariantId::D8,
                    time,
                    ops(),
                    format!(
                        "commit seq {seq} (txn {}) claims snapshot {snapshot}, which is not before its own commit",
                        request.txn_id
                    ),
                );
            } else if let Some(conflict) = self.store.first_conflict(snapshot, &request.writes) {
                report.add(
                    InvariantId::D8,
                    time,
                    ops(),
                    format!(
                        "commit seq {seq} (txn {}) writes page {}, which commit seq {} wrote after its snapshot {snapshot}: the first committer must win",
                        request.txn_id, conflict.page, conflict.winner
                    ),
                );
            }
            self.store.apply(seq, &request.writes);
            self.lineage_len = seq;
        }
    }

    /// A recovery exposed `log`, whose page state is `replayed`.
    pub(crate) fn on_recovered(&mut self, log: &[LogEntry], replayed: &PageStore) {
        if log.len() as u64 == self.lineage_len {
            return;
        }
        self.store.clone_from(replayed);
        self.lineage_len = log.len() as u64;
    }
}
