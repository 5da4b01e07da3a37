//! A trivially correct commit service that records its [`History`].
//!
//! Everything the checkers judge happens here in the plainest way: clients
//! run read-modify-write writes with backoff retries (spec 02) and reads;
//! requests cross a lossy, duplicating network into a two-phase channel
//! (spec 01); one coordinator batches them, validates first-committer-wins
//! with event-id receipts, appends, fsyncs, publishes; repairs run after
//! publication (spec 03); a bounded queue sheds or blocks (spec 04). The
//! server crashes at random points (between any two batch phases, and
//! always right after a failed fsync: fail-stop), and recovery keeps every
//! fsynced frame plus a random prefix of the rest; recovery itself may
//! crash, and is sometimes repeated on purpose. After the fault phase a
//! heal phase lets everything settle, then quiescence, then a final crash.
//!
//! It is sequential and driven by one seeded generator ([`SplitMix64`]), so
//! a configuration reproduces its history exactly. The property tests use
//! it as the "correct system" whose histories must always pass, and as the
//! base for single mutations that must always fail; the benchmark uses it
//! to build a large history.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::history::{
    AttemptRef, AttemptResult, BackoffPolicy, BatchRequest, Call, CommitSeq, EventId, EventKind,
    History, ItemId, LogEntry, OkValue, OpId, Outcome, OverflowPolicy, PageWrite, PermitSeq, Phase,
    ProcessId, Recovery, RejectionClass, RepairEventKind, RepairState, RepairSymbols, SimTime,
    UnknownReason, Verdict,
};
use crate::model::page_store::PageStore;
use crate::model::repair::xor_parity;

const MICROS: SimTime = 1_000;
const MILLIS: SimTime = 1_000_000;
/// The simulation advances in ticks of this length.
const TICK: SimTime = 50 * MICROS;
const SERVER: ProcessId = 0;
const CHANNEL: u32 = 0;
const QUEUE: u32 = 0;
const SHARD_SIZE: u32 = 4;

/// The small, seedable generator the reference draws every choice from.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `per_million / 1 000 000`.
    pub fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(per_million)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// Fault rates, in events per million draws. Per-tick rates are drawn once
/// per 50 µs tick; the others once per occasion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRates {
    /// Server crash, per tick.
    pub server_crash: u32,
    /// Server crash at each boundary between batch phases.
    pub crash_between_phases: u32,
    /// A response lost, per response.
    pub response_loss: u32,
    /// A request delivered twice, per request.
    pub request_duplication: u32,
    /// An fsync returning an error, per fsync.
    pub fsync_failure: u32,
    /// A client process crash, per tick.
    pub client_crash: u32,
    /// A crash during recovery, per recovery.
    pub recovery_crash: u32,
    /// A second recovery right after the first (same durable state).
    pub repeated_recovery: u32,
    /// A repair task failing, per task.
    pub repair_failure: u32,
    /// A client giving up on an unknown attempt with an unknown outcome.
    pub give_up_on_unknown: u32,
    /// A writer cancelling its reservation, per tick.
    pub cancelled_reservation: u32,
}

