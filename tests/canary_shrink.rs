//! The canary: a known bug must be found by a swarm sweep and shrink to a
//! verified 1-minimal reproduction with few faults. Proves the tester can
//! fail, and that shrinking works end to end.

use std::time::Duration;

use durasim::harness::{run_seed, shrink, sweep, RunParams, RunSpec, SweepPlan};
use durasim::scenarios;
use durasim_sim::Profile;

#[test]
fn the_toy_canary_is_found_shrunk_and_one_minimal() {
    let scenario = scenarios::find("toy-log").expect("registered");
    let params = RunParams {
        size: scenario.default_size(),
        bugs: ["toy-ack-before-fsync".to_string()].into(),
    };
    let plan = SweepPlan {
        scenario,
        seeds: (0..200).collect(),
        profile: Profile::Swarm,
        params: params.clone(),
        jobs: 2,
        watchdog: Duration::from_secs(30),
    };
    let (items, summary) = sweep(&plan, &|_| {});
    let first = items
        .iter()
        .find(|i| !i.result.verdict.passed())
        .expect("the canary bug is found within 200 swarm seeds");
    assert_eq!(first.result.verdict.key(), "D1", "{}", first.result.verdict);
    assert_eq!(
        first.confirmed,
        Some(true),
        "failure reproduces with the same digest"
    );
    assert_eq!(summary.nondeterministic, 0);

    let shrunk = shrink(scenario, &first.spec, &first.result).expect("shrinks");
    assert_eq!(shrunk.verdict.key(), "D1");
    if std::env::var("SHOW_STORY").is_ok() || shrunk.faults_after > 5 {
        for line in shrunk.story() {
            eprintln!(
                "STORY {} {:?} {} {}",
                line.time, line.process, line.fault, line.detail
            );
        }
        eprintln!(
            "runs {} before {} size {}->{}",
            shrunk.runs, shrunk.faults_before, shrunk.size_before, shrunk.spec.params.size
        );
        for f in shrunk.spec.tape.clone().unwrap_or_default().faults() {
            eprintln!("TAPE {f:?}");
        }
    }
    assert!(
        shrunk.faults_after <= 5,
        "{} faults left",
        shrunk.faults_after
    );
    assert!(shrunk.faults_after < shrunk.faults_before.max(1) || shrunk.faults_before <= 1);

    // 1-minimal, checked independently: removing any one remaining fault
    // makes the D1 failure disappear.
    let tape = shrunk.spec.tape.clone().expect("tape");
    for fault in tape.faults() {
        let mut without = shrunk.spec.clone();
        without.tape = Some(tape.without(std::slice::from_ref(&fault)));
        let result = run_seed(scenario, &without, None);
        assert_ne!(result.verdict.key(), "D1", "fault {fault:?} was not needed");
    }
    // And the same tape passes with the bug switched off.
    let mut fixed: RunSpec = shrunk.spec.clone();
    fixed.params.bugs.clear();
    assert!(run_seed(scenario, &fixed, None).verdict.passed());
    assert!(!shrunk.story().is_empty());
}
