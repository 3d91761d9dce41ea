//! The seed's scenarios, end to end: HTTP → Kafka → consumer → WASM plugin → DynamoDB.

mod common;

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{produce_raw, s, wait_item, Engine, Names};
use std::time::Duration;

/// The README's curl body, byte for byte.
const SEED_BODY: &str = r#"{ "PatientId": "1", "FirstName": "John", "LastName": "Doe", "IsPregnant": "False", "Sex": "Female"}"#;

#[tokio::test]
async fn seed_curl_lands_as_the_seed_scan_shows() {
    let engine = Engine::start("seed");
    let (status, accepted) = engine.post(SEED_BODY).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["key"], "1");
    assert_eq!(accepted["pipeline"], "patient-profile");
    let stamped = accepted["updatedAt"]
        .as_str()
        .expect("updatedAt in the answer")
        .to_string();
    chrono::DateTime::parse_from_rfc3339(&stamped).expect("stamped UpdatedAt is RFC 3339");

    let item = wait_item(&engine, "1", |_| true).await;
    assert_eq!(engine.topic_size(), 1, "one request, one event");
    let attributes: BTreeMap<&str, &AttributeValue> =
        item.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let expected = [
        ("FirstName", "John"),
        ("IsPregnant", "False"),
        ("LastName", "Doe"),
        ("PatientId", "1"),
        ("Sex", "Female"),
        ("UpdatedAt", stamped.as_str()),
    ];
    // The seed's six string attributes, plus the engine's own `Ordo` map (which plugin wrote
    // the record, and its revision).
    assert_eq!(
        attributes.len(),
        expected.len() + 1,
        "attributes: {attributes:?}"
    );
    let Some(AttributeValue::M(meta)) = attributes.get("Ordo") else {
        panic!("no Ordo map: {attributes:?}");
    };
    assert_eq!(meta.get("revision"), Some(&AttributeValue::N("1".into())));
    let plugin = std::fs::read(common::lww_plugin()).expect("read plugin");
    assert_eq!(
        meta.get("plugin"),
        Some(&AttributeValue::S(ordo::plugin::wasm::content_id(&plugin)))
    );
    for (name, value) in expected {
        assert_eq!(
            attributes.get(name),
            Some(&&AttributeValue::S(value.into())),
            "{name}"
        );
    }
}

/// Event1 at 15:00:00+10:00 (05:00:00Z), Event2 half a second later but written in UTC, so
/// its text sorts *before* Event1's: only ordering by instant gets this right.
const EVENT1: &str = r#"{"PatientId":"p-seed","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}"#;
const EVENT2: &str = r#"{"PatientId":"p-seed","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T05:00:00.500000000Z"}"#;

