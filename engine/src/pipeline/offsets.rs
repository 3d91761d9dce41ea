//! Which offsets of a partition are safe to commit.
//!
//! Events of one partition finish out of order (keys run concurrently), but an offset may be
//! committed only when it and every earlier offset are done. The tracker keeps the pending
//! offsets of a partition; the commit point is the lowest pending one, or one past the highest
//! seen when none is pending.

use std::collections::BTreeSet;

/// The offsets of one partition taken but not finished.
#[derive(Debug, Default)]
pub struct PartitionOffsets {
    /// Offsets received and not yet done.
    pending: BTreeSet<i64>,
    /// The highest offset received, if any.
    highest: Option<i64>,
}

impl PartitionOffsets {
    /// Records that `offset` was received and is being worked on.
    pub fn start(&mut self, offset: i64) {
        self.pending.insert(offset);
        self.highest = Some(self.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Records that `offset` is done (durable or dead-lettered).
    pub fn finish(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    /// The offset to commit: the next one a restarted consumer must read.
    pub fn commit_point(&self) -> Option<i64> {
        if crate::mistakes::on(crate::mistakes::Mistake::CommitBeforeDurable) {
            return self.highest.map(|h| h + 1);
        }
        self.pending
            .first()
            .copied()
            .or_else(|| self.highest.map(|h| h + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_the_lowest_pending_offset() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.commit_point(), None);
        for o in 10..15 {
            p.start(o);
        }
        p.finish(12);
        p.finish(11);
        assert_eq!(
            p.commit_point(),
            Some(10),
            "10 is not done: nothing past it may commit"
        );
        p.finish(10);
        assert_eq!(p.commit_point(), Some(13));
        p.finish(14);
        assert_eq!(p.commit_point(), Some(13));
        p.finish(13);
        assert_eq!(p.commit_point(), Some(15));
    }
}
