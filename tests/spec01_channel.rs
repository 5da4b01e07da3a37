//! Spec 01, the two-phase bounded channel, in simulated time:
//!
//! - permits are numbered in reservation order; send delivers;
//! - delivery follows reservation order even when later permits send first;
//! - abort and drop give the slot back and are skipped in delivery;
//! - the tracked variant counts leaked permits (drop without send/abort);
//! - capacity defaults to 16 and is clamped to [1, 65535];
//! - `reserve` waits while full (backpressure), `try_reserve_for` gives up
//!   and takes nothing;
//! - many writers never take more than `capacity` slots, and the receiver
//!   sees messages in permit order;
//! - close: the receiver drains what was reserved, then sees the end;
//! - the sizing helpers follow the spec's formulas.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim::systems::channel::{
    self, channel_with, clamp_capacity, conformal_batch_size, littles_law_capacity,
    optimal_batch_size, quantile_90, ChannelEvent, ChannelOptions, TryRecv, DEFAULT_CAPACITY,
};
use durasim::systems::record::Recorder;
use durasim_sim::{clock, run, RunConfig, Site};

/// Run `body` as the supervisor of a fault-free simulation and return
/// what it returns (panicking with the run's failure otherwise).
fn simulate<T, F, Fut>(seed: u64, body: F) -> T
where
    F: FnOnce(durasim_sim::Sim) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    match run(RunConfig::new(seed), body).result {
        Ok(value) => value,
        Err(failure) => panic!("simulation failed: {failure}"),
    }
}

fn message<T>(got: TryRecv<T>) -> (u64, T) {
    match got {
        TryRecv::Message(seq, value) => (seq, value),
        TryRecv::Empty => panic!("expected a message, channel is empty"),
        TryRecv::Ended => panic!("expected a message, channel ended"),
    }
}

#[test]
fn permits_are_numbered_one_two_three_in_reservation_order() {
    simulate(1, |_| async {
        let (tx, rx) = channel::channel::<&str>(4);
        let a = tx.reserve().await.expect("open");
        let b = tx.reserve().await.expect("open");
        let c = tx.reserve().await.expect("open");
        assert_eq!([a.seq(), b.seq(), c.seq()], [1, 2, 3]);
        a.send("a");
        b.send("b");
        c.send("c");
        assert_eq!(message(rx.try_recv()), (1, "a"));
        assert_eq!(message(rx.try_recv()), (2, "b"));
        assert_eq!(message(rx.try_recv()), (3, "c"));
        assert_eq!(rx.try_recv(), TryRecv::Empty);
    });
}

#[test]
fn delivery_follows_reservation_order_even_when_later_permits_send_first() {
    simulate(2, |_| async {
        let (tx, rx) = channel::channel::<u64>(4);
        let p1 = tx.reserve().await.expect("open");
        let p2 = tx.reserve().await.expect("open");
        let p3 = tx.reserve().await.expect("open");
        p3.send(3);
        p2.send(2);
        assert_eq!(rx.try_recv(), TryRecv::Empty, "2 and 3 wait for permit 1");
        p1.send(1);
        let got: Vec<u64> = (0..3).map(|_| message(rx.try_recv()).1).collect();
        assert_eq!(got, vec![1, 2, 3]);
    });
}

#[test]
fn an_aborted_reservation_is_skipped_and_gives_its_slot_back() {
    simulate(3, |_| async {
        let (tx, rx) = channel::channel::<u64>(2);
        let p1 = tx.reserve().await.expect("open");
        let p2 = tx.reserve().await.expect("open");
        assert_eq!(tx.in_use(), 2);
        p2.send(2);
        p1.abort();
        assert_eq!(tx.in_use(), 1, "the aborted slot is free at once");
        assert_eq!(message(rx.try_recv()), (2, 2));
        assert_eq!(tx.in_use(), 0);
        let p3 = tx.reserve().await.expect("open");
        assert_eq!(p3.seq(), 3);
    });
}

#[test]
fn dropping_a_permit_without_sending_releases_its_slot_like_an_abort() {
    simulate(4, |_| async {
        let (tx, rx) = channel::channel::<u64>(1);
        let p1 = tx.reserve().await.expect("open");
        drop(p1);
        assert_eq!(tx.in_use(), 0);
        let p2 = tx.reserve().await.expect("a slot is free again");
        p2.send(20);
        assert_eq!(message(rx.try_recv()), (2, 20), "permit 1 was skipped");
        assert_eq!(
            tx.leaked_permits(),
            0,
            "untracked channels do not count leaks"
        );
    });
}

