//! Spec 02, committed-write backoff, against the group commit coordinator
//! on a simulated disk (its deterministic knobs reject on demand):
//!
//! 1. 8 transient conflicts, then success: the write lands, the handler ran
//!    9 times, no terminal error;
//! 2. the nominal curve with jitter draw 0, and jitter that only shortens;
//! 3. a permanent rejection: handler ran once, nothing applied, the reason
//!    is in telemetry;
//! 4. a conflict that never clears (window 40 ms): terminal
//!    `CommitConvergenceError` to the handler, nothing applied,
//!    1 < handler runs < 500, every attempt inside the window;
//! 5. window 0: terminal on the first conflict, handler ran once;
//! 6. three whole-list appends issued together during a storm of 8
//!    conflicts: the durable list is exactly [1, 2, 3];
//! - configuration is validated and clamped with clear errors;
//! - the known-bug switches reproduce spec 02's historical bugs: a fixed
//!   retry budget that drops a write silently, a permanent rejection
//!   retried.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_ok, in_process};
use durasim::systems::backoff::{
    AttemptOutcome, BackoffConfig, BackoffConfigError, BackoffPolicy, CommitConvergenceError,
    RetryBugs, RetryEvent, RetryLoop, WriteError, DEFAULT_MAX_DELAY, FIXED_RETRY_BUDGET,
};
use durasim::systems::committed_write::{decode_list, encode_list, EventLoop, PageWriter};
use durasim::systems::group_commit::{group_commit, CoordinatorHandle, GroupCommitConfig};
use durasim::systems::record::Recorder;
use durasim::systems::wal::{Wal, WalConfig};
use durasim::systems::wal_format::scan;
use durasim_sim::{run, ProcessCtx, RunConfig, SimTime};

const PAGE: u32 = 1;

type Terminal = Arc<Mutex<Vec<CommitConvergenceError>>>;

/// A recovered store with a coordinator running, and a page writer whose
/// retry loop delivers terminal errors into `terminal`.
async fn start(
    ctx: &ProcessCtx,
    policy: BackoffPolicy,
    terminal: Terminal,
    recorder: Recorder<RetryEvent>,
) -> (PageWriter, CoordinatorHandle) {
    start_with_bugs(ctx, policy, RetryBugs::default(), terminal, recorder).await
}

/// [`start`], with the loop's known bugs `bugs` switched on.
async fn start_with_bugs(
    ctx: &ProcessCtx,
    policy: BackoffPolicy,
    bugs: RetryBugs,
    terminal: Terminal,
    recorder: Recorder<RetryEvent>,
) -> (PageWriter, CoordinatorHandle) {
    let (wal, recovery) = Wal::open(&ctx.disk(), WalConfig::new("wal"), None)
        .await
        .expect("recovery");
    let gc = group_commit(wal, &recovery, GroupCommitConfig::default());
    durasim_sim::task::spawn(gc.coordinator.run());
    let retry = RetryLoop::new(policy)
        .with_bugs(bugs)
        .on_terminal_error(move |e| terminal.lock().expect("lock").push(e.clone()))
        .recording_into(recorder);
    (PageWriter::new(gc.client, retry, PAGE), gc.handle)
}

