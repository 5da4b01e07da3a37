//! `channel`: spec 01's two-phase bounded channel alone, checked by the
//! reference channel model (`durasim_models::check`).
//!
//! One process holds a small channel (capacity 4), eight writers and one
//! slow receiver. Each writer reserves a slot (half of the time with
//! `try_reserve_for`, giving up after a timeout), then sends its message,
//! aborts the permit, or drops it without either — the choice drawn from
//! the run's tape. The fault scheduler crashes and pauses the process; a
//! restart builds a new channel (a new channel id) and the writers carry
//! on until `size` permits were taken across all incarnations.
//!
//! History: `ChannelEvent` → `ChannelDeclared` / `Permit*` (a dropped
//! permit is `PermitDropped`), restarts → `ServerCrash` (the channel lives
//! in memory), phases → `Phase`. Checked: D12 (never more slots held than
//! the capacity; records only for reserved permits of a declared channel),
//! D4 (permits numbered in reservation order, delivered in reservation
//! order), D3 (nothing delivered that was not sent), D7 (nothing delivered
//! twice), D6 (nothing sent left undelivered at quiescence). On top of the
//! models, the scenario checks the payloads: the receiver must get, in
//! order, the very messages the delivered permits carried (D4 when not).
//!
//! Not mapped: the leaked-permit counter (the model counts a drop as an
//! abort), how long a blocked reservation waited.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models::{EventKind, Phase};
use durasim_sim::{choose_between, clock, ProcessCtx, Sim, Site};

use super::history_check::{findings, permit_event, Merger, Rank};
use crate::harness::{Finding, RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::channel::{channel_with, ChannelEvent, ChannelOptions, Permit};
use crate::systems::record::{lock_recovering, Recorder};

/// The channel scenario.
pub struct ChannelScenario;

/// Known bug (spec 01): the channel delivers a later send before an
/// earlier, still unsent reservation.
pub const DELIVER_IN_SEND_ORDER: &str = "channel-send-order";

const CAPACITY: usize = 4;
const WRITERS: u64 = 8;
const FAULT_PHASE: Duration = Duration::from_millis(1000);
/// What a writer does with its permit (0: abort, 1: drop, else send).
const WRITER_CHOICE: Site = Site::value("channel.writer_choice");
/// How long a writer holds its permit before settling it, µs.
const HOLD_US: Site = Site::value("channel.hold_us");
/// How long a writer thinks before its next reservation, ms: the writers
/// together offer about as much as the receiver takes (one message per
/// 3 ms), so the small channel is often full.
const THINK_MS: Site = Site::value("channel.think_ms");

/// What the run recorded.
#[derive(Default)]
struct Journal {
    phases: Recorder<EventKind>,
    crashes: Recorder<()>,
    declared: Recorder<u32>,
    channels: Mutex<Vec<Recorder<ChannelEvent>>>,
    /// (channel, permit) of every message the receiver got, in order, as
    /// the message itself says.
    received: Mutex<Vec<(u32, u64)>>,
    taken: AtomicU64,
    idle: AtomicBool,
}

impl Scenario for ChannelScenario {
    fn name(&self) -> &'static str {
        "channel"
    }

    fn summary(&self) -> &'static str {
        "two-phase bounded channel: 8 writers reserve/send/abort/drop, 1 slow receiver; D12 backpressure, D4 order"
    }

    fn spec(&self) -> &'static str {
        "01"
    }

    fn default_size(&self) -> u32 {
        200
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        let bug = params.bug(DELIVER_IN_SEND_ORDER);
        Box::pin(run(sim, u64::from(params.size), bug))
    }
}