#[test]
fn the_tracked_variant_counts_permits_dropped_without_send_or_abort() {
    simulate(5, |_| async {
        let (tx, rx) = channel::tracked::<u64>(4);
        let sent = tx.reserve().await.expect("open");
        let aborted = tx.reserve().await.expect("open");
        let leaked_a = tx.reserve().await.expect("open");
        let leaked_b = tx.reserve().await.expect("open");
        sent.send(1);
        aborted.abort();
        drop(leaked_a);
        drop(leaked_b);
        assert_eq!(tx.leaked_permits(), 2);
        assert_eq!(rx.leaked_permits(), 2);
        assert_eq!(message(rx.try_recv()), (1, 1));
        assert_eq!(rx.try_recv(), TryRecv::Empty);
        assert_eq!(tx.in_use(), 0);
    });
}

#[test]
fn capacity_defaults_to_16_and_configured_values_are_clamped_to_1_through_65535() {
    assert_eq!(DEFAULT_CAPACITY, 16);
    assert_eq!(ChannelOptions::default().capacity, 16);
    assert_eq!(clamp_capacity(-7), 1);
    assert_eq!(clamp_capacity(0), 1);
    assert_eq!(clamp_capacity(1), 1);
    assert_eq!(clamp_capacity(300), 300);
    assert_eq!(clamp_capacity(65_535), 65_535);
    assert_eq!(clamp_capacity(65_536), 65_535);
    assert_eq!(clamp_capacity(i64::MAX), 65_535);
    let (zero, _rx0) = channel::channel::<u8>(0);
    assert_eq!(zero.capacity(), 1);
    let (huge, _rx1) = channel::channel::<u8>(1 << 20);
    assert_eq!(huge.capacity(), 65_535);
}

#[test]
fn reserve_waits_in_simulated_time_while_the_channel_is_full() {
    let (waited_until, seq) = simulate(6, |_| async {
        let (tx, rx) = channel::channel::<u64>(2);
        let p1 = tx.reserve().await.expect("open");
        let p2 = tx.reserve().await.expect("open");
        p1.send(1);
        p2.send(2);
        let blocked_tx = tx.clone();
        let waiter = durasim_sim::task::spawn(async move {
            let permit = blocked_tx.reserve().await.expect("open");
            (clock::now(), permit.seq())
        });
        // The receiver frees a slot only after 5 ms.
        clock::sleep(Duration::from_millis(5)).await;
        assert_eq!(tx.in_use(), 2, "the waiter has not taken a slot yet");
        let start_of_release = clock::now();
        assert_eq!(message(rx.try_recv()).0, 1);
        let (at, seq) = waiter.await.expect("waiter finished");
        assert!(at >= start_of_release);
        (at, seq)
    });
    assert!(waited_until.as_nanos() >= 5_000_000, "{waited_until}");
    assert_eq!(seq, 3);
}

#[test]
fn try_reserve_for_gives_up_after_its_timeout_and_takes_nothing() {
    simulate(7, |_| async {
        let recorder = Recorder::new();
        let (tx, rx) = channel_with::<u64>(ChannelOptions {
            capacity: 1,
            tracked: true,
            recorder: Some(recorder.clone()),
            ..ChannelOptions::default()
        });
        let held = tx.reserve().await.expect("open");
        let before = clock::now();
        let gave_up = tx.try_reserve_for(Duration::from_millis(10)).await;
        assert!(gave_up.is_none(), "the channel stayed full");
        let waited = clock::now().since(before);
        assert!(waited >= Duration::from_millis(10), "{waited:?}");
        assert_eq!(tx.in_use(), 1);
        held.send(1);
        assert_eq!(message(rx.try_recv()), (1, 1));
        let next = tx
            .try_reserve_for(Duration::from_millis(10))
            .await
            .expect("a slot is free")
            .expect("open");
        assert_eq!(next.seq(), 2, "the cancelled wait consumed no number");
        next.abort();
        assert!(recorder.events().contains(&ChannelEvent::ReserveTimedOut));
        assert_eq!(tx.leaked_permits(), 0);
    });
}

const SEND_DELAY: Site = Site::value("test.channel.send_delay");

