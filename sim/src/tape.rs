//! The choice tape: every random decision of a run, recorded so that it can be
//! replayed exactly and edited.
//!
//! Model: code draws decisions at named [`Site`]s ("net.drop",
//! "disk.crash.mode", "commit.force_conflict", …). Each site has its own
//! stream of `u64` values, consumed in order. Three rules make a tape
//! editable:
//!
//! - **Zero is benign.** At every site the value 0 means "no fault" (or the
//!   smallest delay, the first option). Zeroing an entry removes exactly that
//!   fault.
//! - **A short tape reads as zeros.** A stream that runs out yields 0, so the
//!   empty tape is a fault-free run and every edited tape is a valid run.
//! - **Streams are per site.** Removing one crash does not shift the network
//!   stream, so most other decisions stay where they were. (Decisions whose
//!   number depends on the workload, such as per-message ones, can still
//!   shift; the shrinker re-records the tape after every accepted edit.)
//!
//! A [`Chooser`] either draws fresh values from a ChaCha8 generator seeded by
//! the run's seed (recording them), or replays a [`Tape`] (recording what it
//! actually used, clamped to each request's range, so the re-recorded tape
//! is the exact tape of the replayed run).

use std::borrow::Cow;
use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A named decision point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// Stable name of the stream this site draws from; shown in tapes and stories.
    pub name: &'static str,
    /// Whether a non-zero value here is an injected fault, and of which kind.
    pub class: SiteClass,
}

/// What a site's values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteClass {
    /// A non-zero value injects a fault of this kind (e.g. "crash", "network-loss").
    Fault {
        /// The fault kind, used for per-kind counts and profile rates.
        kind: &'static str,
    },
    /// An ordinary value (a latency, an index); 0 is the smallest.
    Value,
}

impl Site {
    /// A site at which a non-zero value is a fault of `kind`.
    pub const fn fault(name: &'static str, kind: &'static str) -> Site {
        Site {
            name,
            class: SiteClass::Fault { kind },
        }
    }

    /// A site that draws an ordinary value.
    pub const fn value(name: &'static str) -> Site {
        Site {
            name,
            class: SiteClass::Value,
        }
    }

    /// The fault kind of this site, if it injects faults.
    pub fn fault_kind(&self) -> Option<&'static str> {
        match self.class {
            SiteClass::Fault { kind } => Some(kind),
            SiteClass::Value => None,
        }
    }
}

/// One site's recorded stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stream {
    /// The fault kind, when the site injects faults.
    fault_kind: Option<String>,
    values: Vec<u64>,
}

/// A recorded (or edited) sequence of decisions, one stream per site.
///
/// Serialised sparsely: per site, its length and its non-zero entries, so a
/// shrunk tape stays small and readable in a corpus file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tape {
    streams: BTreeMap<String, Stream>,
}

/// A reference to one injected fault on a tape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FaultRef {
    /// Site name.
    pub site: String,
    /// Position in the site's stream.
    pub index: u32,
    /// The recorded value (non-zero).
    pub value: u64,
}

impl Tape {
    /// The empty tape: replaying it gives a run with no faults at all.
    pub fn empty() -> Tape {
        Tape::default()
    }

    /// Value `index` of `site`'s stream, 0 past its end.
    pub fn get(&self, site: &str, index: usize) -> u64 {
        self.streams
            .get(site)
            .and_then(|s| s.values.get(index).copied())
            .unwrap_or(0)
    }

    /// Every non-zero entry at a fault site, ordered by site then position.
    pub fn faults(&self) -> Vec<FaultRef> {
        let mut out = Vec::new();
        for (name, stream) in &self.streams {
            if stream.fault_kind.is_none() {
                continue;
            }
            for (index, &value) in stream.values.iter().enumerate() {
                if value != 0 {
                    out.push(FaultRef {
                        site: name.clone(),
                        index: index as u32,
                        value,
                    });
                }
            }
        }
        out
    }

