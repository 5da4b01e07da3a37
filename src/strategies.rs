//! proptest strategies over simulations, for users who want proptest's own
//! shrinking and `proptest-regressions` persistence on top of (or instead
//! of) durasim's tape shrinker.
//!
//! ```
//! use durasim::harness::run_seed;
//! use durasim::scenarios::ToyLog;
//! use durasim::strategies;
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(8))]
//!     // In a test file this function would carry #[test].
//!     fn toy_log_holds_under_any_faults(spec in strategies::run_spec(&ToyLog, 1..=10)) {
//!         let result = run_seed(&ToyLog, &spec, None);
//!         prop_assert!(result.verdict.passed(), "{}", result.verdict);
//!     }
//! }
//! # toy_log_holds_under_any_faults();
//! ```
//!
//! Keep proptest's `fork` and `timeout` options off: they start threads and
//! processes that a simulation cannot run inside.

use std::ops::RangeInclusive;

use durasim_sim::{FaultConfig, Profile, Tape, TraceMode};
use proptest::prelude::*;

use crate::harness::{RunParams, RunSpec, Scenario};

/// Any named fault profile.
pub fn profile() -> impl Strategy<Value = Profile> {
    proptest::sample::select(Profile::ALL.to_vec())
}

/// A fault configuration: each family off or on at a rate scale between
/// 0.25× and 4× its reference rates (shrinks towards fewer families and
/// lower rates).
pub fn fault_config() -> impl Strategy<Value = FaultConfig> {
    let scale = proptest::option::of(0.25f64..4.0);
    (scale.clone(), scale.clone(), scale.clone(), scale).prop_map(|(net, crash, disk, app)| {
        let mut config = FaultConfig::none();
        if let Some(s) = net {
            config = config.with_network(s);
        }
        if let Some(s) = crash {
            config = config.with_crashes(s);
        }
        if let Some(s) = disk {
            config = config.with_disk(s);
        }
        if let Some(s) = app {
            config = config.with_app(s);
        }
        config
    })
}

/// A workload size in `sizes` (shrinks towards the smallest).
pub fn size(sizes: RangeInclusive<u32>) -> impl Strategy<Value = u32> {
    sizes
}

/// A seed (shrinks towards 0).
pub fn seed() -> impl Strategy<Value = u64> {
    any::<u64>()
}

/// A tape of up to `faults` explicit fault decisions at the given sites, at
/// positions below `depth`: for replaying hand-shaped fault plans.
pub fn tape(sites: Vec<&'static str>, faults: usize, depth: usize) -> impl Strategy<Value = Tape> {
    let entry = (
        proptest::sample::select(sites),
        0..depth.max(1),
        1u64..u64::MAX,
    );
    proptest::collection::vec(entry, 0..=faults).prop_map(|entries| {
        let mut tape = Tape::empty();
        for (site, index, value) in entries {
            tape.set(site, index, value);
        }
        tape
    })
}

/// A whole run of `scenario`: seed, fault configuration and workload size.
pub fn run_spec(
    scenario: &'static dyn Scenario,
    sizes: RangeInclusive<u32>,
) -> impl Strategy<Value = RunSpec> {
    (seed(), fault_config(), size(sizes)).prop_map(move |(seed, faults, size)| RunSpec {
        scenario: scenario.name().to_string(),
        seed,
        profile: Profile::Chaos,
        faults,
        params: RunParams {
            size,
            bugs: Default::default(),
        },
        tape: None,
        trace: TraceMode::DigestOnly,
    })
}
