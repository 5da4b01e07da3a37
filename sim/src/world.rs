//! The world of one run: the madsim runtime, the simulated processes, the
//! chooser, the trace, the disks, and the run's phase.
//!
//! Model: [`run`] builds a runtime from the seed, makes the world current on
//! the calling thread (madsim runs every task of a runtime on the thread
//! that calls `block_on`), and runs the scenario's supervisor future with a
//! [`Sim`] handle. Processes are madsim nodes whose init re-runs on every
//! restart, with a fresh [`ProcessCtx`] (new incarnation): that is where a
//! system runs its recovery. Crashes follow the order madsim needs: the disk
//! is power-failed (or its handles invalidated) first, then the node is
//! killed, so writes issued by dying tasks from the old incarnation are
//! refused instead of landing after the crash.
//!
//! All world state sits behind one mutex. It is never contended (one
//! thread) and never held across an `.await`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::runtime::{Handle, Runtime};
use madsim::task::{AbortHandle, NodeId};
use serde::{Deserialize, Serialize};

use crate::clock::{self, SimTime};
use crate::disk::{Disk, DiskConfig, DiskState};
use crate::profile::FaultConfig;
use crate::tape::{Chooser, Site, Tape, FIRING_HORIZON};
use crate::task;
use crate::trace::{EventKind, Phase, StopReason, Trace, TraceDigest, TraceEvent, TraceMode};

/// Index of a simulated process within its run (0, 1, 2, … in creation order).
pub type ProcessId = u32;

/// Everything that determines a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The seed: drives madsim's scheduler and, unless a tape is given, the
    /// fault chooser.
    pub seed: u64,
    /// Resolved fault configuration.
    pub faults: FaultConfig,
    /// Replay this tape instead of drawing fresh decisions.
    pub tape: Option<Tape>,
    /// Keep every trace event, or only the digest.
    pub trace: TraceMode,
    /// Disk geometry, capacity and latencies.
    pub disk: DiskConfig,
    /// Simulated-time limit: a run still going at this time fails as a hang.
    pub time_limit: Duration,
    /// Raised from outside (a wall-clock watchdog thread) to stop a run that
    /// keeps the CPU busy without simulated time passing: the run fails as
    /// a livelock at its next trace event or sleep.
    pub abort: Option<Arc<AtomicBool>>,
}

impl RunConfig {
    /// A fault-free run of `seed` with default settings.
    pub fn new(seed: u64) -> RunConfig {
        RunConfig {
            seed,
            faults: FaultConfig::none(),
            tape: None,
            trace: TraceMode::DigestOnly,
            disk: DiskConfig::default(),
            time_limit: Duration::from_secs(3600),
            abort: None,
        }
    }

    /// With this fault configuration.
    pub fn faults(mut self, faults: FaultConfig) -> RunConfig {
        self.faults = faults;
        self
    }

    /// Replaying this tape.
    pub fn tape(mut self, tape: Tape) -> RunConfig {
        self.tape = Some(tape);
        self
    }

    /// With this trace mode.
    pub fn trace(mut self, mode: TraceMode) -> RunConfig {
        self.trace = mode;
        self
    }

    /// With this disk configuration.
    pub fn disk(mut self, disk: DiskConfig) -> RunConfig {
        self.disk = disk;
        self
    }
}

/// Counters of one run, for reports and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Disk operations completed.
    pub disk_ops: u64,
    /// Messages handed to the network.
    pub messages: u64,
    /// Decisions drawn by the chooser.
    pub decisions: u64,
    /// Trace events emitted.
    pub events: u64,
    /// Process starts (first starts and restarts).
    pub process_starts: u64,
    /// Faults injected, per kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Simulated time at the end of the run, ns.
    pub sim_nanos: u64,
}

impl RunStats {
    /// Total faults injected.
    pub fn faults(&self) -> u64 {
        self.faults_by_kind.values().sum()
    }
}

/// Why a run did not finish normally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", content = "message", rename_all = "snake_case")]
pub enum RunFailure {
    /// Every task blocked forever (madsim found no event to advance to).
    Deadlock(String),
    /// Simulated time passed the run's limit.
    TimeLimit(String),
    /// The wall-clock watchdog fired: busy without simulated progress.
    Livelock(String),
    /// Code in the run panicked.
    Panic(String),
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Deadlock(m) => write!(f, "deadlock: {m}"),
            RunFailure::TimeLimit(m) => write!(f, "simulated time limit: {m}"),
            RunFailure::Livelock(m) => write!(f, "livelock: {m}"),
            RunFailure::Panic(m) => write!(f, "panic: {m}"),
        }
    }
}

/// A crash at an I/O point, waiting for the supervisor's reaper.
#[derive(Debug, Clone, Copy)]
pub struct IoCrash {
    /// The process.
    pub id: ProcessId,
    /// Its node, to kill.
    pub node: NodeId,
    /// Restart delay, ms.
    pub delay_ms: u64,
    /// The process's crash epoch at the crash: a later restart (or crash)
    /// makes the request stale.
    pub epoch: u64,
}

/// The result of one run.
#[derive(Debug)]
pub struct RunOutcome<T> {
    /// What the supervisor future returned, or why the run broke down.
    pub result: Result<T, RunFailure>,
    /// Digest of the whole trace.
    pub digest: TraceDigest,
    /// The tape of every decision drawn.
    pub tape: Tape,
    /// The trace events, in `TraceMode::Full`.
    pub events: Option<Vec<TraceEvent>>,
    /// Counters.
    pub stats: RunStats,
}

/// Status of a simulated process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    Paused,
    Crashed,
    Exited,
}

