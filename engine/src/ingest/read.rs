//! `GET {route}/{id}`: the stored record of one key, read back from the pipeline's table.

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::Value;
use tracing::warn;

use super::problem::Problem;
use super::PipelineApi;
use crate::store::Store;

impl<P, S: Store> PipelineApi<P, S> {
    /// Handles one `GET {route}/{id}`; the key is the `id` path parameter.
    pub async fn read_back(&self, request: Request) -> Response {
        let scope = crate::auth::read_scope(&self.pipeline.name);
        if let Err(problem) = super::guard::authorize(self.auth.as_deref(), &request, &scope) {
            return problem.into_response();
        }
        let key = match request.path_params::<String>() {
            Ok(key) if !key.is_empty() => key,
            _ => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Missing key",
                    "the path must end with a key",
                )
                .into_response()
            }
        };
        match self.store.get(&key).await {
            Ok(Some(record)) => Response::builder()
                .content_type("application/json")
                .body(Value::Object(record).to_string()),
            Ok(None) => Problem::new(
                StatusCode::NOT_FOUND,
                "No record",
                format!("no record has the key {key:?}"),
            )
            .into_response(),
            Err(e) => {
                warn!(pipeline = %self.pipeline.name, key = %crate::redact::key(&key), error = %e, "Read-back failed.");
                // The store's error text stays in the log: it names tables and endpoints.
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Store unavailable",
                    "the table did not answer; nothing was read, retry later",
                )
                .retry_after(1)
                .into_response()
            }
        }
    }
}
