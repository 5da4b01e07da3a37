//! The one-line test API, as users write it.

use durasim::harness::{run_seed, RunSpec};
use durasim::{check, scenarios, CheckFailure, Profile};

#[test]
fn the_toy_log_holds_under_chaos() {
    let summary = check("toy-log").seeds(0..100).profile(Profile::Chaos).run();
    assert_eq!(summary.seeds, 100);
    assert!(
        summary.faults.values().sum::<u64>() > 0,
        "faults were injected"
    );
}

#[test]
fn a_failing_check_names_the_seed_invariant_and_replay_command() {
    let failure = check("toy-log")
        .seeds(0..100)
        .profile(Profile::Swarm)
        .bug("toy-ack-before-fsync")
        .try_run()
        .expect_err("the canary bug is found");
    let CheckFailure::Failed(message) = failure else {
        panic!("expected a failed seed, got {failure}");
    };
    // The oracle: the first failing seed, found one run at a time.
    let scenario = scenarios::find("toy-log").expect("registered");
    let first = (0..100)
        .find(|&seed| {
            let mut spec = RunSpec::new(scenario, seed, Profile::Swarm);
            spec.params.bugs.insert("toy-ack-before-fsync".into());
            !run_seed(scenario, &spec, None).verdict.passed()
        })
        .expect("a failing seed");
    for needle in [
        format!("scenario `toy-log` failed at seed {first} under profile `swarm`"),
        "invariant: D1".to_string(),
        format!("replay: cargo run --release -- run --scenario toy-log --seed {first} --profile swarm --size 30 --bug toy-ack-before-fsync"),
        format!("shrink: cargo run --release -- shrink --scenario toy-log --seed {first}"),
    ] {
        assert!(message.contains(&needle), "missing `{needle}` in:\n{message}");
    }
}

#[test]
#[should_panic(expected = "unknown scenario `no-such-scenario`")]
fn an_unknown_scenario_is_a_clear_panic() {
    let _ = check("no-such-scenario").run();
}
