//! Counters of what a consumer did, for logs, tests and benchmarks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Totals since start; cheap to update from many workers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events taken from the topic and settled (applied, skipped or dead-lettered).
    pub events: AtomicU64,
    /// Events whose merge changed the record.
    pub applied: AtomicU64,
    /// Events older than the stored record.
    pub skipped: AtomicU64,
    /// Events sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Conditional writes that went through.
    pub writes: AtomicU64,
    /// Conditional writes lost to another writer (then merged again).
    pub conflicts: AtomicU64,
}

impl Stats {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events={} applied={} skipped={} dead_lettered={} writes={}",
            Self::get(&self.events),
            Self::get(&self.applied),
            Self::get(&self.skipped),
            Self::get(&self.dead_lettered),
            Self::get(&self.writes)
        )
    }
}
