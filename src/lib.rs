//! # durasim
//!
//! Deterministic simulation testing for the durable commit paths of storage
//! systems. See the README for the tour; the pieces:
//!
//! - [`systems`]: the systems under test, written against `durasim-sim`'s
//!   simulated clock, disk and network.
//! - [`scenarios`]: systems + workloads + checkers, by name, and the
//!   known-bug catalogue.
//! - [`harness`]: seeded runs, sweeps, shrinking, the regression corpus.
//! - [`check`]: the one-line test API.
//! - [`strategies`]: proptest strategies over simulations.

mod check;
pub mod cli;
pub mod harness;
pub mod scenarios;
pub mod strategies;
pub mod systems;

pub use check::{check, check_in, default_jobs, Check, CheckFailure};
pub use durasim_models as models;
pub use durasim_sim as sim;
pub use durasim_sim::Profile;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
