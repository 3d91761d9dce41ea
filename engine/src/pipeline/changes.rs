//! The change feed: a changed record's new state as published to the pipeline's
//! `changes_topic`, keyed by entity id, by the apply loop ([`super::worker`]) and by
//! `ordo replay`. Each caller retries as its own failures call for.

use serde_json::Value;

use super::applier::Change;
use crate::audit::REQUEST_ID_KAFKA_HEADER;
use crate::bus::{BusError, Publisher};

/// The header holding the record's revision: a consumer keeps the highest seen per key and
/// drops a change whose revision is not higher (a repeat).
pub const REVISION_HEADER: &str = "ordo-revision";
/// The header naming the plugin (`sha256:` of its file) that wrote the record.
pub const PLUGIN_HEADER: &str = "ordo-plugin";
/// The header naming the pipeline.
pub const PIPELINE_HEADER: &str = "ordo-pipeline";

/// Publishes `change` of `pipeline` to `topic` once, with its revision, plugin, pipeline and
/// `request_ids` (one `ordo-request-id` header each: the events folded into the write).
pub async fn publish<P: Publisher + ?Sized>(
    publisher: &P,
    topic: &str,
    pipeline: &str,
    change: &Change,
    request_ids: &[&str],
) -> Result<(), BusError> {
    let payload = Value::Object(change.record.clone()).to_string();
    let revision = change.revision.to_string();
    let mut headers = vec![
        (REVISION_HEADER, revision.as_str()),
        (PLUGIN_HEADER, change.plugin.as_str()),
        (PIPELINE_HEADER, pipeline),
    ];
    headers.extend(request_ids.iter().map(|id| (REQUEST_ID_KAFKA_HEADER, *id)));
    publisher
        .publish(topic, &change.key, payload.as_bytes(), &headers)
        .await
        .map(|_| ())
}