    /// Number of injected faults on the tape.
    pub fn fault_count(&self) -> usize {
        self.streams
            .values()
            .filter(|s| s.fault_kind.is_some())
            .map(|s| s.values.iter().filter(|&&v| v != 0).count())
            .sum()
    }

    /// Number of decisions recorded (all sites).
    pub fn len(&self) -> usize {
        self.streams.values().map(|s| s.values.len()).sum()
    }

    /// True when no decision is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy with the given entries set to 0 (the faults removed).
    pub fn without(&self, faults: &[FaultRef]) -> Tape {
        let mut tape = self.clone();
        for fault in faults {
            tape.set(&fault.site, fault.index as usize, 0);
        }
        tape
    }

    /// A copy keeping only the first `keep` entries of every stream; later
    /// draws read as zero (used to shrink the tail of a run).
    pub fn truncated(&self, keep: usize) -> Tape {
        let mut tape = self.clone();
        for stream in tape.streams.values_mut() {
            stream.values.truncate(keep);
        }
        tape
    }

    /// Set one entry (growing the stream with zeros as needed).
    pub fn set(&mut self, site: &str, index: usize, value: u64) {
        let Some(stream) = self.streams.get_mut(site) else {
            if value == 0 {
                return;
            }
            // An unknown site: keep the value but without a kind, so it
            // is replayed yet never counted as a fault.
            let mut values = vec![0; index + 1];
            values[index] = value;
            self.streams.insert(
                site.to_string(),
                Stream {
                    fault_kind: None,
                    values,
                },
            );
            return;
        };
        if index >= stream.values.len() {
            if value == 0 {
                return;
            }
            stream.values.resize(index + 1, 0);
        }
        stream.values[index] = value;
    }

    /// A copy with every entry of `site` set to 0 (its values at their minimum).
    pub fn with_site_zeroed(&self, site: &str) -> Tape {
        let mut tape = self.clone();
        if let Some(stream) = tape.streams.get_mut(site) {
            stream.values.iter_mut().for_each(|v| *v = 0);
        }
        tape
    }

    /// The sites with recorded streams, with their fault kinds.
    pub fn sites(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.streams
            .iter()
            .map(|(name, s)| (name.as_str(), s.fault_kind.as_deref()))
    }
}

/// Serialised form of one stream: sparse non-zero entries.
#[derive(Serialize, Deserialize)]
struct StreamRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fault: Option<String>,
    len: u32,
    /// `[index, value]` pairs of the non-zero entries, in index order.
    #[serde(default)]
    set: Vec<(u32, u64)>,
}

impl Serialize for Tape {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let repr: BTreeMap<&str, StreamRepr> = self
            .streams
            .iter()
            .map(|(name, s)| {
                let set = s
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v != 0)
                    .map(|(i, &v)| (i as u32, v))
                    .collect();
                let repr = StreamRepr {
                    fault: s.fault_kind.clone(),
                    len: s.values.len() as u32,
                    set,
                };
                (name.as_str(), repr)
            })
            .collect();
        repr.serialize(serializer)
    }
}

/// Longest stream a tape file may declare; guards against a corrupt `len`
/// allocating gigabytes.
const STREAM_LEN_MAX: u32 = 1 << 24;

impl<'de> Deserialize<'de> for Tape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let repr = BTreeMap::<String, StreamRepr>::deserialize(deserializer)?;
        let mut streams = BTreeMap::new();
        for (name, r) in repr {
            if r.len > STREAM_LEN_MAX {
                return Err(D::Error::custom(format!(
                    "tape stream `{name}` declares len {} (max {STREAM_LEN_MAX})",
                    r.len
                )));
            }
            let mut values = vec![0u64; r.len as usize];
            for (index, value) in r.set {
                let slot = values.get_mut(index as usize).ok_or_else(|| {
                    D::Error::custom(format!(
                        "tape stream `{name}`: entry {index} is past its len {}",
                        r.len
                    ))
                })?;
                *slot = value;
            }
            streams.insert(
                name,
                Stream {
                    fault_kind: r.fault,
                    values,
                },
            );
        }
        Ok(Tape { streams })
    }
}