#[tokio::test]
async fn event2_consumed_before_event1_leaves_is_pregnant_true() {
    let engine = Engine::start("seed-order");
    let (status, second) = engine.post(EVENT2).await;
    assert_eq!(status, 202, "{second}");
    wait_item(&engine, "p-seed", |i| s(i, "IsPregnant") == "True").await;

    let (status, first) = engine.post(EVENT1).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(
        first["partition"], second["partition"],
        "one key, one partition"
    );
    assert_eq!(
        first["updatedAt"], "2006-01-02T15:00:00.000000000+10:00",
        "a client's UpdatedAt is kept"
    );
    let partition = first["partition"].as_i64().expect("partition") as i32;
    let offset = first["offset"].as_i64().expect("offset");
    // Event1 is consumed (and skipped as stale) once the group commits past it.
    engine.wait_committed_past(partition, offset).await;

    let item = common::get_item(&common::dynamodb().await, &engine.names.table, "p-seed")
        .await
        .expect("record exists");
    assert_eq!(s(&item, "IsPregnant"), "True");
    assert_eq!(s(&item, "UpdatedAt"), "2006-01-02T05:00:00.500000000Z");

    // The skip is counted, not hidden: both events settled, one applied, one stale.
    let metrics = reqwest::get(format!("{}/metrics", engine.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"ordo_ingest_requests_total{pipeline="patient-profile",status="202"} 2"#,
        r#"ordo_events_total{pipeline="patient-profile",outcome="applied"} 1"#,
        r#"ordo_events_total{pipeline="patient-profile",outcome="skipped_stale"} 1"#,
        r#"ordo_dynamodb_writes_total{pipeline="patient-profile"} 1"#,
        r#"ordo_produce_seconds_count{pipeline="patient-profile"} 2"#,
        r#"ordo_dynamodb_write_seconds_count{pipeline="patient-profile"} 1"#,
        // Validated at ingest and again before the merge; merged once each.
        r#"ordo_plugin_call_seconds_count{pipeline="patient-profile",call="validate"} 4"#,
        r#"ordo_plugin_call_seconds_count{pipeline="patient-profile",call="merge"} 2"#,
        r#"ordo_plugin_fuel_count{pipeline="patient-profile",call="merge"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line} in:\n{metrics}"
        );
    }
    // librdkafka reports lag every 5 s: the partition is caught up.
    let caught_up =
        format!(r#"ordo_consumer_lag{{pipeline="patient-profile",partition="{partition}"}} 0"#);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = engine.get_text("/metrics").await;
        if metrics.lines().any(|l| l == caught_up) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never saw {caught_up} in:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn events_from_other_producers_are_applied_in_the_same_way() {
    let engine = Engine::start("raw");
    let newer = EVENT2.replace("p-seed", "p-raw");
    let older = EVENT1.replace("p-seed", "p-raw");
    produce_raw(&engine.names.topic, "p-raw", &newer).await;
    let (partition, offset) = produce_raw(&engine.names.topic, "p-raw", &older).await;
    engine.wait_committed_past(partition, offset).await;
    let item = common::get_item(&common::dynamodb().await, &engine.names.table, "p-raw")
        .await
        .expect("record exists");
    assert_eq!(
        s(&item, "IsPregnant"),
        "True",
        "the older event, consumed last, must not win"
    );
}

#[tokio::test]
async fn bad_requests_get_a_problem_naming_the_field() {
    let engine = Engine::start("bad");
    let (status, problem) = engine
        .post(r#"{"PatientId": "1", "IsPregnant": false}"#)
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("IsPregnant")),
        "{problem}"
    );
    let (status, problem) = engine.post(r#"{"FirstName": "John"}"#).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("PatientId")),
        "{problem}"
    );
    let (status, problem) = engine
        .post(r#"{"PatientId": "1", "UpdatedAt": "2006-01-02T15:00:00.000000000Z10:00"}"#)
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("UpdatedAt")),
        "{problem}"
    );
    let (status, problem) = engine.post("{\"PatientId\": \"1\",\n  oops}").await;
    assert_eq!(
        (status, problem["line"].as_u64()),
        (400, Some(2)),
        "{problem}"
    );

    let response = reqwest::Client::new()
        .post(format!("{}/patientprofile", engine.url))
        .header("Content-Type", "text/plain")
        .body(SEED_BODY)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 415);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
}

#[tokio::test]
async fn docs_describe_the_pipeline_route_and_its_schema() {
    let engine = Engine::start("docs");
    let spec: serde_json::Value = reqwest::get(format!("{}/docs/openapi.json", engine.url))
        .await
        .expect("GET spec")
        .json()
        .await
        .expect("spec is JSON");
    let post = &spec["paths"]["/patientprofile"]["post"];
    let schema = &post["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        schema["properties"]["PatientId"]["type"], "string",
        "{spec}"
    );
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["example"]["FirstName"],
        "John"
    );
    assert!(spec["paths"]["/healthz"]["get"].is_object(), "{spec}");

    let ready = reqwest::get(format!("{}/readyz", engine.url))
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let ready: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(ready["checks"]["kafka"], "ok", "{ready}");
    assert_eq!(ready["checks"]["dynamodb:patient-profile"], "ok", "{ready}");
    let plugin = ready["plugins"]["patient-profile"]
        .as_str()
        .unwrap_or_default();
    assert!(plugin.starts_with("sha256:"), "{ready}");

    let html = reqwest::get(format!("{}/docs", engine.url))
        .await
        .expect("GET /docs")
        .text()
        .await
        .expect("html");
    assert!(html.contains("SwaggerUIBundle") && html.contains("/patientprofile"));
}

