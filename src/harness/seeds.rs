//! Seed ranges and shards, as typed on the command line or in env vars.

use std::ops::Range;
use std::str::FromStr;

use super::error::HarnessError;

/// A half-open range of seeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRange(pub Range<u64>);

impl SeedRange {
    /// Number of seeds.
    pub fn len(&self) -> u64 {
        self.0.end.saturating_sub(self.0.start)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromStr for SeedRange {
    type Err = HarnessError;

    /// `N` (a count: seeds 0..N), `A..B`, or `A..=B`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || HarnessError::BadSeedRange(s.to_string());
        let num = |t: &str| t.trim().replace('_', "").parse::<u64>().map_err(|_| bad());
        let range = if let Some((a, b)) = s.split_once("..=") {
            let (a, b) = (num(a)?, num(b)?);
            a..b.checked_add(1).ok_or_else(bad)?
        } else if let Some((a, b)) = s.split_once("..") {
            num(a)?..num(b)?
        } else {
            0..num(s)?
        };
        if range.start >= range.end {
            return Err(bad());
        }
        Ok(SeedRange(range))
    }
}

/// Shard K of N (1-based): the seeds ≡ K−1 (mod N). Split by seed value,
/// so the shards of any range partition it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 1..=count.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl Shard {
    /// The whole range as one shard.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// The seeds of `range` in this shard.
    pub fn seeds(self, range: &SeedRange) -> impl Iterator<Item = u64> {
        let (index, count) = (self.index, self.count);
        range.0.clone().filter(move |s| s % count == index - 1)
    }
}

impl FromStr for Shard {
    type Err = HarnessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || HarnessError::BadShard(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = k.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_counts_and_ranges() {
        assert_eq!("500".parse::<SeedRange>().ok(), Some(SeedRange(0..500)));
        assert_eq!("10..20".parse::<SeedRange>().ok(), Some(SeedRange(10..20)));
        assert_eq!("10..=20".parse::<SeedRange>().ok(), Some(SeedRange(10..21)));
        for bad in ["", "x", "5..2", "3..3", "-1..4", "1..x", "0"] {
            assert!(bad.parse::<SeedRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_a_range() {
        let range = SeedRange(0..100);
        let mut all: Vec<u64> = (1..=3)
            .flat_map(|k| {
                Shard { index: k, count: 3 }
                    .seeds(&range)
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        for bad in ["0/3", "4/3", "1/0", "1", "a/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