/// How many ticks ahead [`Chooser::next_firing`] looks in random mode
/// before it calls a periodic decision "never" (10⁶ ticks is hours of
/// simulated time at any tick a scheduler would use).
pub const FIRING_HORIZON: u64 = 1_000_000;

/// Where a chooser's values come from.
enum Source {
    /// Fresh draws from the seeded generator.
    Random(Box<ChaCha8Rng>),
    /// Values read back from a tape (zeros past its end).
    Replay(Tape),
}

/// The live stream of one site (and key) during a run.
struct LiveStream {
    site: Site,
    /// Distinguishes sub-streams of one site (0: the site's own stream).
    key: u64,
    /// The stream's name on the tape: the site name, or `site@label`.
    name: Cow<'static, str>,
    values: Vec<u64>,
}

/// The [`Chooser::recent`] slot of a (site, key) pair: a hash of the site
/// name's address and the key. Only a hint, so it need not be stable.
fn recent_slot(site: &Site, key: u64) -> usize {
    let address = site.name.as_ptr() as u64;
    let mixed = (address ^ key.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 58) as usize
}

/// The one chooser through which every fault decision of a run is drawn.
pub struct Chooser {
    source: Source,
    streams: Vec<LiveStream>,
    decisions: u64,
    faults_by_kind: BTreeMap<&'static str, u64>,
    /// Stream and position of the latest draw.
    last: (usize, u32),
    /// A hint per (site, key) hash: the index in `streams` where that
    /// stream was last found. Checked before it is trusted, so a collision
    /// only costs the scan it would have cost anyway.
    recent: [u32; RECENT_SLOTS],
}

/// Slots of [`Chooser::recent`]: a run has a few dozen streams.
const RECENT_SLOTS: usize = 64;

impl Chooser {
    /// A chooser drawing fresh values from `seed` (stream 1 of ChaCha8, so
    /// it never overlaps other uses of the same seed).
    pub fn random(seed: u64) -> Chooser {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        Chooser::with_source(Source::Random(Box::new(rng)))
    }

    /// A chooser replaying `tape`.
    pub fn replay(tape: Tape) -> Chooser {
        Chooser::with_source(Source::Replay(tape))
    }

    fn with_source(source: Source) -> Chooser {
        Chooser {
            source,
            streams: Vec::new(),
            decisions: 0,
            faults_by_kind: BTreeMap::new(),
            last: (0, 0),
            recent: [u32::MAX; RECENT_SLOTS],
        }
    }

    /// True when replaying a tape.
    pub fn is_replay(&self) -> bool {
        matches!(self.source, Source::Replay(_))
    }

    fn stream_index(&mut self, site: &Site, key: u64, label: impl FnOnce() -> String) -> usize {
        let is_this_stream = |s: &LiveStream| {
            s.key == key && (std::ptr::eq(s.site.name, site.name) || s.site.name == site.name)
        };
        // Every message and disk operation draws a few times: the hint
        // spares most draws the scan below.
        let slot = recent_slot(site, key);
        let hinted = self.recent[slot] as usize;
        if self.streams.get(hinted).is_some_and(is_this_stream) {
            return hinted;
        }
        // Few streams per run: a linear scan (pointer compare first) beats a map.
        let i = match self.streams.iter().position(is_this_stream) {
            Some(i) => i,
            None => {
                let name = if key == 0 {
                    Cow::Borrowed(site.name)
                } else {
                    Cow::Owned(format!("{}@{}", site.name, label()))
                };
                self.streams.push(LiveStream {
                    site: *site,
                    key,
                    name,
                    values: Vec::new(),
                });
                self.streams.len() - 1
            }
        };
        self.recent[slot] = i as u32;
        i
    }

    /// The core draw: a value in `0..bound` (`bound` ≥ 1). In random mode it
    /// comes from `fresh`; in replay mode from the tape, clamped to the bound.
    /// Either way it is recorded.
    pub fn draw(
        &mut self,
        site: &Site,
        bound: u64,
        fresh: impl FnOnce(&mut ChaCha8Rng) -> u64,
    ) -> u64 {
        self.draw_keyed(site, 0, String::new, bound, fresh)
    }

