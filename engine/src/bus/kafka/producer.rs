//! The idempotent, keyed Kafka producer.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use super::context::OrdoContext;
use crate::bus::{BusError, Delivery, Publisher};

/// How long the producer keeps retrying one message before it reports failure: librdkafka's
/// own default. Ingest answers 503 much sooner (its produce timeout) and lets the producer go
/// on trying, so a broker outage shorter than this loses nothing that was queued. A batch
/// that expires makes librdkafka bump the idempotent producer's epoch, which some
/// Kafka-protocol brokers (tansu 0.6) do not survive; not expiring during short outages also
/// avoids that.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the producer waits to fill a batch. Ingest answers only after the ack, so a wait
/// is latency; under load, messages batch anyway while earlier requests are in flight.
/// Measured here against tansu (`ingest_bench`): 64 senders each waiting for their ack got
/// the same rate at 0, 2 and 5 ms, and one message's ack took 0.5 ms at 0 against 3 ms at 2.
pub const LINGER_MS: &str = "0";
/// How long ingest waits for the broker's ack before answering 503, by default.
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `error` says the message itself can never be written (size, validity), rather than
/// that the broker cannot take it now.
fn refused(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | MessageBatchTooLarge
                | InvalidRecord
                | InvalidTimestamp
                | InvalidTopic
                | BadMessage
                | InvalidArgument
        )
    )
}

/// An idempotent producer with `acks=all`: each message is written once, in order per key.
#[derive(Clone)]
pub struct KafkaPublisher {
    /// rdkafka's producer; cloning shares one librdkafka client.
    producer: FutureProducer<OrdoContext>,
}

impl KafkaPublisher {
    /// Asks the broker for `topic`'s metadata, so that the first message does not wait half a
    /// second for the producer's id. librdkafka asks for the idempotent producer's id when a
    /// metadata answer arrives, or on a 500 ms timer when its first try (at creation, before
    /// any broker is up) found none; an answer once the client has connected makes it ask at
    /// once. Measured on tansu with librdkafka 2.16 (python's confluent-kafka, one message):
    /// first ack 0.51 s after creation without this, 0.11 s with it called 0.1 s after
    /// creation; called in the first few milliseconds it is too early and changes nothing.
    pub async fn ready(&self, topic: &str, timeout: Duration) -> Result<(), BusError> {
        let (producer, topic) = (self.producer.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
                .map(|_| ())
                .map_err(|e| BusError::Unreachable(e.to_string()))
        })
        .await
        .map_err(|e| BusError::Client(format!("metadata task: {e}")))?
    }

    /// How many brokers the cluster has, as its metadata says.
    pub async fn broker_count(&self, timeout: Duration) -> Result<usize, BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|m| m.brokers().len())
                .map_err(|e| BusError::Unreachable(e.to_string()))
        })
        .await
        .map_err(|e| BusError::Client(format!("metadata task: {e}")))?
    }

    /// A producer from `config` (see [`super::KafkaConfig::producer`]); messages not
    /// acknowledged within `delivery_timeout` fail.
    pub(super) fn new(
        mut config: ClientConfig,
        context: OrdoContext,
        delivery_timeout: Duration,
    ) -> Result<Self, BusError> {
        let producer = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The Java client's partitioner, so Ordo and JVM producers agree on a key's partition.
            .set("partitioner", "murmur2_random")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .set("linger.ms", LINGER_MS)
            .create_with_context(context)
            .map_err(|e| BusError::Client(e.to_string()))?;
        Ok(Self { producer })
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Delivery, BusError> {
        let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(*v),
            })
        });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        match self.producer.send(record, Timeout::Never).await {
            Ok(d) => Ok(Delivery {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) if refused(&e) => Err(BusError::Refused {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
            Err((e, _)) => Err(BusError::NotAcknowledged {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.producer
            .flush(Timeout::After(timeout))
            .map_err(|e| BusError::Client(format!("flush: {e}")))
    }

    /// Asks the broker for cluster metadata: proof that it answers.
    async fn check(&self, timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|_| ())
                .map_err(|e| BusError::Unreachable(e.to_string()))
        })
        .await
        .map_err(|e| BusError::Client(format!("metadata task: {e}")))?
    }
}
