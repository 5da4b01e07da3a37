//! The `backoff` scenario's committed store: a page store with
//! first-committer-wins validation and event-id receipts, served over the
//! simulated network, which the fault scheduler makes contentious.
//!
//! It is the retry loop's adversary, not a system under test, but its
//! answers must be true: `Committed` means durable and published,
//! `Conflict` and `Rejected` mean not applied by this request, and the
//! `applied` field of a rejection names the commit that applied the event
//! when one did. Durability is a log that survives crashes (the disk's
//! crash semantics are the `commit-service` scenario's subject): a commit
//! is durable once appended.
//!
//! The store handles one message at a time. A commit is one batch of one
//! request: validate → append (durable) → sync latency → publish → answer.
//! A crash inside the sync latency leaves a durable commit unanswered;
//! recovery exposes it, and the writer's retry is told `receipt-exists`.
//!
//! Application faults (fault phase only):
//! - `conflict`: one commit rejected as if its basis moved;
//! - `conflict-storm`: every commit rejected as a conflict for 20–300 ms,
//!   a burst of contention like spec 02's historical storm of 8 conflicts;
//! - `receipt-exists`: a commit rejected for good as already applied
//!   although it was not (a forced permanent rejection);
//! - `lost-answer`: a commit applies but its answer is never sent (the
//!   connection dropped), so the retry meets the receipt of its own
//!   earlier attempt.
//!
//! What happens is recorded as model events directly: `BatchValidated`,
//! `WalAppended`, `FsyncReturned` and `Published` per commit, a
//! `ServerCrash` when a restarted incarnation starts, and `Recovered` with
//! the durable log and the page state after each recovery. One stream in
//! real order: a crash is recorded after everything its incarnation did.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models::{
    AttemptRef, BatchRequest, EventKind, LogEntry, PageVersion, PageWrite, Recovery, Verdict,
};
use durasim_sim::{buggify_with, choose_between, clock, Net, ProcessCtx, SimTime, Site};

use crate::scenarios::history_check::digest;
use crate::scenarios::rmw_client::Msg;
use crate::systems::group_commit::{
    CommitRequest, CommitResponse, ConflictReason, PermanentReason,
};
use crate::systems::record::{lock_recovering, Recorder};
use crate::systems::wal_format::Frame;

/// One commit rejected as if its basis moved.
pub(super) const FORCE_CONFLICT: Site = Site::fault("store.force_conflict", "conflict");
/// A storm of conflicts starts.
pub(super) const CONFLICT_STORM: Site = Site::fault("store.conflict_storm", "conflict-storm");
/// How long a storm lasts, ms.
const STORM_MS: Site = Site::value("store.conflict_storm_ms");
/// One commit rejected as already applied although it was not.
pub(super) const FORCE_RECEIPT_EXISTS: Site =
    Site::fault("store.force_receipt_exists", "receipt-exists");
/// A commit's answer is not sent.
pub(super) const LOSE_ANSWER: Site = Site::fault("store.lose_answer", "lost-answer");
/// The sync latency of one commit, µs.
const SYNC_US: Site = Site::value("store.sync_us");

/// What outlives the store's incarnations: the durable log and the record.
#[derive(Default)]
pub(super) struct StoreShared {
    durable: Mutex<Vec<Frame>>,
    next_batch: AtomicU64,
    recoveries: AtomicU64,
    /// Model events, in real order.
    pub(super) events: Recorder<EventKind>,
}

impl StoreShared {
    /// Recoveries finished so far.
    pub(super) fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }
}

/// The published state, rebuilt from the durable log by recovery.
#[derive(Default)]
struct Index {
    commit_seq: u64,
    pages: BTreeMap<u32, (u64, Vec<u8>)>,
    applied: BTreeMap<u64, u64>,
}

