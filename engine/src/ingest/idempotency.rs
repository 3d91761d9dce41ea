//! `Idempotency-Key`: a retried request with the same key, within a window, gets the first
//! request's 202 answer instead of producing a second event.
//!
//! A key is bound to its pipeline, its caller and the SHA-256 of the body: one caller's key
//! never returns another caller's answer, and the same key with another body is refused, not
//! replayed. Only 202 answers are remembered; a request that failed may be retried for real.
//!
//! The engine keeps keys in a DynamoDB table ([`DynamoKeys`]), so a retry is recognised after a
//! restart and by every engine behind a load balancer. A request *claims* its key with a
//! conditional put (`pending`), produces, then records the answer (`done`); a retry finds the
//! answer, a request arriving while the first is in flight is told to retry (409), and a claim
//! older than [`CLAIM_LEASE`] (its engine died before the answer was recorded) may be taken
//! over. The table's TTL attribute (`expires_at`) removes keys after the window; an expired
//! key not yet removed counts as absent. The table holds a hash of (pipeline, caller, key),
//! a hash of the body and the 202 answer (which names the record's key, as the replica
//! does): never the Idempotency-Key, the caller or the body. [`MemoryKeys`] keeps the window in
//! this process's memory, for tests and tools.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveSpecification};
use aws_sdk_dynamodb::Client;
use sha2::Digest as _;
use tokio::sync::OnceCell;
use tracing::warn;

use crate::store::dynamo::DynamoStore;
use crate::store::StoreError;

/// How long a key is remembered by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The table keys live in by default.
pub const DEFAULT_TABLE: &str = "ordo-idempotency";
/// Keys a [`MemoryKeys`] holds at most; the oldest are forgotten first past this.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// How long a claim blocks others before it may be taken over: longer than any produce may
/// take (its timeout is seconds), short enough that a retry after a crash is not refused
/// for long.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// The table's partition key: hex SHA-256 of (pipeline, caller, key).
const ID: &str = "id";
/// Hex SHA-256 of the body.
const BODY: &str = "body";
/// `pending` or `done`.
const STATE: &str = "state";
/// The 202 body, once `done`.
const ANSWER: &str = "answer";
/// The claim's random token: only its owner records the answer or releases it.
const CLAIM: &str = "claim";
/// When the claim was made, ms since the epoch.
const CLAIMED_AT: &str = "claimed_at";
/// When the key expires, s since the epoch: the table's TTL attribute.
const EXPIRES_AT: &str = "expires_at";

/// Why [`IdempotencyKeys::once`] did not answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<E> {
    /// The caller used this key within the window for another body.
    OtherBody,
    /// A request with this key is being produced now; retry shortly.
    InProgress,
    /// The keys' table did not answer: the key cannot be honoured, so nothing was produced.
    Unavailable(String),
    /// Producing failed (not remembered: the request may be retried).
    Failed(E),
}

/// Where a pipeline's keys are remembered.
pub enum IdempotencyKeys {
    /// In this process (tests, tools).
    Memory(MemoryKeys),
    /// In a DynamoDB table shared by every engine.
    Dynamo(DynamoKeys),
}

impl Default for IdempotencyKeys {
    fn default() -> Self {
        Self::Memory(MemoryKeys::default())
    }
}

impl IdempotencyKeys {
    /// Runs `produce` once per caller and key within the window; later calls of that caller
    /// with that key and the same `body` (its SHA-256) get its `Ok` answer (and `true`), and
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
        match self {
            Self::Memory(keys) => keys.once(caller, key, body, produce).await,
            Self::Dynamo(keys) => keys.once(caller, key, body, produce).await,
        }
    }
}

/// A remembered answer: the 202 body.
type Answer = Arc<OnceCell<String>>;

/// Whose key: (the caller, the key it sent).
type Owned = (String, String);

/// A remembered request: when first seen, the SHA-256 of its body, its answer once known.
type Entry = (Instant, [u8; 32], Answer);

/// Keys remembered in this process's memory: concurrent requests with one key share one
/// produce.
pub struct MemoryKeys {
    /// (caller, key) → (first seen, SHA-256 of the body, answer once known).
    entries: Mutex<HashMap<Owned, Entry>>,
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

impl MemoryKeys {
    /// Keys remembered, up to `capacity` of them, for `window`.
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