fn counter(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|v| v.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// What a single-write run saw.
struct Seen {
    result: Result<u64, WriteError>,
    runs: u32,
    terminal: Vec<CommitConvergenceError>,
    value: Option<u64>,
    telemetry: Vec<String>,
    events: Vec<(SimTime, RetryEvent)>,
}

/// Add 3 to the counter at `PAGE` as event 77, with `reject` arming the
/// server's rejections first.
fn add_three(policy: BackoffPolicy, reject: fn(&CoordinatorHandle)) -> Seen {
    add_three_with_bugs(policy, RetryBugs::default(), reject)
}

/// [`add_three`] with the loop's known bugs `bugs` switched on.
fn add_three_with_bugs(
    policy: BackoffPolicy,
    bugs: RetryBugs,
    reject: fn(&CoordinatorHandle),
) -> Seen {
    expect_ok(run(RunConfig::new(21), move |sim| async move {
        in_process(&sim, Duration::from_secs(600), move |ctx| async move {
            let terminal = Terminal::default();
            let recorder = Recorder::new();
            let (writer, handle) =
                start_with_bugs(&ctx, policy, bugs, terminal.clone(), recorder.clone()).await;
            reject(&handle);
            let runs = AtomicU32::new(0);
            let result = writer
                .apply(77, |current| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    (counter(current) + 3).to_le_bytes().to_vec()
                })
                .await;
            let state = handle.state();
            let terminal = terminal.lock().expect("lock").clone();
            Seen {
                result,
                runs: runs.load(Ordering::Relaxed),
                terminal,
                value: state
                    .latest(PAGE)
                    .map(|v| counter(Some(v.value.as_slice()))),
                telemetry: writer
                    .retry_loop()
                    .permanent_rejections()
                    .into_iter()
                    .map(|r| r.reason)
                    .collect(),
                events: recorder
                    .snapshot()
                    .into_iter()
                    .map(|r| (r.time, r.event))
                    .collect(),
            }
        })
        .await
    }))
}

#[test]
fn eight_transient_conflicts_then_success_the_write_lands_without_a_terminal_error() {
    let seen = add_three(BackoffPolicy::default(), |h| h.force_conflicts(8));
    assert_eq!(seen.result, Ok(1), "applied as commit 1");
    assert_eq!(seen.value, Some(3), "total = 3 after adding 3");
    assert_eq!(seen.runs, 9, "the handler re-ran once per conflict");
    assert!(seen.terminal.is_empty());
    // The delays followed the curve, shortened by jitter at most.
    let policy = BackoffPolicy::default();
    let delays: Vec<(u32, Duration)> = seen
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            RetryEvent::Backoff { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 8);
    for (attempt, delay) in delays {
        let nominal = policy.nominal_delay(attempt);
        assert!(
            delay <= nominal,
            "attempt {attempt}: {delay:?} > {nominal:?}"
        );
        assert!(
            delay >= nominal.mul_f64(1.0 - policy.jitter),
            "attempt {attempt}"
        );
    }
}

#[test]
fn the_default_policy_gives_the_nominal_curve_with_jitter_draw_zero() {
    let p = BackoffPolicy::default();
    let ms = Duration::from_millis;
    for step in 1..=3 {
        assert!(p.delay_with_draw(step, 0.0) < ms(5), "step({step})");
    }
    assert_eq!(p.delay_with_draw(6, 0.0), ms(25));
    assert_eq!(p.delay_with_draw(7, 0.0), ms(50));
    assert_eq!(p.delay_with_draw(8, 0.0), ms(100));
    for step in 1..20 {
        let (now, next) = (p.nominal_delay(step), p.nominal_delay(step + 1));
        assert!(
            next == now * 2 || next == p.max_delay,
            "step({}) = {next:?} is neither 2 × {now:?} nor the cap",
            step + 1
        );
    }
    assert_eq!(p.nominal_delay(20), p.max_delay);
    assert_eq!(p.max_delay, DEFAULT_MAX_DELAY);
    assert_eq!(p.nominal_delay(1000), p.max_delay, "no overflow far out");
    // Jitter only shortens, by at most the jitter fraction.
    for r in [0.0, 0.25, 0.5, 0.999] {
        let d = p.delay_with_draw(8, r);
        assert!(
            d <= ms(100) && d >= ms(100).mul_f64(1.0 - p.jitter),
            "r = {r}: {d:?}"
        );
    }
    assert!(p.delay_with_draw(8, 0.5) < ms(100));
}

#[test]
fn a_permanent_rejection_runs_the_handler_once_applies_nothing_and_is_reported() {
    let seen = add_three(BackoffPolicy::default(), |h| h.force_receipt_exists(1));
    assert!(
        matches!(&seen.result, Err(WriteError::Permanent(p)) if p.reason == "receipt-exists"),
        "{:?}",
        seen.result
    );
    assert_eq!(seen.runs, 1);
    assert_eq!(seen.value, None, "not applied");
    assert_eq!(seen.telemetry, vec!["receipt-exists".to_string()]);
    assert!(
        seen.terminal.is_empty(),
        "a permanent rejection is not a convergence failure"
    );
    let attempts = seen
        .events
        .iter()
        .filter(|(_, e)| matches!(e, RetryEvent::AttemptStarted { .. }))
        .count();
    assert_eq!(attempts, 1, "never retried");
}

