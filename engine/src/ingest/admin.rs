//! Admin endpoints: which plugin each pipeline runs, and reloading it on demand.
//!
//! `GET /admin/pipelines` and `POST /admin/pipelines/{name}/reload`. When `ORDO_ADMIN_TOKEN`
//! is set, both require `Authorization: Bearer <token>`; the token is never logged.

use std::sync::Arc;

use poem::http::{header, StatusCode};
use poem::{get, post, Request, Response, Route};
use serde_json::json;

use super::problem::Problem;
use crate::plugin::reload::{ReloadError, Reloaded, Reloader};

/// Path of the plugin list.
pub const PIPELINES_PATH: &str = "/admin/pipelines";

/// The admin side of the HTTP application.
#[derive(Clone)]
pub struct Admin {
    /// The pipelines' plugins.
    pub reloader: Arc<Reloader>,
    /// The bearer token requests must carry, when one is configured.
    pub token: Option<String>,
}

impl Admin {
    /// Adds the admin endpoints to `route`.
    pub fn routes(self, route: Route) -> Route {
        let list = self.clone();
        let reload = self;
        route
            .at(
                PIPELINES_PATH,
                get(poem::endpoint::make(move |request| {
                    let admin = list.clone();
                    async move { admin.list(request) }
                })),
            )
            .at(
                format!("{PIPELINES_PATH}/:name/reload"),
                post(poem::endpoint::make(move |request| {
                    let admin = reload.clone();
                    async move { admin.reload(request).await }
                })),
            )
    }

    /// A 401 answer, unless the request carries the configured token.
    fn denied(&self, request: &Request) -> Option<Response> {
        let token = self.token.as_ref()?;
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return None;
        }
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "admin endpoints need `Authorization: Bearer <ORDO_ADMIN_TOKEN>`",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Some(response)
    }

    fn list(&self, request: Request) -> Response {
        if let Some(denied) = self.denied(&request) {
            return denied;
        }
        let files = self.reloader.files();
        let body: Vec<_> = self
            .reloader
            .status()
            .into_iter()
            .map(|(pipeline, plugin)| {
                let file = files
                    .iter()
                    .find(|(p, _)| *p == pipeline)
                    .map(|(_, f)| f.display().to_string());
                json!({"pipeline": pipeline, "plugin": plugin, "file": file})
            })
            .collect();
        json_response(json!(body))
    }

    async fn reload(&self, request: Request) -> Response {
        if let Some(denied) = self.denied(&request) {
            return denied;
        }
        let name = request.path_params::<String>().unwrap_or_default();
        match self.reloader.reload(&name).await {
            Ok(Reloaded::Swapped { from, to }) => json_response(
                json!({"pipeline": name, "plugin": to, "previous": from, "changed": true}),
            ),
            Ok(Reloaded::Unchanged { id }) => json_response(
                json!({"pipeline": name, "plugin": id, "previous": id, "changed": false}),
            ),
            Err(e @ ReloadError::UnknownPipeline(_)) => {
                Problem::new(StatusCode::NOT_FOUND, "No such pipeline", e.to_string())
                    .into_response()
            }
            Err(e @ ReloadError::Refused { .. }) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Plugin refused",
                e.to_string(),
            )
            .into_response(),
        }
    }
}

fn json_response(body: serde_json::Value) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
