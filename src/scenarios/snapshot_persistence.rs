//! `snapshot-persistence`: spec 05's reliability manager persisting its
//! channels on the simulated disk, through crashes, restarts and storage
//! faults, checked by the models (D13).
//!
//! One process serves three channels. Its workload (`size` steps, resumed
//! by every incarnation where the last one stopped) draws each step from
//! the tape: sends, receives of new messages (some depending on the
//! previous one, some overtaking a message still "in flight", which then
//! waits in the incoming buffer), late arrivals that complete a cascade,
//! duplicate receives of old messages (re-delivered once they left the
//! small delivered history: the "re-added by repair" path), acks,
//! mark-dependencies-met, background sweeps, channel removals and resets.
//! The delivered history holds 4 ids, so evictions are frequent. The
//! scheduler crashes the process (power loss or not), pauses and skews it;
//! the disk fails fsyncs (EIO), runs out of space and tears unsynced data;
//! and the storage goes through outages of 5–80 ms (an application-level
//! fault, [`STORAGE_OUTAGE`](crate::systems::snapshot_persistence::STORAGE_OUTAGE)).
//! Every restart bootstraps from disk (retrying while storage fails). After
//! heal and the end of the workload, a final power loss and one more
//! bootstrap.
//!
//! # History
//! The manager records the models' `Snap*` events itself, in one recorder,
//! in real order: each operation, every persistence call it issued and
//! its return, each load. Checked by the models: D13 (loads after a
//! restart match the last successful snapshot plus flushed history, or a
//! state an unfinished call may have left; a completed save point leaves
//! the durable history equal to memory; the failure policy). Checked
//! here: L1 (the workload finishes and the final bootstrap succeeds once
//! faults stop).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_models::{EventKind, History};
use durasim_sim::{choose_between, clock, ProcessCtx, Sim, Site};

use super::history_check::findings;
use crate::harness::{Finding, RunParams, Scenario, ScenarioFuture, ScenarioReport};
use crate::systems::record::{lock_recovering, Recorder};
use crate::systems::snapshot_persistence::{
    DiskStore, Incoming, ManagerConfig, OutageStore, ReliabilityManager, SnapshotBugs,
};

/// Known bug (spec 05): the pending queue merges "evict wins".
pub const EVICT_WINS_MERGE: &str = "evict-wins-merge";
/// Known bug (spec 05): a failed history flush clears the pending queue.
pub const FAILED_FLUSH_DROPS_DELTA: &str = "failed-flush-drops-delta";
/// Known bug (spec 05): foreground operations surface persistence errors.
pub const FOREGROUND_SURFACES_ERROR: &str = "foreground-surfaces-persistence-error";
/// Known bug (spec 05): bootstrap, remove and reset swallow persistence errors.
pub const DURABILITY_INTENT_SWALLOWS: &str = "durability-intent-swallows-error";

/// The snapshot-persistence scenario.
pub struct SnapshotScenario;

const CHANNELS: u32 = 3;
const HISTORY_CAPACITY: usize = 4;
const FAULT_PHASE: Duration = Duration::from_millis(300);
/// L1: once faults stop, the workload ends and a bootstrap succeeds within this.
const HEAL_BOUND: Duration = Duration::from_secs(3);

/// Which step the workload takes next (0..=99, see [`step`]).
const STEP: Site = Site::value("snapshot.step");
/// Which channel a step targets.
const CHANNEL: Site = Site::value("snapshot.channel");
/// A new message's shape: 0–1 depends on the previous one, 2 overtakes it.
const SHAPE: Site = Site::value("snapshot.shape");
/// Which old message a duplicate repeats (offset back from the newest).
const PICK: Site = Site::value("snapshot.pick");
/// Think time before a step, ms.
const THINK_MS: Site = Site::value("snapshot.think_ms");

/// The remote peers: what they sent us and what we sent them.
#[derive(Debug, Default)]
struct Peers {
    /// Per channel: the last message id a peer generated.
    last_in: BTreeMap<u32, u64>,
    /// Per channel: messages generated but not yet received (in flight).
    in_flight: BTreeMap<u32, Vec<u64>>,
    /// Per channel: our sends not yet acknowledged by the peer.
    unacked: BTreeMap<u32, Vec<u64>>,
    next_out: u64,
}