#[test]
fn a_conflict_that_never_clears_ends_in_a_terminal_error_within_the_window() {
    let window = Duration::from_millis(40);
    let policy = BackoffPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        retry_window: window,
        ..BackoffPolicy::default()
    };
    let seen = add_three(policy, |h| h.force_conflicts_always(true));
    let Err(WriteError::Convergence(error)) = &seen.result else {
        panic!("expected a terminal error, got {:?}", seen.result);
    };
    assert_eq!(
        seen.terminal,
        vec![error.clone()],
        "delivered to the error handler"
    );
    assert_eq!(seen.value, None, "not applied");
    assert!(
        seen.runs > 1 && seen.runs < 500,
        "handler ran {} times",
        seen.runs
    );
    assert_eq!(error.attempts, seen.runs);
    let starts: Vec<SimTime> = seen
        .events
        .iter()
        .filter(|(_, e)| matches!(e, RetryEvent::AttemptStarted { .. }))
        .map(|(t, _)| *t)
        .collect();
    let first = starts[0];
    for t in &starts {
        assert!(
            t.since(first) < window,
            "an attempt started {:?} in",
            t.since(first)
        );
    }
}

#[test]
fn with_a_zero_window_the_first_conflict_is_terminal_and_the_handler_runs_once() {
    let policy = BackoffPolicy {
        retry_window: Duration::ZERO,
        ..BackoffPolicy::default()
    };
    let seen = add_three(policy, |h| h.force_conflicts(1));
    assert!(matches!(seen.result, Err(WriteError::Convergence(_))));
    assert_eq!(seen.runs, 1);
    assert_eq!(seen.terminal.len(), 1);
    assert_eq!(seen.value, None);
}

#[test]
fn three_list_appends_issued_together_in_a_storm_of_8_conflicts_all_land_in_order() {
    let (results, terminal, durable) = expect_ok(run(RunConfig::new(26), |sim| async move {
        in_process(&sim, Duration::from_secs(600), |ctx| async move {
            let terminal = Terminal::default();
            let (writer, handle) = start(
                &ctx,
                BackoffPolicy::default(),
                terminal.clone(),
                Recorder::new(),
            )
            .await;
            handle.force_conflicts(8);
            let events = EventLoop::spawn(writer);
            let pending: Vec<_> = (1..=3u64)
                .map(|item| {
                    events.submit(
                        100 + item,
                        Box::new(move |current| {
                            let mut list = decode_list(current);
                            list.push(item);
                            encode_list(&list)
                        }),
                    )
                })
                .collect();
            let mut results = Vec::new();
            for p in pending {
                results.push(p.await.expect("event loop answered"));
            }
            handle.shutdown();
            // The durable list: the last frame for the page in the WAL image.
            let bytes = ctx.disk().snapshot().remove("wal/log").unwrap_or_default();
            let scanned = scan(&bytes, 4096, true);
            let last = scanned
                .frames()
                .filter(|(_, f)| f.pages.contains(&PAGE))
                .last()
                .map(|(_, f)| decode_list(Some(&f.payload)));
            let terminal = terminal.lock().expect("lock").clone();
            (results, terminal, last)
        })
        .await
    }));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(terminal.is_empty());
    assert_eq!(durable, Some(vec![1, 2, 3]));
}

#[test]
fn the_fixed_retry_budget_bug_drops_a_write_in_a_storm_of_8_conflicts_without_a_terminal_error() {
    let bugs = RetryBugs {
        fixed_retry_budget: true,
        ..RetryBugs::default()
    };
    let seen = add_three_with_bugs(BackoffPolicy::default(), bugs, |h| h.force_conflicts(8));
    assert_eq!(
        seen.runs,
        FIXED_RETRY_BUDGET + 1,
        "gave up after the budget"
    );
    assert_eq!(seen.value, None, "not applied");
    assert!(seen.terminal.is_empty(), "the error handler heard nothing");
    assert!(
        !seen
            .events
            .iter()
            .any(|(_, e)| matches!(e, RetryEvent::Terminal(_))),
        "no terminal error recorded"
    );
    // The correct loop, same storm: lands (acceptance behaviour 1).
    let correct = add_three(BackoffPolicy::default(), |h| h.force_conflicts(8));
    assert_eq!(correct.value, Some(3));
}

