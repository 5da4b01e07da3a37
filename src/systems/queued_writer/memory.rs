//! An in-memory backend that honours the [`Backend`] contract, with the
//! faults a real one shows: slow calls, transient failures (busy, an
//! outage, an answer lost after the call applied) and permanent
//! rejections.
//!
//! Model: one global log (positions 1, 2, 3, …) of `(stream, message)`;
//! a message id is applied at most once. A call waits its request latency,
//! then applies atomically (or fails), then waits its response latency and
//! answers. Dropping the call's future before the apply leaves it
//! unapplied; after, applied — never half.
//!
//! Faults come from a per-call [`CallFaultPlan`] (tests) or from the run's
//! fault sites (buggify: fault phase only, at the rate the profile gives
//! each kind). What is applied is recorded as [`BackendEvent`]s, and each
//! apply is a `backend.apply` event in the run's trace (stream, attempt,
//! log length after), so the trace digest follows what the backend holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::{buggify_with, choose_between, clock, trace_app, SimTime, Site};

use super::backend::{Backend, BackendCall, BackendError, BackendFuture, Receipt};
use super::{MessageId, StreamId};
use crate::systems::record::{lock_recovering, Recorder};

/// Application fault: the call is slow.
pub const SLOW: Site = Site::fault("backend.slow", "backend-slow");
/// How much slower, ms.
pub const SLOW_MS: Site = Site::value("backend.slow_ms");
/// Application fault: the backend is busy (transient, not applied).
pub const BUSY: Site = Site::fault("backend.busy", "backend-busy");
/// Application fault: the call applies but its answer is lost (transient).
pub const LOST_ANSWER: Site = Site::fault("backend.lost_answer", "backend-lost-answer");
/// Application fault: the call is rejected for good (permanent, not applied).
pub const REJECT: Site = Site::fault("backend.reject", "backend-permanent");
/// Application fault: the backend goes down; every call fails transiently
/// until it is back.
pub const OUTAGE: Site = Site::fault("backend.outage", "backend-outage");
/// How long an outage lasts, ms.
pub const OUTAGE_MS: Site = Site::value("backend.outage_ms");
/// A drawn request latency, µs.
pub const REQUEST_US: Site = Site::value("backend.request_us");
/// A drawn response latency, µs.
pub const RESPONSE_US: Site = Site::value("backend.response_us");

/// A latency: fixed, or drawn per call in `min..=max` µs from the run's
/// chooser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Drawn per call.
    Drawn {
        /// Shortest, µs.
        min_us: u64,
        /// Longest, µs.
        max_us: u64,
    },
}

impl Latency {
    fn draw(self, site: &Site) -> Duration {
        match self {
            Latency::Fixed(d) => d,
            Latency::Drawn { min_us, max_us } => {
                Duration::from_micros(choose_between(site, min_us, max_us.max(min_us)))
            }
        }
    }
}

/// What goes wrong with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFault {
    /// Nothing.
    None,
    /// It takes this much longer before applying.
    Slow(Duration),
    /// Transient failure, not applied.
    Busy,
    /// Applied, then a transient failure (the answer is lost).
    LostAnswer,
    /// Permanent rejection, not applied.
    Reject,
    /// The backend goes down for this long from now: this and every call
    /// until then fail transiently.
    Outage(Duration),
}

/// Chooses the fault of call number `n` (1, 2, 3, … across all callers).
pub type CallFaultPlan = Arc<dyn Fn(u64, &BackendCall<'_>) -> CallFault + Send + Sync>;

/// Settings.
#[derive(Clone)]
pub struct MemoryBackendConfig {
    /// Time from the call to its apply.
    pub request_latency: Latency,
    /// Time from the apply to the answer.
    pub response_latency: Latency,
    /// Draw faults at the fault sites (fault phase only).
    pub buggify: bool,
    /// Per-call faults (tests); overrides the fault sites.
    pub fault_plan: Option<CallFaultPlan>,
    /// Where applies are recorded.
    pub recorder: Recorder<BackendEvent>,
}

impl Default for MemoryBackendConfig {
    fn default() -> Self {
        MemoryBackendConfig {
            request_latency: Latency::Fixed(Duration::from_micros(100)),
            response_latency: Latency::Fixed(Duration::from_micros(100)),
            buggify: false,
            fault_plan: None,
            recorder: Recorder::new(),
        }
    }
}

/// A call that applied something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// Messages newly appended by one call (already-applied ones left out).
    Applied {
        /// The call's stream: where they went.
        stream: StreamId,
        /// The call's attempt number.
        attempt: u32,
        /// `(message id, position)` in log order.
        entries: Vec<(MessageId, u64)>,
    },
}

/// One message in the backend's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Position (1, 2, 3, …).
    pub position: u64,
    /// The stream it was appended to.
    pub stream: StreamId,
    /// Its id.
    pub id: MessageId,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// One call as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// When it arrived.
    pub at: SimTime,
    /// Its stream.
    pub stream: StreamId,
    /// Its message ids, in order.
    pub ids: Vec<MessageId>,
    /// Its attempt number.
    pub attempt: u32,
}

#[derive(Default)]
struct Store {
    log: Vec<StoredMessage>,
    applied: BTreeMap<MessageId, u64>,
    calls: Vec<CallRecord>,
    down_until: Option<SimTime>,
}

