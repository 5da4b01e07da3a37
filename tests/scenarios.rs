//! The built-in model-checked scenarios hold under chaos (a short sweep
//! each; the CLI's `sweep` runs the long ones).

use durasim::{check, Profile};

#[test]
fn channel_holds_under_chaos() {
    check("channel").seeds(0..100).profile(Profile::Chaos).run();
}

#[test]
fn commit_service_holds_under_chaos() {
    check("commit-service")
        .seeds(0..40)
        .profile(Profile::Chaos)
        .run();
}

#[test]
fn commit_service_holds_under_swarm() {
    check("commit-service")
        .seeds(0..40)
        .profile(Profile::Swarm)
        .run();
}

#[test]
fn backoff_holds_under_chaos() {
    check("backoff").seeds(0..200).profile(Profile::Chaos).run();
}

#[test]
fn repair_holds_under_chaos() {
    check("repair").seeds(0..60).profile(Profile::Chaos).run();
}

#[test]
fn queued_writer_holds_under_chaos() {
    check("queued-writer")
        .seeds(0..200)
        .profile(Profile::Chaos)
        .run();
}

#[test]
fn lifecycle_holds_under_chaos() {
    check("lifecycle")
        .seeds(0..200)
        .profile(Profile::Chaos)
        .run();
}

#[test]
fn snapshot_persistence_holds_under_swarm() {
    check("snapshot-persistence")
        .seeds(0..200)
        .profile(Profile::Swarm)
        .run();
}
