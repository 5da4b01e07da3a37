//! The trace: a typed log of everything that happened in a run, and its
//! digest.
//!
//! Every event is folded into a 64-bit FNV-1a digest as it is emitted, whether
//! or not the events themselves are kept ([`TraceMode`]). Two runs with equal
//! digests took the same path: this is what determinism checks compare. The
//! digest hashes the events' derived `Hash`, which is stable for a given
//! durasim version on 64-bit little-endian targets (all we run on); it is
//! not meant to be compared across durasim versions.
//!
//! [`init_logging`] installs a `tracing` subscriber whose timestamps are the
//! simulated time of the run the logging thread is in.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use fnv::FnvHasher;
use serde::{Deserialize, Serialize};

use crate::clock::SimTime;

/// Whether a run keeps its events or only their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TraceMode {
    /// Keep only the digest and counts (sweeps).
    #[default]
    DigestOnly,
    /// Keep every event (replay, shrink stories, `--trace`).
    Full,
}

/// The phases of a run (spec 07).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Before the fault phase: processes start, no fault is injected.
    Setup,
    /// Workload plus faults.
    Fault,
    /// Faults stop, the network heals, crashed processes restart; liveness is checked.
    Heal,
    /// A final crash of every process, then recovery and the last checks.
    FinalCrash,
    /// The run is over.
    Done,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Simulated time since the start of the run.
    pub time: SimTime,
    /// The simulated process it happened on (`None`: the supervisor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<u32>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The run entered a phase.
    Phase {
        /// The new phase.
        phase: Phase,
    },
    /// The scheduler injected a fault (a non-zero draw at a fault site).
    Fault {
        /// Site name (the tape stream).
        site: Cow<'static, str>,
        /// Fault kind.
        kind: Cow<'static, str>,
        /// Position in the site's stream: `site#index` names it on the tape.
        index: u32,
        /// The drawn value.
        value: u64,
        /// What the fault did, for humans.
        detail: String,
    },
    /// A process (re)started: its init ran (recovery happens there).
    ProcessStart {
        /// Process name.
        name: Cow<'static, str>,
        /// Incarnation number, 1 for the first start.
        incarnation: u32,
    },
    /// A process stopped running: crashed (with or without power loss) or exited.
    ProcessStop {
        /// Why.
        reason: StopReason,
    },
    /// A process was paused (a long stall).
    ProcessPause,
    /// A paused process resumed.
    ProcessResume,
    /// A disk operation completed.
    Disk {
        /// Which operation.
        op: DiskOp,
        /// Inode the op touched (0 for namespace-only ops).
        inode: u64,
        /// Operation-specific numbers (offset and length, new length, …).
        a: u64,
        /// Second operation-specific number.
        b: u64,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A message was handed to the network.
    NetSend {
        /// Destination process.
        to: u32,
        /// Network-wide message number.
        msg: u64,
    },
    /// A message was delivered.
    NetDeliver {
        /// Sender.
        from: u32,
        /// Network-wide message number.
        msg: u64,
    },
    /// The network partition state changed.
    NetPartition {
        /// Link (from, to) and whether it is now blocked.
        from: u32,
        /// Destination side of the link.
        to: u32,
        /// True when blocked, false when healed.
        blocked: bool,
    },
    /// An application-level event recorded by a system under test.
    App {
        /// Event name (e.g. "commit.published").
        name: Cow<'static, str>,
        /// Numbers that identify it (sequence numbers, ids, sizes).
        values: Vec<u64>,
    },
    /// Free text (rare: prefer typed events).
    Note {
        /// The text.
        text: String,
    },
}

/// Why a process stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The process died; the machine (page cache) stayed up.
    ProcessCrash,
    /// Power loss: unsynced disk state is subject to the crash model.
    MachineCrash,
    /// The process's main future returned.
    Exited,
}

/// Disk operations, as traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum DiskOp {
    Open,
    Create,
    Read,
    Write,
    SetLen,
    Fsync,
    Rename,
    Remove,
    CreateDir,
    SyncDir,
    ReadDir,
}