    /// A draw on the sub-stream `key` of `site` (named `site@label`, the
    /// label built the first time the key is seen). Decisions about one
    /// entity (a network link, a file) get their own stream, so removing a
    /// fault elsewhere does not shift them.
    pub fn draw_keyed(
        &mut self,
        site: &Site,
        key: u64,
        label: impl FnOnce() -> String,
        bound: u64,
        fresh: impl FnOnce(&mut ChaCha8Rng) -> u64,
    ) -> u64 {
        let i = self.stream_index(site, key, label);
        self.draw_on(i, site, bound, fresh)
    }

    /// Draw the next value of live stream `i`.
    fn draw_on(
        &mut self,
        i: usize,
        site: &Site,
        bound: u64,
        fresh: impl FnOnce(&mut ChaCha8Rng) -> u64,
    ) -> u64 {
        let bound = bound.max(1);
        let position = self.streams[i].values.len();
        let value = match &mut self.source {
            Source::Random(rng) => fresh(rng).min(bound - 1),
            Source::Replay(tape) => tape.get(&self.streams[i].name, position).min(bound - 1),
        };
        self.streams[i].values.push(value);
        self.last = (i, position as u32);
        self.decisions += 1;
        if value != 0 {
            if let SiteClass::Fault { kind } = site.class {
                *self.faults_by_kind.entry(kind).or_insert(0) += 1;
            }
        }
        value
    }

    /// The first tick at or after `from` at which a periodic decision fires.
    ///
    /// A periodic decision is drawn once per tick in `slot` of `stride`
    /// interleaved slots of `site`'s stream (tick `k` is position
    /// `k·stride + slot`), and fires (is non-zero) with probability `p` per
    /// tick. Instead of drawing every tick, a caller asks for the next
    /// firing tick, sleeps until then and draws it with
    /// [`draw_at`](Self::draw_at); the ticks in between are recorded as
    /// zeros, so the tape reads exactly as if every tick had been drawn.
    ///
    /// In random mode the gap is drawn as a run of per-tick Bernoulli trials
    /// (no floating-point logarithm, so it is the same on every platform);
    /// `None` when `p` is zero or nothing fires within [`FIRING_HORIZON`]
    /// ticks. In replay mode it is the next non-zero entry of the slot on
    /// the tape, `None` past the tape's end.
    pub fn next_firing(
        &mut self,
        site: &Site,
        from: u64,
        (slot, stride): (u64, u64),
        p: f64,
    ) -> Option<u64> {
        match &mut self.source {
            Source::Random(rng) => {
                if p <= 0.0 {
                    return None;
                }
                (from..from.saturating_add(FIRING_HORIZON))
                    .find(|_| p >= 1.0 || rng.gen::<f64>() < p)
            }
            Source::Replay(tape) => {
                let values = &tape.streams.get(site.name)?.values;
                let stride = stride.max(1);
                (from..)
                    .map(|tick| (tick, tick.saturating_mul(stride).saturating_add(slot)))
                    .take_while(|&(_, position)| position < values.len() as u64)
                    .find(|&(_, position)| values[position as usize] != 0)
                    .map(|(tick, _)| tick)
            }
        }
    }

    /// Draw at `position` of `site`'s stream, recording zeros for every
    /// position skipped since the last draw (see
    /// [`next_firing`](Self::next_firing)). In random mode `fired` gives
    /// the value of a decision known to fire; in replay mode the tape's
    /// value is used, clamped to `bound` as in [`draw`](Self::draw).
    pub fn draw_at(
        &mut self,
        site: &Site,
        position: u64,
        bound: u64,
        fired: impl FnOnce(&mut ChaCha8Rng) -> u64,
    ) -> u64 {
        let i = self.stream_index(site, 0, String::new);
        let values = &mut self.streams[i].values;
        let skipped = (position as usize).saturating_sub(values.len());
        values.resize(values.len() + skipped, 0);
        self.decisions += skipped as u64;
        self.draw_on(i, site, bound, fired)
    }

