//! Properties over the reference service's histories: every history it
//! generates (random interleavings, crashes, lost and duplicated messages,
//! unknown outcomes) is accepted, and every single mutation that breaks an
//! invariant is rejected with that invariant among the reported ones. A
//! coverage test proves each mutation really applies to some history (a
//! mutation that never applies would make its property vacuous).

use durasim_models::reference::{generate, ReferenceConfig};
use durasim_models::*;
use proptest::prelude::*;

/// A mutation: the invariant it must trip, and how to apply it at the
/// `pick`-th applicable place (`None` when it applies nowhere).
struct Mutation {
    name: &'static str,
    breaks: InvariantId,
    apply: fn(&History, usize) -> Option<History>,
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        name: "drop acknowledged commits from a recovery",
        breaks: InvariantId::D1,
        apply: drop_acked_commits,
    },
    Mutation {
        name: "drop a write from a recovered commit",
        breaks: InvariantId::D2,
        apply: drop_one_write,
    },
    Mutation {
        name: "add a never-submitted commit to a recovery",
        breaks: InvariantId::D3,
        apply: add_phantom_commit,
    },
    Mutation {
        name: "swap two channel deliveries",
        breaks: InvariantId::D4,
        apply: swap_deliveries,
    },
    Mutation {
        name: "publish before fsync",
        breaks: InvariantId::D5,
        apply: publish_before_fsync,
    },
    Mutation {
        name: "fail the fsync of a published batch",
        breaks: InvariantId::D5,
        apply: fail_published_fsync,
    },
    Mutation {
        name: "acknowledge a commit seq nobody published",
        breaks: InvariantId::D5,
        apply: ack_unpublished_seq,
    },
    Mutation {
        name: "drop a write's completion",
        breaks: InvariantId::D6,
        apply: drop_completion,
    },
    Mutation {
        name: "duplicate an event id across commits",
        breaks: InvariantId::D7,
        apply: duplicate_event_id,
    },
    Mutation {
        name: "let a conflicting request commit",
        breaks: InvariantId::D8,
        apply: accept_a_conflict,
    },
    Mutation {
        name: "leave a repair Pending at quiescence",
        breaks: InvariantId::D9,
        apply: leave_repair_pending,
    },
    Mutation {
        name: "change a repeated recovery's answer",
        breaks: InvariantId::D10,
        apply: change_repeated_recovery,
    },
    Mutation {
        name: "sleep off the backoff curve",
        breaks: InvariantId::D11,
        apply: sleep_off_curve,
    },
    Mutation {
        name: "misreport a queue's occupancy",
        breaks: InvariantId::D12,
        apply: misreport_occupancy,
    },
    Mutation {
        name: "shrink the liveness bound to zero",
        breaks: InvariantId::L1,
        apply: zero_liveness_bound,
    },
];

fn positions(history: &History, wanted: impl Fn(usize, &Event) -> bool) -> Vec<usize> {
    history
        .events
        .iter()
        .enumerate()
        .filter(|(i, e)| wanted(*i, e))
        .map(|(i, _)| i)
        .collect()
}

fn pick_from<T: Copy>(candidates: Vec<T>, pick: usize) -> Option<T> {
    (!candidates.is_empty()).then(|| candidates[pick % candidates.len()])
}

/// The `pick`-th event (modulo their number) whose kind is `wanted`.
fn pick_event(
    history: &History,
    pick: usize,
    wanted: impl Fn(&EventKind) -> bool,
) -> Option<usize> {
    pick_from(positions(history, |_, e| wanted(&e.kind)), pick)
}

/// The `pick`-th publication, its batch, and that batch's first fsync.
fn publication_and_fsync(history: &History, pick: usize) -> Option<(usize, BatchId, usize)> {
    let published = pick_event(history, pick, |kind| {
        matches!(kind, EventKind::Published { .. })
    })?;
    let EventKind::Published { batch, .. } = history.events[published].kind else {
        return None;
    };
    let fsync = *positions(
        history,
        |_, e| matches!(e.kind, EventKind::FsyncReturned { batch: b, .. } if b == batch),
    )
    .first()?;
    Some((published, batch, fsync))
}

/// Recoveries preceded (since the previous recovery) by a WAL append:
/// their durable state changed, so they are judged in full.
fn fresh_recoveries(history: &History) -> Vec<usize> {
    let mut appended = false;
    let mut fresh = Vec::new();
    for (index, event) in history.events.iter().enumerate() {
        match event.kind {
            EventKind::WalAppended { .. } => appended = true,
            EventKind::Recovered(_) => {
                if appended {
                    fresh.push(index);
                }
                appended = false;
            }
            _ => {}
        }
    }
    fresh
}

