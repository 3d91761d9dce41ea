//! The engine's own endpoints, whatever its pipelines: liveness, readiness, metrics, and the
//! admin endpoints (the plugin in force, reload on demand). Their OpenAPI operations come
//! from the types below.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt as _};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::live::{self, Live, LiveReading};
use crate::audit;
use crate::auth::{Auth, Denied, ADMIN_SCOPE};
use crate::bus::Publisher;
use crate::ingest::guard;
use crate::ingest::problem::Problem;
use crate::ingest::PipelineApi;
use crate::metrics::Metrics;
use crate::plugin::reload::{ReloadError, Reloaded, Reloader};
use crate::store::Store;

/// The groups of operations in the document.
#[derive(Tags)]
enum Tag {
    /// Liveness, readiness and metrics.
    #[oai(rename = "engine")]
    Engine,
    /// The plugins in force, and reloading them.
    #[oai(rename = "admin")]
    Admin,
}

/// What `/readyz` found.
#[derive(Debug, Object)]
pub struct ReadyReport {
    /// Whether every check passed.
    pub ready: bool,
    /// What this process does (`ordo run --role`): `ingest`, `apply` or `all`. The checks
    /// are the same (the broker, each pipeline's table); `degraded` only ever shows with a
    /// role that applies.
    pub role: String,
    /// Each check (`kafka`, `dynamodb:<pipeline>`) and `ok` or why it failed.
    pub checks: BTreeMap<String, String>,
    /// Each pipeline and the plugin in force (`sha256:` of its file).
    pub plugins: BTreeMap<String, String>,
    /// Pipelines whose consumer holds events back on a transient failure (the store away or
    /// throttling, the host starved), and why. The events wait, are not dead-lettered, and
    /// apply once it passes; readiness is not failed by it, as ingest still accepts.
    pub degraded: BTreeMap<String, String>,
}

/// A pipeline and the plugin it runs.
#[derive(Debug, Object)]
pub struct PluginInForce {
    /// The pipeline.
    pub pipeline: String,
    /// `sha256:<hex>` of the plugin file in force.
    pub plugin: String,
    /// The file the pipeline watches for a new plugin.
    #[oai(skip_serializing_if_is_none)]
    pub file: Option<String>,
    /// When the plugin in force was put in force (RFC 3339).
    pub loaded_at: String,
    /// The last reload since start-up (file change, SIGHUP or this API), if any.
    #[oai(skip_serializing_if_is_none)]
    pub last_reload: Option<live::LiveReload>,
}

/// What a reload did.
#[derive(Debug, Object)]
pub struct ReloadReport {
    /// The pipeline.
    pub pipeline: String,
    /// The plugin in force now.
    pub plugin: String,
    /// The plugin in force before.
    pub previous: String,
    /// Whether a different plugin is now in force.
    pub changed: bool,
}

/// The answer of `/readyz`.
#[derive(ApiResponse)]
pub enum ReadyAnswer {
    /// The broker and every pipeline's table answer.
    #[oai(status = 200)]
    Ready(Json<ReadyReport>),
    /// A check failed; the body says which.
    #[oai(status = 503)]
    NotReady(Json<ReadyReport>),
}

/// The answer of `/metrics`.
#[derive(ApiResponse)]
pub enum MetricsAnswer {
    /// Every metric, in the Prometheus text format.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Text(PlainText<String>),
    /// Credentials are needed (`[auth]` or `ORDO_ADMIN_TOKEN` is configured) and are missing
    /// or not valid.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The caller is known but lacks the `admin` scope.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
}

/// The answer of `GET /admin/pipelines`.
#[derive(ApiResponse)]
pub enum ListAnswer {
    /// Every pipeline and the plugin in force.
    #[oai(status = 200)]
    Pipelines(Json<Vec<PluginInForce>>),
    /// Credentials are needed (`[auth]` or `ORDO_ADMIN_TOKEN` is configured) and are missing
    /// or not valid.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The caller is known but lacks the `admin` scope.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
}

