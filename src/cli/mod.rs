//! The `durasim` command line.
//!
//! Exit codes everywhere: 0 = everything held, 1 = a violation was found
//! (or a corpus verdict changed), 2 = bad input.

mod bench;
mod commands;
mod corpus_cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use durasim_sim::Profile;

use crate::harness::{HarnessError, Registry};

/// Deterministic simulation testing for durable commit paths.
#[derive(Debug, Parser)]
#[command(name = "durasim", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by commands that run one scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Scenario name (see `durasim scenarios`).
    #[arg(long)]
    pub scenario: String,
    /// Fault profile: none, network, crash, disk, conflicts, media, chaos, swarm.
    #[arg(long, default_value = "swarm")]
    pub profile: Profile,
    /// Workload size (default: the scenario's).
    #[arg(long)]
    pub size: Option<u32>,
    /// Switch on a known bug (see `durasim bugs`); repeatable.
    #[arg(long = "bug")]
    pub bugs: Vec<String>,
}

/// Options of `durasim sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Scenario name, or `all` (default: every default scenario).
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Seeds: N (0..N), A..B or A..=B.
    #[arg(long, default_value = "0..1000")]
    pub seeds: String,
    /// Fault profile.
    #[arg(long, default_value = "swarm")]
    pub profile: Profile,
    /// Workload size (default: each scenario's).
    #[arg(long)]
    pub size: Option<u32>,
    /// Switch on a known bug; repeatable (needs a single --scenario).
    #[arg(long = "bug")]
    pub bugs: Vec<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run only shard K of N (K/N, 1-based).
    #[arg(long)]
    pub shard: Option<String>,
    /// Print one JSON line per seed on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Wall-clock seconds a run may take before it counts as a livelock.
    #[arg(long, default_value_t = 60)]
    pub watchdog_secs: u64,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the scenarios.
    Scenarios,
    /// List the known-bug catalogue.
    Bugs,
    /// Run one seed of a scenario.
    Run {
        /// Scenario, profile, size and bugs.
        #[command(flatten)]
        run: RunArgs,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Replay this tape (JSON) instead of drawing fresh decisions.
        #[arg(long)]
        tape: Option<PathBuf>,
        /// Write the full trace (JSON) here.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Run twice and compare trace digests.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Run many seeds across all cores and summarise.
    Sweep(SweepArgs),
    /// Shrink a failing seed to a minimal reproduction.
    Shrink {
        /// Scenario, profile, size and bugs.
        #[command(flatten)]
        run: RunArgs,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// Write the minimal run's full trace (JSON) here.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Save the result in the corpus under this name.
        #[arg(long)]
        save: Option<String>,
        /// One line for the corpus entry: bug, symptom, fix.
        #[arg(long)]
        description: Option<String>,
        /// Corpus directory.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
    /// Replay a corpus entry and compare its verdict.
    Replay {
        /// The entry file.
        file: PathBuf,
        /// Write the full trace (JSON) here.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Work with the regression corpus.
    Corpus {
        /// What to do.
        #[command(subcommand)]
        action: CorpusAction,
    },
    /// Print throughput figures.
    Bench {
        /// Seeds per scenario and thread setting.
        #[arg(long, default_value_t = 2000)]
        seeds: u64,
        /// Only this scenario.
        #[arg(long)]
        scenario: Option<String>,
        /// Skip the shrink timings of the bug catalogue.
        #[arg(long)]
        no_shrink: bool,
    },
}

/// `durasim corpus …`
#[derive(Debug, Subcommand)]
pub enum CorpusAction {
    /// List the entries.
    List {
        /// Corpus directory.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
    /// Run a seed, shrink it if it fails, and save it as an entry.
    Add {
        /// Scenario, profile, size and bugs.
        #[command(flatten)]
        run: RunArgs,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Entry name (file name without .json).
        #[arg(long)]
        name: String,
        /// One line: bug, symptom, fix.
        #[arg(long)]
        description: String,
        /// Replace an existing entry of the same name.
        #[arg(long)]
        force: bool,
        /// Corpus directory.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
    /// Replay every entry; exit 1 if any verdict changed.
    Check {
        /// Corpus directory.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
        /// Re-pin the trace digest of entries whose verdict still holds but
        /// whose digest drifted (after an intended change to a system or
        /// the trace). Entries whose verdict changed are never touched.
        #[arg(long)]
        update_digests: bool,
    },
}

/// What a command concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything held.
    Held,
    /// A violation was found, or a corpus verdict changed.
    Violation,
}

/// Parse arguments, run the built-in scenarios, and map the result to an
/// exit code.
pub fn main() -> ExitCode {
    main_with(crate::scenarios::registry())
}

/// [`main`] with a registry of your own: a binary of your project that
/// calls `durasim::cli::main_with(durasim::scenarios::registry()
/// .with_scenario(&MY_SCENARIO))` gets every command for your scenarios.
pub fn main_with(registry: Registry) -> ExitCode {
    durasim_sim::trace::init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(&registry, cli.command) {
        Ok(Outcome::Held) => ExitCode::SUCCESS,
        Ok(Outcome::Violation) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(registry: &Registry, command: Command) -> Result<Outcome, HarnessError> {
    match command {
        Command::Scenarios => commands::scenarios(registry),
        Command::Bugs => commands::bugs(registry),
        Command::Run {
            run,
            seed,
            tape,
            trace,
            check_determinism,
        } => commands::run(
            registry,
            &run,
            seed,
            tape.as_deref(),
            trace.as_deref(),
            check_determinism,
        ),
        Command::Sweep(args) => commands::sweep(registry, &args),
        Command::Shrink {
            run,
            seed,
            trace,
            save,
            description,
            corpus,
        } => commands::shrink_cmd(
            registry,
            &run,
            seed,
            trace.as_deref(),
            save.as_deref(),
            description.as_deref(),
            &corpus,
        ),
        Command::Replay { file, trace } => commands::replay(registry, &file, trace.as_deref()),
        Command::Corpus { action } => corpus_cmd::dispatch(registry, action),
        Command::Bench {
            seeds,
            scenario,
            no_shrink,
        } => bench::bench(registry, seeds, scenario.as_deref(), !no_shrink),
    }
}