fn recovered_log(history: &mut History, index: usize) -> Option<&mut Vec<LogEntry>> {
    match &mut history.events.get_mut(index)?.kind {
        EventKind::Recovered(recovery) => Some(&mut recovery.log),
        _ => None,
    }
}

fn drop_acked_commits(history: &History, pick: usize) -> Option<History> {
    // A fresh recovery after at least one publication since the last one.
    let mut published = false;
    let mut candidates = Vec::new();
    let fresh = fresh_recoveries(history);
    for (index, event) in history.events.iter().enumerate() {
        match event.kind {
            EventKind::Published { .. } => published = true,
            EventKind::Recovered(_) => {
                if published && fresh.contains(&index) {
                    candidates.push(index);
                }
                published = false;
            }
            _ => {}
        }
    }
    let index = pick_from(candidates, pick)?;
    let mut mutated = history.clone();
    recovered_log(&mut mutated, index)?.clear();
    Some(mutated)
}

fn drop_one_write(history: &History, pick: usize) -> Option<History> {
    let candidates: Vec<(usize, usize)> = fresh_recoveries(history)
        .into_iter()
        .flat_map(|index| match &history.events[index].kind {
            EventKind::Recovered(recovery) => recovery
                .log
                .iter()
                .enumerate()
                .filter(|(_, e)| e.writes.len() >= 2)
                .map(|(i, _)| (index, i))
                .collect::<Vec<_>>(),
            _ => vec![],
        })
        .collect();
    let (index, entry) = pick_from(candidates, pick)?;
    let mut mutated = history.clone();
    recovered_log(&mut mutated, index)?
        .get_mut(entry)?
        .writes
        .pop();
    Some(mutated)
}

fn add_phantom_commit(history: &History, pick: usize) -> Option<History> {
    let index = pick_from(fresh_recoveries(history), pick)?;
    let mut mutated = history.clone();
    let log = recovered_log(&mut mutated, index)?;
    let seq = log.len() as u64 + 1;
    log.push(LogEntry {
        seq,
        txn_id: 987_654_321,
        event_id: None,
        writes: vec![PageWrite { page: 0, value: 1 }],
    });
    Some(mutated)
}

fn swap_deliveries(history: &History, pick: usize) -> Option<History> {
    // Two consecutive deliveries with no redeclaration of the channel between.
    let mut candidates = Vec::new();
    let mut previous: Option<usize> = None;
    for (index, event) in history.events.iter().enumerate() {
        match event.kind {
            EventKind::PermitDelivered { permit, .. } => {
                // Both permits must have been sent before the first delivery,
                // so that the swap is a pure reordering.
                let sent_before = |p: u64, before: usize| {
                    history.events[..before]
                        .iter()
                        .rev()
                        .take_while(|e| !matches!(e.kind, EventKind::ChannelDeclared { .. }))
                        .any(
                            |e| matches!(e.kind, EventKind::PermitSent { permit: q, .. } if q == p),
                        )
                };
                if let Some(earlier) = previous {
                    if sent_before(permit, earlier) {
                        candidates.push((earlier, index));
                    }
                }
                previous = Some(index);
            }
            EventKind::ChannelDeclared { .. } | EventKind::ServerCrash { .. } => previous = None,
            _ => {}
        }
    }
    let (first, second) = pick_from(candidates, pick)?;
    let mut mutated = history.clone();
    let permit_of = |h: &History, i: usize| match h.events[i].kind {
        EventKind::PermitDelivered { permit, .. } => permit,
        _ => 0,
    };
    let (a, b) = (permit_of(history, first), permit_of(history, second));
    if let EventKind::PermitDelivered { permit, .. } = &mut mutated.events[first].kind {
        *permit = b;
    }
    if let EventKind::PermitDelivered { permit, .. } = &mut mutated.events[second].kind {
        *permit = a;
    }
    Some(mutated)
}

fn publish_before_fsync(history: &History, pick: usize) -> Option<History> {
    let (published, _, fsync) = publication_and_fsync(history, pick)?;
    let mut mutated = history.clone();
    let mut event = mutated.events.remove(published);
    event.time = mutated.events[fsync].time;
    mutated.events.insert(fsync, event);
    Some(mutated)
}

fn fail_published_fsync(history: &History, pick: usize) -> Option<History> {
    let (_, batch, fsync) = publication_and_fsync(history, pick)?;
    let mut mutated = history.clone();
    mutated.events[fsync].kind = EventKind::FsyncReturned { batch, ok: false };
    Some(mutated)
}

