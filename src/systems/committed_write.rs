//! Spec 02's client side: read-modify-write event handlers that commit
//! through the group commit coordinator with [`super::backoff`]'s retries.
//!
//! Each attempt reads the page and its basis (the commit seq of the read)
//! **afresh**, runs the handler on that value, and commits with the basis
//! as precondition and the event id for dedup. The coordinator's answers
//! map onto the rejection classes:
//!
//! - `Conflict` (the basis moved) → transient: re-run against fresh state.
//! - `Failed` (the batch was discarded durably) → transient: not applied,
//!   safe to re-run.
//! - `Unknown` (the coordinator stopped before answering) → transient, and
//!   the write may have applied: if a later attempt is then told
//!   `receipt-exists`, that is this write's own earlier attempt, and the
//!   write has converged (exactly once, D7).
//! - `Rejected { receipt-exists }` otherwise → permanent: never retried,
//!   the handler is not re-run, telemetry names the reason.
//!
//! [`EventLoop`] processes a client's events one at a time in submission
//! order, so events issued together land in the order they were issued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::backoff::{Rejection, RetryLoop, WriteError};
use super::group_commit::{CommitClient, CommitRequest, CommitResponse};

/// Computes a page's new value from its current one (`None`: never written).
pub type Handler = Box<dyn FnMut(Option<&[u8]>) -> Vec<u8> + Send>;

/// Writes one page by read-modify-write with retries.
#[derive(Clone)]
pub struct PageWriter {
    client: CommitClient,
    retry: RetryLoop,
    page: u32,
}

impl PageWriter {
    /// A writer of `page` through `client`, retrying with `retry`.
    pub fn new(client: CommitClient, retry: RetryLoop, page: u32) -> PageWriter {
        PageWriter {
            client,
            retry,
            page,
        }
    }

    /// The retry loop (for its telemetry and events).
    pub fn retry_loop(&self) -> &RetryLoop {
        &self.retry
    }

    /// Apply event `event_id`: run `handler` on the page's current value
    /// and commit the result, re-running on transient rejections. Returns
    /// the commit seq that applied it.
    pub async fn apply<H>(&self, event_id: u64, mut handler: H) -> Result<u64, WriteError>
    where
        H: FnMut(Option<&[u8]>) -> Vec<u8>,
    {
        let maybe_applied = Arc::new(AtomicBool::new(false));
        self.retry
            .run(event_id, |_attempt| {
                let (basis, current) = self.client.read_snapshot(self.page);
                let payload = handler(current.as_ref().map(|v| v.value.as_slice()));
                let request = CommitRequest {
                    txn_id: event_id,
                    event_id: Some(event_id),
                    snapshot_seq: basis,
                    write_set_pages: vec![self.page],
                    payload,
                };
                let client = self.client.clone();
                let maybe_applied = Arc::clone(&maybe_applied);
                async move {
                    let response = client.commit(request).await;
                    classify(&client, event_id, response, &maybe_applied)
                }
            })
            .await
    }
}

fn classify(
    client: &CommitClient,
    event_id: u64,
    response: CommitResponse,
    maybe_applied: &AtomicBool,
) -> Result<u64, Rejection> {
    classify_answer(response, maybe_applied, || client.applied_seq(event_id))
}

/// Map a coordinator's answer to one attempt onto spec 02's rejection
/// classes (see the module notes), for any client of a committed store.
///
/// `maybe_applied` is the write's memory across its attempts: set here
/// when an answer leaves the outcome unknown. `applied_seq` names the
/// commit that applied the write's event id; it is asked only when a
/// `receipt-exists` follows such an unknown attempt, and `None` then means
/// nothing applied it (the rejection stays permanent).
pub fn classify_answer(
    response: CommitResponse,
    maybe_applied: &AtomicBool,
    applied_seq: impl FnOnce() -> Option<u64>,
) -> Result<u64, Rejection> {
    match response {
        CommitResponse::Committed { commit_seq, .. } => Ok(commit_seq),
        CommitResponse::Conflict { reason } => Err(Rejection::Transient {
            reason: format!("conflict: {reason:?}"),
        }),
        CommitResponse::Failed { reason } => Err(Rejection::Transient {
            reason: format!("not applied: {reason}"),
        }),
        CommitResponse::Unknown { reason } => {
            maybe_applied.store(true, Ordering::Relaxed);
            Err(Rejection::Transient {
                reason: format!("outcome unknown: {reason}"),
            })
        }
        CommitResponse::Rejected { reason } => {
            let earlier = maybe_applied
                .load(Ordering::Relaxed)
                .then(applied_seq)
                .flatten();
            earlier.ok_or(Rejection::Permanent {
                reason: reason.name().to_string(),
            })
        }
    }
}

struct QueuedEvent {
    event_id: u64,
    handler: Handler,
    done: oneshot::Sender<Result<u64, WriteError>>,
}

/// A client's event queue: events are applied one at a time, in order.
#[derive(Clone)]
pub struct EventLoop {
    tx: mpsc::UnboundedSender<QueuedEvent>,
}

impl EventLoop {
    /// Start processing events with `writer` (a task of the current
    /// process; it ends when every `EventLoop` clone is dropped).
    pub fn spawn(writer: PageWriter) -> EventLoop {
        let (tx, mut rx) = mpsc::unbounded_channel::<QueuedEvent>();
        durasim_sim::task::spawn(async move {
            while let Some(mut event) = rx.recv().await {
                let result = writer.apply(event.event_id, &mut event.handler).await;
                let _ = event.done.send(result);
            }
        });
        EventLoop { tx }
    }

    /// Queue event `event_id`; the receiver yields its result. If the loop
    /// is gone the receiver reports an error at once.
    pub fn submit(
        &self,
        event_id: u64,
        handler: Handler,
    ) -> oneshot::Receiver<Result<u64, WriteError>> {
        let (done, result) = oneshot::channel();
        let _ = self.tx.send(QueuedEvent {
            event_id,
            handler,
            done,
        });
        result
    }
}

/// Encode a list of numbers as a page value.
pub fn encode_list(items: &[u64]) -> Vec<u8> {
    items.iter().flat_map(|i| i.to_le_bytes()).collect()
}

/// Decode a page value written by [`encode_list`] (`None`: empty list).
pub fn decode_list(value: Option<&[u8]>) -> Vec<u64> {
    value
        .unwrap_or_default()
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
        .collect()
}