impl FaultRates {
    /// No faults at all.
    pub const NONE: FaultRates = FaultRates {
        server_crash: 0,
        crash_between_phases: 0,
        response_loss: 0,
        request_duplication: 0,
        fsync_failure: 0,
        client_crash: 0,
        recovery_crash: 0,
        repeated_recovery: 0,
        repair_failure: 0,
        give_up_on_unknown: 0,
        cancelled_reservation: 0,
    };
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceConfig {
    /// Seed of every choice.
    pub seed: u64,
    /// Client operations to invoke (writes and reads).
    pub operations: usize,
    /// How many of them are invoked in the fault phase; the rest in the heal
    /// phase.
    pub fault_phase_operations: usize,
    /// Client processes.
    pub clients: u32,
    /// Page space (small means more conflicts).
    pub pages: u32,
    /// Reads per million operations.
    pub reads_per_million: u32,
    /// Largest batch.
    pub batch_max: usize,
    /// Two-phase channel capacity.
    pub channel_capacity: u32,
    /// Bounded queue capacity and policy, if the run has one.
    pub queue: Option<(u32, OverflowPolicy)>,
    /// Whether commits get repair symbols.
    pub repairs: bool,
    /// The clients' backoff policy.
    pub policy: BackoffPolicy,
    /// How long a client waits for a response.
    pub timeout: SimTime,
    /// Fault rates (fault phase only).
    pub faults: FaultRates,
}

impl ReferenceConfig {
    /// A small, fault-heavy configuration drawn from `seed`.
    pub fn small(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x5EED);
        let overflow = match rng.below(3) {
            0 => OverflowPolicy::Block,
            1 => OverflowPolicy::DropOldest,
            _ => OverflowPolicy::Fail,
        };
        let operations = 20 + rng.below(60) as usize;
        Self {
            seed,
            operations,
            fault_phase_operations: operations * 3 / 4,
            clients: 1 + rng.below(5) as u32,
            pages: 2 + rng.below(8) as u32,
            reads_per_million: 150_000,
            batch_max: 1 + rng.below(6) as usize,
            channel_capacity: 1 + rng.below(6) as u32,
            queue: Some((1 + rng.below(3) as u32, overflow)),
            repairs: true,
            policy: BackoffPolicy {
                base_delay: 100 * MICROS,
                max_delay: 2 * MILLIS,
                jitter: 0.5,
                retry_window: (2 + rng.below(20)) * MILLIS,
            },
            timeout: 2 * MILLIS,
            faults: FaultRates {
                server_crash: 4_000,
                crash_between_phases: 80_000,
                response_loss: 50_000,
                request_duplication: 30_000,
                fsync_failure: 40_000,
                client_crash: 2_000,
                recovery_crash: 200_000,
                repeated_recovery: 300_000,
                repair_failure: 100_000,
                give_up_on_unknown: 100_000,
                cancelled_reservation: 20_000,
            },
        }
    }

    /// A large configuration with few crashes, for the benchmark.
    pub fn large(seed: u64, operations: usize) -> Self {
        let mut config = Self::small(seed);
        config.operations = operations;
        config.fault_phase_operations = operations * 9 / 10;
        config.clients = 16;
        config.pages = 4096;
        config.reads_per_million = 50_000;
        config.batch_max = 16;
        config.channel_capacity = 16;
        config.queue = Some((8, OverflowPolicy::DropOldest));
        config.faults = FaultRates {
            server_crash: 1,
            crash_between_phases: 4,
            response_loss: 2_000,
            request_duplication: 1_000,
            fsync_failure: 0,
            client_crash: 20,
            recovery_crash: 500_000,
            repeated_recovery: 500_000,
            repair_failure: 10_000,
            give_up_on_unknown: 10_000,
            cancelled_reservation: 2_000,
        };
        config
    }

    /// The liveness bound this configuration guarantees after healing:
    /// a retry window, the longest sleep, and some timeouts.
    pub fn liveness_bound(&self) -> SimTime {
        self.policy
            .retry_window
            .saturating_add(self.policy.max_delay)
            .saturating_add(self.timeout.saturating_mul(4))
            .saturating_add(50 * MILLIS)
    }
}

/// Generate the history of one run of the reference service.
pub fn generate(config: &ReferenceConfig) -> History {
    Sim::new(config).run()
}

#[derive(Debug, Clone)]
struct Request {
    origin: AttemptRef,
    txn_id: u64,
    event_id: EventId,
    snapshot_seq: CommitSeq,
    writes: Vec<PageWrite>,
}

#[derive(Debug, Clone, Copy)]
enum WriteState {
    Sleeping { until: SimTime, delay: SimTime },
    Waiting { deadline: SimTime },
}

#[derive(Debug, Clone)]
struct Write {
    process: ProcessId,
    attempt: u32,
    first_started: SimTime,
    any_unknown: bool,
    state: WriteState,
}

