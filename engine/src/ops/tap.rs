//! `ordo tap`: shows a pipeline's events as they arrive and what its plugin decides for each,
//! against the stored record, without writing anything or joining the engine's group.

use serde_json::Value;

use crate::bus::kafka::KafkaConfig;
use crate::bus::BusError;
use crate::config::Pipeline;
use crate::plugin::{Decision, Policy};
use crate::store::dynamo::DynamoStore;
use crate::store::{split_meta, Store};

/// Why a tap stopped.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The pipeline's plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] super::PluginLoadError),
    /// The topic could not be read.
    #[error(transparent)]
    Bus(#[from] BusError),
}

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

/// Taps `pipeline`: from the topic's start when `from_beginning`, else from now; calls
/// `show` for each event; stops after `limit` events when given. It joins no consumer group
/// and commits nothing, so it takes nothing from the engine.
pub async fn tap(
    pipeline: &Pipeline,
    kafka: &KafkaConfig,
    from_beginning: bool,
    limit: Option<u64>,
    mut show: impl FnMut(&Tapped),
) -> Result<u64, TapError> {
    let (policy, store) = super::plugin_and_table(pipeline).await?;
    let reader = kafka.reader(&format!("ordo.tap.{}", pipeline.name))?;
    reader.follow(&pipeline.topic, from_beginning)?;
    let mut seen = 0;
    while limit.is_none_or(|l| seen < l) {
        let message = reader.next().await?;
        let key = String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned();
        let payload =
            String::from_utf8_lossy(message.payload.as_deref().unwrap_or_default()).into_owned();
        let (decision, detail) = decide(&policy, &store, &key, &payload).await;
        show(&Tapped {
            partition: message.partition,
            offset: message.offset,
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
