//! The bus on Kafka, with rdkafka: [`KafkaConfig`] builds every client (producer, group
//! member, reader, admin) from one set of settings.

mod admin;
mod client;
mod context;
mod group;
mod producer;
mod reader;
mod watchdog;

pub use admin::{ensure_topic_with, ensure_topics, partition_count, topic_config_differences};
pub use client::{KafkaConfig, DEBUG_ENV, RECONNECT_BACKOFF_MAX_MS};
pub use context::{MskIam, OrdoContext};
pub use group::{GroupSettings, KafkaGroup, DEFAULT_FETCH_WAIT, REVOKE_WAIT};
pub use producer::{KafkaPublisher, DEFAULT_DELIVERY_TIMEOUT, DEFAULT_PRODUCE_TIMEOUT, LINGER_MS};
pub use reader::{From, KafkaReader, ToEnd};

/// A message as the bus seam carries it.
fn message_of(m: &rdkafka::message::BorrowedMessage<'_>) -> crate::bus::Message {
    use rdkafka::message::{Headers as _, Message as _};
    crate::bus::Message {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        timestamp: m.timestamp().to_millis(),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .filter_map(|x| {
                        let value = std::str::from_utf8(x.value?).ok()?;
                        Some((x.key.to_string(), value.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl KafkaConfig {
    /// Joins a pipeline's consumer group (see [`KafkaGroup`]); lag goes to `lag`.
    pub fn group(
        &self,
        settings: &GroupSettings,
        lag: crate::metrics::Lag,
    ) -> Result<(KafkaGroup, crate::bus::Revocations), crate::bus::BusError> {
        KafkaGroup::subscribe(self.client("ordo"), self.context(), settings, lag)
    }
}