#[derive(Debug, Clone)]
struct Slot {
    request: Request,
    sent: bool,
}

#[derive(Debug)]
struct QueueSim {
    capacity: u32,
    overflow: OverflowPolicy,
    items: VecDeque<ItemId>,
    blocked: Option<ItemId>,
}

struct Sim<'c> {
    config: &'c ReferenceConfig,
    rng: SplitMix64,
    history: History,
    now: SimTime,
    healed: bool,
    // Clients.
    invoked: usize,
    next_op: OpId,
    writes: BTreeMap<OpId, Write>,
    to_server: VecDeque<(SimTime, Request)>,
    to_client: VecDeque<(SimTime, AttemptRef, AttemptResult)>,
    // Server.
    up: bool,
    down_until: SimTime,
    log: Vec<LogEntry>,
    durable_len: usize,
    visible_top: CommitSeq,
    receipts: BTreeSet<EventId>,
    validation: PageStore,
    visible: PageStore,
    waiting_writers: VecDeque<Request>,
    slots: BTreeMap<PermitSeq, Slot>,
    next_permit: PermitSeq,
    next_batch: u64,
    // Repairs.
    repair_events: BTreeMap<CommitSeq, u32>,
    repair_pending: VecDeque<CommitSeq>,
    repair_running: VecDeque<CommitSeq>,
    repair_final: BTreeMap<CommitSeq, RepairState>,
    // Queue.
    queue: Option<QueueSim>,
    next_item: ItemId,
}

impl<'c> Sim<'c> {
    fn new(config: &'c ReferenceConfig) -> Self {
        Self {
            config,
            rng: SplitMix64::new(config.seed),
            history: History::with_capacity(config.operations.saturating_mul(14)),
            now: 0,
            healed: false,
            invoked: 0,
            next_op: 1,
            writes: BTreeMap::new(),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            up: true,
            down_until: 0,
            log: Vec::new(),
            durable_len: 0,
            visible_top: 0,
            receipts: BTreeSet::new(),
            validation: PageStore::new(),
            visible: PageStore::new(),
            waiting_writers: VecDeque::new(),
            slots: BTreeMap::new(),
            next_permit: 1,
            next_batch: 1,
            repair_events: BTreeMap::new(),
            repair_pending: VecDeque::new(),
            repair_running: VecDeque::new(),
            repair_final: BTreeMap::new(),
            queue: None,
            next_item: 1,
        }
    }

    fn push(&mut self, kind: EventKind) {
        self.history.push(self.now, kind);
    }

    fn fault(&mut self, per_million: u32) -> bool {
        !self.healed && self.rng.chance(per_million)
    }

    fn run(mut self) -> History {
        self.push(EventKind::Phase(Phase::Fault));
        self.push(EventKind::BackoffPolicyDeclared(self.config.policy));
        self.declare_volatile();
        // A run that cannot settle is a bug in this file; the bound keeps a
        // broken run from spinning forever (its history then fails checks).
        let tick_limit = (self.config.operations as u64)
            .saturating_mul(2_000)
            .saturating_add(100_000);
        for _ in 0..tick_limit {
            self.now += TICK;
            self.maybe_heal();
            if self.up && self.fault(self.config.faults.server_crash) {
                self.crash();
            }
            if !self.up && self.now >= self.down_until {
                self.recover(false);
            }
            if self.fault(self.config.faults.client_crash) {
                self.crash_client();
            }
            self.invoke_operations();
            self.deliver_responses();
            self.run_client_timers();
            // Each step re-checks: a batch may crash the server mid-tick.
            if self.up {
                self.server_step();
            }
            if self.up {
                self.repair_step();
            }
            if self.up {
                self.queue_step();
            } else {
                self.drop_arrivals();
            }
            if self.settled() {
                break;
            }
        }
        self.finish()
    }

    fn maybe_heal(&mut self) {
        if self.healed || self.invoked < self.config.fault_phase_operations {
            return;
        }
        self.healed = true;
        self.push(EventKind::Phase(Phase::Heal {
            bound: self.config.liveness_bound(),
            resolves_unknown: false,
        }));
        if !self.up {
            self.recover(false);
        }
    }