/// The answer of `POST /admin/pipelines/{name}/reload`.
#[derive(ApiResponse)]
pub enum ReloadAnswer {
    /// The file was compiled, checked and self-tested; `changed` says whether it replaced
    /// the plugin in force.
    #[oai(status = 200)]
    Reloaded(Json<ReloadReport>),
    /// Credentials are needed (`[auth]` or `ORDO_ADMIN_TOKEN` is configured) and are missing
    /// or not valid.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The caller is known but lacks the `admin` scope.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// No pipeline has this name.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The new plugin was refused (the detail says why); the old one keeps serving.
    #[oai(status = 422, content_type = "application/problem+json")]
    Refused(Json<Problem>),
}

/// The answer of `GET /admin/live`.
#[derive(ApiResponse)]
pub enum LiveAnswer {
    /// One `LiveReading` as JSON per server-sent event, the first at once, then one per
    /// interval, until the client goes or the engine shuts down.
    #[oai(status = 200)]
    Readings(EventStream<BoxStream<'static, LiveReading>>),
    /// Credentials are needed (`[auth]` or `ORDO_ADMIN_TOKEN` is configured) and are missing
    /// or not valid.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The caller is known but lacks the `admin` scope.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Too many live streams are open on this engine; try again later.
    #[oai(status = 503, content_type = "application/problem+json")]
    Busy(Json<Problem>),
}

/// The admin side: the plugins and who may reload them.
#[derive(Clone)]
pub struct Admin {
    /// The pipelines' plugin slots.
    pub reloader: Arc<Reloader>,
    /// The bearer token requests may carry instead of credentials with the `admin` scope,
    /// when one is configured (never logged).
    pub token: Option<String>,
    /// Who may call; `None` with no `[auth]` table.
    pub auth: Option<Arc<Auth>>,
    /// The readings the operator page draws.
    pub live: Live,
    /// The last outcome of the readiness checks, which `/readyz` answers with.
    pub readiness: super::ready::Readiness,
    /// What this process does.
    pub role: crate::Role,
}

/// Why an admin request was refused: its problem (with the challenge of a 401), and who
/// asked when they were known but lacked the scope.
pub struct AdminDenied(Box<Problem>, Option<String>);

impl Admin {
    /// Whether the admin endpoints need credentials.
    fn guarded(&self) -> bool {
        self.auth.is_some() || self.token.is_some()
    }

    /// Whether `request` may use the admin endpoints: it carries the admin token, or
    /// credentials with the `admin` scope. With neither configured, the endpoints are open
    /// (the engine then listens on loopback only).
    /// `Ok` names the principal when one is known (`admin-token` for the token).
    /// `route` is the endpoint's path template, which a refusal's log line names.
    fn check(&self, request: &Request, route: &str) -> Result<Option<String>, AdminDenied> {
        self.check_given(guard::authorization(request), route)
    }

    /// [`Admin::check`] of the `Authorization` value `given`.
    fn check_given(&self, given: Option<&str>, route: &str) -> Result<Option<String>, AdminDenied> {
        if let Some(token) = &self.token {
            let bearer = given
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            // Digests of equal length, compared in constant time: neither the token's bytes
            // nor its length show in how long a refusal takes.
            let (given, wanted) = (Sha256::digest(bearer), Sha256::digest(token));
            if bool::from(given.as_slice().ct_eq(wanted.as_slice())) {
                return Ok(Some("admin-token".into()));
            }
        }
        let denied = match (&self.auth, &self.token) {
            (Some(auth), _) => match auth.authorize(given, ADMIN_SCOPE) {
                Ok(principal) => return Ok(Some(principal.name)),
                Err(denied) => denied,
            },
            (None, Some(_)) if given.is_none() => Denied::Missing,
            (None, Some(_)) => Denied::Invalid("not the admin token".into()),
            (None, None) => return Ok(None),
        };
        let who = match &denied {
            Denied::Forbidden { principal, .. } => Some(principal.clone()),
            _ => None,
        };
        Err(AdminDenied(Box::new(guard::refusal(&denied, route)), who))
    }
}

impl AdminDenied {
    fn list(self) -> ListAnswer {
        match self.0.challenge {
            Some(challenge) => ListAnswer::Unauthorized(Json(*self.0), challenge.into()),
            None => ListAnswer::Forbidden(Json(*self.0)),
        }
    }

