//! The world's processes, clock, network and failure classes.
//!
//! Index: disk ops take simulated time; stale handles are refused after a
//! crash; a process crash keeps the page cache and a power loss may not;
//! pause stalls a process; clock jumps skew `wall_now`; network loss,
//! duplication, reordering and partitions each fire; hangs, deadlocks,
//! livelocks (watchdog) and panics come back as failure classes instead of unwinding;
//! a task still waiting when the run ends is dropped with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::clock;
use durasim_sim::net::Net;
use durasim_sim::profile::{DiskFaults, FaultConfig};
use durasim_sim::{run, Disk, RunConfig, RunFailure, Sim};

fn config(seed: u64) -> RunConfig {
    RunConfig::new(seed)
}

#[test]
fn every_disk_operation_takes_simulated_time() {
    let outcome = run(config(1), |sim: Sim| async move {
        let spent: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let out = spent.clone();
        sim.spawn_process("p", move |ctx| {
            let out = out.clone();
            async move {
                let disk = ctx.disk();
                let t0 = clock::now();
                let f = disk.create("a").await.expect("create");
                let t1 = clock::now();
                f.append(b"x").await.expect("append");
                let t2 = clock::now();
                f.sync_all().await.expect("sync");
                let t3 = clock::now();
                if let Ok(mut v) = out.lock() {
                    v.extend([t1.since(t0), t2.since(t1), t3.since(t2)]);
                }
            }
        });
        sim.sleep(Duration::from_millis(50)).await;
        let v = spent.lock().map(|v| v.clone()).unwrap_or_default();
        v
    });
    let spent = outcome.result.expect("run");
    assert_eq!(spent.len(), 3);
    assert!(
        spent.iter().all(|d| *d >= Duration::from_micros(5)),
        "{spent:?}"
    );
    assert!(
        spent[2] >= Duration::from_micros(200),
        "fsync is slower: {spent:?}"
    );
    assert!(outcome.stats.disk_ops >= 3);
}

#[test]
fn a_handle_from_a_crashed_incarnation_is_refused() {
    let outcome = run(config(2), |sim: Sim| async move {
        let old: Arc<Mutex<Option<Disk>>> = Arc::default();
        let results: Arc<Mutex<Vec<String>>> = Arc::default();
        let (keep, res) = (old.clone(), results.clone());
        let id = sim.spawn_process("p", move |ctx| {
            let (keep, res) = (keep.clone(), res.clone());
            async move {
                let previous = keep.lock().expect("lock").replace(ctx.disk());
                match previous {
                    None => {}
                    Some(stale) => {
                        let err = stale.create("x").await.err().map(|e| e.to_string());
                        res.lock().expect("lock").push(err.unwrap_or_default());
                    }
                }
            }
        });
        sim.sleep(Duration::from_millis(5)).await;
        sim.crash(id, false);
        sim.restart(id);
        sim.sleep(Duration::from_millis(5)).await;
        let r = results.lock().expect("lock").clone();
        r
    });
    let errors = outcome.result.expect("run");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("incarnation ended"), "{errors:?}");
}

/// Write unsynced data, crash (process or machine), restart, and report
/// what the new incarnation reads.
fn unsynced_after_crash(seed: u64, power_loss: bool) -> Vec<u8> {
    let faults = FaultConfig {
        disk: DiskFaults {
            tear_unsynced: true,
            crash_keep_all_fraction: 0.0,
            ..DiskFaults::default()
        },
        ..FaultConfig::none()
    };
    let outcome = run(config(seed).faults(faults), |sim: Sim| async move {
        let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
        let out = seen.clone();
        let id = sim.spawn_process("p", move |ctx| {
            let out = out.clone();
            async move {
                let disk = ctx.disk();
                if ctx.incarnation() == 1 {
                    let f = disk.create("f").await.expect("create");
                    disk.sync_dir("").await.expect("sync dir");
                    f.write_at(0, &[1; 8192]).await.expect("write");
                } else {
                    let bytes = disk.read("f").await.expect("read");
                    *out.lock().expect("lock") = bytes;
                }
            }
        });
        sim.sleep(Duration::from_millis(20)).await;
        sim.crash(id, power_loss);
        sim.restart(id);
        sim.sleep(Duration::from_millis(20)).await;
        let v = seen.lock().expect("lock").clone();
        v
    });
    outcome.result.expect("run")
}