    fn settled(&self) -> bool {
        self.healed
            && self.invoked >= self.config.operations
            && self.writes.is_empty()
            && self.to_server.is_empty()
            && self.waiting_writers.is_empty()
            && self.slots.is_empty()
            && self.repair_pending.is_empty()
            && self.repair_running.is_empty()
            && self
                .queue
                .as_ref()
                .is_none_or(|q| q.items.is_empty() && q.blocked.is_none())
    }

    fn declare_volatile(&mut self) {
        self.push(EventKind::ChannelDeclared {
            channel: CHANNEL,
            capacity: self.config.channel_capacity,
        });
        self.next_permit = 1;
        if let Some((capacity, overflow)) = self.config.queue {
            self.push(EventKind::QueueDeclared {
                queue: QUEUE,
                capacity,
                overflow,
            });
            self.queue = Some(QueueSim {
                capacity,
                overflow,
                items: VecDeque::new(),
                blocked: None,
            });
        }
    }

    // ----- clients -------------------------------------------------------

    fn invoke_operations(&mut self) {
        let clients = self.config.clients as usize;
        for _ in 0..clients {
            if self.invoked >= self.config.operations || self.writes.len() >= clients {
                return;
            }
            if self.rng.below(2) == 0 {
                continue;
            }
            let op = self.next_op;
            self.next_op += 1;
            self.invoked += 1;
            let process = self.rng.below(u64::from(self.config.clients)) as ProcessId;
            if self.rng.chance(self.config.reads_per_million) {
                self.read(op, process);
            } else {
                self.push(EventKind::Invoke {
                    op,
                    process,
                    call: Call::Write { event_id: Some(op) },
                });
                self.writes.insert(
                    op,
                    Write {
                        process,
                        attempt: 1,
                        first_started: self.now,
                        any_unknown: false,
                        state: WriteState::Sleeping {
                            until: self.now,
                            delay: 0,
                        },
                    },
                );
                self.start_attempt(op, 0);
            }
        }
    }

    fn read(&mut self, op: OpId, process: ProcessId) {
        let page = self.rng.below(u64::from(self.config.pages)) as u32;
        self.push(EventKind::Invoke {
            op,
            process,
            call: Call::Read { page },
        });
        self.now += MICROS;
        let outcome = if self.up {
            Outcome::Ok(OkValue::Read {
                version: self.visible.version(page).map(Box::new),
            })
        } else {
            Outcome::Failed {
                error: "unavailable".into(),
                definite: true,
            }
        };
        self.push(EventKind::Complete { op, outcome });
    }

    fn start_attempt(&mut self, op: OpId, delay_before: SimTime) {
        let Some(write) = self.writes.get_mut(&op) else {
            return;
        };
        let attempt = write.attempt;
        write.state = WriteState::Waiting {
            deadline: self.now + self.config.timeout,
        };
        self.push(EventKind::AttemptStarted {
            op,
            attempt,
            delay_before,
        });
        let mut writes = Vec::new();
        for _ in 0..=self.rng.below(2) {
            let page = self.rng.below(u64::from(self.config.pages)) as u32;
            if writes.iter().all(|w: &PageWrite| w.page != page) {
                writes.push(PageWrite {
                    page,
                    value: op * 100 + u64::from(attempt),
                });
            }
        }
        let request = Request {
            origin: AttemptRef { op, attempt },
            txn_id: self.rng.below(self.config.operations as u64 / 2 + 1),
            event_id: op,
            snapshot_seq: self.visible_top,
            writes,
        };
        if self.fault(self.config.faults.request_duplication) {
            self.to_server
                .push_back((self.now + 2 * TICK, request.clone()));
        }
        self.to_server.push_back((self.now + TICK, request));
    }

