//! Counters of what a consumer did, for logs, tests and benchmarks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Totals since start; cheap to update from many workers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Uncommitted messages per assigned partition, from librdkafka's statistics.
    lag: Mutex<BTreeMap<i32, u64>>,
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

    /// Replaces the lag of every partition with `lag` (partition, messages).
    pub fn set_lag(&self, lag: impl IntoIterator<Item = (i32, u64)>) {
        if let Ok(mut map) = self.lag.lock() {
            *map = lag.into_iter().collect();
        }
    }

    /// The lag last reported, by partition.
    pub fn lag(&self) -> BTreeMap<i32, u64> {
        self.lag.lock().map(|m| m.clone()).unwrap_or_default()
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
