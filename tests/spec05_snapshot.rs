//! Spec 05 acceptance: the reliability manager's snapshot persistence, in
//! simulated time on `SimDisk`, with power losses between lives.
//!
//! Index:
//! - restart behaviours (one test each): outgoing buffer · Lamport clock ·
//!   delivered history and bloom filter · durable ack · remove + recreate
//!   · repair times · FIFO eviction · dependency cascade across a restart
//!   · three restart cycles;
//! - save points: one meta save then one flush; sweeps save dirty
//!   channels only;
//! - failure policy: foreground ops are non-fatal and the next op
//!   resynchronises; durability-intent ops propagate;
//! - pending queue: a failed flush is retried by the next op, latest wins
//!   (and the `evict-wins-merge` bug loses the message), cleared on
//!   removal and reset;
//! - encoding: an unknown schema version is a loud error.

mod common;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fill, simulate, slot, take, tearing_disk, wait_for_exit};
use durasim::systems::snapshot_persistence::codec::{encode_file, CodecError};
use durasim::systems::snapshot_persistence::{
    ChannelData, ChannelId, ChannelMeta, DiskStore, Incoming, ManagerConfig, MsgId, OpError,
    PersistError, Persistence, Received, ReliabilityManager, SnapshotBugs,
};
use durasim_sim::{run, ProcessCtx, RunConfig};

const LIFE: Duration = Duration::from_secs(5);

/// A store that can be switched down (every call fails at once) and logs
/// its calls.
#[derive(Clone, Default)]
struct Switch {
    down: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Switch {
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }
}

struct Flaky {
    inner: DiskStore,
    switch: Switch,
}

impl Flaky {
    fn call(&self, what: String) -> Result<(), PersistError> {
        self.switch.calls.lock().expect("calls").push(what);
        if self.switch.down.load(Ordering::Relaxed) {
            return Err(PersistError::Io(io::Error::other("storage down")));
        }
        Ok(())
    }
}

impl Persistence for Flaky {
    async fn save_channel_meta(
        &self,
        c: ChannelId,
        meta: &ChannelMeta,
    ) -> Result<(), PersistError> {
        self.call(format!("save {c}"))?;
        self.inner.save_channel_meta(c, meta).await
    }
    async fn update_history(
        &self,
        c: ChannelId,
        a: &[MsgId],
        e: &[MsgId],
    ) -> Result<(), PersistError> {
        self.call(format!("flush {c} +{a:?} -{e:?}"))?;
        self.inner.update_history(c, a, e).await
    }
    async fn load_channel(&self, c: ChannelId) -> Result<ChannelData, PersistError> {
        self.call(format!("load {c}"))?;
        self.inner.load_channel(c).await
    }
    async fn drop_channel(&self, c: ChannelId) -> Result<(), PersistError> {
        self.call(format!("drop {c}"))?;
        self.inner.drop_channel(c).await
    }
    async fn set_retrieval_hint(
        &self,
        c: ChannelId,
        id: MsgId,
        hint: u64,
    ) -> Result<(), PersistError> {
        self.call(format!("hint {c} {id}"))?;
        self.inner.set_retrieval_hint(c, id, hint).await
    }
}

type Manager = ReliabilityManager<Flaky>;

fn config(bugs: SnapshotBugs) -> ManagerConfig {
    ManagerConfig {
        channels: vec![0, 1],
        history_capacity: 3,
        bugs,
        ..ManagerConfig::default()
    }
}

async fn open(ctx: &ProcessCtx, switch: &Switch) -> Manager {
    open_with(ctx, switch, SnapshotBugs::default()).await
}

async fn open_with(ctx: &ProcessCtx, switch: &Switch, bugs: SnapshotBugs) -> Manager {
    let store = Flaky {
        inner: DiskStore::new(ctx.disk()),
        switch: switch.clone(),
    };
    ReliabilityManager::bootstrap(store, config(bugs))
        .await
        .expect("bootstrap")
}

fn msg(id: MsgId, deps: &[MsgId]) -> Incoming {
    Incoming {
        id,
        lamport: id,
        deps: deps.to_vec(),
    }
}

