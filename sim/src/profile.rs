//! Fault configuration and named fault profiles.
//!
//! A [`FaultConfig`] fixes which fault kinds are enabled and at what rates.
//! Named [`Profile`]s resolve to a config; `swarm` draws a config per seed
//! (some kinds off, others dense), because some bugs only show when one
//! fault is absent and another frequent. The resolved config is printed at
//! the start of a run and stored in corpus entries, so one line reproduces
//! it. Every rate defaults to zero: faults are opt-in.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Named fault profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// No faults at all.
    None,
    /// Latency jitter, loss, duplication, reordering, partitions.
    Network,
    /// Process and machine crashes, pauses, clock skew and jumps.
    Crash,
    /// Machine crashes with torn/lost unsynced writes, fsync failures, ENOSPC.
    Disk,
    /// Application-level faults: forced conflicts, rejections, repair faults.
    Conflicts,
    /// Media faults on durable data within the redundancy budget (opt-in;
    /// not part of `chaos`, because it only makes sense for systems that
    /// claim redundancy or detect corruption).
    Media,
    /// Everything except media faults.
    Chaos,
    /// Each seed draws its own subset of kinds and rates.
    Swarm,
}

impl Profile {
    /// Every named profile, in display order.
    pub const ALL: [Profile; 8] = [
        Profile::None,
        Profile::Network,
        Profile::Crash,
        Profile::Disk,
        Profile::Conflicts,
        Profile::Media,
        Profile::Chaos,
        Profile::Swarm,
    ];

