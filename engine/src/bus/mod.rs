//! The bus seam: what the engine needs from an event log, and its Kafka implementation.
//!
//! [`Publisher`] produces keyed messages and waits for the broker's acknowledgement (ingest,
//! dead letters); [`Consumer`] is one member of a consumer group (the pipeline's apply loop).
//! [`kafka`] implements both with rdkafka, and builds every Kafka client the engine and its
//! commands use from one [`kafka::KafkaConfig`]. The `testing` module has an in-memory bus.

use std::future::Future;
use std::time::Duration;

pub mod fence;
pub mod kafka;

pub use fence::{revocations, Fence, Lease, Revocations, Revoker};

/// Where the broker stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition the key hashed to.
    pub partition: i32,
    /// The message's offset in that partition.
    pub offset: i64,
}

/// One message read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The message key, when it has one.
    pub key: Option<Vec<u8>>,
    /// The body, when it has one.
    pub payload: Option<Vec<u8>>,
    /// Its timestamp (milliseconds since the Unix epoch), when it has one.
    pub timestamp: Option<i64>,
    /// Its headers whose values are text, in order.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Errors talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The client could not be created from its settings.
    #[error("Kafka client setup failed: {0}")]
    Client(String),
    /// The broker did not answer a metadata request.
    #[error("broker did not answer: {0}")]
    Unreachable(String),
    /// The broker (or the client before it) will never take this message as it is: too
    /// large, or invalid. Retrying the same message cannot help.
    #[error("topic `{topic}`: message refused: {reason}")]
    Refused {
        /// The topic written to.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The broker did not acknowledge a message.
    #[error("topic `{topic}`: message not acknowledged: {reason}")]
    NotAcknowledged {
        /// The topic written to.
        topic: String,
        /// librdkafka's explanation.
        reason: String,
    },
    /// An admin request failed.
    #[error("topic `{topic}`: {reason}")]
    Admin {
        /// The topic concerned.
        topic: String,
        /// The broker's explanation.
        reason: String,
    },
    /// Reading a topic failed.
    #[error("reading `{topic}`: {reason}")]
    Read {
        /// The topic read.
        topic: String,
        /// What failed.
        reason: String,
    },
}

/// Publishes keyed messages and resolves once the broker acknowledged them.
pub trait Publisher: Send + Sync + 'static {
    /// Produces `payload` to `topic` under `key`, with `headers`, and waits for the ack.
    fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<Delivery, BusError>> + Send;

    /// Waits up to `timeout` for queued messages to be acknowledged (blocking); a producer
    /// dropped with messages queued would lose them.
    fn flush(&self, timeout: Duration) -> Result<(), BusError>;

    /// Proof that the broker answers, within `timeout`.
    fn check(&self, timeout: Duration) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// One member of a consumer group: the messages of the partitions it owns, in offset order
/// per partition, and the offsets it stores for commit.
pub trait Consumer: Send + Sync + 'static {
    /// The next message of an owned partition.
    fn recv(&self) -> impl Future<Output = Result<Message, BusError>> + Send;

    /// Records that every message of `partition` before `offset` is done; the group commits
    /// it in the background.
    fn store_offset(&self, partition: i32, offset: i64) -> Result<(), BusError>;

    /// Commits what was stored, now (at shutdown).
    fn commit(&self) -> Result<(), BusError>;
}
