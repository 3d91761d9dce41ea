//! `Idempotency-Key`: a retried request with the same key, within a window, gets the first
//! request's 202 answer instead of producing a second event.
//!
//! The window is kept in this process's memory: replicas behind a load balancer each keep
//! their own, so a retry routed to another replica is not recognised. Only 202 answers are
//! remembered; a request that failed may be retried for real.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// How long a key is remembered.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Keys remembered at most; the oldest are forgotten first past this.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A remembered answer: the 202 body.
type Answer = Arc<OnceCell<String>>;

/// Remembered answers by key.
pub struct IdempotencyCache {
    /// Key → (first seen, answer once known).
    entries: Mutex<HashMap<String, (Instant, Answer)>>,
    /// How long a key counts.
    window: Duration,
    /// Most keys held.
    capacity: usize,
}

impl Default for IdempotencyCache {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW, DEFAULT_CAPACITY)
    }
}

impl IdempotencyCache {
    /// A cache remembering up to `capacity` keys for `window`.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            window,
            capacity,
        }
    }

    fn cell(&self, key: &str) -> Answer {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return Arc::new(OnceCell::new()); // poisoned: behave as if keys were not sent
        };
        if let Some((seen, cell)) = entries.get(key) {
            if now.duration_since(*seen) < self.window {
                return Arc::clone(cell);
            }
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, (seen, _)| now.duration_since(*seen) < self.window);
            if entries.len() >= self.capacity {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (seen, _))| *seen)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(key.to_string(), (now, Arc::clone(&cell)));
        cell
    }

    /// Runs `produce` once per key within the window; concurrent and later calls with the
    /// same key get its `Ok` answer. An `Err` is not remembered.
    pub async fn once<E, F, Fut>(&self, key: &str, produce: F) -> Result<(String, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
    {
        let cell = self.cell(key);
        let mut ran = false;
        let answer = cell
            .get_or_try_init(|| {
                ran = true;
                produce()
            })
            .await?;
        Ok((answer.clone(), !ran))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_produces_once_and_failures_are_not_remembered() {
        let cache = IdempotencyCache::default();
        let first = cache
            .once("k", || async { Ok::<_, ()>("a".to_string()) })
            .await;
        assert_eq!(first, Ok(("a".to_string(), false)));
        let again = cache
            .once("k", || async { Ok::<_, ()>("b".to_string()) })
            .await;
        assert_eq!(again, Ok(("a".to_string(), true)), "replayed, not produced");
        assert_eq!(
            cache.once("f", || async { Err::<String, _>(()) }).await,
            Err(())
        );
        let retried = cache
            .once("f", || async { Ok::<_, ()>("c".to_string()) })
            .await;
        assert_eq!(retried, Ok(("c".to_string(), false)));
    }

    #[tokio::test]
    async fn keys_expire_and_capacity_is_bounded() {
        let cache = IdempotencyCache::new(Duration::ZERO, 2);
        for answer in ["a", "b", "c"] {
            let (got, replayed) = cache
                .once("k", || async { Ok::<_, ()>(answer.to_string()) })
                .await
                .expect("ok");
            assert_eq!(
                (got.as_str(), replayed),
                (answer, false),
                "a zero window remembers nothing"
            );
        }
        let cache = IdempotencyCache::new(DEFAULT_WINDOW, 2);
        for key in ["1", "2", "3"] {
            cache
                .once(key, || async { Ok::<_, ()>(key.to_string()) })
                .await
                .expect("ok");
        }
        assert!(cache.entries.lock().expect("lock").len() <= 2);
    }
}