#[test]
fn a_process_crash_keeps_the_page_cache_and_a_power_loss_may_not() {
    for seed in 0..20 {
        assert_eq!(
            unsynced_after_crash(seed, false),
            vec![1; 8192],
            "seed {seed}"
        );
    }
    let lost = (0..20)
        .filter(|&seed| unsynced_after_crash(seed, true) != vec![1; 8192])
        .count();
    assert!(lost > 0, "power loss never lost unsynced data");
}

#[test]
fn a_paused_process_makes_no_progress_until_resumed() {
    let outcome = run(config(3), |sim: Sim| async move {
        let ticks: Arc<Mutex<u64>> = Arc::default();
        let t = ticks.clone();
        let id = sim.spawn_process("ticker", move |_ctx| {
            let t = t.clone();
            async move {
                loop {
                    madsim::time::sleep(Duration::from_millis(1)).await;
                    *t.lock().expect("lock") += 1;
                }
            }
        });
        sim.sleep(Duration::from_millis(10)).await;
        sim.pause(id);
        let at_pause = *ticks.lock().expect("lock");
        sim.sleep(Duration::from_millis(100)).await;
        let while_paused = *ticks.lock().expect("lock") - at_pause;
        sim.resume(id);
        sim.sleep(Duration::from_millis(10)).await;
        let after = *ticks.lock().expect("lock") - at_pause;
        (while_paused, after)
    });
    let (while_paused, after) = outcome.result.expect("run");
    assert!(
        while_paused <= 1,
        "ticked {while_paused} times while paused"
    );
    assert!(after >= 5, "resumed ticker ticked {after} times");
}