    fn deliver_responses(&mut self) {
        while self
            .to_client
            .front()
            .is_some_and(|(at, _, _)| *at <= self.now)
        {
            let Some((_, origin, result)) = self.to_client.pop_front() else {
                break;
            };
            let current = self.writes.get(&origin.op).is_some_and(|w| {
                w.attempt == origin.attempt && matches!(w.state, WriteState::Waiting { .. })
            });
            if current {
                self.attempt_result(origin.op, result);
            }
        }
    }

    fn run_client_timers(&mut self) {
        let due: Vec<(OpId, Option<SimTime>)> = self
            .writes
            .iter()
            .filter_map(|(op, write)| match write.state {
                WriteState::Waiting { deadline } if deadline <= self.now => Some((*op, None)),
                WriteState::Sleeping { until, delay } if until <= self.now => {
                    Some((*op, Some(delay)))
                }
                _ => None,
            })
            .collect();
        for (op, slept) in due {
            match slept {
                None => self.attempt_result(op, AttemptResult::Unknown),
                Some(delay) => {
                    if let Some(write) = self.writes.get_mut(&op) {
                        write.attempt += 1;
                    }
                    self.start_attempt(op, delay);
                }
            }
        }
    }

    fn attempt_result(&mut self, op: OpId, result: AttemptResult) {
        let Some(write) = self.writes.get(&op).cloned() else {
            return;
        };
        self.push(EventKind::AttemptEnded {
            op,
            attempt: write.attempt,
            result: result.clone(),
        });
        let any_unknown = write.any_unknown || result == AttemptResult::Unknown;
        let outcome = match &result {
            AttemptResult::Committed { commit_seq } => Some(Outcome::Ok(OkValue::Committed {
                commit_seq: *commit_seq,
            })),
            AttemptResult::Rejected {
                class: RejectionClass::Permanent,
                reason,
            } => Some(Outcome::Failed {
                error: reason.clone(),
                definite: false,
            }),
            AttemptResult::Unknown if self.fault(self.config.faults.give_up_on_unknown) => {
                Some(Outcome::Unknown(UnknownReason::TimedOut))
            }
            _ if self
                .config
                .policy
                .within_window(write.first_started, self.now) =>
            {
                None
            }
            _ => Some(Outcome::Failed {
                error: "CommitConvergenceError".into(),
                definite: !any_unknown,
            }),
        };
        match outcome {
            Some(outcome) => {
                self.writes.remove(&op);
                self.push(EventKind::Complete { op, outcome });
            }
            None => {
                let step = self.config.policy.nominal_step(write.attempt);
                let jitter = self.config.policy.jitter * self.rng.unit();
                let delay = ((step as f64) * (1.0 - jitter)).floor() as u64;
                if let Some(write) = self.writes.get_mut(&op) {
                    write.any_unknown = any_unknown;
                    write.state = WriteState::Sleeping {
                        until: self.now + delay,
                        delay,
                    };
                }
            }
        }
    }

    fn crash_client(&mut self) {
        let process = self.rng.below(u64::from(self.config.clients)) as ProcessId;
        let victims: Vec<OpId> = self
            .writes
            .iter()
            .filter(|(_, write)| write.process == process)
            .map(|(op, _)| *op)
            .collect();
        for op in victims {
            self.writes.remove(&op);
            self.push(EventKind::Complete {
                op,
                outcome: Outcome::Unknown(UnknownReason::CallerCrashed),
            });
        }
    }

    fn respond(&mut self, origin: AttemptRef, result: AttemptResult) {
        if !self.fault(self.config.faults.response_loss) {
            self.to_client.push_back((self.now + TICK, origin, result));
        }
    }

    // ----- server: channel and batches -------------------------------------

    fn drop_arrivals(&mut self) {
        while self
            .to_server
            .front()
            .is_some_and(|(at, _)| *at <= self.now)
        {
            self.to_server.pop_front();
        }
    }

