//! A latency model of DynamoDB for the benchmarks: every request answers after a fixed
//! latency, any number at once, with the real store's conditional-write semantics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ordo::store::{Precondition, PutOutcome, Record, Store, StoreError, META_ATTRIBUTE};
use tokio::sync::mpsc::UnboundedSender;

/// What one DynamoDB request costs in the model: a same-region round trip.
pub const MODEL_LATENCY: Duration = Duration::from_millis(4);

/// A store that answers after `latency`, as many requests at once as asked: a model of a
/// latency-bound DynamoDB, with the same conditional-write semantics (on the revision).
#[derive(Clone, Default)]
pub struct ModelStore {
    latency: Duration,
    records: Arc<Mutex<HashMap<String, Record>>>,
    /// Told (key, instant) of every write once it is visible.
    watch: Option<UnboundedSender<(String, Instant)>>,
}

impl ModelStore {
    /// A store answering after `latency`.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// The same, telling `watch` the key and instant of every write as it becomes visible.
    pub fn watched(latency: Duration, watch: UnboundedSender<(String, Instant)>) -> Self {
        Self {
            latency,
            watch: Some(watch),
            ..Self::default()
        }
    }

    /// Every record held, read at once and without the latency: what the benchmark audits
    /// after a run (a read of its own, not a design's).
    pub fn records(&self) -> HashMap<String, Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    async fn wait(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

impl Store for ModelStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.wait().await;
        Ok(self.records.lock().ok().and_then(|r| r.get(key).cloned()))
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.wait().await;
        let key = record["PatientId"].as_str().unwrap_or_default().to_string();
        let Ok(mut records) = self.records.lock() else {
            return Ok(PutOutcome::Conflict);
        };
        let revision = |r: &Record| r.get(META_ATTRIBUTE).and_then(|m| m["revision"].as_u64());
        let holds = match (precondition, records.get(&key)) {
            (Precondition::Absent, None) => true,
            (Precondition::Unrevised, Some(r)) => revision(r).is_none(),
            (Precondition::Revision(n), Some(r)) => revision(r) == Some(*n),
            _ => false,
        };
        if !holds {
            return Ok(PutOutcome::Conflict);
        }
        records.insert(key.clone(), record.clone());
        drop(records);
        if let Some(watch) = &self.watch {
            let _ = watch.send((key, Instant::now()));
        }
        Ok(PutOutcome::Written)
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
