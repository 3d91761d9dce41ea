//! The HTTP side: each pipeline's `POST {route}` and `GET {route}/{id}`, the engine's own
//! endpoints, and the OpenAPI document with Swagger UI at `/docs`.
//!
//! The engine's own endpoints ([`api`]: health, readiness, metrics, admin, the live readings
//! of [`live`]) are a poem-openapi
//! [`poem_openapi::OpenApi`] impl, so their part of the document comes from their types.
//! Pipeline routes come from `pipelines.toml` at start-up, so [`docs`] adds their operations
//! (with each plugin's body schema, the one in force) to the generated document. [`ui`] is
//! the operator page, drawn from `/admin/live`.

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::{make_sync, BoxEndpoint};
use poem::web::Html;
use poem::{get, post, Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

mod allow;
pub mod api;
pub mod bulk;
pub mod docs;
pub mod guard;
mod handler;
pub mod idempotency;
pub mod live;
pub mod problem;
mod read;
pub mod ready;
#[cfg(test)]
mod tests;
pub mod ui;

pub use api::{Admin, SystemApi};
pub use bulk::{DEFAULT_BULK_BODY_LIMIT, DEFAULT_BULK_MAX_LINES, NDJSON};
pub use handler::{
    prepare, Prepared, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_IN_FLIGHT,
    IDEMPOTENCY_HEADER, REPLAYED_HEADER,
};

use crate::bus::Publisher;
use crate::config::Pipeline;
use crate::metrics::{IngestMetrics, Metrics};
use crate::plugin::PolicyHandle;
use crate::store::Store;

/// Path of the rendered documentation.
pub const DOCS_PATH: &str = "/docs";
/// Path of the OpenAPI document as JSON.
pub const SPEC_PATH: &str = "/docs/openapi.json";
/// Path of the readiness check.
pub const READY_PATH: &str = "/readyz";
/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the liveness check.
pub const HEALTH_PATH: &str = "/healthz";
/// Prefix of the admin endpoints.
pub const ADMIN_PATH: &str = "/admin";

/// How one request to a pipeline route is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body accepted, in bytes.
    pub body_limit: usize,
    /// Largest `application/x-ndjson` body accepted, in bytes.
    pub bulk_body_limit: usize,
    /// Most events (lines) one `application/x-ndjson` body may carry.
    pub bulk_max_lines: usize,
    /// Longest the body may take to arrive (then 408).
    pub body_timeout: Duration,
    /// How long to wait for the broker's ack before answering 503 (the producer goes on
    /// trying, so the event may still land).
    pub produce_timeout: Duration,
}

/// One pipeline's HTTP side: `POST {route}` produces, `GET {route}/{id}` reads back, and the
/// pipeline's part of `/docs` and `/readyz`.
pub struct PipelineApi<P, S> {
    /// The pipeline as configured.
    pub pipeline: Arc<Pipeline>,
    /// Its plugin, for validation and the body schema; the one in force at each request.
    pub policy: PolicyHandle,
    /// The producer.
    pub publisher: Arc<P>,
    /// Its table.
    pub store: S,
    /// Body size and ack wait.
    pub limits: Limits,
    /// Bounds requests in flight; one budget for every pipeline, as it bounds the process's
    /// memory rather than a route's share.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Answers remembered by `Idempotency-Key`.
    pub idempotency: idempotency::IdempotencyKeys,
    /// Answers by status and produce latency, for `/metrics`.
    pub metrics: IngestMetrics,
    /// Who may call its routes; `None`: anyone who can reach the (loopback) listener.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Keys its consumer holds back on a transient failure, for `/readyz`.
    pub waits: crate::pipeline::Waits,
}

/// The whole HTTP application: the engine's own endpoints and every pipeline's routes.
pub fn app<P: Publisher, S: Store>(
    pipelines: Vec<Arc<PipelineApi<P, S>>>,
    publisher: Arc<P>,
    metrics: Metrics,
    admin: Admin,
) -> BoxEndpoint<'static> {
    let admin_secured = admin.auth.is_some() || admin.token.is_some();
    let system = SystemApi {
        publisher,
        pipelines: pipelines.clone(),
        metrics,
        admin,
    };
    let service = OpenApiService::new(system, "Ordo", env!("CARGO_PKG_VERSION")).description(
        "Ordo keeps a replica of each pipeline's entity correct when its update events arrive out of order.",
    );
    let secured = docs::Secured {
        pipelines: pipelines.iter().any(|p| p.auth.is_some()),
        admin: admin_secured,
    };
    let live = Arc::new(docs::LiveSpec::new(
        &service,
        pipelines
            .iter()
            .map(|p| (Arc::clone(&p.pipeline), p.policy.clone()))
            .collect(),
        secured,
    ));
    let get_only: Vec<&str> = [DOCS_PATH, SPEC_PATH]
        .into_iter()
        .chain(ui::paths())
        .collect();
    let allowed = allow::Allowed::from_spec(&live.render().0, &get_only);
    let page = Arc::clone(&live);
    let mut route = Route::new()
        .at(
            DOCS_PATH,
            get(make_sync(move |_| Html(page.render().1.clone()))),
        )
        .at(
            SPEC_PATH,
            get(make_sync(move |_| live.render().0.clone())).with(
                poem::middleware::SetHeader::new()
                    .overriding(poem::http::header::CONTENT_TYPE, "application/json")
                    .overriding("x-content-type-options", "nosniff"),
            ),
        );
    route = ui::routes(route);
    for p in pipelines {
        let ingest = Arc::clone(&p);
        route = route.at(
            &p.pipeline.route,
            post(poem::endpoint::make(move |request| {
                let p = Arc::clone(&ingest);
                async move { p.ingest(request).await }
            })),
        );
        let read = Arc::clone(&p);
        route = route.at(
            format!("{}/:id", p.pipeline.route),
            get(poem::endpoint::make(move |request| {
                let p = Arc::clone(&read);
                async move { p.read_back(request).await }
            })),
        );
    }
    route.nest("/", service).with(allowed).boxed()
}

/// Whether `path` belongs to the operator's side: `/admin/*`, `/metrics` and the operator
/// page (`/ui` and its assets).
fn operator_path(path: &str) -> bool {
    path == METRICS_PATH
        || path == ADMIN_PATH
        || path.starts_with("/admin/")
        || path == ui::UI_PATH
        || path.starts_with("/ui/")
}

/// `app` without the operator's side (`/admin/*`, `/metrics`, `/ui` answer 404), for the public
/// listener when `--admin-listen` serves that side.
pub fn without_operator(app: BoxEndpoint<'static>) -> BoxEndpoint<'static> {
    only(app, |path| !operator_path(path))
}

/// `app` with only the operator's side (`/admin/*`, `/metrics`, `/ui`) and the liveness and
/// readiness checks; everything else answers 404.
pub fn operator_only(app: BoxEndpoint<'static>) -> BoxEndpoint<'static> {
    only(app, |path| {
        operator_path(path) || path == HEALTH_PATH || path == READY_PATH
    })
}

/// `app`, answering 404 to every path `serves` refuses.
fn only(app: BoxEndpoint<'static>, serves: fn(&str) -> bool) -> BoxEndpoint<'static> {
    app.around(move |inner, request| async move {
        if serves(request.uri().path()) {
            inner.call(request).await
        } else {
            Ok(problem::Problem::new(
                poem::http::StatusCode::NOT_FOUND,
                "Not found",
                "nothing is served at this path on this listener",
            )
            .into_response())
        }
    })
    .boxed()
}