/// A run's trace: digest and counts always, events when asked.
pub struct Trace {
    hasher: FnvHasher,
    count: u64,
    events: Option<Vec<TraceEvent>>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("digest", &self.digest())
            .field("count", &self.count)
            .field("kept", &self.events.as_ref().map(Vec::len))
            .finish()
    }
}

impl Trace {
    /// An empty trace.
    pub fn new(mode: TraceMode) -> Trace {
        Trace {
            hasher: FnvHasher::default(),
            count: 0,
            events: (mode == TraceMode::Full).then(Vec::new),
        }
    }

    /// Fold one event in.
    pub fn push(&mut self, event: TraceEvent) {
        event.hash(&mut self.hasher);
        self.count += 1;
        if let Some(events) = &mut self.events {
            events.push(event);
        }
    }

    /// The digest of every event so far.
    pub fn digest(&self) -> TraceDigest {
        TraceDigest(self.hasher.finish())
    }

    /// Number of events so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The events, when the mode keeps them.
    pub fn events(&self) -> Option<&[TraceEvent]> {
        self.events.as_deref()
    }

    /// Take the kept events out.
    pub fn take_events(&mut self) -> Option<Vec<TraceEvent>> {
        self.events.take()
    }
}

/// A stable 64-bit digest of a trace; shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceDigest(pub u64);

impl std::fmt::Display for TraceDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for TraceDigest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(format!("a trace digest is 16 hex digits, got `{s}`"));
        }
        u64::from_str_radix(s, 16)
            .map(TraceDigest)
            .map_err(|e| format!("bad trace digest `{s}`: {e}"))
    }
}

impl Serialize for TraceDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Formats `tracing` timestamps as the simulated time of the current run
/// (`  12.345678s`), or `-` outside any run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimTimer;

impl tracing_subscriber::fmt::time::FormatTime for SimTimer {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match crate::clock::try_now() {
            Some(t) => write!(w, "{:>12.6}s", t.as_secs_f64()),
            None => write!(w, "{:>13}", "-"),
        }
    }
}

/// Install a global `tracing` subscriber that writes to stderr, stamped with
/// simulated time. The level comes from `DURASIM_LOG` (error, warn, info,
/// debug, trace; default warn). Calling it again is harmless.
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = std::env::var("DURASIM_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    // madsim warns on every runtime built on a reused thread that std's
    // HashMap is not seeded deterministically there; durasim never iterates
    // a HashMap (clippy.toml bans the type), so keep that noise out.
    let mut filter = Targets::new()
        .with_default(level)
        .with_target("madsim::sim::rand", LevelFilter::ERROR);
    // madsim opens an error-level span per task and node; recording them
    // costs a few per cent of a run. They only label debug output, so they
    // are kept only when debugging.
    if level < LevelFilter::DEBUG {
        filter = filter.with_target("madsim::sim::task", LevelFilter::OFF);
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_timer(SimTimer)
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: u64, name: &'static str) -> TraceEvent {
        TraceEvent {
            time: SimTime::from_nanos(time),
            process: Some(1),
            kind: EventKind::App {
                name: Cow::Borrowed(name),
                values: vec![time],
            },
        }
    }

    #[test]
    fn digest_does_not_depend_on_whether_events_are_kept() {
        let mut full = Trace::new(TraceMode::Full);
        let mut lean = Trace::new(TraceMode::DigestOnly);
        for i in 0..50 {
            full.push(event(i, "x"));
            lean.push(event(i, "x"));
        }
        assert_eq!(full.digest(), lean.digest());
        assert_eq!(full.events().map(<[_]>::len), Some(50));
        assert!(lean.events().is_none());
    }

    #[test]
    fn digest_sees_order_and_content() {
        let mut a = Trace::new(TraceMode::DigestOnly);
        let mut b = Trace::new(TraceMode::DigestOnly);
        a.push(event(1, "x"));
        a.push(event(2, "y"));
        b.push(event(2, "y"));
        b.push(event(1, "x"));
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn digest_round_trips_through_text() {
        let d = TraceDigest(0x0123_4567_89ab_cdef);
        assert_eq!(d.to_string().parse::<TraceDigest>(), Ok(d));
        assert!("xyz".parse::<TraceDigest>().is_err());
    }
}