async fn run(sim: Sim, size: u64, bug: bool) -> ScenarioReport {
    let journal = Arc::new(Journal::default());
    let j = journal.clone();
    let id = sim.spawn_process("channel", move |ctx| process(ctx, j.clone(), size, bug));
    sim.start_faults(&[id]);
    journal.phases.record(EventKind::Phase(Phase::Fault));
    sim.sleep(FAULT_PHASE).await;
    sim.heal();
    sim.wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
        journal.idle.load(Ordering::Relaxed)
    })
    .await;
    journal.phases.record(EventKind::Phase(Phase::Quiescence));

    let mut merger = Merger::default();
    for r in journal.phases.snapshot() {
        merger.push(r.time, Rank::Harness, r.event);
    }
    // A restart declares its channel at the very instant it starts (no
    // disk to recover), while the dying incarnation's last records are at
    // least a restart delay older: the crash sorts with the declarations,
    // before them.
    for r in journal.crashes.snapshot() {
        let kind = EventKind::ServerCrash {
            process: id,
            during_recovery: false,
        };
        merger.push(r.time, Rank::Server, kind);
    }
    for r in journal.declared.snapshot() {
        let kind = EventKind::ChannelDeclared {
            channel: r.event,
            capacity: CAPACITY as u32,
        };
        merger.push(r.time, Rank::Server, kind);
    }
    let mut delivered = Vec::new();
    for (index, recorder) in lock_recovering(&journal.channels).iter().enumerate() {
        let channel = index as u32 + 1;
        for r in recorder.snapshot() {
            if let ChannelEvent::Delivered { seq } = r.event {
                delivered.push((channel, seq));
            }
            if let Some(kind) = permit_event(channel, &r.event) {
                merger.push(r.time, Rank::Channel, kind);
            }
        }
    }
    let history = merger.into_history();
    let mut found = findings(&history);
    let received = lock_recovering(&journal.received).clone();
    if received != delivered {
        let at = received
            .iter()
            .zip(&delivered)
            .position(|(a, b)| a != b)
            .unwrap_or(received.len().min(delivered.len()));
        found.push(Finding {
            invariant: "D4".into(),
            time: sim.now(),
            ops: Vec::new(),
            message: format!(
                "the receiver got {} message(s) but {} delivery(ies) were recorded; they first differ at message {}: got {:?}, the delivered permit was {:?}",
                received.len(),
                delivered.len(),
                at + 1,
                received.get(at),
                delivered.get(at)
            ),
        });
    }
    ScenarioReport {
        findings: found,
        operations: journal.taken.load(Ordering::Relaxed),
    }
}

/// The process's init: a fresh channel per incarnation, its writers and
/// its receiver.
async fn process(ctx: ProcessCtx, journal: Arc<Journal>, size: u64, bug: bool) {
    if ctx.incarnation() > 1 {
        journal.crashes.record(());
    }
    journal.idle.store(false, Ordering::Relaxed);
    let recorder = Recorder::new();
    let channel = {
        let mut channels = lock_recovering(&journal.channels);
        channels.push(recorder.clone());
        channels.len() as u32
    };
    journal.declared.record(channel);
    let (tx, rx) = channel_with::<(u32, u64)>(ChannelOptions {
        capacity: CAPACITY,
        tracked: true,
        recorder: Some(recorder),
        bug_deliver_in_send_order: bug,
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (tx, journal) = (tx.clone(), journal.clone());
        writers.push(durasim_sim::task::spawn(async move {
            while journal.taken.load(Ordering::Relaxed) < size {
                clock::sleep(Duration::from_millis(choose_between(&THINK_MS, 15, 35))).await;
                let permit: Option<Permit<(u32, u64)>> = if w % 2 == 0 {
                    tx.reserve().await.ok()
                } else {
                    match tx.try_reserve_for(Duration::from_millis(2)).await {
                        Some(Ok(permit)) => Some(permit),
                        Some(Err(_)) => None,
                        None => continue,
                    }
                };
                let Some(permit) = permit else { return };
                journal.taken.fetch_add(1, Ordering::Relaxed);
                clock::sleep(Duration::from_micros(choose_between(&HOLD_US, 0, 300))).await;
                match choose_between(&WRITER_CHOICE, 0, 9) {
                    0 => permit.abort(),
                    1 => drop(permit),
                    _ => {
                        let seq = permit.seq();
                        permit.send((channel, seq));
                    }
                }
            }
        }));
    }
    drop(tx);
    let receiver = {
        let journal = journal.clone();
        durasim_sim::task::spawn(async move {
            while let Some((_, message)) = rx.recv().await {
                lock_recovering(&journal.received).push(message);
                clock::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    for w in writers {
        let _ = w.await;
    }
    // Every writer is done and its sender dropped: the receiver drains
    // what is left and sees the end.
    let _ = receiver.await;
    journal.idle.store(true, Ordering::Relaxed);
}