    /// A yes/no fault decision that says yes with probability `p`.
    pub fn chance(&mut self, site: &Site, p: f64) -> bool {
        self.draw(site, 2, |rng| u64::from(p > 0.0 && rng.gen::<f64>() < p)) == 1
    }

    /// [`Chooser::chance`] on sub-stream `key` (see [`Chooser::draw_keyed`]).
    pub fn chance_keyed(
        &mut self,
        site: &Site,
        key: u64,
        label: impl FnOnce() -> String,
        p: f64,
    ) -> bool {
        let fresh = |rng: &mut ChaCha8Rng| u64::from(p > 0.0 && rng.gen::<f64>() < p);
        self.draw_keyed(site, key, label, 2, fresh) == 1
    }

    /// A value in `0..n`, uniform in random mode.
    pub fn below(&mut self, site: &Site, n: u64) -> u64 {
        self.draw(site, n, |rng| if n <= 1 { 0 } else { rng.gen_range(0..n) })
    }

    /// A value in `lo..=hi` (offset from `lo` is what is recorded, so a
    /// zeroed entry gives `lo`).
    pub fn between(&mut self, site: &Site, lo: u64, hi: u64) -> u64 {
        let hi = hi.max(lo);
        let span = hi - lo;
        lo + self.draw(site, span.saturating_add(1), |rng| rng.gen_range(0..=span))
    }

    /// A uniform fraction in `[0, 1)` with 2^-32 resolution.
    pub fn fraction(&mut self, site: &Site) -> f64 {
        const SCALE: u64 = 1 << 32;
        self.draw(site, SCALE, |rng| rng.gen_range(0..SCALE)) as f64 / SCALE as f64
    }