/// Run `body` once per life of one process, `lives` times; between two
/// lives the machine loses power (unsynced data is torn) and restarts.
/// Returns what the last life returned.
fn lives<T, F, Fut>(seed: u64, lives: u32, body: F) -> T
where
    T: Send + 'static,
    F: Fn(ProcessCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    let config = RunConfig::new(seed).faults(tearing_disk());
    common::expect_ok(run(config, |sim| async move {
        let out = slot();
        let out2 = out.clone();
        let body = Arc::new(body);
        let id = sim.spawn_process("node", move |ctx| {
            let (out, body) = (out2.clone(), body.clone());
            async move { fill(&out, body(ctx).await) }
        });
        for life in 1..=lives {
            assert!(wait_for_exit(&sim, id, LIFE).await, "life {life} hangs");
            if life < lives {
                sim.crash(id, true);
                sim.restart(id);
            }
        }
        take(&out).expect("the last life reported")
    }))
}

/// Run `body` in one process of a fault-free simulation.
fn once<T, F, Fut>(seed: u64, body: F) -> T
where
    T: Send + 'static,
    F: Fn(ProcessCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    simulate(seed, |sim| async move {
        common::in_process(&sim, LIFE, body).await
    })
}

// ----- restart behaviours ----------------------------------------------------

#[test]
fn the_outgoing_buffer_survives_a_restart() {
    let outgoing = lives(1, 2, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        if ctx.incarnation() == 1 {
            m.send(0, 10).await.expect("send");
            m.send(0, 11).await.expect("send");
        }
        m.channel(0)
            .map(|c| c.meta.outgoing.keys().copied().collect::<Vec<_>>())
    });
    assert_eq!(outgoing, Some(vec![10, 11]));
}

#[test]
fn the_lamport_clock_survives_and_stays_monotonic_after_a_restart() {
    let (before, after) = lives(2, 2, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        if ctx.incarnation() == 1 {
            m.receive(0, msg(1, &[])).await.expect("receive");
            m.send(0, 7).await.expect("send");
            return (0, 0);
        }
        let before = m.channel(0).map_or(0, |c| c.meta.lamport);
        let after = m.send(0, 8).await.expect("send");
        (before, after)
    });
    // receive (lamport 1 → max(0, 1) + 1 = 2), send → 3; after restart: 3, then 4.
    assert_eq!((before, after), (3, 4));
}

#[test]
fn the_delivered_history_survives_with_the_bloom_filter_rebuilt() {
    let (history, bloom_holds_all, duplicate) = lives(3, 2, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        if ctx.incarnation() == 1 {
            for id in 1..=3 {
                m.receive(0, msg(id, &[])).await.expect("receive");
            }
            return (Vec::new(), false, None);
        }
        let ch = m.channel(0).expect("channel 0 reloaded");
        let ids = ch.history.ids();
        let all = ids.iter().all(|id| ch.history.bloom().may_contain(*id));
        let dup = m.receive(0, msg(2, &[])).await.expect("receive");
        (ids, all, Some(dup))
    });
    assert_eq!(history, vec![1, 2, 3]);
    assert!(bloom_holds_all);
    assert_eq!(duplicate, Some(Received::Duplicate));
}

#[test]
fn an_ack_removes_the_outgoing_entry_durably() {
    let outgoing = lives(4, 2, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        if ctx.incarnation() == 1 {
            m.send(0, 1).await.expect("send");
            m.send(0, 2).await.expect("send");
            m.ack(0, 1).await.expect("ack");
        }
        m.channel(0)
            .map(|c| c.meta.outgoing.keys().copied().collect::<Vec<_>>())
    });
    assert_eq!(outgoing, Some(vec![2]));
}

#[test]
fn remove_and_recreate_starts_fresh_without_a_stale_clock() {
    let (lamport, history) = lives(5, 2, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        if ctx.incarnation() == 1 {
            for id in 1..=5 {
                m.send(0, id).await.expect("send");
            }
            m.receive(0, msg(9, &[])).await.expect("receive");
            m.remove_channel(0).await.expect("remove");
            m.send(0, 100).await.expect("send on the recreated channel");
        }
        let ch = m.channel(0).expect("recreated channel");
        (ch.meta.lamport, ch.history.ids())
    });
    assert_eq!(lamport, 1, "the recreated channel's clock starts from zero");
    assert!(history.is_empty());
}