fn ack_unpublished_seq(history: &History, pick: usize) -> Option<History> {
    let index = pick_event(history, pick, |kind| {
        matches!(
            kind,
            EventKind::AttemptEnded {
                result: AttemptResult::Committed { .. },
                ..
            }
        )
    })?;
    let mut mutated = history.clone();
    if let EventKind::AttemptEnded {
        result: AttemptResult::Committed { commit_seq },
        ..
    } = &mut mutated.events[index].kind
    {
        *commit_seq += 1_000_000;
    }
    Some(mutated)
}

fn drop_completion(history: &History, pick: usize) -> Option<History> {
    let quiescence = *positions(history, |_, e| {
        matches!(e.kind, EventKind::Phase(Phase::Quiescence))
    })
    .first()?;
    let index = pick_from(
        positions(history, |i, e| {
            i < quiescence && matches!(e.kind, EventKind::Complete { .. })
        }),
        pick,
    )?;
    let mut mutated = history.clone();
    mutated.events.remove(index);
    Some(mutated)
}

fn duplicate_event_id(history: &History, pick: usize) -> Option<History> {
    // Two publications with no crash between them; the later batch's first
    // valid request takes the earlier one's event id.
    let mut candidates = Vec::new();
    let mut earlier: Option<u64> = None;
    for event in &history.events {
        match event.kind {
            EventKind::Published { batch, .. } => {
                if let Some(first) = earlier {
                    candidates.push((first, batch));
                }
                earlier = Some(batch);
            }
            EventKind::ServerCrash { .. } => earlier = None,
            _ => {}
        }
    }
    let (first, second) = pick_from(candidates, pick)?;
    let first_valid_event = |batch_id: u64| {
        history.events.iter().find_map(|e| match &e.kind {
            EventKind::BatchValidated { batch, requests } if *batch == batch_id => requests
                .iter()
                .find(|r| r.verdict == Verdict::Valid)
                .and_then(|r| r.event_id),
            _ => None,
        })
    };
    let event_id = first_valid_event(first)?;
    let mut mutated = history.clone();
    for event in &mut mutated.events {
        if let EventKind::BatchValidated { batch, requests } = &mut event.kind {
            if *batch == second {
                requests
                    .iter_mut()
                    .find(|r| r.verdict == Verdict::Valid)?
                    .event_id = Some(event_id);
            }
        }
    }
    Some(mutated)
}

fn accept_a_conflict(history: &History, pick: usize) -> Option<History> {
    let appended: Vec<u64> = history
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::WalAppended { batch, .. } => Some(batch),
            _ => None,
        })
        .collect();
    let candidates: Vec<(usize, usize)> = history
        .events
        .iter()
        .enumerate()
        .flat_map(|(index, e)| match &e.kind {
            EventKind::BatchValidated { batch, requests } if appended.contains(batch) => requests
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(&r.verdict, Verdict::Conflict { reason } if reason.starts_with("page")))
                .map(|(i, _)| (index, i))
                .collect::<Vec<_>>(),
            _ => vec![],
        })
        .collect();
    let (index, request) = pick_from(candidates, pick)?;
    let mut mutated = history.clone();
    if let EventKind::BatchValidated { requests, .. } = &mut mutated.events[index].kind {
        requests.get_mut(request)?.verdict = Verdict::Valid;
    }
    Some(mutated)
}

fn leave_repair_pending(history: &History, pick: usize) -> Option<History> {
    let index = pick_event(history, pick, |kind| {
        matches!(kind, EventKind::RepairSettled { .. })
    })?;
    let mut mutated = history.clone();
    if let EventKind::RepairSettled { state, symbols, .. } = &mut mutated.events[index].kind {
        *state = RepairState::Pending;
        *symbols = None;
    }
    Some(mutated)
}

fn change_repeated_recovery(history: &History, pick: usize) -> Option<History> {
    let fresh = fresh_recoveries(history);
    let repeated: Vec<usize> = positions(history, |i, e| {
        matches!(&e.kind, EventKind::Recovered(recovery) if !recovery.log.is_empty())
            && !fresh.contains(&i)
            && i > 0
    })
    .into_iter()
    .filter(|i| {
        history.events[..*i]
            .iter()
            .any(|e| matches!(e.kind, EventKind::Recovered(_)))
    })
    .collect();
    let index = pick_from(repeated, pick)?;
    let mut mutated = history.clone();
    recovered_log(&mut mutated, index)?.pop();
    Some(mutated)
}

