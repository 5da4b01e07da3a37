//! The items the actors install: each declares type ids and, per version,
//! a few files whose bytes are a pure function of (item, version, file) —
//! the package cache reconcile re-extracts a half-installed item from.

use std::collections::BTreeSet;

/// An installable item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSpec {
    /// Its name (also its directory under the tree).
    pub name: String,
    /// The type ids it declares; two distinct items declaring one id
    /// collide (a genuine error, not a race).
    pub type_ids: BTreeSet<u32>,
    /// Its file names (the same in every version).
    pub files: Vec<String>,
    /// Bytes per file.
    pub file_len: usize,
}

impl ItemSpec {
    /// An item `name` with `type_ids` and `files` files of `file_len` bytes.
    pub fn new(name: &str, type_ids: &[u32], files: usize, file_len: usize) -> ItemSpec {
        ItemSpec {
            name: name.to_string(),
            type_ids: type_ids.iter().copied().collect(),
            files: (0..files).map(|i| format!("part{i}")).collect(),
            file_len,
        }
    }

    /// The tree-relative paths of `version`'s files.
    pub fn paths(&self, version: u32) -> Vec<String> {
        self.files
            .iter()
            .map(|file| format!("{}/{version}/{file}", self.name))
            .collect()
    }

    /// The bytes of `file` in `version`.
    pub fn contents(&self, version: u32, file: &str) -> Vec<u8> {
        let mut state = fnv(self.name.as_bytes()) ^ fnv(file.as_bytes()) ^ u64::from(version);
        (0..self.file_len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect()
    }

    /// The expected bytes of a tree-relative `path` of this item, if the
    /// path names one of its files in some version.
    pub fn expected(&self, path: &str) -> Option<Vec<u8>> {
        let rest = path.strip_prefix(&self.name)?.strip_prefix('/')?;
        let (version, file) = rest.split_once('/')?;
        let version: u32 = version.parse().ok()?;
        self.files
            .iter()
            .any(|f| f == file)
            .then(|| self.contents(version, file))
    }

    /// Whether this item and `other` are distinct and share a type id.
    pub fn collides_with(&self, other: &ItemSpec) -> bool {
        self.name != other.name && !self.type_ids.is_disjoint(&other.type_ids)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_depend_on_item_version_and_file() {
        let a = ItemSpec::new("A", &[1], 2, 16);
        assert_ne!(a.contents(1, "part0"), a.contents(2, "part0"));
        assert_ne!(a.contents(1, "part0"), a.contents(1, "part1"));
        assert_eq!(a.expected("A/3/part1"), Some(a.contents(3, "part1")));
        assert_eq!(a.expected("A/x/part1"), None);
        assert_eq!(a.expected("B/3/part1"), None);
        assert_eq!(a.paths(4), vec!["A/4/part0", "A/4/part1"]);
    }

    #[test]
    fn only_distinct_items_sharing_a_type_id_collide() {
        let a = ItemSpec::new("A", &[1, 2], 1, 4);
        let b = ItemSpec::new("B", &[3], 1, 4);
        let c = ItemSpec::new("C", &[2], 1, 4);
        assert!(!a.collides_with(&b));
        assert!(a.collides_with(&c));
        assert!(!a.collides_with(&a.clone()));
    }
}
