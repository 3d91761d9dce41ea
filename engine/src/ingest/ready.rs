//! `/readyz`: ready when the broker and every pipeline's table answer; names the plugin in
//! force for each pipeline.

use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::Response;
use serde_json::{json, Map, Value};

use crate::bus::producer::KafkaPublisher;
use crate::plugin::PolicyHandle;
use crate::store::dynamo::DynamoStore;

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks. Plugins are loaded before the server starts (and a swap only ever
/// replaces a plugin by one that passed its checks), so a serving engine has them all; the
/// answer says which one is in force.
pub struct Readiness {
    /// The producer, whose client asks the broker for metadata.
    pub publisher: Arc<KafkaPublisher>,
    /// Each pipeline's name and table.
    pub tables: Vec<(String, DynamoStore)>,
    /// Each pipeline's name and plugin.
    pub plugins: Vec<(String, PolicyHandle)>,
}

impl Readiness {
    /// 200 when every check passes, else 503; the body lists each check's result and each
    /// pipeline's plugin (`sha256:` of its file).
    pub async fn handle(&self) -> Response {
        let mut checks = Map::new();
        let mut ready = true;
        let mut record = |name: String, result: Result<(), String>| {
            ready &= result.is_ok();
            checks.insert(
                name,
                result.map_or_else(Value::String, |()| Value::String("ok".into())),
            );
        };
        record(
            "kafka".into(),
            self.publisher
                .check(CHECK_TIMEOUT)
                .await
                .map_err(|e| e.to_string()),
        );
        for (pipeline, store) in &self.tables {
            let result = match tokio::time::timeout(CHECK_TIMEOUT, store.check()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            record(format!("dynamodb:{pipeline}"), result);
        }
        let plugins: Map<String, Value> = self
            .plugins
            .iter()
            .map(|(name, handle)| (name.clone(), Value::String(handle.current().id().into())))
            .collect();
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Response::builder()
            .status(status)
            .content_type("application/json")
            .body(json!({"ready": ready, "checks": checks, "plugins": plugins}).to_string())
    }
}