    fn reload(self) -> ReloadAnswer {
        match self.0.challenge {
            Some(challenge) => ReloadAnswer::Unauthorized(Json(*self.0), challenge.into()),
            None => ReloadAnswer::Forbidden(Json(*self.0)),
        }
    }

    fn metrics(self) -> MetricsAnswer {
        match self.0.challenge {
            Some(challenge) => MetricsAnswer::Unauthorized(Json(*self.0), challenge.into()),
            None => MetricsAnswer::Forbidden(Json(*self.0)),
        }
    }

    fn live(self) -> LiveAnswer {
        match self.0.challenge {
            Some(challenge) => LiveAnswer::Unauthorized(Json(*self.0), challenge.into()),
            None => LiveAnswer::Forbidden(Json(*self.0)),
        }
    }
}

/// The engine's own endpoints, over the pipelines it serves.
pub struct SystemApi<P, S> {
    /// The producer, whose client asks the broker for metadata.
    pub publisher: Arc<P>,
    /// Every pipeline's HTTP side (its table and plugin).
    pub pipelines: Vec<Arc<PipelineApi<P, S>>>,
    /// What `/metrics` renders.
    pub metrics: Metrics,
    /// The admin endpoints.
    pub admin: Admin,
}

#[OpenApi]
impl<P: Publisher, S: Store> SystemApi<P, S> {
    /// Liveness: answers `ok` while the process runs.
    #[oai(path = "/healthz", method = "get", tag = "Tag::Engine")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness: the broker and every pipeline's table answer. Names the plugin in force
    /// for each pipeline. (Plugins are loaded before the server starts, and a swap only ever
    /// puts in force a plugin that passed its checks.)
    ///
    /// A failing check's reason is shown to callers on loopback or with admin rights; others
    /// see only `failing` (internal error text can name hosts, tables and accounts).
    #[oai(path = "/readyz", method = "get", tag = "Tag::Engine")]
    async fn readyz(&self, request: &Request) -> ReadyAnswer {
        let mut checks: BTreeMap<String, String> = self
            .admin
            .readiness
            .current(self.publisher.as_ref(), &self.pipelines, &self.metrics)
            .await
            .into_iter()
            .map(|(check, result)| (check, outcome(result)))
            .collect();
        let plugins = self
            .pipelines
            .iter()
            .map(|p| (p.pipeline.name.clone(), p.policy.current().id().to_string()))
            .collect();
        let mut degraded: BTreeMap<String, String> = self
            .pipelines
            .iter()
            .filter_map(|p| Some((p.pipeline.name.clone(), p.waits.degraded()?)))
            .collect();
        let ready = checks.values().all(|c| c == "ok");
        let trusted = request
            .remote_addr()
            .as_socket_addr()
            .is_some_and(|a| a.ip().is_loopback())
            || (self.admin.guarded()
                && guard::authorization(request).is_some()
                && self.admin.check(request, "/readyz").is_ok());
        if !trusted {
            for outcome in checks.values_mut().filter(|c| *c != "ok") {
                *outcome = "failing".into();
            }
            for why in degraded.values_mut() {
                *why = "waiting".into();
            }
        }
        let report = Json(ReadyReport {
            ready,
            role: self.admin.role.as_str().to_string(),
            checks,
            plugins,
            degraded,
        });
        if ready {
            ReadyAnswer::Ready(report)
        } else {
            ReadyAnswer::NotReady(report)
        }
    }

    /// What each pipeline's ingest, consumer, table and plugin did, for Prometheus. With
    /// `[auth]`, it needs the `admin` scope (or the admin token), as `/admin/*` does:
    /// Prometheus sends a key with `authorization: {credentials_file: ...}` in its scrape
    /// job. Without `[auth]` the engine serves loopback only, and `/metrics` is open there.
    #[oai(path = "/metrics", method = "get", tag = "Tag::Engine")]
    async fn metrics(&self, request: &Request) -> MetricsAnswer {
        if self.admin.auth.is_some() {
            if let Err(denied) = self.admit(request, "/metrics", None).await {
                return denied.metrics();
            }
        }
        MetricsAnswer::Text(PlainText(self.metrics.render()))
    }

