//! Spec 04, the queued (write-behind) writer, against the in-memory
//! backend in simulated time:
//!
//! - enqueue returns at once and the message lands later;
//! - the writer collects for the batch window after the first message;
//! - consecutive same-stream appends coalesce into one backend call (calls
//!   ≤ messages, every message once); different streams never merge;
//! - `Block` (capacity 2, window 0, 50 ms per call, 24 distinct streams)
//!   makes the sender wait ≥ 100 ms; `DropOldest` counts and reports every
//!   drop; `Fail` refuses at once; the queue never exceeds its capacity;
//! - shutdown flushes everything queued, later enqueues are refused;
//! - transient errors are retried on spec 02's curve, health and the
//!   consecutive-failure counter follow; a permanent error is not retried
//!   and a `Required` flush surfaces it once, a `BestEffort` one does
//!   not; an error that never clears fails after the retry window; a lost
//!   answer is retried and lands once;
//! - writer crashes before and after the backend applied a call, and
//!   crashes while messages are queued: every message lands exactly once,
//!   in order per stream;
//! - the coordinator fans out in priority order, `Required` failures are
//!   the caller's errors, `BestEffort` ones are reported;
//! - the known-bug switches reproduce spec 04's bugs;
//! - under buggified backend faults and writer crashes, every accepted
//!   message ends exactly once: on the backend, once, in order, or failed
//!   loudly.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_ok, in_process};
use durasim::systems::backoff::BackoffPolicy;
use durasim::systems::queued_writer::{
    AppendError, CallFault, CallOutcome, Coordinator, EnqueueError, FailureMode, Health, Latency,
    MemoryBackend, MemoryBackendConfig, Message, OpError, Overflow, QueuedWriter, QueuedWriterBugs,
    QueuedWriterConfig, Registration, Settlement, WritePolicy, WriterEvent,
};
use durasim::systems::record::Recorder;
use durasim_sim::{clock, run, FaultConfig, ProcessCtx, RunConfig};

const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn msg(id: u64) -> Message {
    Message {
        id,
        payload: format!("message {id}").into_bytes(),
    }
}

/// A writer in front of an in-memory backend, with what it reported.
#[derive(Clone)]
struct Rig {
    writer: QueuedWriter,
    backend: MemoryBackend,
    settled: Arc<Mutex<Vec<Settlement>>>,
    events: Recorder<WriterEvent>,
}

impl Rig {
    fn start(config: QueuedWriterConfig, backend: MemoryBackendConfig) -> Rig {
        let backend = MemoryBackend::new(backend);
        let settled: Arc<Mutex<Vec<Settlement>>> = Arc::default();
        let events = Recorder::new();
        let sink = settled.clone();
        let config = QueuedWriterConfig {
            recorder: events.clone(),
            on_settled: Some(Arc::new(move |s: &Settlement| {
                sink.lock().expect("lock").push(s.clone())
            })),
            ..config
        };
        let writer = QueuedWriter::start(Arc::new(backend.clone()), config);
        Rig {
            writer,
            backend,
            settled,
            events,
        }
    }

    fn settled(&self) -> Vec<Settlement> {
        self.settled.lock().expect("lock").clone()
    }

    fn events(&self) -> Vec<WriterEvent> {
        self.events.events()
    }

