//! Checking throughput: build a correct history of 1,000,000 operations
//! with the reference service, check it, print operations per second.
//! `cargo bench -p durasim-models` (set `DURASIM_BENCH_OPS` to change the
//! size).

// The benchmark measures wall-clock time outside any simulation.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use durasim_models::reference::{generate, ReferenceConfig};
use durasim_models::EventKind;

fn main() {
    let operations: usize = std::env::var("DURASIM_BENCH_OPS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let built = Instant::now();
    let history = generate(&ReferenceConfig::large(7, operations));
    let ops = history.operation_count();
    let (recoveries, recovered_entries) = history
        .events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Recovered(recovery) => Some(recovery.log.len()),
            _ => None,
        })
        .fold((0, 0), |(count, entries), len| (count + 1, entries + len));
    println!(
        "built a history of {ops} operations ({} events; {recoveries} recoveries exposing {recovered_entries} log entries in all) in {:.2} s",
        history.events.len(),
        built.elapsed().as_secs_f64()
    );
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    let rounds: usize = std::env::var("DURASIM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for _ in 0..rounds {
        let started = Instant::now();
        let cpu_started = thread_cpu_seconds();
        let violations = durasim_models::check(&history);
        let seconds = started.elapsed().as_secs_f64();
        if let (Some(before), Some(after)) = (cpu_started, thread_cpu_seconds()) {
            best_cpu = best_cpu.min(after - before);
        }
        assert!(
            violations.is_empty(),
            "the reference history must pass: {:?}",
            violations.first()
        );
        best = best.min(seconds);
    }
    println!(
        "checked {ops} operations in {best:.3} s wall: {:.2} M operations/s (best of {rounds}, one thread)",
        ops as f64 / best / 1e6
    );
    if best_cpu < f64::MAX {
        println!(
            "checked {ops} operations in {best_cpu:.3} s of CPU time: {:.2} M operations/s on one core",
            ops as f64 / best_cpu / 1e6
        );
    }
}

/// This thread's CPU time (Linux `schedstat`, nanoseconds): on a shared
/// machine the wall clock also counts time spent waiting for a core.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanos as f64 / 1e9)
}
