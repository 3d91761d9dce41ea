//! The HTTP application's shapes (pipeline routes and the operator's side, assembled by
//! `crate::operator::app`) through poem's test client, over the in-memory bus and store and a
//! native policy. What Kafka and DynamoDB do is tested end to end in `engine/tests/`.

use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::{json, Value};

use super::*;
use crate::metrics::Metrics;
use crate::operator::{
    app, live, operator_only, without_operator, Admin, ADMIN_PATH, DOCS_PATH, HEALTH_PATH,
    METRICS_PATH, READY_PATH, SPEC_PATH,
};
use crate::plugin::reload::Reloader;
use crate::plugin::{Decision, FieldError, PluginError, Policy, PolicyHandle};
use crate::testing::{MemoryBus, MemoryStore};

/// Requires `Sex` to be a string when present; its schema's description tries to break out of
/// the Swagger page's script.
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
        Ok(
            json!({"type": "object", "description": "</script><script>alert('docs')</script>"})
                .to_string(),
        )
    }
    fn id(&self) -> &str {
        "native:sex-is-text"
    }
}

/// The pieces a test looks at.
struct Fixture {
    /// The application.
    cli: TestClient<BoxEndpoint<'static>>,
    /// Where ingest produces.
    bus: MemoryBus,
    /// The table; holds one record, under key "1".
    store: MemoryStore,
    /// The pipeline's policy, to swap.
    policy: PolicyHandle,
    /// Its consumer's waiting keys.
    waits: crate::pipeline::Waits,
    /// The metrics `/metrics` and `/admin/live` read.
    metrics: Metrics,
    /// Ends the live streams when fired (or dropped).
    _shutdown: crate::shutdown::Trigger,
    /// A second application over the same parts, for a test to wrap.
    app: BoxEndpoint<'static>,
    /// The pipeline's side of the application.
    api: Arc<PipelineApi<MemoryBus, MemoryStore>>,
}

