//! Throughput of the simulated world on the toy workload (a durable-log
//! server and two clients) under every fault kind.
//!
//! Prints simulated disk operations per wall second, scheduler events
//! (trace events and chooser decisions) per wall second, and simulated
//! seconds per wall second. Then the cost of quiet simulated time: an hour
//! of fault phase over three idle processes, with crashes, pauses, clock
//! jumps and partitions at the reference rates, which costs wall time per
//! fault, not per second simulated. Run with
//! `cargo bench -p durasim-sim --bench world`.

use std::time::{Duration, Instant};

use durasim_sim::selftest::run_toy;
use durasim_sim::{run, FaultConfig, RunConfig, TraceMode};

/// Simulated length of the quiet run's fault phase.
const QUIET_PHASE: Duration = Duration::from_secs(3600);

/// Three processes that wait forever through an hour of faults.
fn quiet_hour(seed: u64) -> durasim_sim::RunOutcome<()> {
    let faults = FaultConfig::none().with_network(1.0).with_crashes(1.0);
    let mut config = RunConfig::new(seed).faults(faults);
    config.time_limit = QUIET_PHASE * 2;
    run(config, |sim| async move {
        let ids: Vec<_> = (0..3)
            .map(|_| sim.spawn_process("idle", |_| std::future::pending::<()>()))
            .collect();
        sim.start_faults(&ids);
        sim.sleep(QUIET_PHASE).await;
        sim.heal();
    })
}

fn main() {
    let seeds: u64 = std::env::var("DURASIM_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let faults = FaultConfig::none()
        .with_network(1.0)
        .with_crashes(1.0)
        .with_disk(1.0)
        .with_app(1.0)
        .with_media(1.0);
    // Warm up allocator and caches.
    for seed in 0..10 {
        let _ = run_toy(seed, faults.clone(), None, 30, TraceMode::DigestOnly);
    }
    let (mut disk_ops, mut events, mut decisions, mut sim_nanos, mut faults_injected) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    // Wall-clock measurement happens outside every run, between them.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    for seed in 0..seeds {
        let outcome = run_toy(seed, faults.clone(), None, 30, TraceMode::DigestOnly);
        disk_ops += outcome.stats.disk_ops;
        events += outcome.stats.events;
        decisions += outcome.stats.decisions;
        sim_nanos += outcome.stats.sim_nanos;
        faults_injected += outcome.stats.faults();
    }
    let wall = start.elapsed().max(Duration::from_nanos(1)).as_secs_f64();
    let per_s = |n: u64| n as f64 / wall;
    println!("world benchmark: toy workload (1 server, 2 clients, 30 appends each), every fault kind, {seeds} seeds, 1 thread");
    println!("  wall time                      {wall:>12.3} s");
    println!("  runs/s                         {:>12.0}", per_s(seeds));
    println!(
        "  simulated disk ops/s           {:>12.0}   ({disk_ops} ops)",
        per_s(disk_ops)
    );
    println!(
        "  scheduler events/s (trace)     {:>12.0}   ({events} events)",
        per_s(events)
    );
    println!("  scheduler decisions/s (tape)   {:>12.0}   ({decisions} decisions, {faults_injected} faults)", per_s(decisions));
    println!(
        "  simulated s per wall s         {:>12.0}   ({:.1} simulated s)",
        sim_nanos as f64 / 1e9 / wall,
        sim_nanos as f64 / 1e9
    );
    quiet(seeds.div_ceil(30).max(1));
}

/// The quiet-hour figures: simulated seconds per wall second when nothing
/// but the fault scheduler runs.
fn quiet(seeds: u64) {
    let (mut sim_nanos, mut faults_injected) = (0u64, 0u64);
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    for seed in 0..seeds {
        let outcome = quiet_hour(seed);
        assert!(outcome.result.is_ok(), "seed {seed}: {:?}", outcome.result);
        sim_nanos += outcome.stats.sim_nanos;
        faults_injected += outcome.stats.faults();
    }
    let wall = start.elapsed().max(Duration::from_nanos(1)).as_secs_f64();
    println!(
        "quiet hour: 3 idle processes, {} s of crash, pause, clock and partition faults, {seeds} seeds, 1 thread",
        QUIET_PHASE.as_secs()
    );
    println!("  wall time                      {wall:>12.3} s   ({faults_injected} faults)");
    println!(
        "  simulated s per wall s         {:>12.0}   ({:.1} simulated s)",
        sim_nanos as f64 / 1e9 / wall,
        sim_nanos as f64 / 1e9
    );
}
