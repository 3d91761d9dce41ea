//! `ordo tap`: shows a pipeline's events as they arrive and what its plugin decides for each,
//! against the stored record, without writing anything or joining the engine's group.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::config::Pipeline;
use crate::plugin::reload::load_checked;
use crate::plugin::{Decision, Policy};
use crate::store::dynamo::DynamoStore;
use crate::store::{split_meta, Store};

/// One event as tapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tapped {
    /// Partition and offset.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The message key.
    pub key: String,
    /// `write`, `skip`, `reject`, `invalid` or `error`.
    pub decision: &'static str,
    /// The written record, or the reason.
    pub detail: String,
}

impl std::fmt::Display for Tapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{:<8} key {:<16} {:<7} {}",
            self.partition, self.offset, self.key, self.decision, self.detail
        )
    }
}

/// Taps `pipeline` on `brokers`: from the topic's start when `from_beginning`, else from now;
/// calls `show` for each event; stops after `limit` events when given.
pub async fn tap(
    pipeline: &Pipeline,
    brokers: &str,
    from_beginning: bool,
    limit: Option<u64>,
    mut show: impl FnMut(&Tapped),
) -> anyhow::Result<u64> {
    let policy: Arc<dyn Policy> = Arc::new(
        load_checked(&pipeline.plugin_spec())
            .with_context(|| format!("pipeline `{}`", pipeline.name))?,
    );
    let store = DynamoStore::new(
        crate::store::dynamo::client().await,
        &pipeline.table,
        &pipeline.key_field,
    );
    // A group of its own, never committed: the tap takes nothing from the engine.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("ordo.tap.{}.{}", pipeline.name, std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if from_beginning { "earliest" } else { "latest" },
        )
        .create()
        .context("Kafka consumer")?;
    consumer
        .subscribe(&[&pipeline.topic])
        .with_context(|| format!("subscribe to `{}`", pipeline.topic))?;
    let mut seen = 0;
    while limit.is_none_or(|l| seen < l) {
        let message = match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(m) => m.context("reading the topic")?,
            Err(_) => continue,
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let (decision, detail) = decide(policy.as_ref(), &store, &key, &payload).await;
        show(&Tapped {
            partition: message.partition(),
            offset: message.offset(),
            key,
            decision,
            detail,
        });
        seen += 1;
    }
    Ok(seen)
}

/// What the plugin would decide for `payload` against the record stored under `key`.
async fn decide(
    policy: &dyn Policy,
    store: &DynamoStore,
    key: &str,
    payload: &str,
) -> (&'static str, String) {
    match policy.validate(payload) {
        Err(e) => return ("error", e.to_string()),
        Ok(Err(e)) => return ("invalid", format!("`{}` {}", e.field, e.message)),
        Ok(Ok(())) => {}
    }
    let stored = match store.get(key).await {
        Ok(record) => record.map(|r| Value::Object(split_meta(r).0).to_string()),
        Err(e) => return ("error", e.to_string()),
    };
    match policy.merge(payload, stored.as_deref()) {
        Ok(Decision::Write(record)) => ("write", record),
        Ok(Decision::Skip(why)) => ("skip", why),
        Ok(Decision::Reject(why)) => ("reject", why),
        Err(e) => ("error", e.to_string()),
    }
}