#[test]
fn repair_entries_keep_their_absolute_time_in_milliseconds() {
    // The same run twice: once reading the times before the power loss,
    // once after it. Same seed, same simulated times: the reloaded due
    // times must be the very same milliseconds.
    let run_once = |restart: bool| {
        lives(6, if restart { 2 } else { 1 }, move |ctx| async move {
            let mut m = open(&ctx, &Switch::default()).await;
            if ctx.incarnation() == 1 {
                m.receive(0, msg(1, &[])).await.expect("receive");
                durasim_sim::clock::sleep(Duration::from_micros(1_700)).await;
                m.receive(0, msg(1, &[])).await.expect("duplicate");
                m.receive(0, msg(5, &[4])).await.expect("waits on 4");
            }
            let ch = m.channel(0).expect("channel");
            (ch.meta.repair_out.clone(), ch.meta.repair_in.clone())
        })
    };
    let (before, after) = (run_once(false), run_once(true));
    assert_eq!(before, after);
    let (repair_out, repair_in) = after;
    assert_eq!(repair_out.keys().collect::<Vec<_>>(), vec![&1]);
    assert_eq!(repair_in.keys().collect::<Vec<_>>(), vec![&4]);
    // Absolute: scheduled 20 ms after a moment past the first millisecond.
    assert!(
        repair_out[&1] > 20 && repair_in[&4] > 20,
        "{repair_out:?} {repair_in:?}"
    );
}

#[test]
fn fifo_eviction_state_survives_and_continues_correctly() {
    let history = lives(7, 3, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        match ctx.incarnation() {
            1 => {
                for id in 1..=5 {
                    m.receive(0, msg(id, &[])).await.expect("receive");
                }
            }
            2 => {
                assert_eq!(m.channel(0).map(|c| c.history.ids()), Some(vec![3, 4, 5]));
                m.receive(0, msg(6, &[])).await.expect("receive");
            }
            _ => {}
        }
        m.channel(0).map(|c| c.history.ids())
    });
    assert_eq!(history, Some(vec![4, 5, 6]), "6 evicted the oldest, 3");
}

#[test]
fn a_dependency_cascade_started_before_a_restart_completes_after_it() {
    let (delivered, history, waiting) = lives(8, 2, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        if ctx.incarnation() == 1 {
            let r = m.receive(0, msg(3, &[2])).await.expect("receive");
            assert_eq!(r, Received::Buffered(vec![2]));
            let r = m.receive(0, msg(2, &[1])).await.expect("receive");
            assert_eq!(r, Received::Buffered(vec![1]));
            return (Vec::new(), Vec::new(), 0);
        }
        let Received::Delivered(delivered) = m.receive(0, msg(1, &[])).await.expect("receive")
        else {
            panic!("message 1 has no dependencies")
        };
        let ch = m.channel(0).expect("channel");
        (delivered, ch.history.ids(), ch.meta.incoming.len())
    });
    assert_eq!(delivered, vec![1, 2, 3]);
    assert_eq!(history, vec![1, 2, 3]);
    assert_eq!(waiting, 0);
}

#[test]
fn three_restart_cycles_keep_all_three_messages() {
    let (history, outgoing) = lives(9, 4, |ctx| async move {
        let mut m = open(&ctx, &Switch::default()).await;
        let life = u64::from(ctx.incarnation());
        if life <= 3 {
            m.receive(1, msg(life, &[])).await.expect("receive");
            m.send(1, 100 + life).await.expect("send");
        }
        let ch = m.channel(1).expect("channel 1");
        (
            ch.history.ids(),
            ch.meta.outgoing.keys().copied().collect::<Vec<_>>(),
        )
    });
    assert_eq!(history, vec![1, 2, 3]);
    assert_eq!(outgoing, vec![101, 102, 103]);
}

// ----- save points -------------------------------------------------------------