#[test]
fn clock_jumps_skew_a_process_wall_clock() {
    let faults = FaultConfig {
        crash: durasim_sim::profile::CrashFaults {
            clock_jump_per_s: 50.0,
            ..Default::default()
        },
        ..FaultConfig::none()
    };
    let outcome = run(config(4).faults(faults), |sim: Sim| async move {
        let skews: Arc<Mutex<Vec<i128>>> = Arc::default();
        let out = skews.clone();
        let id = sim.spawn_process("p", move |_ctx| {
            let out = out.clone();
            async move {
                for _ in 0..50 {
                    madsim::time::sleep(Duration::from_millis(10)).await;
                    let skew = i128::from(clock::wall_now().as_nanos())
                        - i128::from(clock::now().as_nanos());
                    out.lock().expect("lock").push(skew);
                }
            }
        });
        sim.start_faults(&[id]);
        sim.sleep(Duration::from_millis(600)).await;
        let v = skews.lock().expect("lock").clone();
        v
    });
    let skews = outcome.result.expect("run");
    assert!(skews.iter().any(|&s| s != 0), "no skew observed");
    assert!(
        outcome
            .stats
            .faults_by_kind
            .get("clock-jump")
            .copied()
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn processes_start_with_their_own_clock_skew() {
    let faults = FaultConfig {
        crash: durasim_sim::profile::CrashFaults {
            clock_skew_ms_max: 100,
            ..Default::default()
        },
        ..FaultConfig::none()
    };
    let outcome = run(config(8).faults(faults), |sim: Sim| async move {
        let skews: Arc<Mutex<Vec<i128>>> = Arc::default();
        for _ in 0..4 {
            let out = skews.clone();
            sim.spawn_process("p", move |_ctx| {
                let out = out.clone();
                async move {
                    let skew = i128::from(clock::wall_now().as_nanos())
                        - i128::from(clock::now().as_nanos());
                    out.lock().expect("lock").push(skew);
                }
            });
        }
        sim.sleep(Duration::from_millis(5)).await;
        let v = skews.lock().expect("lock").clone();
        v
    });
    let skews = outcome.result.expect("run");
    assert_eq!(skews.len(), 4);
    assert!(skews.iter().all(|s| s.abs() <= 100_000_000), "{skews:?}");
    let distinct: std::collections::BTreeSet<_> = skews.iter().collect();
    assert!(
        distinct.len() > 1,
        "every process had the same skew: {skews:?}"
    );
}

/// How the network is exercised while messages flow.
#[derive(Clone, Copy, PartialEq)]
enum Phases {
    /// In the fault phase.
    Faults,
    /// In the fault phase, with the link blocked.
    Partitioned,
    /// Never in the fault phase: setup, then heal.
    NoFaultPhase,
}

/// Send `n` numbered messages from one process to another under `faults`;
/// return what arrived, in order, and how many faults were injected.
fn deliveries(seed: u64, faults: FaultConfig, n: u64, phases: Phases) -> (Vec<u64>, u64) {
    let outcome = run(config(seed).faults(faults), |sim: Sim| async move {
        let net: Net<u64> = Net::new();
        let got: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (rx_net, out) = (net.clone(), got.clone());
        let receiver = sim.spawn_process("rx", move |ctx| {
            let (net, out) = (rx_net.clone(), out.clone());
            async move {
                let ep = net.endpoint(&ctx);
                loop {
                    let (_, m) = ep.recv().await;
                    out.lock().expect("lock").push(m);
                }
            }
        });
        let tx_net = net.clone();
        let sender = sim.spawn_process("tx", move |ctx| {
            let net = tx_net.clone();
            async move {
                let ep = net.endpoint(&ctx);
                for i in 0..n {
                    ep.send(receiver, i);
                    madsim::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        if phases == Phases::NoFaultPhase {
            sim.sleep(Duration::from_millis(n / 2)).await;
            sim.heal();
        } else {
            // Network faults fire in the fault phase (no process is a crash
            // target here).
            sim.start_faults(&[]);
        }
        if phases == Phases::Partitioned {
            sim.set_link(sender, receiver, true);
        }
        sim.sleep(Duration::from_millis(n + 100)).await;
        let v = got.lock().expect("lock").clone();
        v
    });
    let faults = outcome.stats.faults();
    (outcome.result.expect("run"), faults)
}

#[test]
fn a_quiet_network_delivers_everything_once_in_order() {
    let got = deliveries(5, FaultConfig::none(), 200, Phases::Faults).0;
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

#[test]
fn network_loss_duplication_and_reordering_each_fire() {
    let mut lossy = FaultConfig::none();
    lossy.net.loss = 0.2;
    let got = deliveries(6, lossy, 200, Phases::Faults).0;
    assert!(
        got.len() < 190 && got.len() > 100,
        "loss: {} arrived",
        got.len()
    );

    let mut dup = FaultConfig::none();
    dup.net.duplicate = 0.2;
    let got = deliveries(6, dup, 200, Phases::Faults).0;
    assert!(got.len() > 210, "duplication: {} arrived", got.len());

    let mut reorder = FaultConfig::none();
    reorder.net.reorder = 0.2;
    let got = deliveries(6, reorder, 200, Phases::Faults).0;
    assert_eq!(got.len(), 200);
    assert!(got.windows(2).any(|w| w[0] > w[1]), "no reordering seen");
}

#[test]
fn a_partitioned_link_drops_everything() {
    assert!(deliveries(7, FaultConfig::none(), 50, Phases::Partitioned)
        .0
        .is_empty());
}

#[test]
fn the_network_is_healthy_outside_the_fault_phase() {
    let mut lossy = FaultConfig::none();
    lossy.net.loss = 0.5;
    lossy.net.duplicate = 0.5;
    let (got, faults) = deliveries(9, lossy, 100, Phases::NoFaultPhase);
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(faults, 0);
}

#[test]
fn hangs_deadlocks_and_panics_are_failure_classes() {
    let mut limited = RunConfig::new(1);
    limited.time_limit = Duration::from_secs(1);
    let hang = run(limited, |sim: Sim| async move {
        loop {
            sim.sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(
        matches!(hang.result, Err(RunFailure::TimeLimit(_))),
        "{:?}",
        hang.result
    );

    let deadlock = run(RunConfig::new(1), |_sim: Sim| std::future::pending::<()>());
    assert!(
        matches!(deadlock.result, Err(RunFailure::Deadlock(_))),
        "{:?}",
        deadlock.result
    );

    let mut watched = RunConfig::new(1);
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    watched.abort = Some(flag);
    let spin = run(watched, |_sim: Sim| async {
        loop {
            clock::sleep(Duration::ZERO).await; // busy, no simulated progress
        }
    });
    assert!(
        matches!(spin.result, Err(RunFailure::Livelock(_))),
        "{:?}",
        spin.result
    );

    let panic = run(RunConfig::new(1), |_sim: Sim| async { panic!("boom") });
    match panic.result {
        Err(RunFailure::Panic(m)) => assert!(m.contains("boom")),
        other => panic!("expected a panic failure, got {other:?}"),
    }
}

/// A crash at an I/O point and the heal phase in the same instant: heal
/// restarts the crashed process at once, and the pending crash request
/// must then not kill the new incarnation (it used to, leaving a process
/// marked running whose tasks were gone, so nothing it served ever
/// answered again).
#[test]
fn a_heal_in_the_instant_of_an_io_crash_leaves_the_restarted_process_running() {
    for seed in 0..40 {
        let mut faults = FaultConfig::none();
        faults.crash.crash_per_io = 1.0;
        faults.crash.restart_delay_ms = durasim_sim::profile::Span::new(50, 50);
        let finished: Arc<Mutex<u32>> = Arc::default();
        let seen = finished.clone();
        let outcome = run(config(seed).faults(faults), move |sim: Sim| async move {
            let done = seen.clone();
            let id = sim.spawn_process("p", move |ctx| {
                let done = done.clone();
                async move {
                    let disk: Disk = ctx.disk();
                    let heal_at = clock::now().plus(Duration::from_millis(10));
                    if let Ok(file) = disk.create("a").await {
                        // Write exactly when the supervisor heals.
                        clock::sleep(heal_at.since(clock::now())).await;
                        let _ = file.append(b"x").await;
                    }
                    if let Ok(mut n) = done.lock() {
                        *n += 1;
                    }
                }
            });
            sim.start_faults(&[id]);
            // Wake in the write's instant, but on a timer set after the
            // process's, so the write (and its crash) may come first.
            clock::sleep(Duration::from_millis(1)).await;
            clock::sleep(Duration::from_millis(9)).await;
            sim.heal();
            clock::sleep(Duration::from_millis(200)).await;
        });
        assert!(outcome.result.is_ok(), "seed {seed}: {:?}", outcome.result);
        let finished = *finished.lock().expect("lock");
        assert!(
            finished >= 1,
            "seed {seed}: the process never finished after heal"
        );
    }
}

#[test]
fn a_task_still_waiting_when_the_run_ends_is_dropped_with_it() {
    // The task waits on a notification nobody sends: its waker lives inside
    // the task, so without the run's end aborting it, it would never be
    // dropped, and neither would anything it holds (usually the world).
    let held = Arc::new(());
    let in_task = held.clone();
    let outcome = run(config(5), move |_sim: Sim| async move {
        durasim_sim::task::spawn(async move {
            let _held = in_task;
            let never = tokio::sync::Notify::new();
            never.notified().await;
        });
        madsim::time::sleep(Duration::from_millis(5)).await;
    });
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(
        Arc::strong_count(&held),
        1,
        "the waiting task was not dropped at the run's end"
    );
}