    /// The profile's name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Network => "network",
            Profile::Crash => "crash",
            Profile::Disk => "disk",
            Profile::Conflicts => "conflicts",
            Profile::Media => "media",
            Profile::Chaos => "chaos",
            Profile::Swarm => "swarm",
        }
    }

    /// The concrete fault configuration for `seed` (only `swarm` uses the seed).
    pub fn resolve(self, seed: u64) -> FaultConfig {
        match self {
            Profile::None => FaultConfig::none(),
            Profile::Network => FaultConfig::none().with_network(1.0),
            Profile::Crash => FaultConfig::none().with_crashes(1.0),
            Profile::Disk => FaultConfig::none().with_disk(1.0),
            Profile::Conflicts => FaultConfig::none().with_app(1.0),
            Profile::Media => FaultConfig::none().with_disk(1.0).with_media(1.0),
            Profile::Chaos => FaultConfig::none()
                .with_network(1.0)
                .with_crashes(1.0)
                .with_disk(1.0)
                .with_app(1.0),
            Profile::Swarm => FaultConfig::swarm(seed),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown profile `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// An inclusive range of milliseconds or microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Lower bound.
    pub lo: u64,
    /// Upper bound (inclusive).
    pub hi: u64,
}

impl Span {
    /// `lo..=hi`.
    pub const fn new(lo: u64, hi: u64) -> Span {
        Span { lo, hi }
    }
}

/// Crash, pause and clock faults, applied by the scheduler to target processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CrashFaults {
    /// Crashes per process per simulated second.
    pub crash_per_s: f64,
    /// Probability that a write or sync in flight is cut short by a crash
    /// of its machine (crashes at I/O points land inside the windows where
    /// durability bugs live, and stay there when unrelated faults are
    /// removed while shrinking).
    pub crash_per_io: f64,
    /// Probability that an fsync in flight is cut short by a crash of its
    /// machine (at least `crash_per_io`). Syncs get their own, higher rate
    /// because the moment between a write and its fsync is where
    /// durability bugs live: the written bytes sit unsynced in the page
    /// cache and a power loss decides, sector by sector, which survive.
    pub crash_per_sync: f64,
    /// Fraction of crashes that are machine crashes (power loss) rather
    /// than process crashes (page cache survives).
    pub power_loss_fraction: f64,
    /// Delay before a crashed process restarts, ms.
    pub restart_delay_ms: Span,
    /// Pauses per process per simulated second.
    pub pause_per_s: f64,
    /// Pause length, ms.
    pub pause_ms: Span,
    /// Clock jumps per process per simulated second.
    pub clock_jump_per_s: f64,
    /// Largest clock jump, ms (either direction).
    pub clock_jump_ms_max: u64,
    /// Largest initial clock skew of a process, ms (either direction):
    /// each process starts with its own offset from simulated time.
    pub clock_skew_ms_max: u64,
}

impl Default for CrashFaults {
    fn default() -> Self {
        CrashFaults {
            crash_per_s: 0.0,
            crash_per_io: 0.0,
            crash_per_sync: 0.0,
            power_loss_fraction: 0.5,
            restart_delay_ms: Span::new(1, 50),
            pause_per_s: 0.0,
            pause_ms: Span::new(5, 200),
            clock_jump_per_s: 0.0,
            clock_jump_ms_max: 500,
            clock_skew_ms_max: 0,
        }
    }
}

/// Network behaviour and faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetFaults {
    /// One-way latency, µs (always applied; jitter is the spread).
    pub latency_us: Span,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Probability a message is held back (reordered behind later ones).
    pub reorder: f64,
    /// Extra delay of a reordered message, ms.
    pub reorder_delay_ms: Span,
    /// Partitions started per simulated second.
    pub partition_per_s: f64,
    /// Partition length, ms.
    pub partition_ms: Span,
}

impl Default for NetFaults {
    fn default() -> Self {
        NetFaults {
            latency_us: Span::new(50, 500),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_ms: Span::new(1, 20),
            partition_per_s: 0.0,
            partition_ms: Span::new(10, 300),
        }
    }
}

/// Disk faults (crash semantics are always on; these add failures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskFaults {
    /// Whether a machine crash may lose or tear unsynced data. When false
    /// every unsynced write survives a crash (the benign outcome).
    pub tear_unsynced: bool,
    /// Whether a torn sector may also tear inside itself (new prefix then
    /// old bytes, zeros, or garbage). When false, every unsynced sector
    /// comes back whole: all new or all old.
    pub tear_within_sector: bool,
    /// Fraction of machine crashes that keep every unsynced write anyway.
    pub crash_keep_all_fraction: f64,
    /// Whether a rename may be non-atomic across a crash (pessimistic mode).
    pub non_atomic_rename: bool,
    /// Probability an fsync fails with EIO.
    pub fsync_eio: f64,
    /// Probability a write fails with ENOSPC.
    pub enospc: f64,
    /// Probability per synced sector of a latent sector error (reads fail).
    pub latent_sector_error: f64,
    /// Probability per synced sector of silent corruption (a flipped bit).
    pub silent_corruption: f64,
    /// Probability a synced write lands one sector off.
    pub misdirected_write: f64,
    /// Probability a synced write is silently lost.
    pub lost_write: f64,
    /// Most faulty sectors any one file may hold: the redundancy budget
    /// the system claims. Ignored when `over_budget` is set.
    pub media_faults_per_file_max: u32,
    /// Allow media faults beyond the budget; the only correct outcome is
    /// then a detected halt.
    pub over_budget: bool,
}

impl Default for DiskFaults {
    fn default() -> Self {
        DiskFaults {
            tear_unsynced: false,
            tear_within_sector: false,
            crash_keep_all_fraction: 0.1,
            non_atomic_rename: false,
            fsync_eio: 0.0,
            enospc: 0.0,
            latent_sector_error: 0.0,
            silent_corruption: 0.0,
            misdirected_write: 0.0,
            lost_write: 0.0,
            media_faults_per_file_max: 1,
            over_budget: false,
        }
    }
}

/// Application-level faults: systems ask [`crate::buggify`] at their own
/// sites; the rate comes from the site's fault kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AppFaults {
    /// Rate for any application fault kind not listed in `by_kind`.
    pub default_rate: f64,
    /// Per-kind rates.
    pub by_kind: BTreeMap<String, f64>,
}

impl AppFaults {
    /// The rate for application fault `kind`.
    pub fn rate(&self, kind: &str) -> f64 {
        self.by_kind.get(kind).copied().unwrap_or(self.default_rate)
    }
}

/// The complete, resolved fault configuration of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    /// Crashes, pauses, clock faults.
    pub crash: CrashFaults,
    /// Network.
    pub net: NetFaults,
    /// Disk.
    pub disk: DiskFaults,
    /// Application-level hooks.
    pub app: AppFaults,
}

impl FaultConfig {
    /// No faults.
    pub fn none() -> FaultConfig {
        FaultConfig::default()
    }

    /// Enable network faults at `scale` × the reference rates.
    pub fn with_network(mut self, scale: f64) -> FaultConfig {
        self.net.loss = 0.03 * scale;
        self.net.duplicate = 0.02 * scale;
        self.net.reorder = 0.03 * scale;
        self.net.partition_per_s = 0.5 * scale;
        self
    }

    /// Enable crashes, pauses and clock jumps at `scale` × the reference rates.
    pub fn with_crashes(mut self, scale: f64) -> FaultConfig {
        self.crash.crash_per_s = 0.5 * scale;
        self.crash.crash_per_io = (0.002 * scale).min(1.0);
        self.crash.crash_per_sync = (0.01 * scale).min(1.0);
        self.crash.pause_per_s = 0.3 * scale;
        self.crash.clock_jump_per_s = 0.2 * scale;
        self.crash.clock_skew_ms_max = 200;
        self
    }

    /// Enable disk faults (machine crashes that tear unsynced data, fsync
    /// EIO, ENOSPC) at `scale` × the reference rates.
    pub fn with_disk(mut self, scale: f64) -> FaultConfig {
        self.disk.tear_unsynced = true;
        self.disk.tear_within_sector = true;
        self.disk.fsync_eio = 0.02 * scale;
        self.disk.enospc = 0.002 * scale;
        // Torn writes only show after power loss: make sure some happen.
        self.crash.crash_per_s = self.crash.crash_per_s.max(0.3 * scale);
        self.crash.crash_per_io = self.crash.crash_per_io.max((0.002 * scale).min(1.0));
        self.crash.crash_per_sync = self.crash.crash_per_sync.max((0.01 * scale).min(1.0));
        self.crash.power_loss_fraction = 0.8;
        self
    }

    /// Enable media faults within the redundancy budget.
    pub fn with_media(mut self, scale: f64) -> FaultConfig {
        self.disk.latent_sector_error = 0.001 * scale;
        self.disk.silent_corruption = 0.001 * scale;
        self.disk.misdirected_write = 0.001 * scale;
        self.disk.lost_write = 0.001 * scale;
        self
    }

    /// Enable application-level faults at `scale` × the reference rate.
    pub fn with_app(mut self, scale: f64) -> FaultConfig {
        self.app.default_rate = 0.05 * scale;
        self
    }

    /// The swarm configuration of `seed`: each fault family is on or off
    /// by a coin flip, and each enabled one gets a rate multiplier between
    /// 0.25× and 4×. Drawn from its own ChaCha stream so it never
    /// disturbs the run's other draws.
    pub fn swarm(seed: u64) -> FaultConfig {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        let mut scale = || -> f64 {
            if rng.gen_bool(0.5) {
                0.0
            } else {
                // Log-uniform in [0.25, 4].
                4f64.powf(rng.gen_range(-1.0..1.0))
            }
        };
        let (network, crashes, disk, app) = (scale(), scale(), scale(), scale());
        let mut config = FaultConfig::none();
        if network > 0.0 {
            config = config.with_network(network);
        }
        if crashes > 0.0 {
            config = config.with_crashes(crashes);
        }
        if disk > 0.0 {
            config = config.with_disk(disk);
        }
        if app > 0.0 {
            config = config.with_app(app);
        }
        config
    }

    /// Check every rate is a probability and every span is ordered.
    pub fn validate(&self) -> Result<(), String> {
        let probabilities = [
            ("crash.power_loss_fraction", self.crash.power_loss_fraction),
            ("crash.crash_per_io", self.crash.crash_per_io),
            ("crash.crash_per_sync", self.crash.crash_per_sync),
            ("net.loss", self.net.loss),
            ("net.duplicate", self.net.duplicate),
            ("net.reorder", self.net.reorder),
            (
                "disk.crash_keep_all_fraction",
                self.disk.crash_keep_all_fraction,
            ),
            ("disk.fsync_eio", self.disk.fsync_eio),
            ("disk.enospc", self.disk.enospc),
            ("disk.latent_sector_error", self.disk.latent_sector_error),
            ("disk.silent_corruption", self.disk.silent_corruption),
            ("disk.misdirected_write", self.disk.misdirected_write),
            ("disk.lost_write", self.disk.lost_write),
            ("app.default_rate", self.app.default_rate),
        ];
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability in [0, 1], got {p}"));
            }
        }
        for (kind, &p) in &self.app.by_kind {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("app rate `{kind}` must be in [0, 1], got {p}"));
            }
        }
        let rates = [
            ("crash.crash_per_s", self.crash.crash_per_s),
            ("crash.pause_per_s", self.crash.pause_per_s),
            ("crash.clock_jump_per_s", self.crash.clock_jump_per_s),
            ("net.partition_per_s", self.net.partition_per_s),
        ];
        for (name, r) in rates {
            if !(r.is_finite() && r >= 0.0) {
                return Err(format!("{name} must be a finite rate ≥ 0, got {r}"));
            }
        }
        let spans = [
            ("crash.restart_delay_ms", self.crash.restart_delay_ms),
            ("crash.pause_ms", self.crash.pause_ms),
            ("net.latency_us", self.net.latency_us),
            ("net.reorder_delay_ms", self.net.reorder_delay_ms),
            ("net.partition_ms", self.net.partition_ms),
        ];
        for (name, s) in spans {
            if s.lo > s.hi {
                return Err(format!("{name}: lo {} > hi {}", s.lo, s.hi));
            }
        }
        Ok(())
    }

    /// The fault families this config enables, for a one-line summary.
    pub fn summary(&self) -> String {
        let mut on = Vec::new();
        if self.net.loss > 0.0 || self.net.partition_per_s > 0.0 {
            on.push(format!(
                "network(loss={:.3},dup={:.3},reorder={:.3},partition/s={:.2})",
                self.net.loss, self.net.duplicate, self.net.reorder, self.net.partition_per_s
            ));
        }
        if self.crash.crash_per_s > 0.0 || self.crash.pause_per_s > 0.0 {
            on.push(format!(
                "crash(crash/s={:.2},io={:.4},sync={:.4},power_loss={:.2},pause/s={:.2},jump/s={:.2})",
                self.crash.crash_per_s,
                self.crash.crash_per_io,
                self.crash.crash_per_sync,
                self.crash.power_loss_fraction,
                self.crash.pause_per_s,
                self.crash.clock_jump_per_s
            ));
        }
        if self.disk.tear_unsynced || self.disk.fsync_eio > 0.0 {
            on.push(format!(
                "disk(tear={},eio={:.3},enospc={:.4})",
                self.disk.tear_unsynced, self.disk.fsync_eio, self.disk.enospc
            ));
        }
        let media = self.disk.latent_sector_error
            + self.disk.silent_corruption
            + self.disk.misdirected_write
            + self.disk.lost_write;
        if media > 0.0 {
            on.push(format!("media(total={media:.4})"));
        }
        if self.app.default_rate > 0.0 || !self.app.by_kind.is_empty() {
            on.push(format!("app(rate={:.3})", self.app.default_rate));
        }
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_profile_resolves_to_a_valid_config() {
        for profile in Profile::ALL {
            for seed in 0..20 {
                let config = profile.resolve(seed);
                assert_eq!(config.validate(), Ok(()), "{profile} seed {seed}");
            }
        }
    }

    #[test]
    fn profiles_parse_by_name_and_reject_unknown_ones() {
        assert_eq!("swarm".parse::<Profile>(), Ok(Profile::Swarm));
        let err = "stormy".parse::<Profile>().expect_err("unknown");
        assert!(err.contains("unknown profile `stormy`"), "{err}");
    }

    #[test]
    fn swarm_varies_by_seed_and_is_stable_per_seed() {
        let configs: Vec<String> = (0..32).map(|s| FaultConfig::swarm(s).summary()).collect();
        assert_eq!(configs[5], FaultConfig::swarm(5).summary());
        let distinct: std::collections::BTreeSet<&String> = configs.iter().collect();
        assert!(distinct.len() > 8, "swarm should vary: {distinct:?}");
        assert!(configs.iter().any(|c| c == "none"));
    }

    #[test]
    fn validation_rejects_nonsense() {
        let mut config = FaultConfig::none();
        config.net.loss = f64::NAN;
        assert!(config.validate().is_err());
        let mut config = FaultConfig::none();
        config.crash.crash_per_s = -1.0;
        assert!(config.validate().is_err());
        let mut config = FaultConfig::none();
        config.net.partition_ms = Span::new(9, 3);
        assert!(config.validate().is_err());
    }
}
