//! Counting a design's store requests from outside the design: reads, conditional writes
//! tried, and writes that went through. The counting proxy ([`crate::proxy`]) fills a
//! [`Counter`] for whatever talks to moto over HTTP (the Python peer included); a
//! [`CountingStore`] fills one for a design in this process on the latency model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ordo::store::{Precondition, PutOutcome, Record, Store, StoreError};

/// What a design asked of its store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Reads (`GetItem`).
    pub gets: u64,
    /// Conditional writes tried (`PutItem`), answered, whether or not they went through.
    pub puts: u64,
    /// Conditional writes that went through.
    pub written: u64,
    /// When the first and the latest write were answered: the window over which a design
    /// that reports nothing itself (the Python peer) is timed.
    pub puts_window: Option<(Instant, Instant)>,
}

impl Counts {
    /// Every request that DynamoDB bills: reads, and writes tried (a failed condition costs a
    /// write too).
    pub fn requests(&self) -> u64 {
        self.gets + self.puts
    }
}

/// Counts requests as they are answered; shared by whoever answers them.
#[derive(Debug, Default)]
pub struct Counter {
    gets: AtomicU64,
    puts: AtomicU64,
    written: AtomicU64,
    puts_window: Mutex<Option<(Instant, Instant)>>,
}

impl Counter {
    /// One read answered.
    pub fn get(&self) {
        self.gets.fetch_add(1, Ordering::Relaxed);
    }

    /// One conditional write answered; `written` when it went through.
    pub fn put(&self, written: bool) {
        let now = Instant::now();
        if let Ok(mut window) = self.puts_window.lock() {
            let first = window.map_or(now, |(first, _)| first);
            *window = Some((first, now));
        }
        if written {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        // Last, so a reader that sees the count also sees the window that goes with it.
        self.puts.fetch_add(1, Ordering::Release);
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let puts = self.puts.load(Ordering::Acquire);
        Counts {
            gets: self.gets.load(Ordering::Relaxed),
            puts,
            written: self.written.load(Ordering::Relaxed),
            puts_window: self.puts_window.lock().ok().and_then(|w| *w),
        }
    }
}

/// A store that counts the requests it passes to `inner` (reads, writes tried, writes that
/// went through) once they are answered.
#[derive(Clone)]
pub struct CountingStore<S> {
    inner: S,
    counter: Arc<Counter>,
}

impl<S> CountingStore<S> {
    /// Counts the requests to `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counter: Arc::default(),
        }
    }

    /// The store counted.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counter.counts()
    }
}

impl<S: Store> Store for CountingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let got = self.inner.get(key).await;
        self.counter.get();
        got
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        let put = self.inner.put(record, precondition).await;
        self.counter.put(matches!(put, Ok(PutOutcome::Written)));
        put
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelStore;
    use std::time::Duration;

    #[tokio::test]
    async fn reads_writes_and_lost_conditions_are_counted() {
        let store = CountingStore::new(ModelStore::new(Duration::ZERO));
        let record = serde_json::json!({"PatientId": "p1"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(store.get("p1").await.ok(), Some(None));
        let first = store.put(&record, &Precondition::Absent).await.ok();
        let again = store.put(&record, &Precondition::Absent).await.ok();
        assert_eq!(
            (first, again),
            (Some(PutOutcome::Written), Some(PutOutcome::Conflict))
        );
        let counts = store.counts();
        assert_eq!((counts.gets, counts.puts, counts.written), (1, 2, 1));
        assert_eq!(counts.requests(), 3);
        assert!(counts.puts_window.is_some());
    }
}