impl Index {
    fn apply(&mut self, frame: &Frame) {
        self.commit_seq = frame.commit_seq;
        for &page in &frame.pages {
            self.pages
                .insert(page, (frame.commit_seq, frame.payload.clone()));
        }
        if let Some(event) = frame.event_id {
            self.applied.insert(event, frame.commit_seq);
        }
    }
}

/// One incarnation of the store.
struct Store {
    shared: Arc<StoreShared>,
    index: Index,
    storm_until: Option<SimTime>,
}

/// The store process's init: recover, then serve until the process dies.
pub(super) async fn serve(ctx: ProcessCtx, net: Net<Msg>, shared: Arc<StoreShared>) {
    if ctx.incarnation() > 1 {
        shared.events.record(EventKind::ServerCrash {
            process: ctx.id(),
            during_recovery: false,
        });
    }
    let mut store = Store::recover(ctx.id(), shared);
    let endpoint = net.endpoint(&ctx);
    loop {
        let (from, msg) = endpoint.recv().await;
        match msg {
            Msg::Read { rid, page } => {
                let (basis, value) = store.read(page);
                endpoint.send(from, Msg::ReadOk { rid, basis, value });
            }
            Msg::Commit {
                rid,
                origin,
                request,
            } => {
                let (response, applied) = store.commit(origin, request).await;
                let committed = matches!(response, CommitResponse::Committed { .. });
                if committed
                    && buggify_with(&LOSE_ANSWER, || {
                        format!(
                            "the answer to op {} attempt {} is lost",
                            origin.op, origin.attempt
                        )
                    })
                {
                    continue;
                }
                endpoint.send(
                    from,
                    Msg::Answer {
                        rid,
                        response,
                        applied,
                    },
                );
            }
            Msg::ReadOk { .. } | Msg::Answer { .. } => {}
        }
    }
}

impl Store {
    /// Rebuild the published state from the durable log (instant: no I/O,
    /// so it cannot crash halfway) and record what it exposes.
    fn recover(process: u32, shared: Arc<StoreShared>) -> Store {
        let mut index = Index::default();
        let log: Vec<LogEntry> = {
            let durable = lock_recovering(&shared.durable);
            for frame in durable.iter() {
                index.apply(frame);
            }
            durable
                .iter()
                .map(|f| LogEntry {
                    seq: f.commit_seq,
                    txn_id: f.txn_id,
                    event_id: f.event_id,
                    writes: writes(&f.pages, &f.payload),
                })
                .collect()
        };
        let state = index
            .pages
            .iter()
            .map(|(&page, (commit_seq, value))| PageVersion {
                page,
                commit_seq: *commit_seq,
                value: digest(value),
            })
            .collect();
        shared
            .events
            .record(EventKind::Recovered(Box::new(Recovery {
                process,
                log,
                state: Some(state),
                corruption_reported_from: None,
            })));
        shared.recoveries.fetch_add(1, Ordering::Relaxed);
        Store {
            shared,
            index,
            storm_until: None,
        }
    }

    fn read(&self, page: u32) -> (u64, Option<Vec<u8>>) {
        let value = self.index.pages.get(&page).map(|(_, v)| v.clone());
        (self.index.commit_seq, value)
    }