/// An application with pipeline `p` (route `/p`, topic `p.events`), whose ingest draws from
/// `in_flight`, and whose admin endpoints need `token` when one is given.
fn fixture(in_flight: usize, token: Option<&str>) -> Fixture {
    let bus = MemoryBus::new(1);
    let store = MemoryStore::new("PatientId");
    store.insert(
        json!({"PatientId": "1"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let policy = PolicyHandle::new(Arc::new(SexIsText));
    let waits = crate::pipeline::Waits::default();
    let mut pipeline = crate::testing::pipeline("p");
    pipeline.audit_topic = Some("p.audit".into());
    let api = Arc::new(PipelineApi {
        serves: true,
        pipeline: Arc::new(pipeline),
        policy: policy.clone(),
        publisher: Arc::new(bus.clone()),
        store: store.clone(),
        limits: Limits {
            body_limit: 64,
            bulk_body_limit: 4096,
            bulk_max_lines: 5,
            body_timeout: std::time::Duration::from_secs(5),
            produce_timeout: std::time::Duration::from_secs(5),
        },
        in_flight: Arc::new(tokio::sync::Semaphore::new(in_flight)),
        idempotency: crate::store::keys::IdempotencyKeys::default(),
        metrics: IngestMetrics::default(),
        auth: None,
        waits: waits.clone(),
    });
    let metrics = Metrics::new();
    let reloader = Arc::new(Reloader::new(Vec::new()));
    let (trigger, shutdown) = crate::shutdown::channel();
    let live = live::Live::new(
        live::LiveSource {
            metrics: metrics.clone(),
            reloader: Arc::clone(&reloader),
            waits: vec![("p".into(), waits.clone())],
        },
        shutdown,
    );
    let admin = Admin {
        role: crate::Role::All,
        reloader,
        token: token.map(str::to_string),
        auth: None,
        live,
        // Every call checks again, so a seam set down shows at once.
        readiness: crate::operator::ready::Readiness::new(std::time::Duration::ZERO),
    };
    let second = app(
        vec![Arc::clone(&api)],
        Arc::new(bus.clone()),
        metrics.clone(),
        admin.clone(),
    );
    let app = app(
        vec![Arc::clone(&api)],
        Arc::new(bus.clone()),
        metrics.clone(),
        admin,
    );
    Fixture {
        cli: TestClient::new(app),
        app: second,
        api,
        bus,
        store,
        policy,
        waits,
        metrics,
        _shutdown: trigger,
    }
}

#[tokio::test]
async fn answers_have_the_documented_shapes_and_only_202_produces() {
    let Fixture { cli, bus, .. } = fixture(8, None);
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
    let produced = bus.published("p.events");
    assert!(
        String::from_utf8_lossy(&produced[1].payload).contains("UpdatedAt"),
        "stamped when absent"
    );
    assert_eq!(produced[1].key, "2", "keyed by the key field");

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
    assert_eq!(bus.published("p.events").len(), 2, "no event for any 4xx");
}

#[tokio::test]
async fn every_answer_is_audited_and_nothing_succeeds_unrecorded() {
    let Fixture { cli, bus, .. } = fixture(8, None);
    let ok = cli
        .post("/p")
        .content_type("application/json")
        .header("x-request-id", "req-1")
        .body(r#"{"PatientId":"1"}"#)
        .send()
        .await;
    ok.assert_status(StatusCode::ACCEPTED);
    ok.assert_header("x-request-id", "req-1");
    let events = bus.published("p.events");
    assert_eq!(events[0].header("ordo-request-id"), Some("req-1"));
    cli.get("/p/1").send().await.assert_status_is_ok();
    let trail: Vec<Value> = bus
        .published("p.audit")
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("JSON"))
        .collect();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(
        (trail[0]["action"].as_str(), trail[0]["outcome"].as_str()),
        (Some("ingest"), Some("accepted"))
    );
    assert_eq!(trail[0]["request_id"], "req-1");
    assert_eq!(
        (trail[1]["action"].as_str(), trail[1]["key"].as_str()),
        (Some("read"), Some("1"))
    );

    // The audit topic down: the write and the read are refused, not done unrecorded.
    bus.set_topic_down("p.audit");
    let refused = cli
        .post("/p")
        .content_type("application/json")
        .body(r#"{"PatientId":"2"}"#)
        .send()
        .await;
    refused.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = refused.json().await.value().deserialize();
    assert_eq!(problem["title"], "Audit unavailable", "{problem}");
    cli.get("/p/1")
        .send()
        .await
        .assert_status(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_version_from_the_future_is_422_naming_the_field() {
    let Fixture { cli, bus, .. } = fixture(8, None);
    let response = cli
        .post("/p")
        .content_type("application/json")
        .body(r#"{"PatientId":"1","UpdatedAt":"9999-12-31T23:59:59Z"}"#)
        .send()
        .await;
    response.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.value().deserialize();
    assert_eq!(problem["field"], "UpdatedAt", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_version_skew")),
        "{problem}"
    );
    assert!(bus.published("p.events").is_empty());
}

#[tokio::test]
async fn above_the_in_flight_limit_the_answer_is_503_and_nothing_is_produced() {
    let Fixture { cli, bus, .. } = fixture(0, None);
    let body = r#"{"PatientId":"1","UpdatedAt":"2006-01-02T15:00:00Z"}"#;
    let busy = cli
        .post("/p")
        .content_type("application/json")
        .body(body)
        .send()
        .await;
    busy.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    busy.assert_header("retry-after", "1");
    busy.assert_content_type("application/problem+json");
    assert!(bus.published("p.events").is_empty());
}

#[tokio::test]
async fn a_plugin_at_its_cap_is_a_503_that_says_to_retry_not_a_422() {
    let Fixture {
        cli, bus, policy, ..
    } = fixture(8, None);
    policy.replace(Arc::new(crate::testing::BusyFirst::new(1)));
    let send = || {
        cli.post("/p")
            .content_type("application/json")
            .body(r#"{"PatientId":"1","v":1}"#)
            .send()
    };
    let busy = send().await;
    busy.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    busy.assert_header("retry-after", "1");
    let problem: Value = busy.json().await.value().deserialize();
    assert_eq!(problem["title"], "Plugin busy", "{problem}");
    assert!(bus.published("p.events").is_empty());
    send().await.assert_status(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_unacknowledged_event_is_a_503_that_says_to_retry() {
    let Fixture { cli, bus, .. } = fixture(8, None);
    bus.set_down(true);
    let response = cli
        .post("/p")
        .content_type("application/json")
        .body(r#"{"PatientId":"1"}"#)
        .send()
        .await;
    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    response.assert_header("retry-after", "1");
    let problem: Value = response.json().await.value().deserialize();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("retry")),
        "{problem}"
    );
}

#[tokio::test]
async fn read_back_and_405s_that_say_what_is_allowed() {
    let Fixture { cli, .. } = fixture(8, None);
    let found = cli.get("/p/1").send().await;
    found.assert_status_is_ok();
    found.assert_json(json!({"PatientId": "1"})).await;
    cli.get("/p/2")
        .send()
        .await
        .assert_status(StatusCode::NOT_FOUND);
    cli.get("/healthz").send().await.assert_text("ok").await;
    for (method, path, allow) in [
        ("DELETE", "/p/1", "GET, HEAD"),
        ("GET", "/p", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/docs", "GET, HEAD"),
        ("GET", "/admin/pipelines/p/reload", "POST"),
    ] {
        let method = poem::http::Method::from_bytes(method.as_bytes()).expect("a method");
        let wrong = cli.request(method, path).send().await;
        wrong.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        wrong.assert_header("allow", allow);
    }
}

#[tokio::test]
async fn readiness_names_each_check_and_fails_when_a_seam_is_down() {
    let Fixture {
        cli,
        bus,
        store,
        waits,
        ..
    } = fixture(8, None);
    let ready = cli.get("/readyz").send().await;
    ready.assert_status_is_ok();
    ready
        .assert_json(json!({
            "ready": true,
            "role": "all",
            "checks": {"kafka": "ok", "dynamodb:p": "ok"},
            "plugins": {"p": "native:sex-is-text"},
            "degraded": {}
        }))
        .await;
    // Keys waiting out a transient failure degrade the pipeline; ingest still accepts, so
    // readiness holds. (The reason is shown on loopback or to admins, as for the checks.)
    let wait = waits.start();
    waits.failed("throttled", "PutItem throttled");
    let degraded = cli.get("/readyz").send().await;
    degraded.assert_status_is_ok();
    let body: Value = degraded.json().await.value().deserialize();
    assert_eq!(body["degraded"]["p"], "waiting", "{body}");
    drop(wait);
    store.set_down(true);
    let down = cli.get("/readyz").send().await;
    down.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = down.json().await.value().deserialize();
    assert_eq!(body["checks"]["kafka"], "ok");
    assert_ne!(body["checks"]["dynamodb:p"], "ok", "{body}");
    // Each check's outcome is a gauge too, for alerts and the operator page.
    let metrics = cli.get("/metrics").send().await;
    let text = metrics
        .0
        .into_body()
        .into_string()
        .await
        .unwrap_or_default();
    assert!(text.contains("ordo_ready{check=\"kafka\"} 1"), "{text}");
    assert!(
        text.contains("ordo_ready{check=\"dynamodb:p\"} 0"),
        "{text}"
    );
    store.set_down(false);
    bus.set_down(true);
    let down = cli.get("/readyz").send().await;
    down.assert_status(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn readiness_is_answered_from_the_last_check_while_it_is_fresh() {
    let Fixture {
        bus,
        store,
        api,
        metrics,
        ..
    } = fixture(8, None);
    let apis = [api];
    let cached = crate::operator::ready::Readiness::new(std::time::Duration::from_secs(3600));
    let checked = cached.current(&bus, &apis, &metrics).await;
    assert!(checked.values().all(Result::is_ok), "{checked:?}");
    // The table goes away; a caller within the hour is answered from the last check, so
    // nobody can make the engine ask the table on every request.
    store.set_down(true);
    let again = cached.current(&bus, &apis, &metrics).await;
    assert_eq!(again, checked);
    // Once the outcome is old, the checks run again.
    let stale = crate::operator::ready::Readiness::new(std::time::Duration::ZERO);
    let now = stale.current(&bus, &apis, &metrics).await;
    assert!(now["dynamodb:p"].is_err(), "{now:?}");
}

#[tokio::test]
async fn admin_needs_the_token_when_one_is_set() {
    let Fixture { cli, .. } = fixture(8, Some("s3cret"));
    let denied = cli.get("/admin/pipelines").send().await;
    denied.assert_status(StatusCode::UNAUTHORIZED);
    denied.assert_header("www-authenticate", super::guard::CHALLENGE);
    denied.assert_content_type("application/problem+json");
    let wrong = cli
        .get("/admin/pipelines")
        .header("authorization", "Bearer nope")
        .send()
        .await;
    wrong.assert_status(StatusCode::UNAUTHORIZED);
    let listed = cli
        .get("/admin/pipelines")
        .header("authorization", "Bearer s3cret")
        .send()
        .await;
    listed.assert_status_is_ok();
    let unknown = cli
        .post("/admin/pipelines/nope/reload")
        .header("authorization", "Bearer s3cret")
        .send()
        .await;
    unknown.assert_status(StatusCode::NOT_FOUND);
    unknown.assert_content_type("application/problem+json");
}

#[tokio::test]
async fn the_document_is_built_from_types_and_the_page_is_script_safe() {
    let Fixture { cli, .. } = fixture(8, None);
    let spec = cli.get("/docs/openapi.json").send().await;
    spec.assert_status_is_ok();
    spec.assert_content_type("application/json");
    let spec: Value = spec.json().await.value().deserialize();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/admin/pipelines", "get"),
        ("/admin/pipelines/{name}/reload", "post"),
        ("/p", "post"),
        ("/p/{id}", "get"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{path} {method}: {spec}"
        );
    }
    let ready = &spec["paths"]["/readyz"]["get"]["responses"];
    assert!(
        ready["200"].is_object() && ready["503"].is_object(),
        "{ready}"
    );
    for schema in ["Problem", "Accepted", "ReadyReport"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    // Every path the engine serves itself is one `pipelines.toml` may not take.
    for path in spec["paths"].as_object().into_iter().flat_map(|p| p.keys()) {
        let own = crate::config::ENGINE_PATHS
            .iter()
            .any(|own| path == own || path.starts_with(&format!("{own}/")));
        assert!(own || path.starts_with("/p"), "{path} is not reserved");
    }
    let page = cli.get("/docs").send().await;
    page.assert_status_is_ok();
    let html = page.0.into_body().into_string().await.expect("text");
    assert!(html.contains("SwaggerUIBundle") && html.contains("/p"));
    assert!(
        !html.contains("</script><script>alert"),
        "the plugin's text is escaped"
    );
    assert!(html.contains("\\u003c/script\\u003e"), "and still there");
}

#[test]
fn the_engines_own_paths_are_the_ones_config_reserves() {
    for path in [
        DOCS_PATH,
        METRICS_PATH,
        HEALTH_PATH,
        READY_PATH,
        ADMIN_PATH,
        crate::operator::ui::UI_PATH,
    ] {
        assert!(crate::config::ENGINE_PATHS.contains(&path), "{path}");
    }
    assert!(SPEC_PATH.starts_with(DOCS_PATH));
}

/// POSTs `body` as `application/x-ndjson`, with `headers`.
async fn post_bulk(
    cli: &TestClient<BoxEndpoint<'static>>,
    body: &'static str,
    headers: &[(&'static str, &'static str)],
) -> poem::test::TestResponse {
    // As HTTP clients send it: the declared length decides the body's in-flight share.
    let mut request = cli
        .post("/p")
        .content_type(NDJSON)
        .header("content-length", body.len())
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await
}

#[tokio::test]
async fn a_bulk_body_is_taken_line_by_line_and_a_bad_line_holds_back_no_other() {
    let Fixture { cli, bus, .. } = fixture(8, None);
    let body = concat!(
        "{\"PatientId\":\"a\"}\n",
        "{\"PatientId\":\n",
        "\n",
        "{\"FirstName\":\"no key\"}\r\n",
        "{\"PatientId\":\"b\",\"Sex\":1}\n",
        "{\"PatientId\":\"c\",\"UpdatedAt\":\"2006-01-02T15:00:00Z\"}",
    );
    let answer = post_bulk(&cli, body, &[("x-request-id", "bulk-1")]).await;
    answer.assert_status(StatusCode::MULTI_STATUS);
    let answer: Value = answer.json().await.value().deserialize();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(3)),
        "{answer}"
    );
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let lines: Vec<u64> = results.iter().filter_map(|r| r["line"].as_u64()).collect();
    assert_eq!(
        lines,
        [1, 2, 4, 5, 6],
        "the blank line keeps its number: {answer}"
    );
    let status: Vec<u64> = results
        .iter()
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(status, [202, 400, 422, 422, 202], "{answer}");
    assert_eq!(results[2]["problem"]["field"], "PatientId");
    assert_eq!(results[3]["problem"]["field"], "Sex");
    assert_eq!(results[4]["updatedAt"], "2006-01-02T15:00:00Z");
    let events = bus.published("p.events");
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a", "c"], "the accepted lines, keyed");
    assert_eq!(
        events[1].header("ordo-request-id"),
        Some("bulk-1.6"),
        "one id per line"
    );
    for (result, event) in [&results[0], &results[4]].iter().zip(&events) {
        assert_eq!(result["offset"], event.offset, "{answer}");
    }
    // Each accepted line is in the audit trail under its own request id.
    let trail: Vec<Value> = bus
        .published("p.audit")
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("JSON"))
        .collect();
    let ids: Vec<&str> = trail
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{trail:?}");
    assert!(
        ids.contains(&"bulk-1.1") && ids.contains(&"bulk-1.6"),
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_bulk_body_all_accepted_is_200_and_its_limits_are_named() {
    let Fixture { cli, bus, .. } = fixture(8, None);
    let all = post_bulk(&cli, "{\"PatientId\":\"a\"}\n{\"PatientId\":\"b\"}\n", &[]).await;
    all.assert_status_is_ok();
    let all: Value = all.json().await.value().deserialize();
    assert_eq!(all["accepted"], 2);
    assert_eq!(bus.published("p.events").len(), 2);
    // More lines than the limit (5 here): nothing is produced.
    let many = post_bulk(&cli, "{}\n{}\n{}\n{}\n{}\n{}\n", &[]).await;
    many.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    let empty = post_bulk(&cli, "\n \n", &[]).await;
    empty.assert_status(StatusCode::BAD_REQUEST);
    let keyed = post_bulk(&cli, "{\"PatientId\":\"a\"}\n", &[("idempotency-key", "k")]).await;
    keyed.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = keyed.json().await.value().deserialize();
    assert_eq!(problem["field"], "Idempotency-Key");
    assert_eq!(bus.published("p.events").len(), 2, "nothing more produced");
}

#[tokio::test]
async fn a_bulk_body_the_broker_takes_none_of_is_a_503_to_retry_whole() {
    let Fixture { cli, bus, .. } = fixture(8, None);
    bus.set_down(true);
    let body = "{\"PatientId\":\"a\"}\n{\"PatientId\":\"b\"}\n";
    let response = post_bulk(&cli, body, &[]).await;
    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    response.assert_header("retry-after", "1");
    let problem: Value = response.json().await.value().deserialize();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("none of the 2 lines") && d.contains("retry")),
        "{problem}"
    );
    // A bad line among them is the caller's to fix: the answer stays per line.
    let mixed = post_bulk(&cli, "{\"PatientId\":\"a\"}\nnot json\n", &[]).await;
    mixed.assert_status(StatusCode::MULTI_STATUS);
}

/// The first server-sent event of `response`, its `data` read as JSON.
async fn first_event(response: poem::test::TestResponse) -> Value {
    use futures::StreamExt as _;
    let mut body = response.0.into_body().into_bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data: String = text
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn live_readings_need_admin_rights_and_carry_counts_lag_and_dead_letters() {
    // The trigger is held: dropped, it would end every stream.
    let Fixture {
        cli,
        metrics,
        _shutdown: _held,
        ..
    } = fixture(8, Some("s3cret"));
    let denied = cli.get("/admin/live").send().await;
    denied.assert_status(StatusCode::UNAUTHORIZED);
    denied.assert_content_type("application/problem+json");
    let consumer = metrics.consumer("p");
    consumer.applied.inc_by(5);
    consumer.skipped.inc_by(2);
    consumer.lag.set([(0, 7), (2, 1)]);
    consumer.recent.push(crate::metrics::DeadLetterNote {
        at: std::time::SystemTime::UNIX_EPOCH,
        partition: 2,
        offset: 41,
        key: "k:0123456789ab".into(),
        reason: crate::pipeline::Reason::new(
            crate::pipeline::Code::Rejected,
            "plugin rejected the event: `Sex` is \"Secret\"",
        )
        .at("Sex")
        .to_string(),
    });
    metrics.ingest("p").answered(202);
    let live = cli
        .get("/admin/live")
        .query("interval_ms", &100)
        .header("authorization", "Bearer s3cret")
        .send()
        .await;
    live.assert_status_is_ok();
    live.assert_content_type("text/event-stream");
    let reading = first_event(live).await;
    assert_eq!(reading["interval_seconds"], 0.0, "{reading}");
    let p = &reading["pipelines"][0];
    assert_eq!(p["name"], "p", "{reading}");
    assert_eq!(p["applied_total"], 5.0);
    assert_eq!(p["skipped_total"], 2.0);
    assert_eq!(p["lag_total"], 8.0);
    assert_eq!(p["lag"], json!({"0": 7.0, "2": 1.0}));
    assert_eq!(
        p["applied_per_second"], 0.0,
        "no rate before a second reading"
    );
    let letter = &p["dead_letters"][0];
    assert_eq!(letter["offset"], 41);
    assert_eq!(letter["at"], "1970-01-01T00:00:00Z");
    assert_eq!(letter["reason"], "rejected `Sex`", "{letter}");
    assert!(!reading.to_string().contains("Secret"), "{reading}");
}

#[tokio::test]
async fn a_live_interval_out_of_bounds_is_a_400_naming_it() {
    let Fixture { cli, .. } = fixture(8, None);
    for bad in ["5", "600000", "soon"] {
        let refused = cli
            .get("/admin/live")
            .query("interval_ms", &bad)
            .send()
            .await;
        refused.assert_status(StatusCode::BAD_REQUEST);
        let text = refused
            .0
            .into_body()
            .into_string()
            .await
            .unwrap_or_default();
        assert!(text.contains("interval_ms"), "{bad}: {text}");
    }
}

#[tokio::test]
async fn the_operator_page_is_static_confined_and_only_on_the_operator_side() {
    let Fixture { cli, app, .. } = fixture(8, Some("s3cret"));
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let served = cli.get(path).send().await;
        served.assert_status_is_ok();
        served.assert_content_type(content_type);
        served.assert_header("x-content-type-options", "nosniff");
        let policy = served
            .0
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            policy.contains("connect-src 'self'") && policy.contains("script-src 'self'"),
            "{policy}"
        );
    }
    let post = cli.post("/ui").send().await;
    post.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    post.assert_header("allow", "GET, HEAD");
    let public = TestClient::new(without_operator(app));
    public
        .get("/ui")
        .send()
        .await
        .assert_status(StatusCode::NOT_FOUND);
    public
        .get("/admin/live")
        .send()
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let Fixture { app, .. } = fixture(8, None);
    let operator = TestClient::new(operator_only(app));
    operator.get("/ui").send().await.assert_status_is_ok();
}

#[tokio::test]
async fn the_in_flight_share_is_taken_from_the_declared_length_before_the_body_is_read() {
    // 8 shares of 64 bytes (the fixture's body limit); bulk bodies up to 4096 bytes.
    let Fixture { cli, bus, .. } = fixture(8, None);
    let line = "{\"PatientId\":\"a\"}\n";
    let send = |declared: Option<usize>| {
        let mut request = cli.post("/p").content_type(NDJSON).body(line);
        if let Some(n) = declared {
            request = request.header("content-length", n);
        }
        request.send()
    };
    // Declared above the bulk limit: 413 at once.
    send(Some(5000))
        .await
        .assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    // Declared at 10 shares, or not declared (the whole bulk limit: 64 shares): more than
    // the 8 there are, so 503 before a byte is read.
    for declared in [Some(600), None] {
        let busy = send(declared).await;
        busy.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        busy.assert_header("retry-after", "1");
    }
    assert!(bus.published("p.events").is_empty());
    // Within the budget, the body is read and taken.
    send(Some(line.len())).await.assert_status_is_ok();
    assert_eq!(bus.published("p.events").len(), 1);
}

/// Requires its version field `UpdatedAt` (a sequence number): never stamped by ingest.
struct RequiresVersion;

impl Policy for RequiresVersion {
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
        let v: Value = serde_json::from_str(event).unwrap_or(Value::Null);
        Ok(match v.get("UpdatedAt") {
            Some(n) if n.is_u64() => Ok(()),
            Some(_) => Err(FieldError {
                field: "UpdatedAt".into(),
                message: "must be a whole number".into(),
            }),
            None => Err(FieldError {
                field: "UpdatedAt".into(),
                message: "is required".into(),
            }),
        })
    }
    fn merge(&self, incoming: &str, _: Option<&str>) -> Result<Decision, PluginError> {
        Ok(Decision::Write(incoming.into()))
    }
    fn schema(&self) -> Result<String, PluginError> {
        Ok(json!({"type": "object", "required": ["PatientId", "UpdatedAt"]}).to_string())
    }
    fn id(&self) -> &str {
        "native:requires-version"
    }
    fn requires(&self, field: &str) -> bool {
        field == "UpdatedAt"
    }
}

#[test]
fn a_version_the_plugin_requires_is_not_stamped_and_its_absence_is_named() {
    let pipeline = crate::testing::pipeline("p");
    let missing = json!({"PatientId": "1"});
    let Err(problem) = event::prepare(&pipeline, &RequiresVersion, missing.clone()) else {
        panic!("an event without its sequence number was accepted");
    };
    let body = serde_json::to_value(&problem).unwrap_or_default();
    assert_eq!(body["field"], "UpdatedAt", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("is required")),
        "{body}"
    );
    let given = json!({"PatientId": "1", "UpdatedAt": 7});
    let prepared = event::prepare(&pipeline, &RequiresVersion, given);
    assert!(prepared.is_ok_and(|p| p.updated_at == json!(7)));
    // A plugin that does not require it gets the time of receipt.
    let stamped = event::prepare(&pipeline, &SexIsText, missing);
    assert!(stamped.is_ok_and(|p| p.updated_at.is_string()));
}
