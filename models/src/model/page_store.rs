//! The versioned page store with first-committer-wins validation.
//!
//! A commit with snapshot `s` may write page `p` only when no commit after
//! `s` has written `p` yet: the first committer wins, later ones conflict.
//! Committing records, per page, the last writer's sequence number and
//! value. Replaying a log through [`PageStore::apply`] gives the state that
//! log implies.
//!
//! Not modelled: reads at a snapshot (only the latest version is kept).

use crate::history::{CommitSeq, PageId, PageVersion, PageWrite};
use crate::id_map::IdMap;

/// Latest version of every page written so far.
#[derive(Debug, Clone, Default)]
pub struct PageStore {
    latest: IdMap<(CommitSeq, u64)>,
    pages_written: usize,
}

/// Why a commit may not be applied under first-committer-wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The contended page.
    pub page: PageId,
    /// The commit after the snapshot that wrote it first.
    pub winner: CommitSeq,
}

impl PageStore {
    /// An empty store (every page unwritten).
    pub fn new() -> Self {
        Self::default()
    }

    /// The first page in `writes` written after `snapshot`, if any.
    pub fn first_conflict(&self, snapshot: CommitSeq, writes: &[PageWrite]) -> Option<Conflict> {
        writes.iter().find_map(|write| {
            let (winner, _) = *self.latest.get(u64::from(write.page))?;
            (winner > snapshot).then_some(Conflict {
                page: write.page,
                winner,
            })
        })
    }

    /// Commit `seq`'s writes become the latest versions of their pages.
    pub fn apply(&mut self, seq: CommitSeq, writes: &[PageWrite]) {
        for write in writes {
            if self.latest.put(u64::from(write.page), (seq, write.value)) {
                self.pages_written += 1;
            }
        }
    }

    /// The latest version of `page`.
    pub fn version(&self, page: PageId) -> Option<PageVersion> {
        self.latest
            .get(u64::from(page))
            .map(|&(commit_seq, value)| PageVersion {
                page,
                commit_seq,
                value,
            })
    }

    /// How many distinct pages have been written.
    pub fn len(&self) -> usize {
        self.pages_written
    }

    /// Whether no page has been written.
    pub fn is_empty(&self) -> bool {
        self.pages_written == 0
    }

    /// Every page's latest version, by page.
    pub fn versions(&self) -> impl Iterator<Item = PageVersion> + '_ {
        self.latest
            .iter()
            .filter_map(|(page, &(commit_seq, value))| {
                Some(PageVersion {
                    page: PageId::try_from(page).ok()?,
                    commit_seq,
                    value,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(page: PageId, value: u64) -> PageWrite {
        PageWrite { page, value }
    }

    #[test]
    fn first_committer_wins_on_overlapping_pages_only() {
        let mut store = PageStore::new();
        store.apply(1, &[w(1, 10), w(2, 20)]);
        store.apply(2, &[w(2, 21)]);
        assert_eq!(
            store.first_conflict(1, &[w(3, 0), w(2, 0)]),
            Some(Conflict { page: 2, winner: 2 })
        );
        assert_eq!(
            store.first_conflict(2, &[w(2, 0)]),
            None,
            "snapshot saw commit 2"
        );
        assert_eq!(store.first_conflict(0, &[w(4, 0)]), None, "untouched page");
        assert_eq!(
            store.version(2),
            Some(PageVersion {
                page: 2,
                commit_seq: 2,
                value: 21
            })
        );
        assert_eq!(store.len(), 2);
        let all: Vec<_> = store.versions().map(|v| (v.page, v.commit_seq)).collect();
        assert_eq!(all, vec![(1, 1), (2, 2)]);
    }
}
