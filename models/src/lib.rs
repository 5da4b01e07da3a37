//! durasim's reference models and durability checkers.
//!
//! Pure, sequential, synchronous: a system under test records a
//! [`History`] (see [`history`] for what to record and when), and
//! [`check()`] replays it against small reference models ([`model`]) and
//! returns every [`Violation`] of the invariants of spec 08, each with its
//! [`InvariantId`], the operations involved, the simulated time and one
//! line of explanation. A checker never panics on a malformed or
//! adversarial history; it reports it.
//!
//! [`mod@reference`] is a trivially correct implementation of the commit
//! service that records histories; the property tests and the benchmark
//! use it, and it shows how a system records.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod check;
mod growth;
pub mod history;
mod id_map;
pub mod model;
pub mod reference;
pub mod snapshot_reference;
pub mod violation;
mod window_map;

pub use check::{check, check_invariant};
pub use history::*;
pub use violation::{InvariantId, Millis, Secs, Violation};
