//! The read-modify-write client protocol shared by the networked
//! scenarios (`backoff`, `commit-service`): a client reads a page and the
//! commit seq it was read at, appends its event id to the page's value and
//! commits that with the read as its basis; every answer is classified by
//! the spec 02 committed-write rules ([`classify_answer`]).
//!
//! Both scenarios speak exactly this protocol to different servers; only
//! the value encoding and the timeouts differ, so those are parameters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use durasim_models::{AttemptRef, AttemptResult, RejectionClass};
use durasim_sim::{clock, Endpoint, ProcessId};

use crate::systems::backoff::{Rejection, RetryLoop, WriteError};
use crate::systems::committed_write::classify_answer;
use crate::systems::group_commit::{CommitRequest, CommitResponse};
use crate::systems::record::lock_recovering;

/// The client–server protocol.
#[derive(Debug, Clone)]
pub(super) enum Msg {
    /// Read `page` and the commit seq it was read at.
    Read { rid: u64, page: u32 },
    /// The answer to a read.
    ReadOk {
        rid: u64,
        basis: u64,
        value: Option<Vec<u8>>,
    },
    /// Commit `request` for attempt `origin`.
    Commit {
        rid: u64,
        origin: AttemptRef,
        request: CommitRequest,
    },
    /// The answer to a commit; with a `receipt-exists` rejection, the
    /// commit that applied the request's event, if the server knows one.
    Answer {
        rid: u64,
        response: CommitResponse,
        applied: Option<u64>,
    },
}

/// How a client talks to its server: how long it waits for each answer
/// and how a page's value holds its events.
#[derive(Debug, Clone, Copy)]
pub(super) struct RmwProtocol {
    /// How long a read may take before the attempt gives up (nothing was
    /// submitted, so it is certainly not applied).
    pub read_timeout: Duration,
    /// How long a commit may take before its outcome is unknown.
    pub commit_timeout: Duration,
    /// The events held by a page's value.
    pub decode: fn(Option<&[u8]>) -> Vec<u64>,
    /// A page's value holding these events.
    pub encode: fn(&[u64]) -> Vec<u8>,
}

impl RmwProtocol {
    /// Write event `op` (the operation id) into `page` through `retry`,
    /// one [`Self::attempt_once`] per attempt, recording what each attempt
    /// learnt in `learnt` by (op, attempt). Returns the loop's result and
    /// whether some attempt's outcome stayed unknown (it may have applied).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write(
        &self,
        retry: &RetryLoop,
        endpoint: &Endpoint<Msg>,
        server: ProcessId,
        rid: &AtomicU64,
        op: u64,
        page: u32,
        learnt: &Mutex<BTreeMap<(u64, u32), AttemptResult>>,
    ) -> (Result<u64, WriteError>, bool) {
        let maybe_applied = AtomicBool::new(false);
        let result = retry
            .run(op, |attempt| {
                let maybe_applied = &maybe_applied;
                async move {
                    let origin = AttemptRef { op, attempt };
                    let (result, answer) = self
                        .attempt_once(endpoint, server, rid, origin, page, maybe_applied)
                        .await;
                    lock_recovering(learnt).insert((op, attempt), result);
                    answer
                }
            })
            .await;
        (result, maybe_applied.load(Ordering::Relaxed))
    }

    /// One attempt: read the page afresh, append the event id (the
    /// operation id) to its list, commit with the basis. Returns what the
    /// client learnt, for the history, and the retry loop's classification.
    pub(super) async fn attempt_once(
        &self,
        endpoint: &Endpoint<Msg>,
        server: ProcessId,
        rid: &AtomicU64,
        origin: AttemptRef,
        page: u32,
        maybe_applied: &AtomicBool,
    ) -> (AttemptResult, Result<u64, Rejection>) {
        let read_id = rid.fetch_add(1, Ordering::Relaxed) + 1;
        endpoint.send(server, Msg::Read { rid: read_id, page });
        let read = await_reply(endpoint, self.read_timeout, |m| match m {
            Msg::ReadOk { rid, basis, value } if rid == read_id => Some((basis, value)),
            _ => None,
        })
        .await;
        let Some((basis, value)) = read else {
            let reason = "unavailable: read timed out".to_string();
            return (
                AttemptResult::Rejected {
                    class: RejectionClass::Transient,
                    reason: reason.as_str().into(),
                },
                Err(Rejection::Transient { reason }),
            );
        };
        let mut events = (self.decode)(value.as_deref());
        events.push(origin.op);
        let request = CommitRequest {
            txn_id: origin.op << 16 | u64::from(origin.attempt),
            event_id: Some(origin.op),
            snapshot_seq: basis,
            write_set_pages: vec![page],
            payload: (self.encode)(&events),
        };
        let commit_id = rid.fetch_add(1, Ordering::Relaxed) + 1;
        endpoint.send(
            server,
            Msg::Commit {
                rid: commit_id,
                origin,
                request,
            },
        );
        let answer = await_reply(endpoint, self.commit_timeout, |m| match m {
            Msg::Answer {
                rid,
                response,
                applied,
            } if rid == commit_id => Some((response, applied)),
            _ => None,
        })
        .await;
        let (response, applied) = answer.unwrap_or_else(|| {
            let reason = "no answer".to_string();
            (CommitResponse::Unknown { reason }, None)
        });
        let learnt = learnt_from(&response);
        (learnt, classify_answer(response, maybe_applied, || applied))
    }
}

/// What an answer tells the client, as the history records it.
fn learnt_from(response: &CommitResponse) -> AttemptResult {
    match response {
        CommitResponse::Committed { commit_seq, .. } => AttemptResult::Committed {
            commit_seq: *commit_seq,
        },
        CommitResponse::Conflict { reason } => AttemptResult::Rejected {
            class: RejectionClass::Transient,
            reason: format!("conflict: {reason:?}").into(),
        },
        CommitResponse::Failed { reason } => AttemptResult::Rejected {
            class: RejectionClass::Transient,
            reason: format!("not applied: {reason}").into(),
        },
        CommitResponse::Unknown { .. } => AttemptResult::Unknown,
        CommitResponse::Rejected { reason } => AttemptResult::Rejected {
            class: RejectionClass::Permanent,
            reason: reason.name().into(),
        },
    }
}

/// Wait for the reply `pick` accepts (others are stale: dropped).
pub(super) async fn await_reply<T>(
    endpoint: &Endpoint<Msg>,
    timeout: Duration,
    mut pick: impl FnMut(Msg) -> Option<T>,
) -> Option<T> {
    let deadline = clock::now().plus(timeout);
    loop {
        let left = deadline.since(clock::now());
        if left.is_zero() {
            return None;
        }
        let (_, msg) = endpoint.recv_timeout(left).await?;
        if let Some(found) = pick(msg) {
            return Some(found);
        }
    }
}
