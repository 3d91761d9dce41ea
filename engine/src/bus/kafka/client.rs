//! The one place Kafka clients are configured: every producer, consumer and admin client the
//! engine and its commands build starts from [`KafkaConfig::client`], so a setting (brokers,
//! reconnect backoff, librdkafka debug contexts, and later TLS or SASL) applies to all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::consumer::StreamConsumer;
use rdkafka::ClientConfig;

use super::context::{MskIam, OrdoContext};
use super::producer::KafkaPublisher;
use super::reader::KafkaReader;
use crate::bus::BusError;

/// Longest pause between reconnection attempts to a broker that went away (librdkafka's
/// default is 10 s): a restarted broker is back in use within about a second.
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";
/// Environment variable naming librdkafka debug contexts (e.g. `cgrp,topic`) for every client.
pub const DEBUG_ENV: &str = "ORDO_KAFKA_DEBUG";

/// Where the brokers are and what every client is configured with.
#[derive(Debug, Clone, Default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated.
    brokers: String,
    /// librdkafka properties every client gets on top of Ordo's own.
    properties: BTreeMap<String, String>,
    /// What every client runs with (the MSK IAM signer, when set).
    context: OrdoContext,
}

impl KafkaConfig {
    /// Clients of the brokers at `brokers` (comma-separated `host:port`).
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            properties: BTreeMap::new(),
            context: OrdoContext::default(),
        }
    }

    /// Adds the properties of a pipelines file's `[kafka]` table.
    pub fn with_properties(mut self, properties: &crate::config::kafka::KafkaProperties) -> Self {
        for (name, value) in properties.iter() {
            self.properties.insert(name.to_string(), value.to_string());
        }
        if let Some(region) = properties.msk_iam_region() {
            self.context.iam = Some(Arc::new(MskIam::new(region)));
        }
        self
    }

    /// The context every client is created with.
    pub fn context(&self) -> OrdoContext {
        self.context.clone()
    }

    /// Adds a librdkafka property every client gets.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.properties.insert(name.to_string(), value.to_string());
        self
    }

    /// The bootstrap brokers, for messages.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The settings every client starts from, named `client_id` in the brokers' logs.
    pub fn client(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
        if let Ok(contexts) = std::env::var(DEBUG_ENV) {
            config.set("debug", contexts);
        }
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// The idempotent, keyed producer; messages not acknowledged within `delivery_timeout`
    /// fail.
    pub fn producer(&self, delivery_timeout: Duration) -> Result<KafkaPublisher, BusError> {
        KafkaPublisher::new(self.client("ordo"), self.context(), delivery_timeout)
    }

    /// An admin client, for topic creation.
    pub fn admin(&self) -> Result<AdminClient<OrdoContext>, BusError> {
        self.client("ordo-admin")
            .create_with_context(self.context())
            .map_err(|e| BusError::Client(e.to_string()))
    }

    /// A consumer that reads partitions it assigns itself, outside any group's assignment;
    /// it commits only when asked, to `group`.
    pub fn reader(&self, group: &str) -> Result<KafkaReader, BusError> {
        let consumer: StreamConsumer<OrdoContext> = self
            .client("ordo-reader")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(self.context())
            .map_err(|e| BusError::Client(e.to_string()))?;
        Ok(KafkaReader::new(consumer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_the_brokers_and_the_extra_properties() {
        let config = KafkaConfig::new("b1:9092,b2:9092").with("socket.keepalive.enable", "true");
        let client = config.client("x");
        assert_eq!(client.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(client.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(client.get("client.id"), Some("x"));
    }
}