    fn server_step(&mut self) {
        while self
            .to_server
            .front()
            .is_some_and(|(at, _)| *at <= self.now)
        {
            if let Some((_, request)) = self.to_server.pop_front() {
                self.waiting_writers.push_back(request);
            }
        }
        let capacity = self.config.channel_capacity as usize;
        while self.slots.len() < capacity {
            let Some(request) = self.waiting_writers.pop_front() else {
                break;
            };
            let permit = self.reserve();
            self.slots.insert(
                permit,
                Slot {
                    request,
                    sent: false,
                },
            );
        }
        if self.slots.len() < capacity && self.fault(self.config.faults.cancelled_reservation) {
            let permit = self.reserve();
            let kind = if self.rng.below(2) == 0 {
                EventKind::PermitAborted {
                    channel: CHANNEL,
                    permit,
                }
            } else {
                EventKind::PermitDropped {
                    channel: CHANNEL,
                    permit,
                }
            };
            self.push(kind);
        }
        let unsent: Vec<PermitSeq> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.sent)
            .map(|(p, _)| *p)
            .collect();
        for permit in unsent {
            if self.rng.below(10) < 7 {
                if let Some(slot) = self.slots.get_mut(&permit) {
                    slot.sent = true;
                }
                self.push(EventKind::PermitSent {
                    channel: CHANNEL,
                    permit,
                });
            }
        }
        let mut batch = Vec::new();
        while batch.len() < self.config.batch_max {
            let Some((&permit, slot)) = self.slots.iter().next() else {
                break;
            };
            if !slot.sent {
                break;
            }
            let request = slot.request.clone();
            self.slots.remove(&permit);
            self.push(EventKind::PermitDelivered {
                channel: CHANNEL,
                permit,
            });
            batch.push(request);
        }
        if !batch.is_empty() {
            self.run_batch(batch);
        }
    }

    fn reserve(&mut self) -> PermitSeq {
        let permit = self.next_permit;
        self.next_permit += 1;
        self.push(EventKind::PermitReserved {
            channel: CHANNEL,
            permit,
        });
        permit
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        let batch_id = self.next_batch;
        self.next_batch += 1;
        self.now += 5 * MICROS;
        let mut requests = Vec::with_capacity(batch.len());
        let mut valid = Vec::new();
        let mut rejections = Vec::new();
        for request in batch {
            let next_seq = (self.log.len() + valid.len()) as u64 + 1;
            let verdict = if self.receipts.contains(&request.event_id) {
                rejections.push((request.origin, RejectionClass::Permanent, "receipt-exists"));
                Verdict::Conflict {
                    reason: "receipt-exists".to_string(),
                }
            } else if let Some(conflict) = self
                .validation
                .first_conflict(request.snapshot_seq, &request.writes)
            {
                rejections.push((request.origin, RejectionClass::Transient, "conflict"));
                Verdict::Conflict {
                    reason: format!(
                        "page {} committed at seq {}",
                        conflict.page, conflict.winner
                    ),
                }
            } else {
                self.receipts.insert(request.event_id);
                self.validation.apply(next_seq, &request.writes);
                valid.push(LogEntry {
                    seq: next_seq,
                    txn_id: request.txn_id,
                    event_id: Some(request.event_id),
                    writes: request.writes.clone(),
                });
                Verdict::Valid
            };
            requests.push(BatchRequest {
                origin: Some(request.origin),
                txn_id: request.txn_id,
                event_id: Some(request.event_id),
                snapshot_seq: request.snapshot_seq,
                writes: request.writes,
                verdict,
            });
        }
        let origins: Vec<AttemptRef> = requests
            .iter()
            .filter(|r| r.verdict == Verdict::Valid)
            .filter_map(|r| r.origin)
            .collect();
        self.push(EventKind::BatchValidated {
            batch: batch_id,
            requests,
        });
        for (origin, class, reason) in rejections {
            self.respond(
                origin,
                AttemptResult::Rejected {
                    class,
                    reason: reason.into(),
                },
            );
        }
        if valid.is_empty() {
            return;
        }
        if self.fault(self.config.faults.crash_between_phases) {
            return self.crash();
        }
        self.now += 5 * MICROS;
        self.log.extend(valid);
        self.push(EventKind::WalAppended {
            batch: batch_id,
            ok: true,
        });
        if self.fault(self.config.faults.crash_between_phases) {
            return self.crash();
        }
        self.now += 20 * MICROS;
        let fsync_ok = !self.fault(self.config.faults.fsync_failure);
        self.push(EventKind::FsyncReturned {
            batch: batch_id,
            ok: fsync_ok,
        });
        if !fsync_ok {
            // Fail-stop: what a failed fsync left on disk is unknown.
            return self.crash();
        }
        self.durable_len = self.log.len();
        if self.fault(self.config.faults.crash_between_phases) {
            return self.crash();
        }
        self.now += 5 * MICROS;
        let first = self.log.len() - origins.len();
        let commit_seqs: Vec<CommitSeq> = (first..self.log.len()).map(|i| i as u64 + 1).collect();
        self.push(EventKind::Published {
            batch: batch_id,
            commit_seqs: commit_seqs.clone(),
        });
        self.visible_top = self.log.len() as u64;
        for (origin, seq) in origins.into_iter().zip(commit_seqs) {
            if let Some(entry) = self.log.get(seq as usize - 1) {
                let writes = entry.writes.clone();
                self.visible.apply(seq, &writes);
            }
            self.respond(origin, AttemptResult::Committed { commit_seq: seq });
            if self.config.repairs {
                for kind in [
                    RepairEventKind::CommitDurable,
                    RepairEventKind::DurableButNotRepairable,
                    RepairEventKind::CommitAcked,
                ] {
                    self.repair_event(seq, kind);
                }
                self.repair_pending.push_back(seq);
            }
        }
    }

    // ----- crashes and recovery ---------------------------------------------

    fn crash(&mut self) {
        self.push(EventKind::ServerCrash {
            process: SERVER,
            during_recovery: false,
        });
        self.up = false;
        self.down_until = self.now + MILLIS;
        self.waiting_writers.clear();
        self.slots.clear();
        self.queue = None;
        let running = std::mem::take(&mut self.repair_running);
        self.repair_pending.extend(running);
    }

    fn recover(&mut self, with_state: bool) {
        let kept = self.durable_len
            + self
                .rng
                .below((self.log.len() - self.durable_len) as u64 + 1) as usize;
        if self.fault(self.config.faults.recovery_crash) {
            // Recovery decides what it keeps before it crashes: the re-run
            // finds the same durable state.
            self.push(EventKind::ServerCrash {
                process: SERVER,
                during_recovery: true,
            });
            self.now += 100 * MICROS;
        }
        self.log.truncate(kept);
        self.durable_len = kept;
        self.visible_top = kept as u64;
        self.receipts = self.log.iter().filter_map(|e| e.event_id).collect();
        self.validation = PageStore::new();
        for entry in &self.log {
            self.validation.apply(entry.seq, &entry.writes);
        }
        self.visible = self.validation.clone();
        let state = with_state.then(|| self.visible.versions().collect());
        self.push(EventKind::Recovered(Box::new(Recovery {
            process: SERVER,
            log: self.log.clone(),
            state: state.clone(),
            corruption_reported_from: None,
        })));
        if !with_state && self.fault(self.config.faults.repeated_recovery) {
            self.now += 100 * MICROS;
            self.push(EventKind::ServerCrash {
                process: SERVER,
                during_recovery: false,
            });
            self.now += 100 * MICROS;
            self.push(EventKind::Recovered(Box::new(Recovery {
                process: SERVER,
                log: self.log.clone(),
                state,
                corruption_reported_from: None,
            })));
        }
        self.up = true;
        self.declare_volatile();
    }

    // ----- repairs -------------------------------------------------------------

    fn repair_event(&mut self, seq: CommitSeq, kind: RepairEventKind) {
        let count = self.repair_events.entry(seq).or_insert(0);
        *count += 1;
        let event_seq = *count;
        self.push(EventKind::Repair {
            commit_seq: seq,
            event_seq,
            kind,
        });
    }

    fn repair_step(&mut self) {
        // Tasks finish in the order they started; a few per tick, so that
        // some are still running when the server crashes.
        for _ in 0..4 {
            if self.rng.below(2) == 0 {
                break;
            }
            let Some(seq) = self.repair_running.pop_front() else {
                break;
            };
            let failed = self.fault(self.config.faults.repair_failure);
            let (kind, state) = if failed {
                (RepairEventKind::RepairFailed, RepairState::Failed)
            } else {
                (RepairEventKind::RepairCompleted, RepairState::Completed)
            };
            self.repair_event(seq, kind);
            self.repair_final.insert(seq, state);
        }
        for _ in 0..4 {
            let Some(seq) = self.repair_pending.pop_front() else {
                break;
            };
            self.repair_event(seq, RepairEventKind::RepairStarted);
            self.repair_running.push_back(seq);
        }
    }

    // ----- queue ---------------------------------------------------------------

    fn queue_step(&mut self) {
        let produce = !self.healed && self.rng.below(10) < 3;
        let consume = self.rng.below(10) < 3;
        let Some(queue) = self.queue.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        let full = queue.items.len() >= queue.capacity as usize;
        if let Some(item) = queue.blocked {
            if !full {
                queue.blocked = None;
                queue.items.push_back(item);
                events.push(EventKind::QueueEnqueued {
                    queue: QUEUE,
                    item,
                    occupancy_after: queue.items.len() as u32,
                });
            }
        } else if produce {
            let item = self.next_item;
            self.next_item += 1;
            if !full {
                queue.items.push_back(item);
                events.push(EventKind::QueueEnqueued {
                    queue: QUEUE,
                    item,
                    occupancy_after: queue.items.len() as u32,
                });
            } else {
                match queue.overflow {
                    OverflowPolicy::Block => {
                        queue.blocked = Some(item);
                        events.push(EventKind::QueueSenderBlocked { queue: QUEUE, item });
                    }
                    OverflowPolicy::Fail => {
                        events.push(EventKind::QueueEnqueueFailed { queue: QUEUE, item })
                    }
                    OverflowPolicy::DropOldest => {
                        if let Some(oldest) = queue.items.pop_front() {
                            events.push(EventKind::QueueDroppedOldest {
                                queue: QUEUE,
                                item: oldest,
                            });
                            events.push(EventKind::QueueDropReported {
                                queue: QUEUE,
                                item: oldest,
                            });
                        }
                        queue.items.push_back(item);
                        events.push(EventKind::QueueEnqueued {
                            queue: QUEUE,
                            item,
                            occupancy_after: queue.items.len() as u32,
                        });
                    }
                }
            }
        }
        if consume {
            if let Some(item) = queue.items.pop_front() {
                events.push(EventKind::QueueDequeued {
                    queue: QUEUE,
                    item,
                    occupancy_after: queue.items.len() as u32,
                });
            }
        }
        for event in events {
            self.push(event);
        }
    }

    // ----- the end ---------------------------------------------------------------

    fn finish(mut self) -> History {
        self.now += MILLIS;
        self.push(EventKind::Phase(Phase::Quiescence));
        let settled: Vec<(CommitSeq, RepairState)> =
            self.repair_final.iter().map(|(s, r)| (*s, *r)).collect();
        for (seq, state) in settled {
            let symbols = (state == RepairState::Completed).then(|| {
                let systematic: Vec<u8> = (0..15_u64)
                    .map(|i| (seq.wrapping_mul(31).wrapping_add(i * 7)) as u8)
                    .collect();
                let parity = xor_parity(&systematic, SHARD_SIZE as usize);
                Box::new(RepairSymbols {
                    shard_size: SHARD_SIZE,
                    systematic,
                    parity,
                })
            });
            self.push(EventKind::RepairSettled {
                commit_seq: seq,
                state,
                symbols,
            });
        }
        self.now += MILLIS;
        self.push(EventKind::Phase(Phase::FinalCrash));
        self.crash();
        self.now += MILLIS;
        self.recover(true);
        self.history
    }
}
