//! The built-in model-checked scenarios hold under chaos (a short sweep
//! each; the CLI's `sweep` runs the long ones).

use durasim::{check, Profile};

#[test]
fn channel_holds_under_chaos() {
    check("channel").seeds(0..100).profile(Profile::Chaos).run();
}

/// Ignored while D5 reports spec 02's receipt convergence (a write whose
/// lost-answer attempt was made durable, then recovered, completes `Ok`
/// without a `Published` record): seed 4 is the first such seed. See the
/// `commit-service` module docs.
#[test]
#[ignore = "D5 reports spec 02's receipt convergence; see the commit-service module docs"]
fn commit_service_holds_under_chaos() {
    check("commit-service")
        .seeds(0..40)
        .profile(Profile::Chaos)
        .run();
}
