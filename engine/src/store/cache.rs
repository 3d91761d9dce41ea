//! The records this engine wrote last, so the next batch of a key can merge without reading
//! the table first.
//!
//! Safe because every write is conditioned on the revision merged against: when another
//! writer (another engine, a replay, the previous owner of a partition) moved the record on,
//! the write merged against the cached copy fails, the entry is dropped and the key is read
//! again. A verdict that writes nothing (every event stale or rejected) is never trusted to
//! the cache either: the applier confirms it against the table.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Precondition, Record};

/// Records kept per pipeline by default: about 10 MiB of patient profiles.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A bounded map of key → (record as the plugin sees it, the precondition a write needs).
#[derive(Debug)]
pub struct RecordCache {
    /// The entries; when full, an arbitrary one makes room.
    entries: Mutex<HashMap<String, (Record, Precondition)>>,
    /// Most entries held; 0 turns the cache off.
    capacity: usize,
}

impl RecordCache {
    /// A cache of at most `capacity` records (0: none).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The record last written for `key`, if held.
    pub fn get(&self, key: &str) -> Option<(Record, Precondition)> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Remembers what was just written for `key`.
    pub fn put(&self, key: &str, record: Record, precondition: Precondition) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(key.to_string(), (record, precondition));
    }

    /// Drops `key`: its cached copy proved out of date.
    pub fn forget(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RecordCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(v: i64) -> Record {
        json!({ "k": "a", "v": v })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn holds_the_last_write_and_forgets_on_demand() {
        let cache = RecordCache::new(2);
        cache.put("a", record(1), Precondition::Revision(1));
        cache.put("a", record(2), Precondition::Revision(2));
        assert_eq!(cache.get("a"), Some((record(2), Precondition::Revision(2))));
        cache.forget("a");
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn stays_within_its_capacity_and_zero_is_off() {
        let cache = RecordCache::new(2);
        for key in ["a", "b", "c", "d"] {
            cache.put(key, record(1), Precondition::Revision(1));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("d").is_some(), "the newest entry is kept");
        let off = RecordCache::new(0);
        off.put("a", record(1), Precondition::Revision(1));
        assert!(off.is_empty());
    }
}
