//! `Idempotency-Key`: a retried request with the same key, within a window, gets the first
//! request's 202 answer instead of producing a second event.
//!
//! A key is bound to its pipeline, its caller and the SHA-256 of the body: one caller's key
//! never returns another caller's answer, and the same key with another body is refused, not
//! replayed. Only 202 answers are remembered; a request that failed may be retried for real.
//!
//! The engine keeps keys in a DynamoDB table ([`dynamo::DynamoKeys`]), so a retry is recognised after a
//! restart and by every engine behind a load balancer. A request *claims* its key with a
//! conditional put (`pending`), produces, then records the answer (`done`); a retry finds the
//! answer, a request arriving while the first is in flight is told to retry (409), and a claim
//! older than [`CLAIM_LEASE`] (its engine died before the answer was recorded) may be taken
//! over. The table's TTL attribute (`expires_at`) removes keys after the window; an expired
//! key not yet removed counts as absent. The table holds a hash of (pipeline, caller, key),
//! a hash of the body and the 202 answer (which names the record's key, as the replica
//! does): never the Idempotency-Key, the caller or the body. [`memory::MemoryKeys`] keeps the window in
//! this process's memory, for tests and tools.

//!
//! [`Keys`] is the seam: claim a key, record its answer, or release it. [`IdempotencyKeys::once`]
//! runs a request's produce between the two, the same way over either table.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::warn;

use super::StoreError;

pub mod dynamo;
pub mod memory;

pub use dynamo::DynamoKeys;
pub use memory::MemoryKeys;

/// How long a key is remembered by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The table keys live in by default.
pub const DEFAULT_TABLE: &str = "ordo-idempotency";
/// How long a claim blocks others before it may be taken over: longer than any produce may
/// take (its timeout is seconds), short enough that a retry after a crash is not refused
/// for long.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

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

/// A claim held by one request: only its holder records the answer or releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The key's id in its table.
    pub id: String,
    /// The claim's random token.
    pub token: String,
}

/// What claiming a key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's now: produce, then record the answer or release it.
    Ours(Ticket),
    /// The key was used with this body and answered: the answer.
    Answered(String),
    /// The key was used with another body.
    OtherBody,
    /// Another request holds the key and has not answered yet.
    InProgress,
}

/// Where a pipeline's Idempotency-Keys are remembered, within a window.
pub trait Keys: Send + Sync {
    /// Claims `caller`'s `key` for the body whose SHA-256 is `body`.
    fn claim<'a>(
        &'a self,
        caller: &'a str,
        key: &'a str,
        body: [u8; 32],
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Records `answer` on the key `ticket` holds.
    fn record<'a>(
        &'a self,
        ticket: &'a Ticket,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives up the key `ticket` holds, so the request may be retried.
    fn release<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A pipeline's keys, in whichever table holds them.
#[derive(Clone)]
pub struct IdempotencyKeys(Arc<dyn Keys>);

impl Default for IdempotencyKeys {
    /// Keys in this process's memory (tests, tools).
    fn default() -> Self {
        Self::new(MemoryKeys::default())
    }
}

impl IdempotencyKeys {
    /// The keys `table` keeps.
    pub fn new(table: impl Keys + 'static) -> Self {
        Self(Arc::new(table))
    }

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
        let ticket = match self.0.claim(caller, key, body).await {
            Ok(Claim::Ours(ticket)) => ticket,
            Ok(Claim::Answered(answer)) => return Ok((answer, true)),
            Ok(Claim::OtherBody) => return Err(Refused::OtherBody),
            Ok(Claim::InProgress) => return Err(Refused::InProgress),
            Err(e) => return Err(Refused::Unavailable(e.to_string())),
        };
        match produce().await {
            Ok(answer) => {
                if let Err(e) = self.0.record(&ticket, &answer).await {
                    // Produced, but a retry will not find the answer: after the lease it
                    // produces again (the replica stays right: writes are conditional).
                    warn!(error = %e, "Idempotency answer not recorded; a retry after the claim lease would produce the event again.");
                }
                Ok((answer, false))
            }
            Err(e) => {
                if let Err(released) = self.0.release(&ticket).await {
                    warn!(error = %released, "Idempotency claim not released; a retry is refused until the claim lease ends.");
                }
                Err(Refused::Failed(e))
            }
        }
    }
}
