//! Helpers shared by the spec tests: run a simulation, run code inside one
//! simulated process, wait in simulated time.

#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::trace::{DiskOp, EventKind};
use durasim_sim::{
    run, FaultConfig, ProcessCtx, ProcessId, RunConfig, RunOutcome, Sim, TraceEvent,
};

/// The value a simulation returned, or a panic naming how it failed.
pub fn expect_ok<T>(outcome: RunOutcome<T>) -> T {
    match outcome.result {
        Ok(value) => value,
        Err(failure) => panic!("simulation failed: {failure}"),
    }
}

/// Run `body` as the supervisor of a fault-free simulation.
pub fn simulate<T, F, Fut>(seed: u64, body: F) -> T
where
    F: FnOnce(Sim) -> Fut,
    Fut: Future<Output = T>,
{
    expect_ok(run(RunConfig::new(seed), body))
}

/// A slot a process fills in for the supervisor to read.
pub type Slot<T> = Arc<Mutex<Option<T>>>;

/// A new empty slot.
pub fn slot<T>() -> Slot<T> {
    Arc::new(Mutex::new(None))
}

/// Put `value` in `slot`.
pub fn fill<T>(slot: &Slot<T>, value: T) {
    *slot.lock().expect("slot lock") = Some(value);
}

/// Take the value out of `slot`.
pub fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().expect("slot lock").take()
}

/// Spawn process `name` running `body` (on every start), wait until it
/// exits (at most `limit` of simulated time) and return what it put in
/// its slot.
pub async fn in_process<T, F, Fut>(sim: &Sim, limit: Duration, body: F) -> T
where
    T: Send + 'static,
    F: Fn(ProcessCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    let out: Slot<T> = slot();
    let out2 = out.clone();
    let body = Arc::new(body);
    let id = sim.spawn_process("db", move |ctx| {
        let (out, body) = (out2.clone(), body.clone());
        async move {
            let value = body(ctx).await;
            fill(&out, value);
        }
    });
    assert!(
        wait_for_exit(sim, id, limit).await,
        "process did not finish within {limit:?}"
    );
    take(&out).expect("the process filled its slot")
}

/// Wait until `id` exits, polling every millisecond; false on timeout.
pub async fn wait_for_exit(sim: &Sim, id: ProcessId, limit: Duration) -> bool {
    wait_until(sim, limit, || sim.has_exited(id)).await
}

/// Wait until `done()` holds, polling every millisecond; false on timeout.
pub async fn wait_until(sim: &Sim, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = sim.now();
    while !done() {
        if sim.now().since(start) > limit {
            return false;
        }
        sim.sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Fsyncs of files (not directories) completed after the app event
/// `marker`, per the trace.
pub fn fsyncs_after(events: &[TraceEvent], marker: &str) -> usize {
    let start = events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::App { name, .. } if name == marker))
        .expect("marker event in the trace");
    events[start..]
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Disk {
                    op: DiskOp::Fsync,
                    ..
                }
            )
        })
        .count()
}

/// Disk faults that tear unsynced data on power loss, sector by sector and
/// inside sectors, and never keep everything.
pub fn tearing_disk() -> FaultConfig {
    let mut faults = FaultConfig::none();
    faults.disk.tear_unsynced = true;
    faults.disk.tear_within_sector = true;
    faults.disk.crash_keep_all_fraction = 0.0;
    faults
}