    async fn once<E, F, Fut>(
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

/// Keys remembered in a DynamoDB table, shared by every engine and surviving restarts.
pub struct DynamoKeys {
    client: Client,
    table: String,
    /// The pipeline, part of every key's id.
    pipeline: String,
    window: Duration,
}

/// A key's item as read.
struct Claimed {
    body: String,
    done: Option<String>,
    claim: String,
    claimed_at: u64,
}

/// What a claim found.
enum Claim {
    /// The key is this request's now.
    Ours,
    /// Another request holds it.
    Taken(Claimed),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

impl DynamoKeys {
    /// Keys of `pipeline` in `table`, remembered for `window`.
    pub fn new(client: Client, table: &str, pipeline: &str, window: Duration) -> Self {
        Self {
            client,
            table: table.to_string(),
            pipeline: pipeline.to_string(),
            window,
        }
    }

    /// Creates the table when missing (`create`; else only checks it exists), and turns on
    /// its TTL on `expires_at`.
    pub async fn prepare(&self, create: bool) -> Result<(), StoreError> {
        let table = DynamoStore::new(self.client.clone(), &self.table, ID);
        if create {
            table.ensure_table().await?;
        } else {
            table.require_table().await?;
        }
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.error("DescribeTimeToLive", &e))?;
        let on = described
            .time_to_live_description()
            .and_then(|d| d.attribute_name())
            == Some(EXPIRES_AT);
        if on || !create {
            if !on {
                warn!(table = %self.table, "The idempotency table has no TTL on `expires_at`: expired keys stay until removed (they no longer count either way).");
            }
            return Ok(());
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .map_err(|e| StoreError::Shape {
                table: self.table.clone(),
                reason: e.to_string(),
            })?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| self.error("UpdateTimeToLive", &e))?;
        Ok(())
    }

    fn error(&self, operation: &'static str, e: &dyn std::error::Error) -> StoreError {
        StoreError::Request {
            operation,
            table: self.table.clone(),
            reason: crate::error_chain(e),
        }
    }

    /// The item id of `caller`'s `key`.
    fn id(&self, caller: &str, key: &str) -> String {
        let mut hash = sha2::Sha256::new();
        for part in [self.pipeline.as_str(), caller, key] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        crate::hex(&hash.finalize())
    }

    async fn once<E, F, Fut>(
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
        let unavailable = |e: StoreError| Refused::Unavailable(e.to_string());
        let id = self.id(caller, key);
        let body = crate::hex(&body);
        let token = crate::random_id();
        let mut taken_over = false;
        loop {
            let found = match self.claim(&id, &body, &token, None).await {
                Ok(Claim::Ours) => break,
                Ok(Claim::Taken(found)) => found,
                Err(e) => return Err(unavailable(e)),
            };
            if found.body != body {
                return Err(Refused::OtherBody);
            }
            if let Some(answer) = found.done {
                return Ok((answer, true));
            }
            let stale = now_ms().saturating_sub(found.claimed_at) > CLAIM_LEASE.as_millis() as u64;
            if !stale || taken_over {
                return Err(Refused::InProgress);
            }
            // Its engine died before recording an answer: take it over, unless another
            // request just did.
            taken_over = true;
            match self.claim(&id, &body, &token, Some(&found.claim)).await {
                Ok(Claim::Ours) => break,
                Ok(Claim::Taken(_)) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        match produce().await {
            Ok(answer) => {
                if let Err(e) = self.record(&id, &token, &answer).await {
                    // Produced, but a retry will not find the answer: after the lease it
                    // produces again (the replica stays right: writes are conditional).
                    warn!(table = %self.table, error = %e, "Idempotency answer not recorded; a retry after the claim lease would produce the event again.");
                }
                Ok((answer, false))
            }
            Err(e) => {
                if let Err(released) = self.release(&id, &token).await {
                    warn!(table = %self.table, error = %released, "Idempotency claim not released; a retry is refused until the claim lease ends.");
                }
                Err(Refused::Failed(e))
            }
        }
    }

    /// Claims `id` for `body` with `token`: when absent or expired, or (`over`) when its
    /// claim is still that token. Otherwise reads what holds it.
    async fn claim(
        &self,
        id: &str,
        body: &str,
        token: &str,
        over: Option<&str>,
    ) -> Result<Claim, StoreError> {
        let now = now_ms();
        let expires = now / 1000 + self.window.as_secs();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(ID, s(id))
            .item(BODY, s(body))
            .item(STATE, s("pending"))
            .item(CLAIM, s(token))
            .item(CLAIMED_AT, n(now))
            .item(EXPIRES_AT, n(expires))
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":now", n(now / 1000));
        let request = match over {
            None => request
                .condition_expression("attribute_not_exists(#i) OR #e <= :now")
                .expression_attribute_names("#i", ID),
            Some(old) => request
                .condition_expression("#c = :old AND #s = :pending AND #e > :now")
                .expression_attribute_names("#c", CLAIM)
                .expression_attribute_names("#s", STATE)
                .expression_attribute_values(":old", s(old))
                .expression_attribute_values(":pending", s("pending")),
        };
        match request.send().await {
            Ok(_) => Ok(Claim::Ours),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                match self.read(id).await? {
                    Some(found) => Ok(Claim::Taken(found)),
                    // Gone meanwhile (expired and removed): claim again.
                    None => Box::pin(self.claim(id, body, token, None)).await,
                }
            }
            Err(e) => Err(self.error("PutItem", &e)),
        }
    }

    /// The live item of `id`, read consistently.
    async fn read(&self, id: &str) -> Result<Option<Claimed>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => String::new(),
        };
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
            _ => 0,
        };
        if number(EXPIRES_AT) <= now_ms() / 1000 {
            return Ok(None);
        }
        Ok(Some(Claimed {
            body: text(BODY),
            done: (text(STATE) == "done").then(|| text(ANSWER)),
            claim: text(CLAIM),
            claimed_at: number(CLAIMED_AT),
        }))
    }