#[test]
fn the_permanent_retried_bug_retries_a_receipt_exists_rejection() {
    let bugs = RetryBugs {
        permanent_retried: true,
        ..RetryBugs::default()
    };
    let seen = add_three_with_bugs(BackoffPolicy::default(), bugs, |h| {
        h.force_receipt_exists(1)
    });
    assert_eq!(
        seen.runs, 2,
        "the handler re-ran after the permanent rejection"
    );
    assert_eq!(seen.result, Ok(1));
    assert!(
        seen.telemetry.is_empty(),
        "treated as transient, not reported"
    );
    let outcomes: Vec<&RetryEvent> = seen
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| !matches!(e, RetryEvent::Backoff { .. }))
        .collect();
    assert!(
        matches!(
            outcomes.as_slice(),
            [
                RetryEvent::AttemptStarted { attempt: 1, .. },
                RetryEvent::AttemptEnded {
                    attempt: 1,
                    outcome: AttemptOutcome::Permanent(_),
                    ..
                },
                RetryEvent::AttemptStarted { attempt: 2, .. },
                RetryEvent::AttemptEnded {
                    attempt: 2,
                    outcome: AttemptOutcome::Applied,
                    ..
                },
            ]
        ),
        "{outcomes:?}"
    );
}

#[test]
fn configured_policies_reject_negative_nan_and_huge_values_with_the_field_named() {
    let with = |f: fn(&mut BackoffConfig)| {
        let mut c = BackoffConfig::default();
        f(&mut c);
        BackoffPolicy::from_config(&c)
    };
    let err = with(|c| c.base_delay_ms = Some(-1.0)).expect_err("negative");
    assert_eq!(
        err,
        BackoffConfigError::Negative {
            field: "base_delay_ms",
            value: -1.0
        }
    );
    assert_eq!(
        err.to_string(),
        "backoff.base_delay_ms must not be negative, got -1"
    );
    let err = with(|c| c.jitter = Some(f64::NAN)).expect_err("NaN");
    assert_eq!(err.to_string(), "backoff.jitter must be a number, got NaN");
    let err = with(|c| c.retry_window_ms = Some(f64::INFINITY)).expect_err("infinite");
    assert!(matches!(
        err,
        BackoffConfigError::TooLarge {
            field: "retry_window_ms",
            ..
        }
    ));
    let err = with(|c| c.max_delay_ms = Some(-0.5)).expect_err("negative");
    assert!(err.to_string().contains("max_delay_ms"));
}

#[test]
fn configured_policies_clamp_jitter_and_delays_and_default_what_is_absent() {
    assert_eq!(
        BackoffPolicy::from_config(&BackoffConfig::default()),
        Ok(BackoffPolicy::default())
    );
    let p = BackoffPolicy::from_config(&BackoffConfig {
        base_delay_ms: Some(0.0),
        max_delay_ms: Some(0.0),
        jitter: Some(1.7),
        retry_window_ms: Some(0.0),
    })
    .expect("valid after clamping");
    assert_eq!(
        p.base_delay,
        Duration::from_micros(1),
        "a zero base would spin"
    );
    assert_eq!(p.max_delay, p.base_delay, "max is at least base");
    assert_eq!(p.jitter, 1.0);
    assert_eq!(p.retry_window, Duration::ZERO);
    let p = BackoffPolicy::from_config(&BackoffConfig {
        base_delay_ms: Some(2.0),
        max_delay_ms: Some(30.0),
        ..BackoffConfig::default()
    })
    .expect("valid");
    assert_eq!(p.nominal_delay(4), Duration::from_millis(16));
    assert_eq!(p.nominal_delay(5), Duration::from_millis(30));
    let parsed: Result<BackoffConfig, _> = serde_json::from_str(r#"{"base_delay": 3}"#);
    assert!(parsed.is_err(), "unknown fields are an error, not ignored");
}