    /// The plugin in force for each pipeline, and the file it watches.
    #[oai(path = "/admin/pipelines", method = "get", tag = "Tag::Admin")]
    async fn pipelines(&self, request: &Request) -> ListAnswer {
        let principal = match self.admit(request, "/admin/pipelines", None).await {
            Ok(principal) => principal,
            Err(denied) => return denied.list(),
        };
        self.audit_admin(
            audit::Action::Admin,
            None,
            principal.as_deref(),
            "listed",
            "/admin/pipelines",
        )
        .await;
        let list = self
            .admin
            .reloader
            .plugins()
            .iter()
            .map(|status| {
                let live = live::LivePlugin::from(status);
                PluginInForce {
                    pipeline: status.pipeline.clone(),
                    plugin: live.id,
                    file: Some(live.file),
                    loaded_at: live.loaded_at,
                    last_reload: live.last_reload,
                }
            })
            .collect();
        ListAnswer::Pipelines(Json(list))
    }

    /// Live readings for the operator page (`/ui`): server-sent events, one `LiveReading`
    /// (JSON) per interval with each pipeline's rates, lag by partition, plugin in force, last
    /// reload and last dead letters (reasons as codes and fields; never a record's fields).
    #[oai(path = "/admin/live", method = "get", tag = "Tag::Admin")]
    async fn live(
        &self,
        request: &Request,
        /// Milliseconds between readings (default 1000).
        #[oai(validator(minimum(value = "100"), maximum(value = "60000")))]
        interval_ms: Query<Option<u64>>,
    ) -> LiveAnswer {
        let principal = match self.admit(request, "/admin/live", None).await {
            Ok(principal) => principal,
            Err(denied) => return denied.live(),
        };
        let interval = interval_ms
            .0
            .map_or(live::DEFAULT_INTERVAL, std::time::Duration::from_millis);
        // Each reading goes out only while the credentials that opened the stream still
        // admit it: a token that expires, or whose key leaves the key set, ends the stream.
        let given = guard::authorization(request).map(str::to_string);
        let admin = self.admin.clone();
        let stream = self.admin.live.stream(interval).map(|readings| {
            readings
                .take_while(move |_| {
                    let admitted = admin.check_given(given.as_deref(), "/admin/live").is_ok();
                    std::future::ready(admitted)
                })
                .boxed()
        });
        let outcome = if stream.is_some() { "opened" } else { "busy" };
        self.audit_admin(
            audit::Action::Admin,
            None,
            principal.as_deref(),
            outcome,
            "/admin/live",
        )
        .await;
        match stream {
            Some(readings) => {
                LiveAnswer::Readings(EventStream::new(readings).keep_alive(live::KEEP_ALIVE))
            }
            None => LiveAnswer::Busy(Json(Problem::new(
                poem::http::StatusCode::SERVICE_UNAVAILABLE,
                "Too many live streams",
                format!(
                    "this engine serves at most {} live streams at once; close one and try again",
                    live::MAX_STREAMS
                ),
            ))),
        }
    }