    /// (call, attempt, delay before) of every attempt.
    fn attempts(&self) -> Vec<(u64, u32, Duration)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                WriterEvent::CallStarted {
                    call,
                    attempt,
                    delay_before,
                    ..
                } => Some((call, attempt, delay_before)),
                _ => None,
            })
            .collect()
    }

    /// The largest queue length any event reported.
    fn queue_high_water(&self) -> usize {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                WriterEvent::Enqueued { queued, .. } => Some(queued),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

/// A backend whose calls take `request` before applying and `response`
/// after.
fn latency(request: Duration, response: Duration) -> MemoryBackendConfig {
    MemoryBackendConfig {
        request_latency: Latency::Fixed(request),
        response_latency: Latency::Fixed(response),
        ..MemoryBackendConfig::default()
    }
}

/// A backend whose call `n` suffers `plan(n)`.
fn planned(plan: impl Fn(u64) -> CallFault + Send + Sync + 'static) -> MemoryBackendConfig {
    MemoryBackendConfig {
        fault_plan: Some(Arc::new(move |n, _| plan(n))),
        ..latency(ms(1), ms(1))
    }
}

fn queued(capacity: usize, window: Duration, overflow: Overflow) -> QueuedWriterConfig {
    QueuedWriterConfig {
        capacity,
        batch_window: window,
        overflow,
        ..QueuedWriterConfig::default()
    }
}

/// Run `body` in a simulated process of a fault-free run of `seed`.
fn in_sim<T, F, Fut>(seed: u64, body: F) -> T
where
    T: Send + 'static,
    F: Fn(ProcessCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    expect_ok(run(RunConfig::new(seed), move |sim| async move {
        in_process(&sim, Duration::from_secs(600), body).await
    }))
}

fn landed_ids(settled: &[Settlement]) -> Vec<u64> {
    settled
        .iter()
        .filter_map(|s| match s {
            Settlement::Landed { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn enqueue_returns_at_once_and_the_message_lands_later() {
    let (enqueue_took, stream, settled) = in_sim(1, |_| async move {
        let rig = Rig::start(queued(8, ms(0), Overflow::Block), latency(ms(50), ms(0)));
        let start = clock::now();
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        let enqueue_took = clock::now().since(start);
        assert!(rig.backend.stream(A).is_empty(), "not landed yet");
        rig.writer.flush().await.expect("flush");
        (enqueue_took, rig.backend.stream(A), rig.settled())
    });
    assert_eq!(enqueue_took, Duration::ZERO);
    assert_eq!(stream, vec![1]);
    assert!(matches!(
        settled[..],
        [Settlement::Landed {
            id: 1,
            stream: A,
            position: 1,
            already_applied: false
        }]
    ));
}

#[test]
fn the_writer_collects_for_the_batch_window_after_the_first_message() {
    let calls = in_sim(2, |_| async move {
        let rig = Rig::start(queued(8, ms(10), Overflow::Block), latency(ms(1), ms(1)));
        let start = clock::now();
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        clock::sleep(ms(3)).await;
        rig.writer.enqueue(A, msg(2)).await.expect("queued");
        clock::sleep(ms(9)).await;
        rig.writer.enqueue(A, msg(3)).await.expect("queued");
        rig.writer.flush().await.expect("flush");
        rig.backend
            .calls()
            .into_iter()
            .map(|c| (c.at.since(start).as_millis(), c.ids))
            .collect::<Vec<_>>()
    });
    // Whole ms: madsim's scheduler adds sub-µs jitter to wake-ups.
    assert_eq!(
        calls,
        vec![(10, vec![1, 2]), (22, vec![3])],
        "the first batch waits 10 ms after message 1 and takes message 2 with it; \
         message 3, enqueued after, opens the next window"
    );
}

#[test]
fn consecutive_same_stream_appends_coalesce_and_every_message_lands_once() {
    let (calls, streams, settled) = in_sim(3, |_| async move {
        let rig = Rig::start(queued(16, ms(5), Overflow::Block), latency(ms(1), ms(1)));
        for (id, stream) in [(1, A), (2, A), (3, A), (4, B), (5, B), (6, A)] {
            rig.writer.enqueue(stream, msg(id)).await.expect("queued");
        }
        rig.writer.flush().await.expect("flush");
        let calls: Vec<(u32, Vec<u64>)> = rig
            .backend
            .calls()
            .into_iter()
            .map(|c| (c.stream, c.ids))
            .collect();
        (
            calls,
            (rig.backend.stream(A), rig.backend.stream(B)),
            rig.settled(),
        )
    });
    assert_eq!(
        calls,
        vec![(A, vec![1, 2, 3]), (B, vec![4, 5]), (A, vec![6])],
        "one call per run of one stream"
    );
    assert!(calls.len() <= 6, "backend calls ≤ enqueued messages");
    assert_eq!(streams, (vec![1, 2, 3, 6], vec![4, 5]));
    let mut landed = landed_ids(&settled);
    landed.sort_unstable();
    assert_eq!(landed, vec![1, 2, 3, 4, 5, 6], "each settles once, landed");
}

#[test]
fn messages_of_different_streams_are_never_merged() {
    let calls = in_sim(4, |_| async move {
        let rig = Rig::start(queued(16, ms(5), Overflow::Block), latency(ms(1), ms(1)));
        for (id, stream) in [(1, A), (2, B), (3, A), (4, C)] {
            rig.writer.enqueue(stream, msg(id)).await.expect("queued");
        }
        rig.writer.flush().await.expect("flush");
        rig.backend
            .calls()
            .into_iter()
            .map(|c| (c.stream, c.ids))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        calls,
        vec![(A, vec![1]), (B, vec![2]), (A, vec![3]), (C, vec![4])]
    );
}

#[test]
fn block_makes_the_sender_wait_for_drains() {
    let (sender_time, high_water, blocked, stats, streams) = in_sim(5, |_| async move {
        let rig = Rig::start(queued(2, ms(0), Overflow::Block), latency(ms(50), ms(0)));
        let start = clock::now();
        for id in 1..=24u64 {
            rig.writer
                .enqueue(id as u32, msg(id))
                .await
                .expect("queued");
        }
        let sender_time = clock::now().since(start);
        rig.writer.flush().await.expect("flush");
        let blocked = rig
            .events()
            .iter()
            .filter(|e| matches!(e, WriterEvent::SenderBlocked { .. }))
            .count();
        let streams: Vec<Vec<u64>> = (1..=24).map(|s| rig.backend.stream(s)).collect();
        (
            sender_time,
            rig.queue_high_water(),
            blocked,
            rig.writer.stats(),
            streams,
        )
    });
    assert!(
        sender_time >= ms(100),
        "24 enqueues took only {sender_time:?} of sender time"
    );
    assert!(high_water <= 2, "queue length reached {high_water}");
    assert_eq!(stats.queue_high_water, 2);
    assert!(blocked > 0, "the sender was blocked");
    assert_eq!(stats.dropped + stats.refused, 0);
    for (i, stream) in streams.iter().enumerate() {
        assert_eq!(stream, &vec![i as u64 + 1], "stream {}", i + 1);
    }
}

#[test]
fn drop_oldest_sheds_load_and_reports_every_drop() {
    let (settled, events, stats, contents) = in_sim(6, |_| async move {
        let rig = Rig::start(
            queued(2, ms(0), Overflow::DropOldest),
            latency(ms(20), ms(0)),
        );
        for id in 1..=10u64 {
            rig.writer.enqueue(A, msg(id)).await.expect("never refused");
            clock::sleep(ms(2)).await;
        }
        rig.writer.flush().await.expect("flush");
        (
            rig.settled(),
            rig.events(),
            rig.writer.stats(),
            rig.backend.stream(A),
        )
    });
    let dropped: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            WriterEvent::DroppedOldest { id } => Some(*id),
            _ => None,
        })
        .collect();
    let reported: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            WriterEvent::DropReported { id } => Some(*id),
            _ => None,
        })
        .collect();
    let told: Vec<u64> = settled
        .iter()
        .filter_map(|s| match s {
            Settlement::Dropped { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert!(!dropped.is_empty(), "the slow backend forced drops");
    assert_eq!(reported, dropped, "every drop reported");
    assert_eq!(told, dropped, "every drop reached the handler");
    assert_eq!(stats.dropped, dropped.len() as u64, "and was counted");
    let mut landed = landed_ids(&settled);
    assert_eq!(landed, contents, "landed in enqueue order");
    landed.extend(&dropped);
    landed.sort_unstable();
    assert_eq!(landed, (1..=10).collect::<Vec<_>>(), "each ended once");
    assert!(dropped.iter().all(|id| !contents.contains(id)));
}

#[test]
fn fail_refuses_at_once_when_the_queue_is_full() {
    let (results, took, contents, stats) = in_sim(7, |_| async move {
        let rig = Rig::start(queued(2, ms(0), Overflow::Fail), latency(ms(30), ms(0)));
        let start = clock::now();
        let mut results = Vec::new();
        for id in 1..=4u64 {
            results.push(rig.writer.enqueue(A, msg(id)).await);
        }
        let took = clock::now().since(start);
        rig.writer.flush().await.expect("flush");
        (results, took, rig.backend.stream(A), rig.writer.stats())
    });
    assert_eq!(
        results,
        vec![
            Ok(()),
            Ok(()),
            Err(EnqueueError::Full),
            Err(EnqueueError::Full)
        ]
    );
    assert_eq!(took, Duration::ZERO, "no waiting");
    assert_eq!(contents, vec![1, 2], "refused messages never land");
    assert_eq!(stats.refused, 2);
}

#[test]
fn shutdown_flushes_everything_queued_and_later_enqueues_are_refused() {
    let (contents, shut, after, stats) = in_sim(8, |_| async move {
        let rig = Rig::start(queued(64, ms(50), Overflow::Block), latency(ms(5), ms(5)));
        for id in 1..=10u64 {
            rig.writer
                .enqueue((id % 3) as u32, msg(id))
                .await
                .expect("queued");
        }
        let shut = rig.writer.shutdown().await;
        let contents: Vec<Vec<u64>> = (0..3).map(|s| rig.backend.stream(s)).collect();
        let after = rig.writer.enqueue(A, msg(11)).await;
        (contents, shut, after, rig.writer.stats())
    });
    assert_eq!(shut, Ok(()));
    assert_eq!(
        contents,
        vec![vec![3, 6, 9], vec![1, 4, 7, 10], vec![2, 5, 8]],
        "everything queued before shutdown landed, in order"
    );
    assert_eq!(after, Err(EnqueueError::Closed));
    assert_eq!(stats.landed, 10);
}

#[test]
fn transient_errors_are_retried_on_the_backoff_curve_and_health_follows() {
    let policy = BackoffPolicy {
        jitter: 0.0,
        ..BackoffPolicy::default()
    };
    let (unhealthy, attempts, healed, contents) = in_sim(9, move |_| async move {
        let config = QueuedWriterConfig {
            retry: policy,
            ..queued(8, ms(0), Overflow::Block)
        };
        let rig = Rig::start(
            config,
            planned(|n| {
                if n <= 4 {
                    CallFault::Busy
                } else {
                    CallFault::None
                }
            }),
        );
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        let w = rig.writer.clone();
        assert!(wait_until_in_process(ms(1000), || w.health().state == Health::Degraded).await);
        let w = rig.writer.clone();
        assert!(wait_until_in_process(ms(1000), || w.health().consecutive_failures == 3).await);
        let unhealthy = rig.writer.health();
        rig.writer.flush().await.expect("landed in the end");
        (
            unhealthy,
            rig.attempts(),
            rig.writer.health(),
            rig.backend.stream(A),
        )
    });
    assert_eq!(unhealthy.state, Health::Unhealthy);
    assert_eq!(
        unhealthy.last_error.as_deref(),
        Some("transient backend error: backend busy")
    );
    let delays: Vec<Duration> = attempts.iter().map(|a| a.2).collect();
    let nominal: Vec<Duration> = std::iter::once(Duration::ZERO)
        .chain((1..=4).map(|n| policy.nominal_delay(n)))
        .collect();
    assert_eq!(delays, nominal, "jitter 0: exactly the nominal curve");
    assert_eq!(healed.state, Health::Healthy);
    assert_eq!(
        (healed.consecutive_failures, healed.failed, healed.succeeded),
        (0, 4, 1)
    );
    assert_eq!(contents, vec![1]);
}

/// Wait until `done()` holds, for code inside a process (polls every millisecond).
async fn wait_until_in_process(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = clock::now();
    while !done() {
        if clock::now().since(start) > limit {
            return false;
        }
        clock::sleep(ms(1)).await;
    }
    true
}

#[test]
fn a_permanent_error_is_not_retried_and_a_required_flush_surfaces_it_once() {
    let (first, second, calls, contents, settled, health) = in_sim(10, |_| async move {
        let rig = Rig::start(
            queued(8, ms(0), Overflow::Block),
            planned(|n| {
                if n == 1 {
                    CallFault::Reject
                } else {
                    CallFault::None
                }
            }),
        );
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        let first = rig.writer.flush().await;
        rig.writer.enqueue(A, msg(2)).await.expect("queued");
        let second = rig.writer.flush().await;
        (
            first,
            second,
            rig.backend.call_count(),
            rig.backend.stream(A),
            rig.settled(),
            rig.writer.health(),
        )
    });
    let failures = first.expect_err("the failure surfaces").failures;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].id, 1);
    assert!(
        !failures[0].may_have_applied,
        "a first-attempt rejection is definite"
    );
    assert!(matches!(failures[0].error, OpError::Rejected { .. }));
    assert_eq!(second, Ok(()), "surfaced once");
    assert_eq!(calls, 2, "message 1 was never retried");
    assert_eq!(contents, vec![2]);
    assert!(matches!(settled[0], Settlement::Failed(ref f) if f.id == 1));
    assert_eq!(
        (health.state, health.consecutive_failures),
        (Health::Healthy, 0)
    );
    assert_eq!(
        health.last_error.as_deref(),
        Some("permanent backend error: rejected by the backend")
    );
}

#[test]
fn a_best_effort_writer_reports_failures_without_failing_flush() {
    let (flushed, settled, health) = in_sim(11, |_| async move {
        let config = QueuedWriterConfig {
            failure_mode: FailureMode::BestEffort,
            ..queued(8, ms(0), Overflow::Block)
        };
        let rig = Rig::start(config, planned(|_| CallFault::Reject));
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        let flushed = rig.writer.flush().await;
        (flushed, rig.settled(), rig.writer.health())
    });
    assert_eq!(flushed, Ok(()));
    assert!(matches!(settled[..], [Settlement::Failed(ref f)] if f.id == 1));
    assert_eq!(
        (health.state, health.consecutive_failures),
        (Health::Degraded, 1)
    );
}

#[test]
fn an_error_that_never_clears_fails_after_the_retry_window() {
    let policy = BackoffPolicy {
        base_delay: ms(1),
        max_delay: ms(2),
        jitter: 0.2,
        retry_window: ms(40),
    };
    let (result, attempts, contents) = in_sim(12, move |_| async move {
        let config = QueuedWriterConfig {
            retry: policy,
            ..queued(8, ms(0), Overflow::Block)
        };
        let rig = Rig::start(config, planned(|_| CallFault::Busy));
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        let result = rig.writer.flush().await;
        (result, rig.attempts(), rig.backend.stream(A))
    });
    let failure = &result.expect_err("terminal").failures[0];
    let OpError::RetryWindowExhausted {
        attempts: n,
        elapsed,
        ..
    } = &failure.error
    else {
        panic!("{failure:?}");
    };
    assert!(
        *elapsed > ms(40),
        "gave up only past the window: {elapsed:?}"
    );
    assert!(1 < *n && *n < 500, "{n} attempts");
    assert_eq!(*n as usize, attempts.len());
    assert!(
        failure.may_have_applied,
        "a transient error may have applied"
    );
    assert!(contents.is_empty());
}

#[test]
fn a_lost_answer_is_retried_and_the_message_lands_once() {
    let (settled, contents) = in_sim(13, |_| async move {
        let rig = Rig::start(
            queued(8, ms(0), Overflow::Block),
            planned(|n| {
                if n == 1 {
                    CallFault::LostAnswer
                } else {
                    CallFault::None
                }
            }),
        );
        rig.writer.enqueue(A, msg(1)).await.expect("queued");
        rig.writer.enqueue(A, msg(2)).await.expect("queued");
        rig.writer.flush().await.expect("flush");
        (rig.settled(), rig.backend.stream(A))
    });
    assert_eq!(contents, vec![1, 2], "applied once, by the first attempt");
    assert!(settled.iter().all(|s| matches!(
        s,
        Settlement::Landed {
            already_applied: true,
            ..
        }
    )));
}

/// Enqueue `ids` on stream A, crash the writer once `crash_when` holds
/// (checked every 100 µs), flush; the backend's stream, the writer's
/// events and stats.
fn crash_mid_call(
    seed: u64,
    crash_when: fn(&MemoryBackend) -> bool,
) -> (Vec<u64>, Vec<WriterEvent>, u64, Vec<Settlement>) {
    in_sim(seed, move |_| async move {
        let rig = Rig::start(queued(8, ms(0), Overflow::Block), latency(ms(5), ms(20)));
        for id in 1..=3 {
            rig.writer.enqueue(A, msg(id)).await.expect("queued");
        }
        while !crash_when(&rig.backend) {
            clock::sleep(Duration::from_micros(100)).await;
        }
        rig.writer.crash_writer();
        rig.writer.flush().await.expect("flush");
        (
            rig.backend.stream(A),
            rig.events(),
            rig.writer.stats().writer_crashes,
            rig.settled(),
        )
    })
}

#[test]
fn a_writer_crash_after_the_backend_applied_lands_each_message_exactly_once() {
    let (contents, events, crashes, settled) = crash_mid_call(14, |b| b.stream(A).len() == 3);
    assert_eq!(crashes, 1);
    assert_eq!(contents, vec![1, 2, 3], "no duplicate, no loss, in order");
    assert!(events.contains(&WriterEvent::CallEnded {
        call: 1,
        attempt: 1,
        outcome: CallOutcome::Interrupted
    }));
    assert!(events.contains(&WriterEvent::WriterRestarted));
    assert_eq!(landed_ids(&settled), vec![1, 2, 3]);
    assert!(settled.iter().all(|s| matches!(
        s,
        Settlement::Landed {
            already_applied: true,
            ..
        }
    )));
}

#[test]
fn a_writer_crash_before_the_backend_applied_resends_the_batch() {
    let (contents, events, crashes, settled) = crash_mid_call(15, |b| b.call_count() == 1);
    assert_eq!(crashes, 1);
    assert_eq!(contents, vec![1, 2, 3]);
    let retried = events.iter().any(|e| {
        matches!(
            e,
            WriterEvent::CallStarted {
                call: 1,
                attempt: 2,
                delay_before,
                ..
            } if !delay_before.is_zero()
        )
    });
    assert!(
        retried,
        "the interrupted call is retried after a backoff delay"
    );
    assert!(settled.iter().all(|s| matches!(
        s,
        Settlement::Landed {
            already_applied: false,
            ..
        }
    )));
}

#[test]
fn queued_messages_survive_writer_crashes_and_land_in_order_per_stream() {
    let (streams, crashes, landed) = in_sim(16, |_| async move {
        let rig = Rig::start(queued(4, ms(2), Overflow::Block), latency(ms(1), ms(2)));
        for id in 1..=60u64 {
            rig.writer
                .enqueue((id % 3) as u32, msg(id))
                .await
                .expect("queued");
            if id % 7 == 0 {
                rig.writer.crash_writer();
            }
            clock::sleep(Duration::from_micros(700)).await;
        }
        rig.writer.shutdown().await.expect("shutdown");
        let streams: Vec<Vec<u64>> = (0..3).map(|s| rig.backend.stream(s)).collect();
        (
            streams,
            rig.writer.stats().writer_crashes,
            rig.writer.stats().landed,
        )
    });
    assert!(crashes >= 5, "{crashes} crashes");
    assert_eq!(landed, 60);
    for (s, stream) in streams.iter().enumerate() {
        let expected: Vec<u64> = (1..=60).filter(|id| id % 3 == s as u64).collect();
        assert_eq!(
            stream, &expected,
            "stream {s}: exactly once, in enqueue order"
        );
    }
}

#[test]
fn the_coordinator_fans_out_in_priority_order_and_required_failures_are_the_callers() {
    let seen = in_sim(17, |_| async move {
        let primary = MemoryBackend::new(latency(ms(1), ms(1)));
        let cache = MemoryBackend::new(latency(ms(1), ms(1)));
        let audit = MemoryBackend::new(planned(|_| CallFault::Reject));
        let mut coordinator = Coordinator::new(BackoffPolicy::default());
        let queued_policy = WritePolicy::Queued {
            batch_window: ms(5),
            capacity: 16,
            overflow: Overflow::Block,
        };
        for (name, policy, failure_mode, priority, backend) in [
            ("cache", queued_policy, FailureMode::Required, 5, &cache),
            (
                "audit",
                WritePolicy::Immediate,
                FailureMode::BestEffort,
                1,
                &audit,
            ),
            (
                "primary",
                WritePolicy::Immediate,
                FailureMode::Required,
                10,
                &primary,
            ),
        ] {
            let registration = Registration {
                name: name.into(),
                policy,
                failure_mode,
                priority,
            };
            coordinator.register(registration, Arc::new(backend.clone()));
        }
        let order = coordinator.fan_out_order();
        let report = coordinator.append(A, msg(1)).await.expect("appended");
        let primary_after_append = primary.stream(A);
        let cache_after_append = cache.stream(A);
        coordinator.flush().await.expect("flush");
        let cache_after_flush = cache.stream(A);
        let audit_health = coordinator.health("audit").expect("registered");

        // A Required immediate backend that rejects: the caller's error,
        // and lower priorities never see the message.
        let failing = MemoryBackend::new(planned(|_| CallFault::Reject));
        let mut strict = Coordinator::new(BackoffPolicy::default());
        for (name, priority, backend) in [("first", 2, &failing), ("second", 1, &primary)] {
            let registration = Registration {
                name: name.into(),
                policy: WritePolicy::Immediate,
                failure_mode: FailureMode::Required,
                priority,
            };
            strict.register(registration, Arc::new(backend.clone()));
        }
        let refused = strict.append(B, msg(2)).await;
        coordinator.shutdown().await.expect("shutdown");
        (
            order,
            report,
            primary_after_append,
            cache_after_append,
            cache_after_flush,
            audit_health,
            refused,
            primary.stream(B),
        )
    });
    let (order, report, primary_now, cache_now, cache_later, audit, refused, primary_b) = seen;
    assert_eq!(order, vec!["primary", "cache", "audit"]);
    assert_eq!(
        primary_now,
        vec![1],
        "immediate: landed when append returns"
    );
    assert!(cache_now.is_empty(), "queued: not yet");
    assert_eq!(cache_later, vec![1], "queued: landed by the flush");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, "audit");
    assert_eq!(audit.state, Health::Degraded);
    assert!(matches!(refused, Err(AppendError::Backend { ref backend, .. }) if backend == "first"));
    assert!(
        primary_b.is_empty(),
        "the fan-out stopped at the Required failure"
    );
}

#[test]
fn known_bug_shutdown_skips_flush_leaves_queued_messages_unsettled() {
    let (contents, settled, abandoned) = in_sim(18, |_| async move {
        let config = QueuedWriterConfig {
            bugs: QueuedWriterBugs {
                shutdown_skips_flush: true,
                ..QueuedWriterBugs::default()
            },
            ..queued(64, ms(50), Overflow::Block)
        };
        let rig = Rig::start(config, latency(ms(1), ms(1)));
        for id in 1..=5 {
            rig.writer.enqueue(A, msg(id)).await.expect("queued");
        }
        rig.writer.shutdown().await.expect("shutdown");
        let abandoned = rig.events().iter().find_map(|e| match e {
            WriterEvent::ShutdownFinished { abandoned } => Some(*abandoned),
            _ => None,
        });
        (rig.backend.stream(A), rig.settled(), abandoned)
    });
    assert!(contents.is_empty(), "nothing landed");
    assert!(settled.is_empty(), "and nothing failed: silently dropped");
    assert_eq!(abandoned, Some(5));
}

#[test]
fn known_bug_coalesce_across_streams_misapplies_messages() {
    let (a, b) = in_sim(19, |_| async move {
        let config = QueuedWriterConfig {
            bugs: QueuedWriterBugs {
                coalesce_across_streams: true,
                ..QueuedWriterBugs::default()
            },
            ..queued(16, ms(5), Overflow::Block)
        };
        let rig = Rig::start(config, latency(ms(1), ms(1)));
        for (id, stream) in [(1, A), (2, B), (3, A)] {
            rig.writer.enqueue(stream, msg(id)).await.expect("queued");
        }
        rig.writer.flush().await.expect("flush");
        (rig.backend.stream(A), rig.backend.stream(B))
    });
    assert_eq!(a, vec![1, 2, 3], "message 2 landed on stream A");
    assert!(b.is_empty(), "stream B lost it");
}

/// What one buggified run ended with.
struct Ended {
    /// Per stream, the ids accepted, in enqueue order.
    accepted: BTreeMap<u32, Vec<u64>>,
    settled: Vec<Settlement>,
    surfaced: Vec<u64>,
    contents: Vec<(u32, u64)>,
    crashes: u64,
}

fn buggified_run(seed: u64, failure_mode: FailureMode) -> Ended {
    let faults = FaultConfig::none().with_app(2.0);
    expect_ok(run(
        RunConfig::new(seed).faults(faults),
        move |sim| async move {
            // Backend faults and writer crashes are application faults: they
            // fire in the fault phase.
            sim.start_faults(&[]);
            in_process(&sim, Duration::from_secs(600), move |_| async move {
                let policy = BackoffPolicy {
                    base_delay: ms(1),
                    max_delay: ms(20),
                    jitter: 0.5,
                    retry_window: ms(100),
                };
                let config = QueuedWriterConfig {
                    retry: policy,
                    failure_mode,
                    restart_delay: ms(3),
                    ..queued(4, ms(2), Overflow::Block)
                };
                let backend = MemoryBackendConfig {
                    buggify: true,
                    request_latency: Latency::Drawn {
                        min_us: 1,
                        max_us: 2000,
                    },
                    response_latency: Latency::Drawn {
                        min_us: 1,
                        max_us: 2000,
                    },
                    ..MemoryBackendConfig::default()
                };
                let rig = Rig::start(config, backend);
                let mut accepted: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
                let mut surfaced = Vec::new();
                for id in 1..=80u64 {
                    let stream = (id * 7 % 3) as u32;
                    rig.writer
                        .enqueue(stream, msg(id))
                        .await
                        .expect("Block never refuses");
                    accepted.entry(stream).or_default().push(id);
                    if id % 10 == 0 {
                        if let Err(e) = rig.writer.flush().await {
                            surfaced.extend(e.failures.iter().map(|f| f.id));
                        }
                    }
                    clock::sleep(ms(3)).await;
                }
                if let Err(e) = rig.writer.shutdown().await {
                    surfaced.extend(e.failures.iter().map(|f| f.id));
                }
                Ended {
                    accepted,
                    settled: rig.settled(),
                    surfaced,
                    contents: rig
                        .backend
                        .contents()
                        .into_iter()
                        .map(|m| (m.stream, m.id))
                        .collect(),
                    crashes: rig.writer.stats().writer_crashes,
                }
            })
            .await
        },
    ))
}

#[test]
fn under_buggified_faults_every_message_ends_exactly_once_in_order_or_fails_loudly() {
    let (mut failed_total, mut crashes_total, mut landed_total) = (0, 0, 0);
    for seed in 0..12 {
        let mode = if seed % 2 == 0 {
            FailureMode::Required
        } else {
            FailureMode::BestEffort
        };
        let ended = buggified_run(seed, mode);
        crashes_total += ended.crashes;
        let mut ends: BTreeMap<u64, &Settlement> = BTreeMap::new();
        for s in &ended.settled {
            let id = match s {
                Settlement::Landed { id, .. } | Settlement::Dropped { id, .. } => *id,
                Settlement::Failed(f) => f.id,
            };
            assert!(
                ends.insert(id, s).is_none(),
                "seed {seed}: message {id} settled twice"
            );
        }
        let mut on_backend: BTreeMap<u64, u32> = BTreeMap::new();
        for &(stream, id) in &ended.contents {
            assert!(
                on_backend.insert(id, stream).is_none(),
                "seed {seed}: {id} landed twice"
            );
        }
        let mut failed = Vec::new();
        for (stream, ids) in &ended.accepted {
            let landed: Vec<u64> = ended
                .contents
                .iter()
                .filter(|(s, _)| s == stream)
                .map(|(_, id)| *id)
                .collect();
            let order: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|id| landed.contains(id))
                .collect();
            assert_eq!(
                landed, order,
                "seed {seed}: stream {stream} out of enqueue order"
            );
            for id in ids {
                match ends.get(id) {
                    Some(Settlement::Landed { stream: s, .. }) => {
                        landed_total += 1;
                        assert_eq!(on_backend.get(id), Some(s), "seed {seed}: {id}");
                    }
                    Some(Settlement::Failed(f)) => {
                        failed.push(*id);
                        if !f.may_have_applied {
                            assert!(
                                !on_backend.contains_key(id),
                                "seed {seed}: {id} failed definitely but landed"
                            );
                        }
                    }
                    other => panic!("seed {seed}: message {id} ended as {other:?}"),
                }
            }
        }
        failed_total += failed.len();
        failed.sort_unstable();
        let mut surfaced = ended.surfaced.clone();
        surfaced.sort_unstable();
        if mode == FailureMode::Required {
            assert_eq!(
                surfaced, failed,
                "seed {seed}: every Required failure surfaced once"
            );
        } else {
            assert!(ended.surfaced.is_empty(), "seed {seed}");
        }
    }
    assert!(crashes_total > 0, "writer crashes fired");
    assert!(failed_total > 0, "some messages failed terminally");
    assert!(landed_total > 0);
}
