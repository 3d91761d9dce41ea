//! The HTTP side: one `POST {route}` per pipeline, health, and the OpenAPI document.
//!
//! Fixed endpoints are a poem-openapi [`OpenApi`] impl; pipeline routes come from
//! `pipelines.toml` at start-up, so their operations are added to the generated document
//! (with each plugin's body schema) before Swagger UI renders it at `/docs`.

use std::sync::Arc;

use poem::endpoint::make_sync;
use poem::web::Html;
use poem::{get, post, EndpointExt, Route};
use poem_openapi::payload::PlainText;
use poem_openapi::{OpenApi, OpenApiService};

pub mod docs;
pub mod handler;
pub mod idempotency;
pub mod problem;
pub mod read;
pub mod ready;

use crate::bus::Publisher;
use crate::store::Store;
pub use docs::PipelineDoc;
pub use handler::{Ingest, DEFAULT_BODY_LIMIT, DEFAULT_MAX_IN_FLIGHT};
pub use read::ReadBack;

/// One pipeline's HTTP side.
pub struct PipelineRoutes<P, S> {
    /// `POST {route}`.
    pub ingest: Arc<Ingest<P>>,
    /// `GET {route}/{id}`.
    pub read_back: Arc<ReadBack<S>>,
    /// Its part of the OpenAPI document.
    pub doc: PipelineDoc,
}

/// Path of the rendered documentation.
pub const DOCS_PATH: &str = "/docs";
/// Path of the readiness check.
pub const READY_PATH: &str = "/readyz";
/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the OpenAPI document as JSON.
pub const SPEC_PATH: &str = "/docs/openapi.json";

/// Endpoints every Ordo process serves, whatever its pipelines.
struct SystemApi;

#[OpenApi]
impl SystemApi {
    /// Liveness: answers `ok` while the process runs.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }
}

/// The whole HTTP application for `pipelines`.
pub fn app<P: Publisher, S: Store>(
    pipelines: Vec<PipelineRoutes<P, S>>,
    metrics: crate::metrics::Registry,
    readiness: ready::Readiness,
) -> Route {
    let service = OpenApiService::new(SystemApi, "Ordo", env!("CARGO_PKG_VERSION")).description(
        "Ordo keeps a replica of each pipeline's entity correct when its update events arrive out of order.",
    );
    let generated = service.spec();
    let docs: Vec<PipelineDoc> = pipelines.iter().map(|p| p.doc.clone()).collect();
    let spec = serde_json::from_str(&generated)
        .map(|base| docs::with_pipelines(base, &docs).to_string())
        .unwrap_or(generated.clone());
    // Swagger UI from poem-openapi, fed the document that includes the pipelines.
    let html = service.swagger_ui_html().replacen(&generated, &spec, 1);
    let readiness = Arc::new(readiness);
    let mut route = Route::new()
        .at(
            READY_PATH,
            get(poem::endpoint::make(move |_| {
                let readiness = Arc::clone(&readiness);
                async move { readiness.handle().await }
            })),
        )
        .at(
            METRICS_PATH,
            make_sync(move |_| metrics.render()).with(
                poem::middleware::SetHeader::new().overriding(
                    poem::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                ),
            ),
        )
        .at(DOCS_PATH, make_sync(move |_| Html(html.clone())))
        .at(
            SPEC_PATH,
            make_sync(move |_| spec.clone()).with(
                poem::middleware::SetHeader::new()
                    .overriding(poem::http::header::CONTENT_TYPE, "application/json"),
            ),
        );
    for p in pipelines {
        let ingest = p.ingest;
        route = route.at(
            &p.doc.route,
            post(poem::endpoint::make(move |request| {
                let ingest = Arc::clone(&ingest);
                async move { ingest.handle(request).await }
            })),
        );
        let read_back = p.read_back;
        route = route.at(
            format!("{}/:id", p.doc.route),
            get(poem::endpoint::make(move |request| {
                let read_back = Arc::clone(&read_back);
                async move { read_back.handle(request).await }
            })),
        );
    }
    route.nest("/", service)
}
