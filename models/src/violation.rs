//! Invariant ids (spec 08) and the violations checkers report.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{OpId, SimTime};

/// The stable invariant ids of spec 08. Serialised as `"D1"` … `"L1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InvariantId {
    /// acked-durable
    D1,
    /// atomic
    D2,
    /// no-phantom
    D3,
    /// order
    D4,
    /// publish-after-fsync
    D5,
    /// no-silent-drop
    D6,
    /// exactly-once
    D7,
    /// first-committer-wins
    D8,
    /// repair-settles
    D9,
    /// recovery-idempotent
    D10,
    /// retry-bounded
    D11,
    /// backpressure
    D12,
    /// snapshot-restart
    D13,
    /// lifecycle-consistent
    D14,
    /// liveness
    L1,
}

impl InvariantId {
    /// Every id, in spec order.
    pub const ALL: [InvariantId; 15] = [
        InvariantId::D1,
        InvariantId::D2,
        InvariantId::D3,
        InvariantId::D4,
        InvariantId::D5,
        InvariantId::D6,
        InvariantId::D7,
        InvariantId::D8,
        InvariantId::D9,
        InvariantId::D10,
        InvariantId::D11,
        InvariantId::D12,
        InvariantId::D13,
        InvariantId::D14,
        InvariantId::L1,
    ];

    /// The stable id, e.g. `"D1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvariantId::D1 => "D1",
            InvariantId::D2 => "D2",
            InvariantId::D3 => "D3",
            InvariantId::D4 => "D4",
            InvariantId::D5 => "D5",
            InvariantId::D6 => "D6",
            InvariantId::D7 => "D7",
            InvariantId::D8 => "D8",
            InvariantId::D9 => "D9",
            InvariantId::D10 => "D10",
            InvariantId::D11 => "D11",
            InvariantId::D12 => "D12",
            InvariantId::D13 => "D13",
            InvariantId::D14 => "D14",
            InvariantId::L1 => "L1",
        }
    }

    /// The short name from spec 08, e.g. `"acked-durable"`.
    pub fn name(self) -> &'static str {
        match self {
            InvariantId::D1 => "acked-durable",
            InvariantId::D2 => "atomic",
            InvariantId::D3 => "no-phantom",
            InvariantId::D4 => "order",
            InvariantId::D5 => "publish-after-fsync",
            InvariantId::D6 => "no-silent-drop",
            InvariantId::D7 => "exactly-once",
            InvariantId::D8 => "first-committer-wins",
            InvariantId::D9 => "repair-settles",
            InvariantId::D10 => "recovery-idempotent",
            InvariantId::D11 => "retry-bounded",
            InvariantId::D12 => "backpressure",
            InvariantId::D13 => "snapshot-restart",
            InvariantId::D14 => "lifecycle-consistent",
            InvariantId::L1 => "liveness",
        }
    }

    /// Parse a stable id (`"D1"` …); `None` for anything else.
    pub fn parse(id: &str) -> Option<InvariantId> {
        InvariantId::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == id)
    }
}

impl fmt::Display for InvariantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken rule, as a checker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: InvariantId,
    /// The operations involved (may be empty when only server-side events
    /// are involved), ascending.
    pub ops: Vec<OpId>,
    /// The simulated time at which the violation became evident.
    pub time: SimTime,
    /// One line for humans.
    pub message: String,
}

impl Violation {
    /// A violation of `invariant` at `time` involving `ops`.
    pub fn new(invariant: InvariantId, time: SimTime, mut ops: Vec<OpId>, message: String) -> Self {
        ops.sort_unstable();
        ops.dedup();
        Self {
            invariant,
            ops,
            time,
            message,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {}: {}",
            self.invariant,
            self.invariant.name(),
            Secs(self.time),
            self.message
        )
    }
}

/// Displays a [`SimTime`] as seconds with three decimals: `1.204 s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub SimTime);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Integer arithmetic: the output must not depend on float rounding.
        let millis = self.0 / 1_000_000;
        write!(f, "{}.{:03} s", millis / 1000, millis % 1000)
    }
}

/// Displays a duration in [`SimTime`] units as milliseconds with three
/// decimals: `0.781 ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub SimTime);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0 / 1_000;
        write!(f, "{}.{:03} ms", micros / 1000, micros % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_stable_strings() {
        for id in InvariantId::ALL {
            assert_eq!(InvariantId::parse(id.as_str()), Some(id));
            let json = serde_json::to_string(&id).expect("serialises");
            assert_eq!(json, format!("\"{id}\""));
        }
        assert_eq!(InvariantId::parse("D15"), None);
        assert_eq!(InvariantId::D11.name(), "retry-bounded");
    }

    #[test]
    fn times_print_as_seconds_with_three_decimals() {
        assert_eq!(Secs(1_204_000_000).to_string(), "1.204 s");
        assert_eq!(Secs(999_999).to_string(), "0.000 s");
        assert_eq!(Secs(61_000_500_000).to_string(), "61.000 s");
        assert_eq!(Millis(781_250).to_string(), "0.781 ms");
        let violation = Violation::new(
            InvariantId::D1,
            1_310_000_000,
            vec![9, 3, 9],
            "commit seq 41 (txn 17) is missing".to_string(),
        );
        assert_eq!(violation.ops, vec![3, 9]);
        assert_eq!(
            violation.to_string(),
            "D1 acked-durable at 1.310 s: commit seq 41 (txn 17) is missing"
        );
    }
}
