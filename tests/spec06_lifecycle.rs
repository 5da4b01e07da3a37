//! Spec 06 acceptance, in simulated time: concurrent lifecycle actors over
//! a catalog, a JSON lockfile and a file tree.
//!
//! - 50 iterations × 4 actors under chaos: D14 after every iteration and
//!   strictly after reconcile, with crashes, partial installs and
//!   contention actually exercised;
//! - an actor crash at every writing step of an install, and machine
//!   power losses mid-install, each repaired by the next reconcile;
//! - the documented transient: storage busy on the catalog write leaves
//!   files and lockfile in, the row out; tolerated one way only, repaired
//!   by update-all;
//! - lock contention is absorbed by the retry budget, and an exhausted
//!   budget surfaces as an error;
//! - items sharing a type id collide (a genuine error D14 reports).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{expect_ok, in_process, tearing_disk, wait_until};
use durasim::scenarios::drive_lifecycle;
use durasim::systems::lifecycle::actor::Actor;
use durasim::systems::lifecycle::store::{read_back, Store};
use durasim::systems::lifecycle::{
    init, recover, run_actor, ActorError, ActorOutcome, Applied, ItemSpec, LifecycleConfig,
    LockfileLock, Operation,
};
use durasim_models::model::lifecycle::{breaches, Breach};
use durasim_models::{EventKind, LifecycleOutcome, LifecycleState};
use durasim_sim::{run, Disk, FaultConfig, Phase, Profile, RunConfig};

fn quiet() -> Arc<LifecycleConfig> {
    Arc::new(LifecycleConfig {
        buggify: false,
        ..LifecycleConfig::default()
    })
}

fn actor(
    disk: &Disk,
    lock: &Arc<LockfileLock>,
    config: &Arc<LifecycleConfig>,
    crash_at: Option<u32>,
) -> Actor {
    Actor {
        id: 1,
        store: Store::new(disk.clone(), false, crash_at),
        lock: lock.clone(),
        config: config.clone(),
    }
}

fn state_of(disk: &Disk) -> LifecycleState {
    let (state, catalog_error) = read_back(&disk.snapshot());
    assert_eq!(catalog_error, None, "the catalog always parses");
    state
}

fn latest(version: u32) -> BTreeMap<String, u32> {
    [("A".to_string(), version), ("B".to_string(), version)].into()
}

#[test]
fn fifty_iterations_of_four_actors_hold_after_every_iteration_and_strictly_after_reconcile() {
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..4 {
        let faults = Profile::Chaos.resolve(seed);
        let run = expect_ok(run(RunConfig::new(seed).faults(faults), |sim| {
            drive_lifecycle(sim, 50, LifecycleConfig::default())
        }));
        assert_eq!(run.findings, vec![], "seed {seed}");
        let mut ended = 0;
        let mut observed = Vec::new();
        for event in &run.history.events {
            match &event.kind {
                EventKind::LifecycleActorEnded { outcome, .. } => {
                    ended += 1;
                    let name = format!("{outcome:?}");
                    let kind = name
                        .split([' ', '{'])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    *outcomes.entry(kind).or_default() += 1;
                }
                EventKind::LifecycleObserved {
                    after_reconcile, ..
                } => observed.push(*after_reconcile),
                _ => {}
            }
        }
        assert_eq!(
            ended,
            50 * 4 + 1,
            "seed {seed}: every actor and the reconcile end"
        );
        assert_eq!(observed.len(), 51);
        assert!(observed[..50].iter().all(|strict| !strict));
        assert!(observed[50], "the last read-back is after reconcile");
    }
    // The faults reached the paths the spec is about.
    for kind in ["Done", "Crashed", "PartiallyApplied"] {
        assert!(
            outcomes.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} outcome in {outcomes:?}"
        );
    }
}

/// Install A@1 and B@1, then run an install of A@2 that crashes at
/// writing step `crash_at`; the state left behind, then the state after
/// the next reconcile (update-all), and the install's step count.
async fn crash_mid_install(
    disk: Disk,
    crash_at: Option<u32>,
) -> (LifecycleState, LifecycleState, u32) {
    let (lock, config) = (LockfileLock::new(), quiet());
    init(&disk).await.expect("init");
    let setup = actor(&disk, &lock, &config, None);
    assert_eq!(setup.install("A", 1).await, Ok(Applied::Done));
    assert_eq!(setup.install("B", 1).await, Ok(Applied::Done));
    let crashing = actor(&disk, &lock, &config, crash_at);
    let result = crashing.install("A", 2).await;
    let steps = crashing.store.steps();
    match crash_at {
        Some(_) => assert_eq!(result, Err(ActorError::Crashed)),
        None => assert_eq!(result, Ok(Applied::Done)),
    }
    let left = state_of(&disk);
    let reconcile = actor(&disk, &lock, &config, None);
    assert_eq!(reconcile.update_all(&latest(1)).await, Ok(Applied::Done));
    (left, state_of(&disk), steps)
}