#[test]
fn every_mutating_op_ends_with_one_meta_save_then_one_flush() {
    let calls = once(10, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        switch.take_calls();
        let mut per_op = Vec::new();
        m.send(0, 1).await.expect("send");
        per_op.push(switch.take_calls());
        m.receive(0, msg(1, &[])).await.expect("receive");
        per_op.push(switch.take_calls());
        m.receive(0, msg(1, &[])).await.expect("duplicate receive");
        per_op.push(switch.take_calls());
        m.receive(0, msg(3, &[2])).await.expect("buffered");
        per_op.push(switch.take_calls());
        m.mark_deps_met(0, 3).await.expect("mark");
        per_op.push(switch.take_calls());
        m.ack(0, 1).await.expect("ack");
        per_op.push(switch.take_calls());
        per_op
    });
    assert_eq!(
        calls,
        vec![
            vec!["hint 0 1".to_string(), "save 0".into()],
            vec!["save 0".into(), "flush 0 +[1] -[]".into()],
            vec!["save 0".into()],
            vec!["save 0".into()],
            vec!["save 0".into(), "flush 0 +[3] -[]".into()],
            vec!["save 0".into()],
        ]
    );
}

#[test]
fn a_sweep_saves_each_dirty_channel_once_and_idle_ones_never() {
    let (first, idle) = once(11, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        m.send(0, 1).await.expect("send");
        m.receive(1, msg(1, &[])).await.expect("receive");
        switch.take_calls();
        let report = m.sweep().await.expect("sweep");
        assert_eq!(report.saved, vec![0]);
        let first = switch.take_calls();
        m.ack(0, 1).await.expect("ack");
        switch.take_calls();
        m.sweep().await.expect("sweep");
        (first, switch.take_calls())
    });
    assert_eq!(first, vec!["save 0".to_string()], "channel 1 is idle");
    assert!(idle.is_empty(), "nothing is dirty: {idle:?}");
}

// ----- failure policy ----------------------------------------------------------

#[test]
fn foreground_ops_succeed_when_storage_fails_and_the_next_op_resyncs() {
    let outgoing = lives(12, 2, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        if ctx.incarnation() == 1 {
            switch.set_down(true);
            m.send(0, 1)
                .await
                .expect("a failed save is not the caller's error");
            m.send(0, 2).await.expect("nor is this one");
            assert!(m.failures_logged() >= 4);
            switch.set_down(false);
            m.send(0, 3).await.expect("send");
        }
        m.channel(0)
            .map(|c| c.meta.outgoing.keys().copied().collect::<Vec<_>>())
    });
    assert_eq!(
        outgoing,
        Some(vec![1, 2, 3]),
        "the full snapshot resynchronised the disk"
    );
}

#[test]
fn durability_intent_ops_propagate_storage_errors() {
    let (remove, kept, reset, bootstrap) = once(13, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        m.send(0, 1).await.expect("send");
        switch.set_down(true);
        let remove = m.remove_channel(0).await;
        let kept = m.channel(0).is_some();
        let reset = m.reset().await;
        let store = Flaky {
            inner: DiskStore::new(ctx.disk()),
            switch: switch.clone(),
        };
        let bootstrap = ReliabilityManager::bootstrap(store, config(SnapshotBugs::default())).await;
        (
            matches!(remove, Err(OpError::Persistence(_))),
            kept,
            matches!(reset, Err(OpError::Persistence(_))),
            matches!(bootstrap, Err(OpError::Persistence(_))),
        )
    });
    assert!(remove, "remove must report the failed drop");
    assert!(kept, "a failed remove keeps the channel in memory");
    assert!(reset, "reset must report the failed drop");
    assert!(bootstrap, "bootstrap must report the failed load");
}

// ----- pending queue -----------------------------------------------------------

#[test]
fn a_failed_flush_keeps_the_queue_and_the_next_op_retries_it() {
    let (pending, calls, history) = lives(14, 2, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        if ctx.incarnation() == 1 {
            switch.set_down(true);
            m.receive(0, msg(1, &[])).await.expect("receive");
            m.receive(0, msg(2, &[])).await.expect("receive");
            let pending = m.pending(0).map_or(0, |p| p.len());
            switch.set_down(false);
            switch.take_calls();
            // An op with no history change of its own flushes the queue.
            m.send(0, 50).await.expect("send");
            let calls = switch.take_calls();
            assert_eq!(pending, 2, "appends of 1 and 2 wait in the queue");
            assert!(
                calls.contains(&"flush 0 +[1, 2] -[]".to_string()),
                "{calls:?}"
            );
            assert_eq!(m.pending(0).map(|p| p.len()), Some(0));
            return (0, Vec::<String>::new(), Vec::new());
        }
        (
            0,
            Vec::new(),
            m.channel(0).map(|c| c.history.ids()).unwrap_or_default(),
        )
    });
    assert_eq!(pending, 0, "the second life starts with an empty queue");
    assert!(calls.is_empty());
    assert_eq!(history, vec![1, 2], "the retried delta reached the disk");
}

