//! Throughput of the simulated world on the toy workload (a durable-log
//! server and two clients) under every fault kind.
//!
//! Prints simulated disk operations per wall second, scheduler events
//! (trace events and chooser decisions) per wall second, and simulated
//! seconds per wall second. Run with `cargo bench -p durasim-sim --bench world`.

use std::time::{Duration, Instant};

use durasim_sim::selftest::run_toy;
use durasim_sim::{FaultConfig, TraceMode};

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
}
