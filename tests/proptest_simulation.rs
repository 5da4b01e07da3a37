//! proptest over whole simulations: proptest draws the seed, the fault
//! configuration and the workload size; a failure is shrunk by proptest
//! and persisted in `proptest-regressions/`. A known bug must be found the
//! same way, so the property can fail.

use durasim::harness::{run_seed, RunSpec};
use durasim::scenarios::ToyLog;
use durasim::strategies;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn toy_log_keeps_acknowledged_records_under_any_faults(
        spec in strategies::run_spec(&ToyLog, 1..=20),
    ) {
        let result = run_seed(&ToyLog, &spec, None);
        prop_assert!(result.verdict.passed(), "seed {}: {}", spec.seed, result.verdict);
    }
}

#[test]
fn the_same_property_finds_the_canary_and_shrinks_it() {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = strategies::run_spec(&ToyLog, 1..=30);
    let outcome = runner.run(&strategy, |mut spec: RunSpec| {
        spec.params.bugs.insert("toy-ack-before-fsync".into());
        let result = run_seed(&ToyLog, &spec, None);
        if result.verdict.passed() {
            Ok(())
        } else {
            Err(TestCaseError::fail(result.verdict.to_string()))
        }
    });
    let Err(proptest::test_runner::TestError::Fail(reason, minimal)) = outcome else {
        panic!("the canary bug was not found: {outcome:?}");
    };
    assert!(reason.to_string().contains("D1"), "{reason}");
    assert!(minimal.params.size <= 30);
}