#[test]
fn many_writers_never_take_more_than_capacity_and_delivery_follows_permit_numbers() {
    for seed in 0..20 {
        let recorder = Recorder::new();
        let rec = recorder.clone();
        let received = simulate(seed, move |_| async move {
            let (tx, rx) = channel_with::<u64>(ChannelOptions {
                capacity: 3,
                tracked: true,
                recorder: Some(rec),
                ..ChannelOptions::default()
            });
            let mut writers = Vec::new();
            for w in 0..8u64 {
                let tx = tx.clone();
                writers.push(durasim_sim::task::spawn(async move {
                    for i in 0..5u64 {
                        let permit = tx.reserve().await.expect("open");
                        let seq = permit.seq();
                        // Hold the permit a seeded while before deciding.
                        let us = durasim_sim::choose_between(&SEND_DELAY, 0, 3000);
                        clock::sleep(Duration::from_micros(us)).await;
                        if (w + i) % 4 == 0 {
                            permit.abort();
                        } else {
                            permit.send(seq);
                        }
                    }
                }));
            }
            drop(tx);
            let got = Arc::new(Mutex::new(Vec::new()));
            while let Some((seq, value)) = rx.recv().await {
                assert_eq!(seq, value, "a message arrives under its own permit");
                got.lock().expect("not poisoned").push(seq);
                clock::sleep(Duration::from_micros(700)).await;
            }
            for w in writers {
                w.await.expect("writer finished");
            }
            assert_eq!(rx.high_water(), 3);
            let received = got.lock().expect("not poisoned").clone();
            received
        });
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: {received:?}"
        );
        assert_eq!(received.len(), 30, "seed {seed}: 40 permits, 10 aborted");
        for event in recorder.events() {
            if let ChannelEvent::Reserved { in_use, .. } = event {
                assert!(in_use <= 3, "seed {seed}: {in_use} slots taken");
            }
        }
    }
}

#[test]
fn after_close_the_receiver_drains_what_was_reserved_then_sees_the_end() {
    simulate(8, |_| async {
        let (tx, rx) = channel::channel::<u64>(4);
        let p1 = tx.reserve().await.expect("open");
        tx.close();
        assert!(tx.reserve().await.is_err(), "closed to new reservations");
        assert_eq!(rx.try_recv(), TryRecv::Empty, "permit 1 may still send");
        p1.send(1);
        assert_eq!(rx.recv().await, Some((1, 1)));
        assert_eq!(rx.recv().await, None);
    });
}

#[test]
fn littles_law_capacity_is_the_ceiling_of_rate_times_latency_times_burst_and_jitter() {
    let ms = Duration::from_millis;
    assert_eq!(littles_law_capacity(1000.0, ms(5), 1.0, 1.0), 5);
    assert_eq!(littles_law_capacity(1000.0, ms(5), 2.0, 1.5), 15);
    assert_eq!(
        littles_law_capacity(1000.0, ms(5), 0.5, 0.2),
        5,
        "factors below 1 count as 1"
    );
    assert_eq!(
        littles_law_capacity(333.0, ms(10), 1.0, 1.0),
        4,
        "3.33 rounds up"
    );
    assert_eq!(littles_law_capacity(0.0, ms(5), 1.0, 1.0), 1, "at least 1");
    assert_eq!(littles_law_capacity(f64::NAN, ms(5), 1.0, 1.0), 1);
}

#[test]
fn optimal_batch_size_is_the_rounded_root_of_fsync_over_validate_within_capacity() {
    let us = Duration::from_micros;
    assert_eq!(optimal_batch_size(us(2000), us(20), 16), 10);
    assert_eq!(
        optimal_batch_size(us(2000), us(20), 8),
        8,
        "clamped to capacity"
    );
    assert_eq!(optimal_batch_size(us(10), us(1000), 16), 1, "at least 1");
    assert_eq!(
        optimal_batch_size(us(1300), us(100), 16),
        4,
        "sqrt(13) = 3.6 rounds to 4"
    );
    assert_eq!(optimal_batch_size(us(1000), us(0), 16), 16);
}

#[test]
fn the_conformal_batch_size_uses_the_0_9_quantiles_and_is_1_without_samples() {
    let us = Duration::from_micros;
    assert_eq!(conformal_batch_size(&[], &[us(10)], 16), 1);
    assert_eq!(conformal_batch_size(&[us(10)], &[], 16), 1);
    // 10 fsync samples 100..=1000 µs: the 0.9 quantile is 900 µs.
    let fsync: Vec<Duration> = (1..=10).rev().map(|i| us(i * 100)).collect();
    assert_eq!(quantile_90(&fsync), Some(us(900)));
    // validate samples: 0.9 quantile is 9 µs.
    let validate: Vec<Duration> = (1..=10).map(us).collect();
    assert_eq!(quantile_90(&validate), Some(us(9)));
    // sqrt(900 / 9) = 10.
    assert_eq!(conformal_batch_size(&fsync, &validate, 16), 10);
    assert_eq!(conformal_batch_size(&fsync, &validate, 6), 6);
}
