//! # durasim-sim: the simulated world
//!
//! One `u64` seed builds a whole world: madsim's runtime (tasks, timers,
//! simulated time) plus durasim's own pieces, one module each:
//!
//! - [`clock`]: simulated time, per-process skew.
//! - [`disk`]: `SimDisk`, a disk with fsync/crash semantics (spec 07).
//! - [`net`]: an unreliable typed network with per-message faults.
//! - [`world`]: processes (crash, restart, pause), the fault scheduler,
//!   phases, and [`run`], which runs one simulation.
//! - [`profile`]: fault configurations and named profiles (`swarm` included).
//! - [`tape`]: the choice tape every fault decision is drawn through.
//! - [`task`]: spawning tasks that the run's end drops (madsim leaks
//!   tasks still pending when its runtime is dropped).
//! - [`trace`]: the typed event log of a run and its digest.
//!
//! This crate knows nothing of the systems that run on it. Systems use its
//! clock, disk and network, and ask [`buggify`] at their own fault sites.
//!
//! Determinism rules for code that runs inside a simulation: no OS time
//! (`std::time::Instant::now`, `SystemTime::now`), no OS randomness
//! (`rand::thread_rng`), no threads, no iteration over `HashMap`/`HashSet`,
//! and `select!` only in its biased form. `clippy.toml` bans the first three.

#[cfg(not(madsim))]
compile_error!(
    "durasim must be built with `--cfg madsim`. The project's .cargo/config.toml \
     sets it: run cargo from the repository root, and make sure the RUSTFLAGS \
     environment variable is unset (an empty RUSTFLAGS overrides the config file)."
);

pub mod clock;
pub mod disk;
pub mod net;
pub mod profile;
pub mod selftest;
pub mod tape;
pub mod task;
pub mod trace;
pub mod world;

pub use clock::SimTime;
pub use disk::{Disk, DiskConfig, File};
pub use net::{Endpoint, Net};
pub use profile::{FaultConfig, Profile};
pub use tape::{Chooser, FaultRef, Site, Tape};
pub use trace::{EventKind, Phase, TraceDigest, TraceEvent, TraceMode};
pub use world::{
    buggify, buggify_with, choose_between, current_phase, current_process, run, trace_app,
    ProcessCtx, ProcessId, RunConfig, RunFailure, RunOutcome, RunStats, Sim,
};