/// The in-memory backend. Cloning shares it.
#[derive(Clone)]
pub struct MemoryBackend {
    config: MemoryBackendConfig,
    store: Arc<Mutex<Store>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new(config: MemoryBackendConfig) -> MemoryBackend {
        MemoryBackend {
            config,
            store: Arc::default(),
        }
    }

    /// The whole log, in position order.
    pub fn contents(&self) -> Vec<StoredMessage> {
        lock_recovering(&self.store).log.clone()
    }

    /// The ids appended to `stream`, in order.
    pub fn stream(&self, stream: StreamId) -> Vec<MessageId> {
        lock_recovering(&self.store)
            .log
            .iter()
            .filter(|m| m.stream == stream)
            .map(|m| m.id)
            .collect()
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock_recovering(&self.store).calls.clone()
    }

    /// Number of calls received.
    pub fn call_count(&self) -> usize {
        lock_recovering(&self.store).calls.len()
    }

    /// The recorder of applies.
    pub fn recorder(&self) -> &Recorder<BackendEvent> {
        &self.config.recorder
    }

    /// Log the call and decide its fault.
    fn receive(&self, call: &BackendCall<'_>) -> CallFault {
        let n = {
            let mut store = lock_recovering(&self.store);
            store.calls.push(CallRecord {
                at: clock::now(),
                stream: call.stream,
                ids: call.messages.iter().map(|m| m.id).collect(),
                attempt: call.attempt,
            });
            store.calls.len() as u64
        };
        if let Some(plan) = &self.config.fault_plan {
            return plan(n, call);
        }
        if !self.config.buggify {
            return CallFault::None;
        }
        let stream = call.stream;
        if buggify_with(&OUTAGE, || {
            format!("backend down at call {n} (stream {stream})")
        }) {
            return CallFault::Outage(Duration::from_millis(choose_between(&OUTAGE_MS, 10, 200)));
        }
        if buggify_with(&REJECT, || format!("backend rejects call {n} for good")) {
            return CallFault::Reject;
        }
        if buggify_with(&BUSY, || format!("backend busy at call {n}")) {
            return CallFault::Busy;
        }
        if buggify_with(&LOST_ANSWER, || format!("answer to call {n} lost")) {
            return CallFault::LostAnswer;
        }
        if buggify_with(&SLOW, || format!("call {n} is slow")) {
            return CallFault::Slow(Duration::from_millis(choose_between(&SLOW_MS, 5, 60)));
        }
        CallFault::None
    }

    /// Whether the backend is down now (starting an outage if `fault` says).
    fn down(&self, fault: CallFault) -> bool {
        let now = clock::now();
        let mut store = lock_recovering(&self.store);
        if let CallFault::Outage(length) = fault {
            let until = now.plus(length);
            store.down_until = Some(store.down_until.map_or(until, |u| u.max(until)));
        }
        store.down_until.is_some_and(|until| now < until)
    }

    /// Apply `call` atomically; one receipt per message.
    fn apply(&self, call: &BackendCall<'_>) -> Vec<Receipt> {
        let mut store = lock_recovering(&self.store);
        let mut receipts = Vec::with_capacity(call.messages.len());
        let mut entries = Vec::new();
        for message in call.messages {
            if let Some(&position) = store.applied.get(&message.id) {
                receipts.push(Receipt::AlreadyApplied { position });
                continue;
            }
            let position = store.log.len() as u64 + 1;
            store.applied.insert(message.id, position);
            store.log.push(StoredMessage {
                position,
                stream: call.stream,
                id: message.id,
                payload: message.payload.clone(),
            });
            entries.push((message.id, position));
            receipts.push(Receipt::Appended { position });
        }
        // In the run's trace (and so its digest): what the backend holds.
        trace_app(
            "backend.apply",
            &[
                u64::from(call.stream),
                u64::from(call.attempt),
                store.log.len() as u64,
            ],
        );
        if !entries.is_empty() {
            // Recorded under the store's lock: the record order is the log order.
            self.config.recorder.record(BackendEvent::Applied {
                stream: call.stream,
                attempt: call.attempt,
                entries,
            });
        }
        receipts
    }

    async fn serve(&self, call: BackendCall<'_>) -> Result<Vec<Receipt>, BackendError> {
        let fault = self.receive(&call);
        let mut request = self.config.request_latency.draw(&REQUEST_US);
        if let CallFault::Slow(extra) = fault {
            request += extra;
        }
        clock::sleep(request).await;
        if self.down(fault) {
            return Err(BackendError::Transient("backend unavailable".into()));
        }
        match fault {
            CallFault::Busy => return Err(BackendError::Transient("backend busy".into())),
            CallFault::Reject => {
                return Err(BackendError::Permanent("rejected by the backend".into()))
            }
            _ => {}
        }
        let receipts = self.apply(&call);
        clock::sleep(self.config.response_latency.draw(&RESPONSE_US)).await;
        if fault == CallFault::LostAnswer {
            return Err(BackendError::Transient("answer lost".into()));
        }
        Ok(receipts)
    }
}

impl Backend for MemoryBackend {
    fn append<'a>(&'a self, call: BackendCall<'a>) -> BackendFuture<'a> {
        Box::pin(self.serve(call))
    }
}
