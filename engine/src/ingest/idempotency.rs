//! `Idempotency-Key`: a retried request with the same key, within a window, gets the first
//! request's 202 answer instead of producing a second event.
//!
//! A key is bound to its caller and to the SHA-256 of the body: one caller's key never returns
//! another caller's answer, and the same key with another body is refused, not replayed.
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

/// Whose key: (the caller, the key it sent).
type Owned = (String, String);

/// A remembered request: when first seen, the SHA-256 of its body, its answer once known.
type Entry = (Instant, [u8; 32], Answer);

/// Why [`IdempotencyCache::once`] did not answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<E> {
    /// The caller used this key within the window for another body.
    OtherBody,
    /// Producing failed (not remembered: the request may be retried).
    Failed(E),
}

/// Remembered answers by caller and key.
pub struct IdempotencyCache {
    /// (caller, key) → (first seen, SHA-256 of the body, answer once known).
    entries: Mutex<HashMap<Owned, Entry>>,
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

    /// The answer cell of `owned`, or `None` when it was used for another body.
    fn cell(&self, owned: Owned, body: [u8; 32]) -> Option<Answer> {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return Some(Arc::new(OnceCell::new())); // poisoned: behave as if keys were not sent
        };
        if let Some((seen, hash, cell)) = entries.get(&owned) {
            if now.duration_since(*seen) < self.window {
                return (*hash == body).then(|| Arc::clone(cell));
            }
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, (seen, _, _)| now.duration_since(*seen) < self.window);
            if entries.len() >= self.capacity {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (seen, _, _))| *seen)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(owned, (now, body, Arc::clone(&cell)));
        Some(cell)
    }

    /// Runs `produce` once per caller and key within the window; concurrent and later calls
    /// of that caller with that key and the same `body` (its SHA-256) get its `Ok` answer, and
    /// with another body are refused. An `Err` is not remembered.
    pub async fn once<E, F, Fut>(
        &self,
        caller: &str,
        key: &str,
        body: [u8; 32],
        produce: F,
    ) -> Result<(String, bool), Refused<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
    {
        let cell = self
            .cell((caller.to_string(), key.to_string()), body)
            .ok_or(Refused::OtherBody)?;
        let mut ran = false;
        let answer = cell
            .get_or_try_init(|| {
                ran = true;
                produce()
            })
            .await
            .map_err(Refused::Failed)?;
        Ok((answer.clone(), !ran))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: [u8; 32] = [1; 32];

    #[tokio::test]
    async fn a_key_produces_once_and_failures_are_not_remembered() {
        let cache = IdempotencyCache::default();
        let first = cache
            .once("me", "k", BODY, || async { Ok::<_, ()>("a".to_string()) })
            .await;
        assert_eq!(first, Ok(("a".to_string(), false)));
        let again = cache
            .once("me", "k", BODY, || async { Ok::<_, ()>("b".to_string()) })
            .await;
        assert_eq!(again, Ok(("a".to_string(), true)), "replayed, not produced");
        assert_eq!(
            cache
                .once("me", "f", BODY, || async { Err::<String, _>(()) })
                .await,
            Err(Refused::Failed(()))
        );
        let retried = cache
            .once("me", "f", BODY, || async { Ok::<_, ()>("c".to_string()) })
            .await;
        assert_eq!(retried, Ok(("c".to_string(), false)));
    }

    #[tokio::test]
    async fn a_key_is_bound_to_its_caller_and_its_body() {
        let cache = IdempotencyCache::default();
        let produce = |answer: &'static str| move || async move { Ok::<_, ()>(answer.to_string()) };
        cache
            .once("alice", "k", BODY, produce("alice's"))
            .await
            .expect("ok");
        assert_eq!(
            cache
                .once("alice", "k", [2; 32], produce("other body"))
                .await,
            Err(Refused::OtherBody)
        );
        assert_eq!(
            cache.once("bob", "k", BODY, produce("bob's")).await,
            Ok(("bob's".to_string(), false)),
            "another caller's key is its own"
        );
    }

    #[tokio::test]
    async fn keys_expire_and_capacity_is_bounded() {
        let cache = IdempotencyCache::new(Duration::ZERO, 2);
        for answer in ["a", "b", "c"] {
            let (got, replayed) = cache
                .once("me", "k", BODY, || async {
                    Ok::<_, ()>(answer.to_string())
                })
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
                .once("me", key, BODY, || async { Ok::<_, ()>(key.to_string()) })
                .await
                .expect("ok");
        }
        assert!(cache.entries.lock().expect("lock").len() <= 2);
    }
}
