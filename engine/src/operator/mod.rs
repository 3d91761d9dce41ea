//! The operator's side of the HTTP application, and its assembly.
//!
//! The engine's own endpoints ([`api`]: health, readiness ([`ready`]), metrics, admin, the
//! live readings of [`live`]) are a poem-openapi [`poem_openapi::OpenApi`] impl, so their part
//! of the document comes from their types. Pipeline routes (`crate::ingest`) come from
//! `pipelines.toml` at start-up, so [`docs`] adds their operations (with each plugin's body
//! schema, the one in force) to the generated document, served with Swagger UI at `/docs`.
//! [`ui`] is the operator page, drawn from `/admin/live`; [`allow`] answers 405 with `Allow`.

use std::sync::Arc;

use poem::endpoint::{make_sync, BoxEndpoint};
use poem::web::Html;
use poem::{get, Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

mod allow;
pub mod api;
pub mod docs;
pub mod host;
pub mod live;
pub mod ready;
pub mod ui;

pub use api::{Admin, SystemApi};

use crate::bus::Publisher;
use crate::ingest::problem::Problem;
use crate::ingest::PipelineApi;
use crate::metrics::Metrics;
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

/// The whole HTTP application: the engine's own endpoints and every pipeline's routes.
pub fn app<P: Publisher, S: Store>(
    pipelines: Vec<Arc<PipelineApi<P, S>>>,
    publisher: Arc<P>,
    metrics: Metrics,
    admin: Admin,
) -> BoxEndpoint<'static> {
    let admin_secured = admin.auth.is_some() || admin.token.is_some();
    // The pipelines whose routes this process serves, and so documents.
    let served: Vec<_> = pipelines.iter().filter(|p| p.serves).cloned().collect();
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
        pipelines: served.iter().any(|p| p.auth.is_some()),
        admin: admin_secured,
    };
    let live = Arc::new(docs::LiveSpec::new(
        &service,
        served
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
    route = crate::ingest::routes(route, &served);
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
            Ok(Problem::new(
                poem::http::StatusCode::NOT_FOUND,
                "Not found",
                "nothing is served at this path on this listener",
            )
            .into_response())
        }
    })
    .boxed()
}