#[test]
fn an_actor_crash_at_any_step_of_an_install_is_repaired_by_the_next_reconcile() {
    let (_, clean, steps) = expect_ok(run(RunConfig::new(1), |sim| async move {
        in_process(&sim, Duration::from_secs(10), |ctx| {
            crash_mid_install(ctx.disk(), None)
        })
        .await
    }));
    assert_eq!(breaches(&clean, false), vec![]);
    assert!(steps >= 10, "an install takes {steps} writing steps");
    let mut repaired_orphans = 0;
    for crash_at in 1..=steps {
        let (left, after, _) = expect_ok(run(RunConfig::new(1), |sim| async move {
            in_process(&sim, Duration::from_secs(10), move |ctx| {
                crash_mid_install(ctx.disk(), Some(crash_at))
            })
            .await
        }));
        if breaches(&left, true)
            .iter()
            .any(|b| matches!(b, Breach::Orphan { .. }))
        {
            repaired_orphans += 1;
        }
        assert_eq!(breaches(&after, false), vec![], "crash at step {crash_at}");
        assert_eq!(after.files.len(), 4, "crash at step {crash_at}: {after:?}");
    }
    assert!(
        repaired_orphans > 0,
        "some crash left orphan files for reconcile to delete"
    );
}

#[test]
fn a_power_loss_mid_install_is_repaired_by_the_restarted_machine() {
    for crash_after_us in (500..40_000).step_by(1_700) {
        let state = expect_ok(run(
            RunConfig::new(7).faults(tearing_disk()),
            |sim| async move {
                let out = common::slot();
                let out2 = out.clone();
                let id = sim.spawn_process("host", move |ctx| {
                    let out = out2.clone();
                    async move {
                        let (disk, lock, config) = (ctx.disk(), LockfileLock::new(), quiet());
                        if ctx.incarnation() == 1 {
                            init(&disk).await.expect("init");
                            let worker = actor(&disk, &lock, &config, None);
                            for version in 1.. {
                                let _ = worker.install("A", version).await;
                                let _ = worker.install("B", version).await;
                            }
                        } else {
                            // As the scenario's host does: directories, then repair.
                            init(&disk).await.expect("init");
                            recover(0, &disk, &lock, &config).await.expect("recovery");
                            let reconcile = actor(&disk, &lock, &config, None);
                            let versions = latest(1);
                            reconcile.update_all(&versions).await.expect("reconcile");
                            common::fill(&out, state_of(&disk));
                        }
                    }
                });
                sim.sleep(Duration::from_micros(crash_after_us)).await;
                sim.crash(id, true);
                sim.restart(id);
                assert!(wait_until(&sim, Duration::from_secs(10), || sim.has_exited(id)).await);
                common::take(&out).expect("the restarted host reported")
            },
        ));
        assert_eq!(
            breaches(&state, false),
            vec![],
            "power loss at {crash_after_us} µs"
        );
    }
}

#[test]
fn storage_busy_on_the_catalog_write_is_the_documented_transient_and_update_all_repairs_it() {
    let mut faults = FaultConfig::none();
    faults.app.by_kind.insert("storage-busy".into(), 1.0);
    let (partial, repaired) = expect_ok(run(RunConfig::new(3).faults(faults), |sim| async move {
        let out = common::slot();
        let out2 = out.clone();
        let id = sim.spawn_process("host", move |ctx| {
            let out = out2.clone();
            async move {
                let disk = ctx.disk();
                let lock = LockfileLock::new();
                let config = Arc::new(LifecycleConfig::default());
                init(&disk).await.expect("init");
                let install = Operation::Install {
                    item: "A".into(),
                    version: 1,
                };
                let outcome = run_actor(1, &disk, &lock, &config, &install).await;
                assert_eq!(outcome, ActorOutcome::Applied(Applied::PartiallyApplied));
                let partial = state_of(&disk);
                while durasim_sim::current_phase() == Some(Phase::Fault) {
                    durasim_sim::clock::sleep(Duration::from_millis(1)).await;
                }
                let update = Operation::UpdateAll { latest: latest(1) };
                let outcome = run_actor(2, &disk, &lock, &config, &update).await;
                assert_eq!(outcome, ActorOutcome::Applied(Applied::Done));
                common::fill(&out, (partial, state_of(&disk)));
            }
        });
        sim.start_faults(&[id]);
        sim.sleep(Duration::from_millis(200)).await;
        sim.heal();
        assert!(wait_until(&sim, Duration::from_secs(10), || sim.has_exited(id)).await);
        common::take(&out).expect("the host reported")
    }));
    assert_eq!(breaches(&partial, true), vec![], "tolerated where reported");
    assert_eq!(
        breaches(&partial, false),
        vec![Breach::LockfileEntryUnmatched {
            name: "A".into(),
            version: 1
        }],
        "files and lockfile in, the catalog row out"
    );
    assert_eq!(partial.files.len(), 2);
    assert_eq!(breaches(&repaired, false), vec![]);
    assert_eq!(repaired.catalog.len(), 1);
}