    /// Reloads a pipeline's plugin from its file: compiles it, checks the contract, runs the
    /// pipeline's self-test, then swaps atomically. The same happens on SIGHUP and when the
    /// file changes.
    #[oai(
        path = "/admin/pipelines/:name/reload",
        method = "post",
        tag = "Tag::Admin"
    )]
    async fn reload(&self, request: &Request, name: Path<String>) -> ReloadAnswer {
        let route = "/admin/pipelines/{name}/reload";
        let principal = match self.admit(request, route, Some(&name.0)).await {
            Ok(principal) => principal,
            Err(denied) => return denied.reload(),
        };
        let name = name.0;
        let reloaded = self.admin.reloader.reload(&name).await;
        self.audit_reload(&name, principal.as_deref(), &reloaded)
            .await;
        match reloaded {
            Ok(Reloaded::Swapped { from, to }) => ReloadAnswer::Reloaded(Json(ReloadReport {
                pipeline: name,
                plugin: to,
                previous: from,
                changed: true,
            })),
            Ok(Reloaded::Unchanged { id }) => ReloadAnswer::Reloaded(Json(ReloadReport {
                pipeline: name,
                plugin: id.clone(),
                previous: id,
                changed: false,
            })),
            Err(e @ ReloadError::UnknownPipeline(_)) => ReloadAnswer::NotFound(Json(Problem::new(
                poem::http::StatusCode::NOT_FOUND,
                "No such pipeline",
                e.to_string(),
            ))),
            Err(e @ ReloadError::Refused { .. }) => ReloadAnswer::Refused(Json(Problem::new(
                poem::http::StatusCode::UNPROCESSABLE_ENTITY,
                "Plugin refused",
                e.to_string(),
            ))),
        }
    }
}

impl<P: Publisher, S: Store> SystemApi<P, S> {
    /// Whether `request` may use the operator's endpoint `route` (see [`Admin::check`]); a
    /// refusal is recorded in the audit trail, under `pipeline` when the path names one.
    async fn admit(
        &self,
        request: &Request,
        route: &'static str,
        pipeline: Option<&str>,
    ) -> Result<Option<String>, AdminDenied> {
        let checked = self.admin.check(request, route);
        if let Err(AdminDenied(problem, who)) = &checked {
            let status = problem.status.to_string();
            self.audit_admin(
                audit::Action::Denied,
                pipeline,
                who.as_deref(),
                &status,
                route,
            )
            .await;
        }
        checked
    }

    /// Records an action on the operator's side: under `pipeline`'s audit topic when it names
    /// a pipeline of this engine, else once in each audit topic the pipelines use, as
    /// pipeline `*`. A record that cannot be written is logged.
    async fn audit_admin(
        &self,
        action: audit::Action,
        pipeline: Option<&str>,
        principal: Option<&str>,
        outcome: &str,
        route: &str,
    ) {
        let named =
            pipeline.and_then(|name| self.pipelines.iter().find(|p| p.pipeline.name == name));
        let mut topics: Vec<&str> = match named {
            Some(p) => p.pipeline.audit_topic.as_deref().into_iter().collect(),
            None => self
                .pipelines
                .iter()
                .filter_map(|p| p.pipeline.audit_topic.as_deref())
                .collect(),
        };
        topics.sort_unstable();
        topics.dedup();
        let name = named.map_or("*", |p| p.pipeline.name.as_str());
        let mut record = audit::Record::new(action, name, outcome);
        record.principal = principal;
        record.route = Some(route);
        for topic in topics {
            if let Err(e) = audit::write(self.publisher.as_ref(), topic, &record).await {
                tracing::warn!(route, error = %e, "Audit record of an admin action not written.");
            }
        }
    }

    /// Records a reload on request in the audit trail (logged when it cannot be).
    async fn audit_reload(
        &self,
        pipeline: &str,
        principal: Option<&str>,
        reloaded: &Result<Reloaded, ReloadError>,
    ) {
        let Some(topic) = self
            .pipelines
            .iter()
            .find(|p| p.pipeline.name == pipeline)
            .and_then(|p| p.pipeline.audit_topic.clone())
        else {
            return;
        };
        let (outcome, plugin) = match reloaded {
            Ok(Reloaded::Swapped { to, .. }) => ("swapped", Some(to.as_str())),
            Ok(Reloaded::Unchanged { id }) => ("unchanged", Some(id.as_str())),
            Err(_) => ("refused", None),
        };
        let mut record = audit::Record::new(audit::Action::Reload, pipeline, outcome);
        record.principal = principal;
        record.plugin = plugin;
        if let Err(e) = audit::write(self.publisher.as_ref(), &topic, &record).await {
            tracing::warn!(pipeline, error = %e, "Audit record of a reload not written.");
        }
    }
}

/// `ok`, or why the check failed.
fn outcome(result: Result<(), String>) -> String {
    result.map_or_else(|e| e, |()| "ok".to_string())
}