fn sleep_off_curve(history: &History, pick: usize) -> Option<History> {
    let index = pick_event(
        history,
        pick,
        |kind| matches!(kind, EventKind::AttemptStarted { attempt, .. } if *attempt >= 2),
    )?;
    let mut mutated = history.clone();
    if let EventKind::AttemptStarted { delay_before, .. } = &mut mutated.events[index].kind {
        *delay_before = 3_600_000_000_000;
    }
    Some(mutated)
}

fn misreport_occupancy(history: &History, pick: usize) -> Option<History> {
    let index = pick_event(history, pick, |kind| {
        matches!(kind, EventKind::QueueEnqueued { .. })
    })?;
    let mut mutated = history.clone();
    if let EventKind::QueueEnqueued {
        occupancy_after, ..
    } = &mut mutated.events[index].kind
    {
        *occupancy_after += 1;
    }
    Some(mutated)
}

fn zero_liveness_bound(history: &History, _pick: usize) -> Option<History> {
    let heal = *positions(history, |_, e| {
        matches!(e.kind, EventKind::Phase(Phase::Heal { .. }))
    })
    .first()?;
    let heal_at = history.events[heal].time;
    // Applies only if some operation completes strictly after its start.
    let mut invoked = std::collections::BTreeMap::new();
    let mut late = false;
    for event in &history.events {
        match event.kind {
            EventKind::Invoke { op, .. } => {
                invoked.insert(op, event.time);
            }
            EventKind::Complete { op, .. } => {
                let start = invoked.get(&op).copied().unwrap_or(0).max(heal_at);
                late |= event.time > start;
            }
            _ => {}
        }
    }
    if !late {
        return None;
    }
    let mut mutated = history.clone();
    mutated.events[heal].kind = EventKind::Phase(Phase::Heal {
        bound: 0,
        resolves_unknown: false,
    });
    Some(mutated)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_reference_history_is_accepted(seed in any::<u64>()) {
        let history = generate(&ReferenceConfig::small(seed));
        let violations = check(&history);
        prop_assert!(violations.is_empty(), "seed {seed}:\n{}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }

    #[test]
    fn every_single_breaking_mutation_is_rejected(seed in any::<u64>(), pick in any::<usize>()) {
        let history = generate(&ReferenceConfig::small(seed));
        for mutation in MUTATIONS {
            if let Some(mutated) = (mutation.apply)(&history, pick) {
                let reported: Vec<InvariantId> = check(&mutated).into_iter().map(|v| v.invariant).collect();
                prop_assert!(
                    reported.contains(&mutation.breaks),
                    "seed {seed}, pick {pick}: '{}' must be rejected with {}, got {:?}",
                    mutation.name, mutation.breaks, reported
                );
            }
        }
    }
}

#[test]
fn every_mutation_applies_to_some_reference_history() {
    let histories: Vec<History> = (0..64)
        .map(|seed| generate(&ReferenceConfig::small(seed)))
        .collect();
    for mutation in MUTATIONS {
        let applied = histories
            .iter()
            .filter(|h| (mutation.apply)(h, 0).is_some())
            .count();
        assert!(
            applied > 0,
            "mutation '{}' never applied: its property is vacuous",
            mutation.name
        );
    }
}

#[test]
fn reference_histories_exercise_the_faults_they_claim() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        for event in generate(&ReferenceConfig::small(seed)).events {
            let mark = match event.kind {
                EventKind::ServerCrash {
                    during_recovery: true,
                    ..
                } => "crash during recovery",
                EventKind::ServerCrash { .. } => "server crash",
                EventKind::FsyncReturned { ok: false, .. } => "failed fsync",
                EventKind::AttemptEnded {
                    result: AttemptResult::Unknown,
                    ..
                } => "unknown attempt",
                EventKind::Complete {
                    outcome: Outcome::Unknown(_),
                    ..
                } => "unknown outcome",
                EventKind::Complete {
                    outcome: Outcome::Failed { .. },
                    ..
                } => "failed write",
                EventKind::AttemptEnded {
                    result: AttemptResult::Rejected { .. },
                    ..
                } => "rejection",
                EventKind::PermitAborted { .. } => "aborted permit",
                EventKind::QueueDroppedOldest { .. }
                | EventKind::QueueSenderBlocked { .. }
                | EventKind::QueueEnqueueFailed { .. } => "queue overflow",
                EventKind::Repair {
                    kind: RepairEventKind::RepairFailed,
                    ..
                } => "failed repair",
                _ => continue,
            };
            seen.insert(mark);
        }
    }
    assert_eq!(seen.len(), 10, "faults seen: {seen:?}");
}
