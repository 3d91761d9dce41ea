//! The HTTP side: one `POST {route}` per pipeline, health, and the OpenAPI document.
//!
//! Fixed endpoints are a poem-openapi [`OpenApi`] impl; pipeline routes come from
//! `pipelines.toml` at start-up, so their operations are added to the generated document
//! (with each plugin's body schema) before Swagger UI renders it at `/docs`.

use std::sync::Arc;

use poem::endpoint::make_sync;
use poem::endpoint::BoxEndpoint;
use poem::web::Html;
use poem::{get, post, Endpoint, EndpointExt, Route};
use poem_openapi::payload::PlainText;
use poem_openapi::{OpenApi, OpenApiService};

pub mod admin;
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
    /// Its part of the OpenAPI document; the schema is taken from the plugin in force.
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

/// Which methods each path answers, so that a 405 can say so in `Allow` (RFC 9110).
#[derive(Debug, Default, Clone)]
struct Allowed(Vec<(Vec<String>, &'static str)>);

impl Allowed {
    /// Records that `pattern` (poem's syntax: `:name` is one segment) answers `methods`.
    fn add(&mut self, pattern: &str, methods: &'static str) {
        self.0
            .push((pattern.split('/').map(str::to_string).collect(), methods));
    }

    /// The methods `path` answers, when it is a known path.
    fn of(&self, path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(pattern, methods)| {
            let matches = pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.starts_with(':') || p == s);
            matches.then_some(*methods)
        })
    }
}

