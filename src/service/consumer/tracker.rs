//! Which offsets of a partition may be committed.

use std::collections::VecDeque;

/// The records of one partition from the oldest unsettled one to the newest
/// received, in the order received. Offsets need not be contiguous (compaction
/// and transaction markers leave gaps); the commit point advances over the
/// settled prefix only.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    entries: VecDeque<(i64, bool)>,
    /// Sequence number of `entries[0]`.
    base: u64,
}

impl OffsetTracker {
    /// Registers a received record and returns its sequence number.
    pub(crate) fn push(&mut self, offset: i64) -> u64 {
        self.entries.push_back((offset, false));
        self.base + self.entries.len() as u64 - 1
    }

    /// Marks record `seq` settled. Returns the new commit offset (the offset
    /// after the last record of the settled prefix) when the prefix grew.
    pub(crate) fn settle(&mut self, seq: u64) -> Option<i64> {
        let index = seq.checked_sub(self.base)? as usize;
        self.entries.get_mut(index)?.1 = true;
        let mut commit = None;
        while let Some(&(offset, true)) = self.entries.front() {
            self.entries.pop_front();
            self.base += 1;
            commit = Some(offset + 1);
        }
        commit
    }

    /// Records received and not yet part of the committable prefix.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_advances_over_the_settled_prefix_only() {
        let mut t = OffsetTracker::default();
        let a = t.push(10);
        let b = t.push(11);
        let c = t.push(15); // a gap, as compaction leaves
        assert_eq!(t.settle(b), None);
        assert_eq!(t.settle(c), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.settle(a), Some(16));
        assert_eq!(t.len(), 0);
        let d = t.push(16);
        assert_eq!(t.settle(d), Some(17));
    }

    #[test]
    fn unknown_sequence_numbers_are_ignored() {
        let mut t = OffsetTracker::default();
        let a = t.push(0);
        assert_eq!(t.settle(a), Some(1));
        assert_eq!(t.settle(a), None);
        assert_eq!(t.settle(99), None);
    }
}
