//! Temporary smoke run.
use std::collections::BTreeMap;
use durasim_models::*;
fn main() {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..300u64 {
        let config = reference::ReferenceConfig::small(seed);
        let history = reference::generate(&config);
        for e in &history.events {
            let name = match &e.kind {
                EventKind::Complete { outcome, .. } => format!("Complete {:?}", match outcome { Outcome::Ok(OkValue::Committed{..}) => "okw".to_string(), Outcome::Ok(_) => "okr".to_string(), Outcome::Failed{error, definite} => format!("{error} {definite}"), Outcome::Unknown(r) => format!("{r:?}") }),
                EventKind::AttemptEnded { result, .. } => format!("AttemptEnded {:?}", match result { AttemptResult::Rejected{reason, ..} => reason.clone(), r => format!("{r:?}").chars().take(9).collect() }),
                EventKind::FsyncReturned { ok, .. } => format!("Fsync {ok}"),
                EventKind::ServerCrash { during_recovery, .. } => format!("Crash {during_recovery}"),
                EventKind::Repair { kind, .. } => format!("Repair {kind:?}"),
                EventKind::RepairSettled { state, .. } => format!("Settled {state:?}"),
                other => format!("{other:?}").split([' ', '(', '{']).next().unwrap_or("").to_string(),
            };
            *counts.entry(name).or_default() += 1;
        }
        // seq mismatch between attempt and published
    }
    for (k, v) in counts { println!("{v:8} {k}"); }
}