pub(crate) struct Process {
    pub name: &'static str,
    pub node: Option<NodeId>,
    pub incarnation: u32,
    pub status: Status,
    /// Bumped by every crash, so a delayed restart only fires for the
    /// crash that scheduled it.
    pub crash_epoch: u64,
    pub skew_nanos: i64,
}

/// The mutable state of a run.
pub(crate) struct State {
    pub chooser: Chooser,
    pub trace: Trace,
    pub phase: Phase,
    /// Counts fault phases, so a scheduler left sleeping from an earlier
    /// fault phase stops instead of joining a later one.
    pub fault_epoch: u64,
    pub faults: FaultConfig,
    pub disk_config: DiskConfig,
    pub processes: Vec<Process>,
    pub disks: Vec<DiskState>,
    pub nodes: BTreeMap<NodeId, ProcessId>,
    /// Directed links (from, to) that drop every message.
    pub blocked: BTreeSet<(ProcessId, ProcessId)>,
    pub stats: RunStats,
    /// Time of the latest trace event.
    pub last_event_time: SimTime,
    /// Time the supervisor finished (zero if it did not).
    pub end_time: SimTime,
    /// The watchdog's flag (see [`RunConfig::abort`]).
    pub abort: Option<Arc<AtomicBool>>,
    /// Processes that crashed at an I/O point, waiting for the supervisor
    /// to kill their node.
    pub io_crashes: Vec<IoCrash>,
    /// Wakes the supervisor's reaper.
    pub io_crash_notify: Arc<tokio::sync::Notify>,
}

/// A crash decision as it sits on the tape: 0 for none, else
/// 1 + 2·(restart delay − lo) + power_loss.
struct CrashPlan {
    power_loss: bool,
    delay_ms: u64,
}

impl CrashPlan {
    /// A fresh draw: a crash with probability `p`.
    fn fresh(rng: &mut rand_chacha::ChaCha8Rng, p: f64, c: &crate::profile::CrashFaults) -> u64 {
        use rand::Rng;
        if p <= 0.0 || rng.gen::<f64>() >= p {
            return 0;
        }
        CrashPlan::fired(rng, c)
    }

    /// A fresh draw of a crash that fires.
    fn fired(rng: &mut rand_chacha::ChaCha8Rng, c: &crate::profile::CrashFaults) -> u64 {
        use rand::Rng;
        let span = c.restart_delay_ms;
        let delay = rng.gen_range(span.lo..=span.hi) - span.lo;
        1 + 2 * delay + u64::from(rng.gen::<f64>() < c.power_loss_fraction)
    }

    /// Read a drawn (or replayed, possibly edited) value back.
    fn decode(v: u64, c: &crate::profile::CrashFaults) -> Option<CrashPlan> {
        let span = c.restart_delay_ms;
        (v != 0).then(|| CrashPlan {
            power_loss: (v - 1) % 2 == 1,
            delay_ms: span.lo + ((v - 1) / 2) % (span.hi - span.lo + 1),
        })
    }

    fn kind(&self) -> &'static str {
        if self.power_loss {
            "machine crash (power loss)"
        } else {
            "process crash"
        }
    }
}

/// A non-zero key for a sub-stream, from its identifying bytes.
pub(crate) fn stream_key(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for part in parts {
        h.write(part);
    }
    h.finish().max(1)
}

/// Panic message that marks a run stopped by the watchdog.
const WATCHDOG_PANIC: &str = "durasim watchdog: wall-clock limit reached without the run finishing";

impl State {
    /// Append an event to the trace, stamped with the current simulated time.
    pub fn emit(&mut self, process: Option<ProcessId>, kind: EventKind) {
        self.check_watchdog();
        let time = clock::try_now().unwrap_or(SimTime::ZERO);
        self.last_event_time = time;
        self.trace.push(TraceEvent {
            time,
            process,
            kind,
        });
    }

    /// Stop the run (by panicking out of the task) once the watchdog fired.
    pub fn check_watchdog(&self) {
        if self
            .abort
            .as_ref()
            .is_some_and(|a| a.load(Ordering::Relaxed))
        {
            panic!("{WATCHDOG_PANIC}");
        }
    }

    /// The initial clock skew of new process `id` (0 unless the profile
    /// sets `clock_skew_ms_max`).
    fn draw_initial_skew(&mut self, id: ProcessId, name: &str) -> i64 {
        let max = self.faults.crash.clock_skew_ms_max;
        if max == 0 {
            return 0;
        }
        let v = self.chooser.draw(&sites::CLOCK_SKEW, u64::MAX, |rng| {
            use rand::Rng;
            1 + 2 * rng.gen_range(0..=max) + u64::from(rng.gen_bool(0.5))
        });
        if v == 0 {
            return 0;
        }
        let ms = ((v - 1) / 2) % (max + 1);
        let nanos = i64::try_from(ms * 1_000_000).unwrap_or(i64::MAX);
        let skew = if (v - 1) % 2 == 1 { -nanos } else { nanos };
        let detail = format!("clock of {name}#{id} starts {skew:+} ns off");
        self.fault_fired(Some(id), &sites::CLOCK_SKEW, v, detail);
        skew
    }

    /// The disk faults in force now: failures (EIO, ENOSPC, media faults)
    /// only in the fault phase; the crash model itself (tearing of unsynced
    /// data on power loss) always, since it is what a crash means.
    pub fn disk_faults_now(&self) -> crate::profile::DiskFaults {
        let mut faults = self.faults.disk.clone();
        if self.phase != Phase::Fault {
            faults.fsync_eio = 0.0;
            faults.enospc = 0.0;
            faults.latent_sector_error = 0.0;
            faults.silent_corruption = 0.0;
            faults.misdirected_write = 0.0;
            faults.lost_write = 0.0;
        }
        faults
    }