    /// Decisions drawn so far.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// Faults injected so far, per kind.
    pub fn faults_by_kind(&self) -> &BTreeMap<&'static str, u64> {
        &self.faults_by_kind
    }

    /// The tape of everything drawn so far, in a canonical form: trailing
    /// zeros read the same as a stream's end, so they are left off (and a
    /// stream of zeros is left out). Two runs that made the same decisions
    /// give equal tapes even when one drew a trailing zero the other never
    /// asked for (a fault drawn void, say, against its replay).
    pub fn tape(&self) -> Tape {
        let streams = self
            .streams
            .iter()
            .filter_map(|s| {
                let len = s.values.iter().rposition(|&v| v != 0)? + 1;
                let stream = Stream {
                    fault_kind: s.site.fault_kind().map(str::to_string),
                    values: s.values[..len].to_vec(),
                };
                Some((s.name.to_string(), stream))
            })
            .collect();
        Tape { streams }
    }

    /// The stream name and position of the latest draw: `name#index`
    /// names it on the tape.
    pub fn last_draw(&self) -> (Cow<'static, str>, u32) {
        let (i, index) = self.last;
        let name = self
            .streams
            .get(i)
            .map_or(Cow::Borrowed(""), |s| s.name.clone());
        (name, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROP: Site = Site::fault("test.drop", "loss");
    const DELAY: Site = Site::value("test.delay");

    #[test]
    fn replaying_a_recorded_tape_gives_the_same_values() {
        let mut first = Chooser::random(7);
        let drawn: Vec<u64> = (0..200)
            .map(|i| {
                if i % 3 == 0 {
                    u64::from(first.chance(&DROP, 0.3))
                } else {
                    first.between(&DELAY, 10, 90)
                }
            })
            .collect();
        let tape = first.tape();
        let json = serde_json::to_string(&tape).expect("serialise");
        let tape: Tape = serde_json::from_str(&json).expect("deserialise");
        let mut again = Chooser::replay(tape.clone());
        let replayed: Vec<u64> = (0..200)
            .map(|i| {
                if i % 3 == 0 {
                    u64::from(again.chance(&DROP, 0.3))
                } else {
                    again.between(&DELAY, 10, 90)
                }
            })
            .collect();
        assert_eq!(drawn, replayed);
        assert_eq!(again.tape(), tape);
    }

    #[test]
    fn removing_a_fault_zeroes_only_that_entry() {
        let mut chooser = Chooser::random(3);
        for _ in 0..100 {
            chooser.chance(&DROP, 0.5);
        }
        let tape = chooser.tape();
        let faults = tape.faults();
        assert!(
            faults.len() > 10,
            "expected many faults, got {}",
            faults.len()
        );
        let edited = tape.without(&faults[..1]);
        assert_eq!(edited.fault_count(), faults.len() - 1);
        assert_eq!(edited.get("test.drop", faults[0].index as usize), 0);
    }

    #[test]
    fn a_periodic_decision_replays_its_firings_with_zeros_between() {
        const SLOT: (u64, u64) = (1, 3);
        let mut first = Chooser::random(11);
        let mut fired = Vec::new();
        let mut from = 0;
        while let Some(tick) = first.next_firing(&DROP, from, SLOT, 0.05) {
            if tick > 500 {
                break;
            }
            let value = first.draw_at(&DROP, tick * SLOT.1 + SLOT.0, u64::MAX, |_| 7 + tick);
            fired.push((tick, value));
            from = tick + 1;
        }
        assert!(fired.len() > 5, "p = 0.05 over 500 ticks fired {fired:?}");
        let tape = first.tape();
        for (tick, value) in &fired {
            assert_eq!(tape.get(DROP.name, (tick * 3 + 1) as usize), *value);
        }
        assert_eq!(
            tape.fault_count(),
            fired.len(),
            "only the firings are non-zero"
        );

        let mut again = Chooser::replay(tape.clone());
        let mut replayed = Vec::new();
        let mut from = 0;
        while let Some(tick) = again.next_firing(&DROP, from, SLOT, 0.05) {
            let value = again.draw_at(&DROP, tick * SLOT.1 + SLOT.0, u64::MAX, |_| 0);
            replayed.push((tick, value));
            from = tick + 1;
        }
        assert_eq!(fired, replayed);
        assert_eq!(again.tape(), tape);
    }

    #[test]
    fn keyed_draws_land_on_their_own_streams_whatever_the_hints() {
        // More streams than hint slots, drawn interleaved, so hints collide
        // and go stale: every draw must still land on its own stream.
        let keys = 3 * RECENT_SLOTS as u64;
        let mut chooser = Chooser::random(5);
        for round in 0..4u64 {
            for key in 1..=keys {
                let (site, value) = if key % 2 == 0 {
                    (&DELAY, key * 10 + round)
                } else {
                    (&DROP, key)
                };
                let drawn = chooser.draw_keyed(site, key, || key.to_string(), u64::MAX, |_| value);
                assert_eq!(drawn, value);
                let (name, index) = chooser.last_draw();
                assert_eq!(name, format!("{}@{key}", site.name));
                assert_eq!(index as u64, round);
            }
        }
        let tape = chooser.tape();
        for key in (2..=keys).step_by(2) {
            let name = format!("{}@{key}", DELAY.name);
            let values: Vec<u64> = (0..4).map(|i| tape.get(&name, i)).collect();
            assert_eq!(values, (0..4).map(|r| key * 10 + r).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_exhausted_tape_reads_as_benign_zeros() {
        let mut chooser = Chooser::replay(Tape::empty());
        assert!(!chooser.chance(&DROP, 1.0));
        assert_eq!(chooser.between(&DELAY, 5, 50), 5);
        assert!(chooser.faults_by_kind().is_empty());
    }

    #[test]
    fn a_malformed_tape_is_an_error_not_a_panic() {
        let bad = r#"{"x": {"len": 2, "set": [[5, 1]]}}"#;
        let err = serde_json::from_str::<Tape>(bad).expect_err("must be rejected");
        assert!(err.to_string().contains("past its len"), "{err}");
        let huge = r#"{"x": {"len": 4294967295, "set": []}}"#;
        assert!(serde_json::from_str::<Tape>(huge).is_err());
    }
}