struct Journal {
    bugs: SnapshotBugs,
    recorder: Recorder<EventKind>,
    op_ids: Arc<AtomicU64>,
    peers: Mutex<Peers>,
    steps_done: AtomicU64,
    size: u64,
    /// Successful bootstraps so far.
    bootstraps: AtomicU32,
    done: AtomicBool,
}

impl Scenario for SnapshotScenario {
    fn name(&self) -> &'static str {
        "snapshot-persistence"
    }

    fn summary(&self) -> &'static str {
        "reliability manager, 3 channels, snapshot + history persistence with a pending-write queue, crashes and storage faults; D13, L1"
    }

    fn spec(&self) -> &'static str {
        "05"
    }

    fn default_size(&self) -> u32 {
        60
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        let bugs = SnapshotBugs {
            evict_wins_merge: params.bug(EVICT_WINS_MERGE),
            failed_flush_drops_delta: params.bug(FAILED_FLUSH_DROPS_DELTA),
            foreground_surfaces_persistence_error: params.bug(FOREGROUND_SURFACES_ERROR),
            durability_intent_swallows_error: params.bug(DURABILITY_INTENT_SWALLOWS),
        };
        Box::pin(run(sim, u64::from(params.size), bugs))
    }
}

async fn run(sim: Sim, size: u64, bugs: SnapshotBugs) -> ScenarioReport {
    run_recorded(sim, size, bugs).await.0
}

/// The run, with the history it checked.
async fn run_recorded(sim: Sim, size: u64, bugs: SnapshotBugs) -> (ScenarioReport, History) {
    let journal = Arc::new(Journal {
        bugs,
        recorder: Recorder::new(),
        op_ids: Arc::new(AtomicU64::new(0)),
        peers: Mutex::default(),
        steps_done: AtomicU64::new(0),
        size,
        bootstraps: AtomicU32::new(0),
        done: AtomicBool::new(false),
    });
    let j = journal.clone();
    let node = sim.spawn_process("node", move |ctx| serve(ctx, j.clone()));
    sim.start_faults(&[node]);
    sim.sleep(FAULT_PHASE).await;
    sim.heal();
    sim.wait_until(HEAL_BOUND, Duration::from_millis(5), || {
        journal.done.load(Ordering::Relaxed)
    })
    .await;
    let mut found = Vec::new();
    if !journal.done.load(Ordering::Relaxed) {
        found.push(Finding {
            invariant: "L1".into(),
            time: sim.now(),
            ops: Vec::new(),
            message: format!(
                "the workload did not finish within {HEAL_BOUND:?} after faults stopped ({} of {size} steps)",
                journal.steps_done.load(Ordering::Relaxed)
            ),
        });
    }
    // The final power loss, and the bootstrap that reads everything back.
    let before = journal.bootstraps.load(Ordering::Relaxed);
    sim.final_crash(&[node]);
    sim.wait_until(HEAL_BOUND, Duration::from_millis(5), || {
        journal.bootstraps.load(Ordering::Relaxed) != before
    })
    .await;
    if journal.bootstraps.load(Ordering::Relaxed) == before {
        found.push(Finding {
            invariant: "L1".into(),
            time: sim.now(),
            ops: Vec::new(),
            message: "no bootstrap succeeded after the final crash".into(),
        });
    }
    let mut history = History::new();
    for r in journal.recorder.snapshot() {
        history.push(r.time.as_nanos(), r.event);
    }
    found.extend(findings(&history));
    let report = ScenarioReport {
        findings: found,
        operations: journal.op_ids.load(Ordering::Relaxed),
    };
    (report, history)
}