/// The whole HTTP application for `pipelines`.
pub fn app<P: Publisher, S: Store>(
    pipelines: Vec<PipelineRoutes<P, S>>,
    metrics: crate::metrics::Registry,
    readiness: ready::Readiness,
    admin: Option<admin::Admin>,
) -> BoxEndpoint<'static> {
    let service = OpenApiService::new(SystemApi, "Ordo", env!("CARGO_PKG_VERSION")).description(
        "Ordo keeps a replica of each pipeline's entity correct when its update events arrive out of order.",
    );
    let generated = service.spec();
    // Swagger UI from poem-openapi, fed the document that includes the pipelines.
    let live = Arc::new(docs::LiveSpec::new(
        generated,
        service.swagger_ui_html(),
        pipelines
            .iter()
            .map(|p| (p.doc.clone(), p.ingest.policy.clone()))
            .collect(),
        admin.is_some(),
    ));
    let live_html = Arc::clone(&live);
    let readiness = Arc::new(readiness);
    let mut allowed = Allowed::default();
    for path in [READY_PATH, METRICS_PATH, DOCS_PATH, SPEC_PATH, "/healthz"] {
        allowed.add(path, "GET, HEAD");
    }
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
            get(make_sync(move |_| metrics.render())).with(
                poem::middleware::SetHeader::new().overriding(
                    poem::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                ),
            ),
        )
        .at(
            DOCS_PATH,
            get(make_sync(move |_| Html(live_html.render().1.clone()))),
        )
        .at(
            SPEC_PATH,
            get(make_sync(move |_| live.render().0.clone())).with(
                poem::middleware::SetHeader::new()
                    .overriding(poem::http::header::CONTENT_TYPE, "application/json"),
            ),
        );
    for p in pipelines {
        allowed.add(&p.doc.route, "POST");
        allowed.add(&format!("{}/:id", p.doc.route), "GET, HEAD");
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
    if let Some(admin) = admin {
        allowed.add(admin::PIPELINES_PATH, "GET, HEAD");
        allowed.add(&format!("{}/:name/reload", admin::PIPELINES_PATH), "POST");
        route = admin.routes(route);
    }
    let allowed = Arc::new(allowed);
    route
        .nest("/", service)
        .around(move |endpoint, request| {
            let allowed = Arc::clone(&allowed);
            async move {
                let path = request.uri().path().to_string();
                let mut response = endpoint.get_response(request).await;
                if response.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(methods) = allowed.of(&path) {
                        response.headers_mut().insert(
                            poem::http::header::ALLOW,
                            poem::http::HeaderValue::from_static(methods),
                        );
                    }
                }
                Ok(response)
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    //! The API's shapes through poem's test client, with an in-process bus, store and policy.
    //! What Kafka and DynamoDB do is tested end to end in `engine/tests/`.
    use std::sync::Mutex;

    use poem::http::StatusCode;
    use poem::test::TestClient;
    use serde_json::{json, Value};

    use super::*;
    use crate::bus::{BusError, Delivery};
    use crate::metrics::{IngestStats, Registry};
    use crate::plugin::{Decision, FieldError, PluginError, Policy, PolicyHandle};
    use crate::store::{Precondition, PutOutcome, Record, StoreError};

    /// Acknowledges every message and remembers it.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String)>>);

    impl Publisher for Recorder {
        async fn publish(
            &self,
            _: &str,
            key: &str,
            payload: &[u8],
            _: &[(&str, &str)],
        ) -> Result<Delivery, BusError> {
            let mut sent = self.0.lock().expect("lock");
            sent.push((
                key.to_string(),
                String::from_utf8_lossy(payload).into_owned(),
            ));
            Ok(Delivery {
                partition: 0,
                offset: sent.len() as i64 - 1,
            })
        }
    }

    /// Holds one record, under key "1".
    struct One;

    impl Store for One {
        async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
            Ok((key == "1").then(|| {
                json!({"PatientId": "1"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            }))
        }
        async fn put(&self, _: &Record, _: &Precondition) -> Result<PutOutcome, StoreError> {
            Ok(PutOutcome::Written)
        }
    }

    /// Requires `Sex` to be a string when present.
    struct SexIsText;

    impl Policy for SexIsText {
        fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
            let v: Value = serde_json::from_str(event).unwrap_or(Value::Null);
            Ok(match v.get("Sex") {
                Some(s) if !s.is_string() => Err(FieldError {
                    field: "Sex".into(),
                    message: "must be a string".into(),
                }),
                _ => Ok(()),
            })
        }
        fn merge(&self, incoming: &str, _: Option<&str>) -> Result<Decision, PluginError> {
            Ok(Decision::Write(incoming.into()))
        }
        fn schema(&self) -> Result<String, PluginError> {
            Ok("{}".into())
        }
        fn id(&self) -> &str {
            "native:sex-is-text"
        }
    }

    fn client(recorder: &Arc<Recorder>) -> TestClient<BoxEndpoint<'static>> {
        client_with(recorder, Arc::new(tokio::sync::Semaphore::new(8)))
    }

    /// A client whose ingest draws from `in_flight`.
    fn client_with(
        recorder: &Arc<Recorder>,
        in_flight: Arc<tokio::sync::Semaphore>,
    ) -> TestClient<BoxEndpoint<'static>> {
        let ingest = Arc::new(Ingest {
            pipeline: "p".into(),
            topic: "t".into(),
            key_field: "PatientId".into(),
            version_field: "UpdatedAt".into(),
            policy: PolicyHandle::new(Arc::new(SexIsText)),
            publisher: Arc::clone(recorder),
            body_limit: 64,
            produce_timeout: std::time::Duration::from_secs(5),
            in_flight,
            idempotency: idempotency::IdempotencyCache::default(),
            stats: Arc::new(IngestStats::default()),
        });
        let doc = PipelineDoc {
            name: "p".into(),
            route: "/p".into(),
            topic: "t".into(),
            key_field: "PatientId".into(),
            version_field: "UpdatedAt".into(),
            schema: json!({"type": "object"}),
        };
        let routes = vec![PipelineRoutes {
            ingest,
            read_back: Arc::new(ReadBack {
                pipeline: "p".into(),
                store: One,
            }),
            doc,
        }];
        // Creating a client does not connect; nothing here calls /readyz.
        let publisher = crate::bus::producer::KafkaPublisher::new(
            "127.0.0.1:1",
            std::time::Duration::from_secs(1),
        )
        .expect("an unconnected client");
        let readiness = ready::Readiness {
            publisher: Arc::new(publisher),
            tables: Vec::new(),
            plugins: Vec::new(),
        };
        TestClient::new(app(routes, Registry::default(), readiness, None))
    }

    #[tokio::test]
    async fn answers_have_the_documented_shapes_and_only_202_produces() {
        let recorder = Arc::new(Recorder::default());
        let cli = client(&recorder);
        let post = |body: &'static str, content_type: &'static str| {
            cli.post("/p").content_type(content_type).body(body).send()
        };

        let ok = post(
            r#"{"PatientId":"1","UpdatedAt":"2006-01-02T15:00:00Z"}"#,
            "application/json",
        )
        .await;
        ok.assert_status(StatusCode::ACCEPTED);
        ok.assert_json(json!({"pipeline": "p", "key": "1", "partition": 0, "offset": 0, "updatedAt": "2006-01-02T15:00:00Z"})).await;

        let stamped = post(r#"{"PatientId":"2"}"#, "application/json; charset=utf-8").await;
        stamped.assert_status(StatusCode::ACCEPTED);
        assert!(
            recorder.0.lock().expect("lock")[1].1.contains("UpdatedAt"),
            "stamped when absent"
        );

        for (body, content_type, status, field) in [
            ("{", "application/json", StatusCode::BAD_REQUEST, None),
            (
                r#"{"PatientId":"1"}"#,
                "text/plain",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
            ),
            (
                r#"{"PatientId":"1","FirstName":"a very long name that is longer than the limit"}"#,
                "application/json",
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
            ),
            (
                r#"{"FirstName":"J"}"#,
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("PatientId"),
            ),
            (
                r#"{"PatientId":7}"#,
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("PatientId"),
            ),
            (
                r#"{"PatientId":"1","Sex":1}"#,
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("Sex"),
            ),
            (
                "[]",
                "application/json",
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            ),
        ] {
            let response = post(body, content_type).await;
            response.assert_status(status);
            response.assert_content_type("application/problem+json");
            let problem: Value = response.json().await.value().deserialize();
            assert_eq!(problem["status"], status.as_u16(), "{body}");
            assert_eq!(problem["field"].as_str(), field, "{body}: {problem}");
        }
        assert_eq!(
            recorder.0.lock().expect("lock").len(),
            2,
            "no event for any 4xx"
        );
    }

    #[tokio::test]
    async fn above_the_in_flight_limit_the_answer_is_503_and_nothing_is_produced() {
        let recorder = Arc::new(Recorder::default());
        let in_flight = Arc::new(tokio::sync::Semaphore::new(2));
        let cli = client_with(&recorder, Arc::clone(&in_flight));
        let body = r#"{"PatientId":"1","UpdatedAt":"2006-01-02T15:00:00Z"}"#;
        // Two requests hold the whole budget.
        let held = Arc::clone(&in_flight)
            .acquire_many_owned(2)
            .await
            .expect("permits");
        let busy = cli
            .post("/p")
            .content_type("application/json")
            .body(body)
            .send()
            .await;
        busy.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        busy.assert_header("retry-after", "1");
        busy.assert_content_type("application/problem+json");
        assert!(recorder.0.lock().expect("lock").is_empty());
        drop(held);
        cli.post("/p")
            .content_type("application/json")
            .body(body)
            .send()
            .await
            .assert_status(StatusCode::ACCEPTED);
        assert_eq!(recorder.0.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn read_back_and_service_endpoints() {
        let cli = client(&Arc::new(Recorder::default()));
        let found = cli.get("/p/1").send().await;
        found.assert_status_is_ok();
        found.assert_json(json!({"PatientId": "1"})).await;
        cli.get("/p/2")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
        cli.get("/healthz").send().await.assert_text("ok").await;
        let wrong = cli.delete("/p/1").send().await;
        wrong.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        wrong.assert_header("allow", "GET, HEAD");
        let wrong = cli.get("/p").send().await;
        wrong.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        wrong.assert_header("allow", "POST");
        cli.get("/metrics").send().await.assert_status_is_ok();
        let spec = cli.get("/docs/openapi.json").send().await;
        spec.assert_status_is_ok();
        spec.assert_content_type("application/json");
    }
}
