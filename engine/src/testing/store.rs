//! An in-memory store with DynamoDB's conditional-write semantics, and knobs a test turns:
//! a rival writer that wins the next writes, an outage, and a count of reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::store::{
    Precondition, PutOutcome, Record, Store, StoreError, META_ATTRIBUTE, META_REVISION,
};

/// Records by key in memory; cloning shares them.
#[derive(Clone)]
pub struct MemoryStore {
    /// The shared state.
    inner: Arc<Inner>,
}

struct Inner {
    /// The field of a record that is its key.
    key_field: String,
    /// Records by key.
    records: Mutex<HashMap<String, Record>>,
    /// Writes still to lose to the rival, and the record the rival writes first.
    rival: Mutex<(usize, Option<Record>)>,
    /// Whether every call fails as an unreachable store would.
    down: AtomicBool,
    /// Calls still to throttle, as DynamoDB does past a table's capacity.
    throttled: AtomicUsize,
    /// `get` calls so far.
    reads: AtomicUsize,
}

impl MemoryStore {
    /// An empty store whose records are keyed by `key_field`.
    pub fn new(key_field: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                key_field: key_field.to_string(),
                records: Mutex::new(HashMap::new()),
                rival: Mutex::new((0, None)),
                down: AtomicBool::new(false),
                throttled: AtomicUsize::new(0),
                reads: AtomicUsize::new(0),
            }),
        }
    }

    fn records(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.inner
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The record under `key`, as stored (with the engine's metadata).
    pub fn record(&self, key: &str) -> Option<Record> {
        self.records().get(key).cloned()
    }

    /// Every record, by key.
    pub fn records_by_key(&self) -> HashMap<String, Record> {
        self.records().clone()
    }

    /// Stores `record` under its key as another writer would, unconditionally.
    pub fn insert(&self, record: Record) {
        let key = self.key_of(&record);
        self.records().insert(key, record);
    }

    /// The next `writes` conditional writes each find that a rival stored `record` first,
    /// and lose.
    pub fn rival(&self, writes: usize, record: Record) {
        *self
            .inner
            .rival
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (writes, Some(record));
    }

    /// Makes every call fail (`true`) or succeed again.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Throttles the next `calls` calls.
    pub fn throttle(&self, calls: usize) {
        self.inner.throttled.store(calls, Ordering::SeqCst);
    }

    /// `get` calls so far.
    pub fn reads(&self) -> usize {
        self.inner.reads.load(Ordering::SeqCst)
    }

    fn key_of(&self, record: &Record) -> String {
        record
            .get(&self.inner.key_field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn available(&self, operation: &'static str) -> Result<(), StoreError> {
        let throttled =
            self.inner
                .throttled
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if throttled.is_ok() {
            return Err(StoreError::Throttled {
                operation,
                table: "memory".into(),
                reason: "ProvisionedThroughputExceededException".into(),
            });
        }
        if self.inner.down.load(Ordering::SeqCst) {
            Err(StoreError::Request {
                operation,
                table: "memory".into(),
                reason: "the in-memory store is down".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.available("GetItem")?;
        self.inner.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.record(key))
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.available("PutItem")?;
        let key = self.key_of(record);
        {
            let mut rival = self
                .inner
                .rival
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if rival.0 > 0 {
                rival.0 -= 1;
                if let Some(first) = rival.1.clone() {
                    self.records().insert(key, first);
                }
                return Ok(PutOutcome::Conflict);
            }
        }
        let mut records = self.records();
        let revision = |r: &Record| {
            r.get(META_ATTRIBUTE)
                .and_then(|m| m.get(META_REVISION))
                .and_then(Value::as_u64)
        };
        let holds = match (precondition, records.get(&key)) {
            (Precondition::Absent, None) => true,
            (Precondition::Revision(n), Some(r)) => revision(r) == Some(*n),
            (Precondition::Unrevised, Some(r)) => !r.contains_key(META_ATTRIBUTE),
            _ => false,
        };
        if holds {
            records.insert(key, record.clone());
            Ok(PutOutcome::Written)
        } else {
            Ok(PutOutcome::Conflict)
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.available("DescribeTable")
    }
}
