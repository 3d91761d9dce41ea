//! `GET {route}/{id}`: the stored record of one key, read back from the pipeline's table.

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::Value;
use tracing::warn;

use super::problem::Problem;
use super::PipelineApi;
use crate::audit::{Action, Record};
use crate::bus::Publisher;
use crate::store::Store;

impl<P: Publisher, S: Store> PipelineApi<P, S> {
    /// Handles one `GET {route}/{id}`; the key is the `id` path parameter.
    pub async fn read_back(&self, request: Request) -> Response {
        let id = super::handler::request_id(&request);
        let mut response = self.read(&request, &id).await;
        if let Ok(value) = id.parse() {
            response
                .headers_mut()
                .insert(crate::audit::REQUEST_ID_HEADER, value);
        }
        response
    }

    async fn read(&self, request: &Request, request_id: &str) -> Response {
        let scope = crate::auth::read_scope(&self.pipeline.name);
        let principal = match self.authorized(request, &scope, request_id).await {
            Ok(principal) => principal,
            Err(problem) => return problem.into_response(),
        };
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
        let found = self.store.get(&key).await;
        if let Ok(stored) = &found {
            let revision = stored
                .as_ref()
                .and_then(|r| r.get(crate::store::META_ATTRIBUTE))
                .and_then(|m| m.get("revision"))
                .and_then(Value::as_u64);
            let outcome = if stored.is_some() {
                "found"
            } else {
                "not-found"
            };
            let mut record = Record::new(Action::Read, &self.pipeline.name, outcome);
            record.principal = principal.as_ref().map(|p| p.name.as_str());
            record.key = Some(&key);
            record.revision = revision;
            record.request_id = Some(request_id);
            if let Err(problem) = self.audited(&record).await {
                return problem.into_response();
            }
        }
        match found {
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