    /// Validate, and if valid make durable, publish and answer `Committed`.
    /// Returns the answer and, for a rejection, the commit that applied the
    /// request's event.
    async fn commit(
        &mut self,
        origin: AttemptRef,
        request: CommitRequest,
    ) -> (CommitResponse, Option<u64>) {
        let batch = self.shared.next_batch.fetch_add(1, Ordering::Relaxed) + 1;
        let rejection = self
            .forced_rejection(&request)
            .or_else(|| self.validate(&request));
        let verdict = match &rejection {
            None => Verdict::Valid,
            Some(CommitResponse::Rejected { reason }) => Verdict::Conflict {
                reason: reason.name().to_string(),
            },
            Some(CommitResponse::Conflict { reason }) => Verdict::Conflict {
                reason: format!("conflict: {reason:?}"),
            },
            Some(other) => Verdict::Conflict {
                reason: format!("{other:?}"),
            },
        };
        self.record(EventKind::BatchValidated {
            batch,
            requests: vec![BatchRequest {
                origin: Some(origin),
                txn_id: request.txn_id,
                event_id: request.event_id,
                snapshot_seq: request.snapshot_seq,
                writes: writes(&request.write_set_pages, &request.payload),
                verdict,
            }],
        });
        if let Some(response) = rejection {
            let applied = match response {
                CommitResponse::Rejected { .. } => request
                    .event_id
                    .and_then(|e| self.index.applied.get(&e).copied()),
                _ => None,
            };
            return (response, applied);
        }
        let commit_seq = self.index.commit_seq + 1;
        let frame = Frame {
            commit_seq,
            txn_id: request.txn_id,
            event_id: request.event_id,
            pages: request.write_set_pages,
            payload: request.payload,
        };
        let wal_offset = {
            let mut durable = lock_recovering(&self.shared.durable);
            // Recovery rebuilt the index from this very log, and only this
            // task appends: the next seq is the next position.
            debug_assert_eq!(durable.len() as u64, commit_seq - 1);
            durable.push(frame.clone());
            commit_seq - 1
        };
        self.record(EventKind::WalAppended { batch, ok: true });
        clock::sleep(Duration::from_micros(choose_between(&SYNC_US, 100, 1500))).await;
        self.record(EventKind::FsyncReturned { batch, ok: true });
        self.index.apply(&frame);
        self.record(EventKind::Published {
            batch,
            commit_seqs: vec![commit_seq],
        });
        (
            CommitResponse::Committed {
                wal_offset,
                commit_seq,
            },
            None,
        )
    }

    /// Injected rejections: an ongoing storm, a new storm, a single
    /// conflict, a false receipt.
    fn forced_rejection(&mut self, request: &CommitRequest) -> Option<CommitResponse> {
        let conflict = Some(CommitResponse::Conflict {
            reason: ConflictReason::Forced,
        });
        let now = clock::now();
        if self.storm_until.is_some_and(|end| now < end) {
            return conflict;
        }
        let txn = request.txn_id;
        if buggify_with(&CONFLICT_STORM, || {
            format!("a storm of conflicts starts at txn {txn}")
        }) {
            let ms = choose_between(&STORM_MS, 20, 300);
            self.storm_until = Some(now.plus(Duration::from_millis(ms)));
            return conflict;
        }
        if buggify_with(&FORCE_CONFLICT, || {
            format!("txn {txn} rejected as if its basis moved")
        }) {
            return conflict;
        }
        if buggify_with(&FORCE_RECEIPT_EXISTS, || {
            format!("txn {txn} rejected as already applied")
        }) {
            return Some(CommitResponse::Rejected {
                reason: PermanentReason::ReceiptExists {
                    event_id: request.event_id,
                },
            });
        }
        None
    }

    /// Receipts first (never apply an event twice), then first committer
    /// wins: a page written after the request's basis conflicts.
    fn validate(&self, request: &CommitRequest) -> Option<CommitResponse> {
        if let Some(event) = request.event_id {
            if self.index.applied.contains_key(&event) {
                return Some(CommitResponse::Rejected {
                    reason: PermanentReason::ReceiptExists {
                        event_id: Some(event),
                    },
                });
            }
        }
        request.write_set_pages.iter().find_map(|&page| {
            let committed_seq = self.index.pages.get(&page).map_or(0, |(seq, _)| *seq);
            (committed_seq > request.snapshot_seq).then_some(CommitResponse::Conflict {
                reason: ConflictReason::CommittedSinceSnapshot {
                    page,
                    committed_seq,
                },
            })
        })
    }

    fn record(&self, event: EventKind) {
        self.shared.events.record(event);
    }
}

fn writes(pages: &[u32], payload: &[u8]) -> Vec<PageWrite> {
    let value = digest(payload);
    pages
        .iter()
        .map(|&page| PageWrite { page, value })
        .collect()
}