    /// Records `answer` on `id`, if the claim is still `token`'s.
    async fn record(&self, id: &str, token: &str, answer: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .update_expression("SET #s = :done, #a = :answer")
            .condition_expression("#c = :token")
            .expression_attribute_names("#s", STATE)
            .expression_attribute_names("#a", ANSWER)
            .expression_attribute_names("#c", CLAIM)
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":answer", s(answer))
            .expression_attribute_values(":token", s(token))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateItem", &e))
    }

    /// Deletes the claim on `id` if it is still `token`'s, so the request may be retried.
    async fn release(&self, id: &str, token: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(ID, s(id))
            .condition_expression("#c = :token")
            .expression_attribute_names("#c", CLAIM)
            .expression_attribute_values(":token", s(token))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("DeleteItem", &e))
    }
}

#[cfg(test)]
mod tests {
    //! The in-memory window; the DynamoDB table is tested against the real API in
    //! `tests/idempotency.rs`.
    use super::*;

    const BODY: [u8; 32] = [1; 32];

    fn keys() -> IdempotencyKeys {
        IdempotencyKeys::default()
    }

    #[tokio::test]
    async fn a_key_produces_once_and_failures_are_not_remembered() {
        let cache = keys();
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
        let cache = keys();
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
        let cache = MemoryKeys::new(Duration::ZERO, 2);
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
        let cache = MemoryKeys::new(DEFAULT_WINDOW, 2);
        for key in ["1", "2", "3"] {
            cache
                .once("me", key, BODY, || async { Ok::<_, ()>(key.to_string()) })
                .await
                .expect("ok");
        }
        assert!(cache.entries.lock().expect("lock").len() <= 2);
    }

    #[test]
    fn an_id_separates_its_parts() {
        let keys = DynamoKeys {
            client: Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .build(),
            ),
            table: "t".into(),
            pipeline: "p".into(),
            window: DEFAULT_WINDOW,
        };
        assert_ne!(keys.id("ab", "c"), keys.id("a", "bc"));
        assert_eq!(keys.id("a", "b").len(), 64);
        assert!(!keys.id("alice", "order-1").contains("alice"));
    }
}