#[tokio::test]
async fn the_stored_record_can_be_read_back_and_a_missing_one_is_404() {
    let engine = Engine::start("read");
    let (status, accepted) = engine.post(SEED_BODY).await;
    assert_eq!(status, 202, "{accepted}");
    wait_item(&engine, "1", |_| true).await;
    let record: serde_json::Value = reqwest::get(format!("{}/patientprofile/1", engine.url))
        .await
        .expect("GET record")
        .json()
        .await
        .expect("JSON record");
    assert_eq!(record["IsPregnant"], "False");
    assert_eq!(record["UpdatedAt"], accepted["updatedAt"]);

    let missing = reqwest::get(format!("{}/patientprofile/nobody", engine.url))
        .await
        .expect("GET missing");
    assert_eq!(missing.status().as_u16(), 404);
    let problem: serde_json::Value = missing.json().await.expect("problem JSON");
    assert_eq!(problem["status"], 404);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_produces_no_second_event() {
    let engine = Engine::start("idem");
    let client = reqwest::Client::new();
    let send = |key: &'static str| {
        client
            .post(format!("{}/patientprofile", engine.url))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .body(SEED_BODY)
            .send()
    };
    let first = send("retry-1").await.expect("POST");
    assert_eq!(first.status().as_u16(), 202);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: serde_json::Value = first.json().await.expect("JSON");
    let retry = send("retry-1").await.expect("POST");
    assert_eq!(retry.status().as_u16(), 202);
    assert_eq!(
        retry
            .headers()
            .get("idempotency-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let retry: serde_json::Value = retry.json().await.expect("JSON");
    assert_eq!(retry, first, "the retry gets the first answer");
    let other = send("retry-2").await.expect("POST");
    assert_eq!(other.status().as_u16(), 202);
    assert_eq!(
        engine.topic_size(),
        2,
        "two keys, two events; the retry produced none"
    );
}

#[tokio::test]
async fn ingest_answers_503_with_retry_after_when_the_broker_is_gone() {
    let mut broker = common::PrivateBroker::start();
    let engine = Engine::builder(common::Names::unique("down"))
        .brokers(&broker.address)
        .args(&["--produce-timeout-ms", "2000"])
        .start();
    let (status, accepted) = engine.post(SEED_BODY).await;
    assert_eq!(status, 202, "up: {accepted}");

    broker.stop();
    let response = reqwest::Client::new()
        .post(format!("{}/patientprofile", engine.url))
        .header("Content-Type", "application/json")
        .body(SEED_BODY)
        .send()
        .await
        .expect("the engine still answers");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let problem: serde_json::Value = response.json().await.expect("problem JSON");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("retry")),
        "{problem}"
    );
}

#[tokio::test]
async fn a_body_that_dribbles_in_gets_408_and_holds_no_share_of_ingest() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // One request in flight at most: a slow client holding it would starve everyone.
    let engine = Engine::builder(Names::unique("slow-body"))
        .args(&["--body-timeout-ms", "500", "--max-in-flight", "1"])
        .start();
    let address = engine.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    slow.write_all(
        b"POST /patientprofile HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"PatientId\":",
    )
    .await
    .expect("writes the start");
    // While it dribbles, another client is served.
    let accepted = engine
        .post_accepted(r#"{"PatientId":"fast","FirstName":"Quick"}"#)
        .await;
    assert!(accepted.1 >= 0);
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            let n = slow.read(&mut buf).await.expect("reads");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
                break;
            }
        }
    })
    .await
    .expect("the engine answers the slow client");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(engine.topic_size(), 1, "only the fast event was produced");
}

#[tokio::test]
async fn a_pipelines_file_written_before_plugin_configuration_still_serves_the_seed() {
    // No plugin_config: the shipped plugin is the patient profile's, as it always was.
    let engine = Engine::builder(Names::unique("unconfigured"))
        .unconfigured()
        .start();
    let (status, accepted) = engine.post(SEED_BODY).await;
    assert_eq!(status, 202, "{accepted}");
    let item = wait_item(&engine, "1", |_| true).await;
    assert_eq!(s(&item, "IsPregnant"), "False");
    let (status, refused) = engine.post(r#"{"PatientId":"2","IsPregnant":true}"#).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["field"], "IsPregnant", "{refused}");
    let (_, spec) = engine.get_json("/docs/openapi.json").await;
    let example = &spec["paths"]["/patientprofile"]["post"]["requestBody"]["content"]
        ["application/json"]["example"];
    assert_eq!(example["FirstName"], "John", "{example}");
    assert_eq!(example["Sex"], "Female", "{example}");
}
