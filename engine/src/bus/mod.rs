//! The bus seam: Kafka topics, the keyed producer and the consumer loop.
//!
//! [`Publisher`] is what ingest and the dead-letter path need from a bus; [`producer`]
//! implements it with an idempotent rdkafka producer. [`admin`] creates topics and [`consumer`]
//! runs a pipeline's consumer group.

use std::future::Future;

pub mod admin;
pub mod consumer;
pub mod producer;

/// Where the broker stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition the key hashed to.
    pub partition: i32,
    /// The message's offset in that partition.
    pub offset: i64,
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
}