    /// Mark `id` crashed now: its handles go stale at once and, with
    /// `power_loss`, its disk goes through the crash model. Returns the node
    /// to kill (`None` if it was already down).
    pub fn mark_crashed(&mut self, id: ProcessId, power_loss: bool) -> Option<NodeId> {
        let p = self.processes.get_mut(id as usize)?;
        if p.status == Status::Crashed {
            return None;
        }
        p.status = Status::Crashed;
        p.crash_epoch += 1;
        let node = p.node;
        if power_loss {
            crate::disk::power_fail(self, id);
        }
        let reason = if power_loss {
            StopReason::MachineCrash
        } else {
            StopReason::ProcessCrash
        };
        self.emit(Some(id), EventKind::ProcessStop { reason });
        node
    }

    /// At an I/O point of process `id`: draw whether its machine crashes
    /// right now, while the operation is in flight. Returns true when it
    /// did (the caller must then never complete the operation).
    ///
    /// Each (operation, path) pair has its own stream on the tape
    /// (`sched.crash_io@sync:log/data`), so "crash during the 26th sync of
    /// the log" stays that when faults elsewhere are removed.
    pub fn maybe_crash_at_io(&mut self, id: ProcessId, what: &str, path: &str) -> bool {
        if self.phase != Phase::Fault {
            return false;
        }
        let c = self.faults.crash.clone();
        let rate = if what == "sync" {
            c.crash_per_io.max(c.crash_per_sync)
        } else {
            c.crash_per_io
        };
        let key = stream_key(&[what.as_bytes(), b":", path.as_bytes()]);
        let label = || format!("{what}:{path}");
        let v = self
            .chooser
            .draw_keyed(&sites::CRASH_IO, key, label, u64::MAX, |rng| {
                CrashPlan::fresh(rng, rate, &c)
            });
        let Some(plan) = CrashPlan::decode(v, &c) else {
            return false;
        };
        let detail = format!(
            "{} of {} during a {what} of {path}, restart after {} ms",
            plan.kind(),
            self.process(id).name,
            plan.delay_ms
        );
        self.fault_fired(Some(id), &sites::CRASH_IO, v, detail);
        if let Some(node) = self.mark_crashed(id, plan.power_loss) {
            let epoch = self.process(id).crash_epoch;
            self.io_crashes.push(IoCrash {
                id,
                node,
                delay_ms: plan.delay_ms,
                epoch,
            });
            self.io_crash_notify.notify_one();
        }
        true
    }

    /// Record that the draw just made at `site` injected a fault.
    pub fn fault_fired(
        &mut self,
        process: Option<ProcessId>,
        site: &Site,
        value: u64,
        detail: String,
    ) {
        let at = self.chooser.last_draw();
        self.fault_fired_at(process, site, at, value, detail);
    }

    /// Record that the draw at `at` (stream name, position) of `site`
    /// injected a fault.
    pub fn fault_fired_at(
        &mut self,
        process: Option<ProcessId>,
        site: &Site,
        (stream, index): (std::borrow::Cow<'static, str>, u32),
        value: u64,
        detail: String,
    ) {
        self.emit(
            process,
            EventKind::Fault {
                site: stream,
                kind: site.fault_kind().unwrap_or("value").into(),
                index,
                value,
                detail,
            },
        );
    }

    /// The process a madsim node belongs to (`None` for the supervisor).
    pub fn process_of(&self, node: NodeId) -> Option<ProcessId> {
        self.nodes.get(&node).copied()
    }

    pub fn process(&self, id: ProcessId) -> &Process {
        &self.processes[id as usize]
    }

    pub fn process_mut(&mut self, id: ProcessId) -> &mut Process {
        &mut self.processes[id as usize]
    }

    /// True when a handle from `incarnation` of `id` may still act.
    pub fn is_live(&self, id: ProcessId, incarnation: u32) -> bool {
        self.processes.get(id as usize).is_some_and(|p| {
            p.incarnation == incarnation && matches!(p.status, Status::Running | Status::Paused)
        })
    }
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while the lock was held already fails the run; the state is
    // still the best record of what happened, so keep using it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    static CURRENT: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// Run `f` on the current run's state, or return `None` outside a run.
pub(crate) fn try_with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    let shared = CURRENT.with(|c| c.borrow().clone())?;
    let mut state = lock(&shared);
    Some(f(&mut state))
}

/// The simulated process the calling task belongs to, if any.
pub fn current_process() -> Option<ProcessId> {
    let node = madsim::plugin::node();
    try_with_state(|s| s.process_of(node)).flatten()
}

/// Give the watchdog a chance to stop the run (called on every sleep).
pub(crate) fn watchdog_point() {
    try_with_state(|s| s.check_watchdog());
}

pub(crate) fn current_skew_nanos() -> i64 {
    let node = madsim::plugin::node();
    try_with_state(|s| {
        s.process_of(node)
            .map_or(0, |p| s.processes[p as usize].skew_nanos)
    })
    .unwrap_or(0)
}

/// BUGGIFY: should the system inject an application-level fault at `site`
/// now? Only during the fault phase, at the rate the run's profile gives
/// the site's fault kind; always `false` outside a run. Every call made in
/// the fault phase is a decision on the tape.
pub fn buggify(site: &Site) -> bool {
    buggify_with(site, String::new)
}

/// [`buggify`], with a description of what the fault does for the trace.
pub fn buggify_with(site: &Site, detail: impl FnOnce() -> String) -> bool {
    let process = current_process();
    try_with_state(|s| {
        if s.phase != Phase::Fault {
            return false;
        }
        let rate = site
            .fault_kind()
            .map_or(0.0, |kind| s.faults.app.rate(kind));
        let hit = s.chooser.chance(site, rate);
        if hit {
            let detail = detail();
            s.fault_fired(process, site, 1, detail);
        }
        hit
    })
    .unwrap_or(false)
}

/// Draw an application-level value in `lo..=hi` at `site` (for example how
/// long a slow repair takes); `lo` outside a run.
pub fn choose_between(site: &Site, lo: u64, hi: u64) -> u64 {
    try_with_state(|s| s.chooser.between(site, lo, hi)).unwrap_or(lo)
}

/// Record an application-level event in the trace (no-op outside a run).
pub fn trace_app(name: &'static str, values: &[u64]) {
    let process = current_process();
    try_with_state(|s| {
        s.emit(
            process,
            EventKind::App {
                name: name.into(),
                values: values.to_vec(),
            },
        );
    });
}

/// The current phase of the run (`None` outside a run).
pub fn current_phase() -> Option<Phase> {
    try_with_state(|s| s.phase)
}

/// What a process gets each time it (re)starts.
#[derive(Clone)]
pub struct ProcessCtx {
    id: ProcessId,
    incarnation: u32,
    shared: Shared,
}

impl ProcessCtx {
    /// This process's id.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// 1 for the first start, then +1 per restart.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// This machine's disk, as seen by this incarnation.
    pub fn disk(&self) -> Disk {
        Disk::new(self.shared.clone(), self.id, self.incarnation)
    }

