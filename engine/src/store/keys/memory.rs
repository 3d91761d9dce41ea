//! Idempotency-Keys in this process's memory, for tests and tools: the same claims as the
//! DynamoDB table, without surviving a restart or being shared between engines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::{Claim, Keys, Ticket, DEFAULT_WINDOW};
use crate::store::StoreError;

/// Keys a [`MemoryKeys`] holds at most; the oldest are forgotten first past this.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A remembered key: when first claimed, the SHA-256 of its body, and its claim's token
/// until answered, then its answer.
struct Entry {
    seen: Instant,
    body: [u8; 32],
    state: State,
}

enum State {
    Pending(String),
    Done(String),
}

/// Keys remembered in this process's memory.
pub struct MemoryKeys {
    /// Ticket id (caller and key) → entry.
    entries: Mutex<HashMap<String, Entry>>,
    /// How long a key counts.
    window: Duration,
    /// Most keys held.
    capacity: usize,
}

impl Default for MemoryKeys {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW, DEFAULT_CAPACITY)
    }
}

/// A key's id: its caller and itself, length-prefixed so that no two pairs meet.
fn id(caller: &str, key: &str) -> String {
    format!("{}:{caller}{key}", caller.len())
}

impl MemoryKeys {
    /// Keys remembered, up to `capacity` of them, for `window`.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            window,
            capacity,
        }
    }

    fn claim_now(&self, caller: &str, key: &str, body: [u8; 32]) -> Claim {
        let now = Instant::now();
        let id = id(caller, key);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get(&id) {
            if now.duration_since(entry.seen) < self.window {
                if entry.body != body {
                    return Claim::OtherBody;
                }
                return match &entry.state {
                    State::Done(answer) => Claim::Answered(answer.clone()),
                    State::Pending(_) => Claim::InProgress,
                };
            }
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now.duration_since(e.seen) < self.window);
            if entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.seen)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        let token = crate::random_id();
        entries.insert(
            id.clone(),
            Entry {
                seen: now,
                body,
                state: State::Pending(token.clone()),
            },
        );
        Claim::Ours(Ticket { id, token })
    }

    /// Applies `change` to the entry `ticket` still holds.
    fn holding(&self, ticket: &Ticket, change: impl FnOnce(&mut HashMap<String, Entry>)) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let held = matches!(
            entries.get(&ticket.id).map(|e| &e.state),
            Some(State::Pending(token)) if *token == ticket.token
        );
        if held {
            change(&mut entries);
        }
    }
}

impl Keys for MemoryKeys {
    fn claim<'a>(
        &'a self,
        caller: &'a str,
        key: &'a str,
        body: [u8; 32],
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        let claim = self.claim_now(caller, key, body);
        Box::pin(async move { Ok(claim) })
    }

    fn record<'a>(
        &'a self,
        ticket: &'a Ticket,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.holding(ticket, |entries| {
            if let Some(entry) = entries.get_mut(&ticket.id) {
                entry.state = State::Done(answer.to_string());
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn release<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), StoreError>> {
        self.holding(ticket, |entries| {
            entries.remove(&ticket.id);
        });
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IdempotencyKeys, Refused};
    use super::*;

    const BODY: [u8; 32] = [1; 32];

    #[tokio::test]
    async fn a_key_produces_once_and_failures_are_not_remembered() {
        let keys = IdempotencyKeys::default();
        let first = keys
            .once("me", "k", BODY, || async { Ok::<_, ()>("a".to_string()) })
            .await;
        assert_eq!(first, Ok(("a".to_string(), false)));
        let again = keys
            .once("me", "k", BODY, || async { Ok::<_, ()>("b".to_string()) })
            .await;
        assert_eq!(again, Ok(("a".to_string(), true)), "replayed, not produced");
        assert_eq!(
            keys.once("me", "f", BODY, || async { Err::<String, _>(()) })
                .await,
            Err(Refused::Failed(()))
        );
        let retried = keys
            .once("me", "f", BODY, || async { Ok::<_, ()>("c".to_string()) })
            .await;
        assert_eq!(retried, Ok(("c".to_string(), false)));
    }

    #[tokio::test]
    async fn a_key_is_bound_to_its_caller_and_its_body_and_busy_while_in_flight() {
        let keys = IdempotencyKeys::default();
        let produce = |answer: &'static str| move || async move { Ok::<_, ()>(answer.to_string()) };
        keys.once("alice", "k", BODY, produce("alice's"))
            .await
            .expect("ok");
        assert_eq!(
            keys.once("alice", "k", [2; 32], produce("other body"))
                .await,
            Err(Refused::OtherBody)
        );
        assert_eq!(
            keys.once("bob", "k", BODY, produce("bob's")).await,
            Ok(("bob's".to_string(), false)),
            "another caller's key is its own"
        );
        assert_eq!(
            keys.once("a", "bk", BODY, produce("a/bk")).await,
            Ok(("a/bk".to_string(), false)),
            "(a, bk) is not (ab, k)"
        );
        let inner = keys.clone();
        let outer = keys
            .once("carol", "k", BODY, || async move {
                let busy = inner.once("carol", "k", BODY, produce("second")).await;
                assert_eq!(busy, Err(Refused::InProgress));
                Ok::<_, ()>("first".to_string())
            })
            .await;
        assert_eq!(outer, Ok(("first".to_string(), false)));
    }

    #[tokio::test]
    async fn keys_expire_and_capacity_is_bounded() {
        let keys = MemoryKeys::new(Duration::ZERO, 2);
        for answer in ["a", "b", "c"] {
            let claim = keys.claim("me", "k", BODY).await.expect("claim");
            assert!(
                matches!(claim, Claim::Ours(_)),
                "a zero window remembers nothing: {answer}"
            );
        }
        let keys = MemoryKeys::new(DEFAULT_WINDOW, 2);
        for key in ["1", "2", "3"] {
            let _ = keys.claim("me", key, BODY).await.expect("claim");
        }
        assert!(keys.entries.lock().expect("lock").len() <= 2);
    }
}