/// One incarnation: bootstrap (retrying while storage fails), then the
/// rest of the workload.
async fn serve(ctx: ProcessCtx, journal: Arc<Journal>) {
    let config = ManagerConfig {
        channels: (0..CHANNELS).collect(),
        history_capacity: HISTORY_CAPACITY,
        repair_delay_ms: 20,
        max_resends: 3,
        bugs: journal.bugs,
        recorder: Some(journal.recorder.clone()),
        op_ids: journal.op_ids.clone(),
    };
    let mut manager = loop {
        match ReliabilityManager::bootstrap(
            OutageStore::new(DiskStore::new(ctx.disk())),
            config.clone(),
        )
        .await
        {
            Ok(manager) => break manager,
            Err(_) => clock::sleep(Duration::from_millis(5)).await,
        }
    };
    journal.bootstraps.fetch_add(1, Ordering::Relaxed);
    while journal.steps_done.load(Ordering::Relaxed) < journal.size {
        clock::sleep(Duration::from_millis(choose_between(&THINK_MS, 0, 4))).await;
        step(&mut manager, &journal).await;
        journal.steps_done.fetch_add(1, Ordering::Relaxed);
    }
    journal.done.store(true, Ordering::Relaxed);
}

/// One workload step. Errors are the caller's to see and ignore here: the
/// checker judges whether each operation returned what the policy says.
async fn step(manager: &mut ReliabilityManager<OutageStore<DiskStore>>, journal: &Journal) {
    let channel = choose_between(&CHANNEL, 0, u64::from(CHANNELS) - 1) as u32;
    match choose_between(&STEP, 0, 99) {
        0..=21 => {
            let id = {
                let mut peers = lock_recovering(&journal.peers);
                peers.next_out += 1;
                let id = peers.next_out;
                peers.unacked.entry(channel).or_default().push(id);
                id
            };
            let _ = manager.send(channel, id).await;
        }
        22..=45 => {
            let (msg, overtaken) = {
                let mut peers = lock_recovering(&journal.peers);
                let last = peers.last_in.entry(channel).or_insert(0);
                *last += 1;
                let mut id = *last;
                let shape = choose_between(&SHAPE, 0, 5);
                let mut deps = if shape <= 1 && id > 1 {
                    vec![id - 1]
                } else {
                    Vec::new()
                };
                let mut overtaken = None;
                if shape == 2 {
                    // `id` stays in flight; the next message overtakes it.
                    overtaken = Some(id);
                    *last += 1;
                    deps = vec![id];
                    id = *last;
                }
                (
                    Incoming {
                        id,
                        lamport: id * 2,
                        deps,
                    },
                    overtaken,
                )
            };
            if let Some(late) = overtaken {
                lock_recovering(&journal.peers)
                    .in_flight
                    .entry(channel)
                    .or_default()
                    .push(late);
            }
            let _ = manager.receive(channel, msg).await;
        }
        46..=55 => {
            let late = lock_recovering(&journal.peers)
                .in_flight
                .get_mut(&channel)
                .and_then(Vec::pop);
            if let Some(id) = late {
                let msg = Incoming {
                    id,
                    lamport: id * 2,
                    deps: Vec::new(),
                };
                let _ = manager.receive(channel, msg).await;
            }
        }
        56..=69 => {
            let last = lock_recovering(&journal.peers)
                .last_in
                .get(&channel)
                .copied()
                .unwrap_or(0);
            if last > 0 {
                let back = choose_between(&PICK, 0, 7).min(last - 1);
                let id = last - back;
                let msg = Incoming {
                    id,
                    lamport: id * 2,
                    deps: Vec::new(),
                };
                let _ = manager.receive(channel, msg).await;
            }
        }
        70..=79 => {
            let acked = {
                let mut peers = lock_recovering(&journal.peers);
                let unacked = peers.unacked.entry(channel).or_default();
                (!unacked.is_empty()).then(|| unacked.remove(0))
            };
            if let Some(id) = acked {
                let _ = manager.ack(channel, id).await;
            }
        }
        80..=85 => {
            let waiting = manager
                .channel(channel)
                .and_then(|c| c.meta.incoming.keys().next().copied());
            if let Some(id) = waiting {
                let _ = manager.mark_deps_met(channel, id).await;
            }
        }
        86..=95 => {
            let _ = manager.sweep().await;
        }
        96..=98 => {
            let _ = manager.remove_channel(channel).await;
        }
        _ => {
            let _ = manager.reset().await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Coverage marks: the swarm workload really reaches the paths D13 is
    //! about (a checker that never sees them would pass vacuously).

    use std::collections::BTreeSet;

    use durasim_models::{SnapCall, SnapOpKind, SnapResult};
    use durasim_sim::{run, FaultConfig, RunConfig};

    use super::*;

    #[derive(Debug, Default)]
    struct Marks {
        flush_failed: u32,
        retried_flush_merged: u32,
        re_delivered: u32,
        restart_loaded_data: u32,
        bootstrap_failed: u32,
        removed: u32,
        reset: u32,
        op_cut_by_crash: u32,
    }

    fn mark(history: &History, marks: &mut Marks) {
        let mut evicted: BTreeSet<(u32, u64)> = BTreeSet::new();
        let mut flush_failed_on: BTreeSet<u32> = BTreeSet::new();
        let mut kinds = BTreeMap::new();
        let mut returned = BTreeSet::new();
        let mut bootstraps = 0;
        for event in &history.events {
            match &event.kind {
                EventKind::SnapInvoked { op, kind, .. } => {
                    kinds.insert(*op, *kind);
                    bootstraps += u32::from(*kind == SnapOpKind::Bootstrap);
                }
                EventKind::SnapFlushIssued { channel, delta, .. } => {
                    if flush_failed_on.remove(channel)
                        && delta.appends.len() + delta.evicts.len() > 1
                    {
                        marks.retried_flush_merged += 1;
                    }
                    for id in &delta.appends {
                        marks.re_delivered += u32::from(evicted.contains(&(*channel, *id)));
                    }
                    evicted.extend(delta.evicts.iter().map(|id| (*channel, *id)));
                }
                EventKind::SnapCallReturned {
                    channel,
                    call: SnapCall::UpdateHistory,
                    ok: false,
                    ..
                } => {
                    marks.flush_failed += 1;
                    flush_failed_on.insert(*channel);
                }
                EventKind::SnapLoaded {
                    loaded: Some(state),
                    ..
                } if bootstraps > 1 => {
                    marks.restart_loaded_data += u32::from(!state.history.is_empty());
                }
                EventKind::SnapReturned { op, result } => {
                    returned.insert(*op);
                    match (kinds.get(op), result) {
                        (Some(SnapOpKind::Bootstrap), SnapResult::PersistenceError) => {
                            marks.bootstrap_failed += 1
                        }
                        (Some(SnapOpKind::Remove), SnapResult::Ok) => marks.removed += 1,
                        (Some(SnapOpKind::Reset), SnapResult::Ok) => marks.reset += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        marks.op_cut_by_crash += kinds.keys().filter(|op| !returned.contains(op)).count() as u32;
    }

    #[test]
    fn the_swarm_workload_reaches_every_path_d13_judges() {
        let mut marks = Marks::default();
        for seed in 0..60 {
            let config = RunConfig::new(seed).faults(FaultConfig::swarm(seed));
            let outcome = run(config, |sim| run_recorded(sim, 60, SnapshotBugs::default()));
            let (report, history) = outcome.result.expect("the run completes");
            assert!(
                report.findings.is_empty(),
                "seed {seed}: {:?}",
                report.findings
            );
            mark(&history, &mut marks);
        }
        let Marks {
            flush_failed,
            retried_flush_merged,
            re_delivered,
            restart_loaded_data,
            bootstrap_failed,
            removed,
            reset,
            op_cut_by_crash,
        } = marks;
        // Seen at the time of writing: 816 failed flushes, 544 merged
        // retries, 68 re-deliveries, 169 restarts loading data, 13 failed
        // bootstraps, 80 removals, 24 resets, 19 operations cut by crashes.
        assert!(flush_failed >= 100, "{marks:?}");
        assert!(retried_flush_merged >= 50, "{marks:?}");
        assert!(re_delivered >= 20, "{marks:?}");
        assert!(restart_loaded_data >= 50, "{marks:?}");
        assert!(bootstrap_failed >= 3, "{marks:?}");
        assert!(removed >= 20 && reset >= 5, "{marks:?}");
        assert!(op_cut_by_crash >= 5, "{marks:?}");
    }
}