    /// Record an application event in the trace.
    pub fn trace(&self, name: &'static str, values: &[u64]) {
        let mut s = lock(&self.shared);
        s.emit(
            Some(self.id),
            EventKind::App {
                name: name.into(),
                values: values.to_vec(),
            },
        );
    }
}

/// The supervisor's handle on a run: create processes, inject and heal
/// faults, move through the phases.
#[derive(Clone)]
pub struct Sim {
    shared: Shared,
    handle: Handle,
}

/// A periodic decision of the fault scheduler, with its slot in the
/// per-target streams and its target.
#[derive(Debug, Clone, Copy)]
enum Periodic {
    Crash((u64, ProcessId)),
    Pause((u64, ProcessId)),
    ClockJump((u64, ProcessId)),
    Partition,
}

/// Scheduler tick: how often the fault scheduler considers each fault.
const TICK: Duration = Duration::from_millis(10);

/// The scheduler's fault sites.
pub mod sites {
    use crate::tape::Site;
    /// Crash a process (value encodes power loss and restart delay).
    pub const CRASH: Site = Site::fault("sched.crash", "crash");
    /// Crash a machine while one of its writes or syncs is in flight
    /// (value encodes power loss and restart delay).
    pub const CRASH_IO: Site = Site::fault("sched.crash_io", "crash");
    /// Pause a process (value encodes the pause length).
    pub const PAUSE: Site = Site::fault("sched.pause", "pause");
    /// Make a process's clock jump (value encodes size and sign).
    pub const CLOCK_JUMP: Site = Site::fault("sched.clock_jump", "clock-jump");
    /// A process's initial clock skew (value: 1 + 2·ms + negative).
    pub const CLOCK_SKEW: Site = Site::fault("sched.clock_skew", "clock-skew");
    /// Start a partition (value encodes shape, ends and length).
    pub const PARTITION: Site = Site::fault("sched.partition", "partition");
    /// Ticks the fault scheduler skips before it next wakes (see
    /// `Sim::start_faults`); 0, the default, is the next tick.
    pub const WAKE: Site = Site::value("sched.wake");
}

impl Sim {
    /// Create a simulated process running `init` now and again on every
    /// restart. Its disk starts empty.
    pub fn spawn_process<F, Fut>(&self, name: &'static str, init: F) -> ProcessId
    where
        F: Fn(ProcessCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let id = {
            let mut s = lock(&self.shared);
            let id = s.processes.len() as ProcessId;
            let skew_nanos = s.draw_initial_skew(id, name);
            s.processes.push(Process {
                name,
                node: None,
                incarnation: 0,
                status: Status::Crashed,
                crash_epoch: 0,
                skew_nanos,
            });
            let disk = DiskState::new(s.disk_config.clone());
            s.disks.push(disk);
            id
        };
        let shared = self.shared.clone();
        let node = self
            .handle
            .create_node()
            .name(name)
            .init(move || {
                let ctx = {
                    let mut s = lock(&shared);
                    let p = s.process_mut(id);
                    p.incarnation += 1;
                    p.status = Status::Running;
                    let incarnation = p.incarnation;
                    s.stats.process_starts += 1;
                    s.emit(
                        Some(id),
                        EventKind::ProcessStart {
                            name: name.into(),
                            incarnation,
                        },
                    );
                    ProcessCtx {
                        id,
                        incarnation,
                        shared: shared.clone(),
                    }
                };
                let incarnation = ctx.incarnation;
                let main = init(ctx);
                let shared = shared.clone();
                async move {
                    main.await;
                    let mut s = lock(&shared);
                    if s.is_live(id, incarnation) {
                        s.process_mut(id).status = Status::Exited;
                        s.emit(
                            Some(id),
                            EventKind::ProcessStop {
                                reason: StopReason::Exited,
                            },
                        );
                    }
                }
            })
            .build();
        let mut s = lock(&self.shared);
        s.process_mut(id).node = Some(node.id());
        s.nodes.insert(node.id(), id);
        id
    }

    /// Crash process `id`: with `power_loss`, its machine loses power and
    /// unsynced disk state goes through the crash model; without, only the
    /// process dies and the page cache survives. A crashed process stays
    /// down until [`Sim::restart`].
    pub fn crash(&self, id: ProcessId, power_loss: bool) {
        let node = lock(&self.shared).mark_crashed(id, power_loss);
        if let Some(node) = node {
            self.handle.kill(node);
        }
    }

    /// Kill the nodes of processes that crashed themselves at an I/O point,
    /// and schedule their restarts (runs on the supervisor, which is the
    /// only node that can kill another).
    async fn reap_io_crashes(self) {
        let notify = lock(&self.shared).io_crash_notify.clone();
        loop {
            notify.notified().await;
            let requests = std::mem::take(&mut lock(&self.shared).io_crashes);
            for crash in requests {
                // Something may have restarted the process between the
                // crash and this reaper's turn (the heal phase restarts
                // every crashed process at once): its node then runs the
                // new incarnation, which must not be killed.
                let still_down = {
                    let s = lock(&self.shared);
                    let p = s.process(crash.id);
                    p.status == Status::Crashed && p.crash_epoch == crash.epoch
                };
                if still_down {
                    self.handle.kill(crash.node);
                    self.restart_later(crash.id, crash.delay_ms);
                }
            }
        }
    }

    /// Restart `id` after `delay_ms`, unless it was restarted (or crashed
    /// again) in between.
    fn restart_later(&self, id: ProcessId, delay_ms: u64) {
        let epoch = lock(&self.shared).process(id).crash_epoch;
        let sim = self.clone();
        task::spawn(async move {
            madsim::time::sleep(Duration::from_millis(delay_ms)).await;
            let still_down = {
                let s = lock(&sim.shared);
                let p = s.process(id);
                p.status == Status::Crashed && p.crash_epoch == epoch
            };
            if still_down {
                sim.restart(id);
            }
        });
    }

    /// Restart a crashed or exited process (runs its init: recovery).
    pub fn restart(&self, id: ProcessId) {
        let node = {
            let s = lock(&self.shared);
            match s.processes.get(id as usize) {
                Some(p) if matches!(p.status, Status::Crashed | Status::Exited) => p.node,
                _ => None,
            }
        };
        if let Some(node) = node {
            self.handle.restart(node);
        }
    }

    /// Pause a running process (a long stall: its tasks stop being polled).
    pub fn pause(&self, id: ProcessId) {
        let node = {
            let mut s = lock(&self.shared);
            match s.processes.get_mut(id as usize) {
                Some(p) if p.status == Status::Running => {
                    p.status = Status::Paused;
                    let node = p.node;
                    s.emit(Some(id), EventKind::ProcessPause);
                    node
                }
                _ => None,
            }
        };
        if let Some(node) = node {
            self.handle.pause(node);
        }
    }

    /// Resume a paused process.
    pub fn resume(&self, id: ProcessId) {
        let node = {
            let mut s = lock(&self.shared);
            match s.processes.get_mut(id as usize) {
                Some(p) if p.status == Status::Paused => {
                    p.status = Status::Running;
                    let node = p.node;
                    s.emit(Some(id), EventKind::ProcessResume);
                    node
                }
                _ => None,
            }
        };
        if let Some(node) = node {
            self.handle.resume(node);
        }
    }

    /// Block (or unblock) messages from `from` to `to`.
    pub fn set_link(&self, from: ProcessId, to: ProcessId, blocked: bool) {
        let mut s = lock(&self.shared);
        let changed = if blocked {
            s.blocked.insert((from, to))
        } else {
            s.blocked.remove(&(from, to))
        };
        if changed {
            s.emit(None, EventKind::NetPartition { from, to, blocked });
        }
    }

    /// Cut `id` off from every other process, in both directions.
    pub fn isolate(&self, id: ProcessId) {
        for other in 0..self.process_count() {
            if other != id {
                self.set_link(id, other, true);
                self.set_link(other, id, true);
            }
        }
    }

    /// Heal every partition.
    pub fn heal_network(&self) {
        let links: Vec<(ProcessId, ProcessId)> =
            lock(&self.shared).blocked.iter().copied().collect();
        for (from, to) in links {
            self.set_link(from, to, false);
        }
    }

    /// Current bytes of every file on `id`'s disk, by path: what a reader
    /// on that machine would see now (after a crash and restart, what
    /// survived).
    pub fn disk_files(&self, id: ProcessId) -> BTreeMap<String, Vec<u8>> {
        lock(&self.shared)
            .disks
            .get(id as usize)
            .map(DiskState::snapshot)
            .unwrap_or_default()
    }

    /// Number of processes created so far.
    pub fn process_count(&self) -> ProcessId {
        lock(&self.shared).processes.len() as ProcessId
    }

    /// True while `id` runs (not crashed, paused or exited).
    pub fn is_running(&self, id: ProcessId) -> bool {
        lock(&self.shared)
            .processes
            .get(id as usize)
            .is_some_and(|p| p.status == Status::Running)
    }

    /// True once `id`'s main future returned (and it was not restarted).
    pub fn has_exited(&self, id: ProcessId) -> bool {
        lock(&self.shared)
            .processes
            .get(id as usize)
            .is_some_and(|p| p.status == Status::Exited)
    }

    /// Incarnation of `id` (0 before its first start).
    pub fn incarnation(&self, id: ProcessId) -> u32 {
        lock(&self.shared)
            .processes
            .get(id as usize)
            .map_or(0, |p| p.incarnation)
    }

    /// Enter `phase`, recording it in the trace.
    pub fn set_phase(&self, phase: Phase) {
        let mut s = lock(&self.shared);
        s.phase = phase;
        s.emit(None, EventKind::Phase { phase });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        lock(&self.shared).phase
    }

    /// The run's resolved fault configuration.
    pub fn faults(&self) -> FaultConfig {
        lock(&self.shared).faults.clone()
    }

    /// Record an application event from the supervisor.
    pub fn trace(&self, name: &'static str, values: &[u64]) {
        lock(&self.shared).emit(
            None,
            EventKind::App {
                name: name.into(),
                values: values.to_vec(),
            },
        );
    }

    /// Start the fault phase: a scheduler task crashes, pauses, partitions
    /// and skews the `targets` (partitions involve every process) until the
    /// phase changes.
    pub fn start_faults(&self, targets: &[ProcessId]) {
        self.set_phase(Phase::Fault);
        lock(&self.shared).fault_epoch += 1;
        let sim = self.clone();
        let targets = targets.to_vec();
        task::spawn(async move { sim.schedule_faults(targets).await });
        task::spawn(self.clone().reap_io_crashes());
    }

    /// The fault scheduler. Every tick each periodic decision (crash, pause
    /// and clock jump per target, one partition decision) is drawn; the
    /// scheduler does not wake every tick but asks the chooser for each
    /// decision's next firing tick and sleeps until the earliest, so a quiet
    /// stretch of simulated time costs nothing. The decision streams read
    /// as if every tick had been drawn (zeros in between), and the
    /// decisions of one tick fire in the order a per-tick loop draws them.
    ///
    /// When it wakes is itself on the tape ([`sites::WAKE`]: ticks skipped
    /// before the next wake). Every wake-up is a task poll, and madsim draws
    /// from its own generator at every poll, so wake-ups shape the
    /// interleaving: a replay must wake exactly when the recorded run did,
    /// including at firings that turned out void (a crash drawn while the
    /// process was already down), which the decision streams alone cannot
    /// tell. A missing or zeroed entry means "the next tick": a tape without
    /// wake entries wakes every tick.
    async fn schedule_faults(self, targets: Vec<ProcessId>) {
        let epoch = lock(&self.shared).fault_epoch;
        let mut decisions: Vec<(Periodic, Option<u64>)> = targets
            .iter()
            .enumerate()
            .flat_map(|(slot, &id)| {
                [Periodic::Crash, Periodic::Pause, Periodic::ClockJump]
                    .map(|kind| kind((slot as u64, id)))
            })
            .chain([Periodic::Partition])
            .map(|decision| (decision, None))
            .collect();
        let stride = targets.len() as u64;
        for (decision, next) in &mut decisions {
            *next = self.next_firing(*decision, stride, 0);
        }
        let mut from = 0;
        loop {
            let planned = decisions.iter().filter_map(|&(_, next)| next).min();
            let Some(tick) = self.next_wake(from, planned) else {
                return;
            };
            // Relative to now, as a per-tick loop sleeps: each wake-up
            // starts a few polls' nanoseconds late, and the next tick is
            // counted from there.
            madsim::time::sleep(TICK * (tick + 1 - from) as u32).await;
            let current = {
                let s = lock(&self.shared);
                s.phase == Phase::Fault && s.fault_epoch == epoch
            };
            if !current {
                return;
            }
            for (decision, next) in &mut decisions {
                if next.is_some_and(|n| n < tick) {
                    // Replaying an edited tape: a firing between wake-ups
                    // is skipped (and re-recorded as zero).
                    *next = self.next_firing(*decision, stride, tick);
                }
                if *next != Some(tick) {
                    continue;
                }
                match *decision {
                    Periodic::Crash((slot, id)) => self.maybe_crash(id, tick * stride + slot),
                    Periodic::Pause((slot, id)) => self.maybe_pause(id, tick * stride + slot),
                    Periodic::ClockJump((slot, id)) => {
                        self.maybe_jump_clock(id, tick * stride + slot)
                    }
                    Periodic::Partition => self.maybe_partition(tick),
                }
                *next = self.next_firing(*decision, stride, tick + 1);
            }
            from = tick + 1;
        }
    }

    /// The tick of the next wake-up, at or after `from`: the `planned`
    /// earliest firing when drawing fresh, the tape's entry when replaying.
    /// `None`: no decision fires again.
    fn next_wake(&self, from: u64, planned: Option<u64>) -> Option<u64> {
        let skip = planned.map_or(FIRING_HORIZON, |tick| {
            tick.saturating_sub(from).min(FIRING_HORIZON)
        });
        let skip = lock(&self.shared)
            .chooser
            .draw(&sites::WAKE, FIRING_HORIZON + 1, |_| skip);
        (skip < FIRING_HORIZON).then_some(from + skip)
    }

    /// The next tick at or after `from` at which `decision` fires.
    fn next_firing(&self, decision: Periodic, stride: u64, from: u64) -> Option<u64> {
        let mut s = lock(&self.shared);
        let (crash, net) = (&s.faults.crash, &s.faults.net);
        let (site, slot, stride, per_s) = match decision {
            Periodic::Crash((slot, _)) => (&sites::CRASH, slot, stride, crash.crash_per_s),
            Periodic::Pause((slot, _)) => (&sites::PAUSE, slot, stride, crash.pause_per_s),
            Periodic::ClockJump((slot, _)) => {
                (&sites::CLOCK_JUMP, slot, stride, crash.clock_jump_per_s)
            }
            Periodic::Partition => (&sites::PARTITION, 0, 1, net.partition_per_s),
        };
        let p = Self::per_tick(per_s);
        s.chooser.next_firing(site, from, (slot, stride), p)
    }

    /// Per-tick probability of an event that happens `per_s` times a second.
    fn per_tick(per_s: f64) -> f64 {
        (per_s * TICK.as_secs_f64()).clamp(0.0, 1.0)
    }

    /// The crash decision at `position` of the crash stream (it fired).
    fn maybe_crash(&self, id: ProcessId, position: u64) {
        let decision = {
            let mut s = lock(&self.shared);
            let running = s.process(id).status == Status::Running;
            let c = s.faults.crash.clone();
            // A process that is down is not crashed again (forced to 0).
            let bound = if running { u64::MAX } else { 1 };
            let v = s.chooser.draw_at(&sites::CRASH, position, bound, |rng| {
                CrashPlan::fired(rng, &c)
            });
            CrashPlan::decode(v, &c).inspect(|plan| {
                let detail = format!(
                    "{} of {}, restart after {} ms",
                    plan.kind(),
                    s.process(id).name,
                    plan.delay_ms
                );
                s.fault_fired(Some(id), &sites::CRASH, v, detail);
            })
        };
        let Some(plan) = decision else {
            return;
        };
        self.crash(id, plan.power_loss);
        self.restart_later(id, plan.delay_ms);
    }

    /// The pause decision at `position` of the pause stream (it fired).
    fn maybe_pause(&self, id: ProcessId, position: u64) {
        let pause_ms = {
            let mut s = lock(&self.shared);
            let running = s.process(id).status == Status::Running;
            let span = s.faults.crash.pause_ms;
            let bound = if running { u64::MAX } else { 1 };
            let v = s.chooser.draw_at(&sites::PAUSE, position, bound, |rng| {
                use rand::Rng;
                1 + rng.gen_range(span.lo..=span.hi) - span.lo
            });
            (v != 0).then(|| {
                let ms = span.lo + (v - 1) % (span.hi - span.lo + 1);
                let detail = format!("pause {} for {ms} ms", s.process(id).name);
                s.fault_fired(Some(id), &sites::PAUSE, v, detail);
                ms
            })
        };
        let Some(ms) = pause_ms else { return };
        self.pause(id);
        let sim = self.clone();
        task::spawn(async move {
            madsim::time::sleep(Duration::from_millis(ms)).await;
            sim.resume(id);
        });
    }

    /// The clock-jump decision at `position` of its stream (it fired).
    fn maybe_jump_clock(&self, id: ProcessId, position: u64) {
        let mut s = lock(&self.shared);
        let max = s.faults.crash.clock_jump_ms_max.max(1);
        // Value: 1 + 2·ms + negative.
        let v = s
            .chooser
            .draw_at(&sites::CLOCK_JUMP, position, u64::MAX, |rng| {
                use rand::Rng;
                1 + 2 * rng.gen_range(1..=max) + u64::from(rng.gen_bool(0.5))
            });
        if v == 0 {
            return;
        }
        let ms = ((v - 1) / 2) % (max + 1);
        let negative = (v - 1) % 2 == 1;
        let delta = i64::try_from(ms * 1_000_000).unwrap_or(i64::MAX);
        let delta = if negative { -delta } else { delta };
        let p = s.process_mut(id);
        p.skew_nanos = p.skew_nanos.saturating_add(delta);
        let detail = format!("clock of {} jumps {delta:+} ns", p.name);
        s.fault_fired(Some(id), &sites::CLOCK_JUMP, v, detail);
    }

    /// The partition decision at `position` of its stream (it fired).
    fn maybe_partition(&self, position: u64) {
        let plan = {
            let mut s = lock(&self.shared);
            let n = s.processes.len() as u64;
            let span = s.faults.net.partition_ms;
            let width = span.hi - span.lo + 1;
            // Value: 1 + ((length·3 + shape)·n + a)·n + b.
            let bound = if n >= 2 { u64::MAX } else { 1 };
            let v = s
                .chooser
                .draw_at(&sites::PARTITION, position, bound, |rng| {
                    use rand::Rng;
                    if n < 2 {
                        return 0;
                    }
                    let length = rng.gen_range(0..width);
                    let shape = rng.gen_range(0..3);
                    let a = rng.gen_range(0..n);
                    let b = rng.gen_range(0..n);
                    1 + ((length * 3 + shape) * n + a) * n + b
                });
            (v != 0).then(|| {
                let mut rest = v - 1;
                let b = (rest % n) as ProcessId;
                rest /= n;
                let a = (rest % n) as ProcessId;
                rest /= n;
                let shape = rest % 3;
                let ms = span.lo + (rest / 3) % width;
                let a_name = s.process(a).name;
                let detail = match shape {
                    0 => format!("isolate {a_name} for {ms} ms"),
                    1 => format!("drop all messages to {a_name} for {ms} ms"),
                    _ => format!(
                        "drop messages {a_name} -> {} for {ms} ms",
                        s.process(b).name
                    ),
                };
                s.fault_fired(Some(a), &sites::PARTITION, v, detail);
                (shape, a, b, ms, n as ProcessId)
            })
        };
        let Some((shape, a, b, ms, n)) = plan else {
            return;
        };
        let mut links = Vec::new();
        for other in (0..n).filter(|&o| o != a) {
            match shape {
                0 => links.extend([(a, other), (other, a)]),
                1 => links.push((other, a)),
                _ => {}
            }
        }
        if shape == 2 && a != b {
            links.push((a, b));
        }
        for &(from, to) in &links {
            self.set_link(from, to, true);
        }
        let sim = self.clone();
        task::spawn(async move {
            madsim::time::sleep(Duration::from_millis(ms)).await;
            for (from, to) in links {
                sim.set_link(from, to, false);
            }
        });
    }

    /// Enter the heal phase: the scheduler stops, partitions heal, paused
    /// processes resume and crashed ones restart.
    pub fn heal(&self) {
        self.set_phase(Phase::Heal);
        self.heal_network();
        for id in 0..self.process_count() {
            self.resume(id);
            let crashed = lock(&self.shared).process(id).status == Status::Crashed;
            if crashed {
                self.restart(id);
            }
        }
    }

    /// Enter the final-crash phase: every target loses power at once and
    /// then restarts (running recovery).
    pub fn final_crash(&self, targets: &[ProcessId]) {
        self.set_phase(Phase::FinalCrash);
        for &id in targets {
            self.crash(id, true);
        }
        for &id in targets {
            self.restart(id);
        }
    }

    /// Sleep for `d` of simulated time.
    pub async fn sleep(&self, d: Duration) {
        madsim::time::sleep(d).await;
    }

    /// Check `done` every `poll` of simulated time until it holds or
    /// `bound` has passed since the call (checked before each sleep);
    /// returns whether it held. The supervisor's way to wait for the
    /// system under test to settle without waiting for ever.
    pub async fn wait_until(
        &self,
        bound: Duration,
        poll: Duration,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let start = self.now();
        while !done() {
            if self.now().since(start) >= bound {
                return false;
            }
            self.sleep(poll).await;
        }
        true
    }

    /// Simulated time now.
    pub fn now(&self) -> SimTime {
        clock::now()
    }
}

/// Run one simulation: build the world from `config`, run `main` as the
/// supervisor, and return what it produced with the run's digest, tape,
/// trace and counters. Panics, deadlocks and time-limit hangs inside the
/// run are caught and returned as [`RunFailure`]s.
pub fn run<T, F, Fut>(config: RunConfig, main: F) -> RunOutcome<T>
where
    F: FnOnce(Sim) -> Fut,
    Fut: Future<Output = T>,
{
    let chooser = match &config.tape {
        Some(tape) => Chooser::replay(tape.clone()),
        None => Chooser::random(config.seed),
    };
    let state = State {
        chooser,
        trace: Trace::new(config.trace),
        phase: Phase::Setup,
        fault_epoch: 0,
        faults: config.faults.clone(),
        disk_config: config.disk.clone(),
        processes: Vec::new(),
        disks: Vec::new(),
        nodes: BTreeMap::new(),
        blocked: BTreeSet::new(),
        stats: RunStats::default(),
        last_event_time: SimTime::ZERO,
        end_time: SimTime::ZERO,
        abort: config.abort.clone(),
        io_crashes: Vec::new(),
        io_crash_notify: Arc::new(tokio::sync::Notify::new()),
    };
    let shared: Shared = Arc::new(Mutex::new(state));
    let previous = CURRENT.with(|c| c.borrow_mut().replace(shared.clone()));
    let enclosing_tasks = task::begin_run();

    let mut runtime = Runtime::with_seed_and_config(config.seed, madsim::Config::default());
    runtime.set_time_limit(config.time_limit);
    let sim = Sim {
        shared: shared.clone(),
        handle: runtime.handle().clone(),
    };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let _run_clock = clock::enter_run();
            let out = main(sim.clone()).await;
            sim.set_phase(Phase::Done);
            lock(&sim.shared).end_time = clock::now();
            out
        })
    }))
    .map_err(|payload| classify_panic(payload.as_ref()));
    shut_down(runtime, &shared, enclosing_tasks);
    CURRENT.with(|c| *c.borrow_mut() = previous);

    let mut s = lock(&shared);
    let mut stats = std::mem::take(&mut s.stats);
    stats.decisions = s.chooser.decisions();
    stats.events = s.trace.count();
    // After a panic the end time was never stamped: the last event's time
    // is the best reading left.
    stats.sim_nanos = s.end_time.max(s.last_event_time).as_nanos();
    stats.faults_by_kind = s
        .chooser
        .faults_by_kind()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    RunOutcome {
        result,
        digest: s.trace.digest(),
        tape: s.chooser.tape(),
        events: s.trace.take_events(),
        stats,
    }
}

/// Abort the tasks spawned through [`task::spawn`], kill every node and let
/// the runtime drop their tasks, so a dropped runtime does not leak them
/// (madsim leaks tasks still pending at drop). `enclosing_tasks` is the
/// task list of the run this one is nested in, restored here.
fn shut_down(runtime: Runtime, shared: &Shared, enclosing_tasks: Vec<AbortHandle>) {
    let nodes: Vec<NodeId> = lock(shared).nodes.keys().copied().collect();
    let handle = runtime.handle().clone();
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        task::end_run(enclosing_tasks);
        for node in nodes {
            handle.kill(node);
        }
        runtime.block_on(async {});
    }));
    // Dropping the runtime drops what is left; a panic there must not
    // escape into the caller.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(runtime)));
}

fn classify_panic(payload: &(dyn std::any::Any + Send)) -> RunFailure {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    if message.contains(WATCHDOG_PANIC) {
        RunFailure::Livelock(message)
    } else if message.contains("no events, all tasks will block forever") {
        RunFailure::Deadlock(message)
    } else if message.contains("time limit exceeded") {
        RunFailure::TimeLimit(message)
    } else {
        RunFailure::Panic(message)
    }
}