#[test]
fn one_flush_drains_everything_queued_during_an_outage() {
    let (pending, calls) = once(15, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        switch.set_down(true);
        m.receive(0, msg(1, &[])).await.expect("receive");
        m.receive(0, msg(2, &[])).await.expect("receive");
        let pending = m.pending(0).map_or(0, |p| p.len());
        switch.set_down(false);
        switch.take_calls();
        m.send(0, 50).await.expect("send");
        (pending, switch.take_calls())
    });
    assert_eq!(pending, 2);
    assert_eq!(
        calls,
        vec![
            "hint 0 50".to_string(),
            "save 0".into(),
            "flush 0 +[1, 2] -[]".into()
        ]
    );
}

/// Capacity 3: 1, 2, 3 flushed. During an outage 4 arrives (evicting 1)
/// and then 1 comes again (a repair re-delivers it, evicting 2). After the
/// outage one flush; after a power loss, what does the history hold?
fn evicted_during_an_outage_then_re_added(bugs: SnapshotBugs) -> Vec<MsgId> {
    lives(16, 2, move |ctx| async move {
        let switch = Switch::default();
        let mut m = open_with(&ctx, &switch, bugs).await;
        if ctx.incarnation() == 1 {
            for id in 1..=3 {
                m.receive(0, msg(id, &[])).await.expect("receive");
            }
            switch.set_down(true);
            m.receive(0, msg(4, &[])).await.expect("receive");
            m.receive(0, msg(1, &[])).await.expect("re-delivered");
            switch.set_down(false);
            m.send(0, 9).await.expect("send");
        }
        m.channel(0).map(|c| c.history.ids()).unwrap_or_default()
    })
}

#[test]
fn latest_wins_keeps_a_message_evicted_during_an_outage_and_re_added() {
    assert_eq!(
        evicted_during_an_outage_then_re_added(SnapshotBugs::default()),
        vec![3, 4, 1]
    );
}

#[test]
fn the_evict_wins_bug_loses_that_message() {
    let bugs = SnapshotBugs {
        evict_wins_merge: true,
        ..SnapshotBugs::default()
    };
    assert_eq!(evicted_during_an_outage_then_re_added(bugs), vec![3, 4]);
}

#[test]
fn the_pending_queue_is_cleared_on_removal_and_reset() {
    let (after_remove, after_reset) = once(17, |ctx| async move {
        let switch = Switch::default();
        let mut m = open(&ctx, &switch).await;
        switch.set_down(true);
        m.receive(0, msg(1, &[])).await.expect("receive");
        m.receive(1, msg(1, &[])).await.expect("receive");
        switch.set_down(false);
        m.remove_channel(0).await.expect("remove");
        let after_remove = m.pending(0).map(|p| p.len());
        m.reset().await.expect("reset");
        (after_remove, m.pending(1).map(|p| p.len()))
    });
    assert_eq!(after_remove, None);
    assert_eq!(after_reset, None);
}

// ----- encoding ----------------------------------------------------------------

#[test]
fn an_unknown_schema_version_on_disk_is_a_loud_bootstrap_error() {
    let error = once(18, |ctx| async move {
        let disk = ctx.disk();
        disk.create_dir_all("snap").await.expect("dir");
        let mut bytes = encode_file(&ChannelData::default());
        bytes[4..6].copy_from_slice(&7u16.to_le_bytes());
        let file = disk.create("snap/c0").await.expect("create");
        file.write_at(0, &bytes).await.expect("write");
        let store = Flaky {
            inner: DiskStore::new(disk),
            switch: Switch::default(),
        };
        match ReliabilityManager::bootstrap(store, config(SnapshotBugs::default())).await {
            Err(OpError::Persistence(PersistError::Corrupt { channel, source })) => {
                Some((channel, source))
            }
            _ => None,
        }
    });
    assert_eq!(error, Some((0, CodecError::UnknownVersion { found: 7 })));
}