/// Four actors at once under injected lock contention at `rate`; their
/// outcomes.
fn contended(rate: f64, budget: Duration) -> Vec<ActorOutcome> {
    let mut faults = FaultConfig::none();
    faults.app.by_kind.insert("lock-contention".into(), rate);
    expect_ok(run(RunConfig::new(5).faults(faults), |sim| async move {
        let out = common::slot();
        let out2 = out.clone();
        let id = sim.spawn_process("host", move |ctx| {
            let out = out2.clone();
            async move {
                let disk = ctx.disk();
                let lock = LockfileLock::new();
                let config = Arc::new(LifecycleConfig {
                    lock_budget: budget,
                    ..LifecycleConfig::default()
                });
                init(&disk).await.expect("init");
                let ops = [
                    Operation::Install {
                        item: "A".into(),
                        version: 1,
                    },
                    Operation::Install {
                        item: "B".into(),
                        version: 1,
                    },
                    Operation::Remove { item: "A".into() },
                    Operation::UpdateAll { latest: latest(1) },
                ];
                let tasks: Vec<_> = ops
                    .into_iter()
                    .enumerate()
                    .map(|(i, op)| {
                        let (disk, lock, config) = (disk.clone(), lock.clone(), config.clone());
                        durasim_sim::task::spawn(async move {
                            run_actor(i as u32, &disk, &lock, &config, &op).await
                        })
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for task in tasks {
                    outcomes.push(task.await.expect("actor task"));
                }
                common::fill(&out, outcomes);
            }
        });
        sim.start_faults(&[id]);
        assert!(wait_until(&sim, Duration::from_secs(60), || sim.has_exited(id)).await);
        common::take(&out).expect("the host reported")
    }))
}

#[test]
fn lock_contention_is_absorbed_by_the_retry_budget_and_exhaustion_surfaces() {
    let outcomes = contended(0.6, Duration::from_secs(5));
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ActorOutcome::Applied(Applied::Done))),
        "{outcomes:?}"
    );
    let outcomes = contended(1.0, Duration::from_millis(30));
    assert!(
        outcomes
            .iter()
            .all(|o| *o == ActorOutcome::Failed(ActorError::LockBudgetExhausted)),
        "{outcomes:?}"
    );
}

#[test]
fn items_sharing_a_type_id_collide_and_d14_reports_it() {
    let config = LifecycleConfig {
        items: vec![
            ItemSpec::new("A", &[7, 8], 2, 64),
            ItemSpec::new("B", &[8, 9], 2, 64),
        ],
        ..LifecycleConfig::default()
    };
    let run = expect_ok(run(RunConfig::new(2), |sim| {
        drive_lifecycle(sim, 2, config)
    }));
    let collided = run.history.events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::LifecycleActorEnded { outcome, .. }
                if matches!(**outcome, LifecycleOutcome::Collision { .. })
        )
    });
    assert!(collided, "installing both items collides");
    assert!(
        run.findings
            .iter()
            .any(|f| f.invariant == "D14" && f.message.contains("invariant 2")),
        "{:?}",
        run.findings
    );
    // With distinct type ids (the default items) nothing collides.
    let run = expect_ok(run_default());
    assert_eq!(run.findings, vec![]);
}

fn run_default() -> durasim_sim::RunOutcome<durasim::scenarios::LifecycleRun> {
    run(RunConfig::new(2), |sim| {
        drive_lifecycle(sim, 2, LifecycleConfig::default())
    })
}
