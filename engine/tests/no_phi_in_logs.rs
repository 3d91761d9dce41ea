//! No patient data in operational logs: a run that writes, reads back, dead-letters and
//! refuses records carrying a unique marker, at debug level, leaves no marker in any log
//! line. Keys appear only as keyed hashes. The sweep puts the marker in every field, in the
//! key in the path and in the query, through every kind of answer (2xx, 4xx, 5xx, each auth
//! refusal, bulk, dead letter, the operator's side) and command (load with rejects, tap, dead
//! letters re-driven, the table replayed), and looks for it in the logs, the exported traces
//! and `/metrics`.

mod common;

use common::{produce_raw, Engine, Names};

#[tokio::test]
async fn no_marker_value_or_key_reaches_any_log_line() {
    // The entity id from the message key, so that a body keyed apart is refused.
    let engine = Engine::builder(Names::unique("phi"))
        .extra("key_source = \"message\"")
        .start();
    let marker = format!("phi-marker-{}", std::process::id());
    let key = format!("{marker}-key");
    let topic = engine.names.topic.clone();
    // Written through HTTP and read back.
    let written = engine
        .post_accepted(&format!(
            r#"{{"PatientId":"{key}","FirstName":"{marker}-name","LastName":"{marker}-last","IsPregnant":"True","Sex":"Female"}}"#
        ))
        .await;
    // Refused at ingest (422 names the field, not the value).
    let (status, problem) = engine
        .post(&format!(
            r#"{{"PatientId":"{key}","UpdatedAt":"{marker}-not-a-time"}}"#
        ))
        .await;
    assert_eq!(status, 422, "{problem}");
    // Dead-lettered from the topic: a value the plugin refuses, and a key that differs.
    let rejected = produce_raw(
        &topic,
        &key,
        &format!(
            r#"{{"PatientId":"{key}","FirstName":"{marker}-x","UpdatedAt":"{marker}-not-a-time"}}"#
        ),
    )
    .await;
    let mismatched = produce_raw(
        &topic,
        &format!("{marker}-other"),
        &format!(r#"{{"PatientId":"{key}","UpdatedAt":"2006-01-02T15:00:00Z"}}"#),
    )
    .await;
    engine
        .wait_all_committed(&[written, rejected, mismatched])
        .await;
    let (status, record) = engine.get_json(&format!("/patientprofile/{key}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(common::read_dead_letters(&engine, 2).await.len(), 2);

    let log = engine.log();
    assert!(
        log.contains("Event dead-lettered."),
        "the run logged at debug:\n{log}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&marker)).collect();
    assert!(leaks.is_empty(), "marker in the log:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn a_plugins_reason_reaches_the_dead_letter_and_only_its_code_the_log() {
    let engine = common::hostile::hostile_engine("phi-echo");
    let marker = format!("Echoed{}Name", std::process::id());
    // Ingest accepts it (the attack runs in merge); the merge rejects it quoting FirstName.
    let rejected = engine
        .post_accepted(&format!(
            r#"{{"PatientId":"echo-1","attack":"echo","FirstName":"{marker}"}}"#
        ))
        .await;
    engine.wait_all_committed(&[rejected]).await;
    let letters = common::read_dead_letters(&engine, 1).await;
    // The dead letter keeps the reason whole, beside the event it refers to.
    assert!(
        letters[0].reason.contains(&marker),
        "{:?}",
        letters[0].reason
    );
    let log = engine.log();
    let line = log
        .lines()
        .find(|l| l.contains("Event dead-lettered."))
        .unwrap_or_else(|| panic!("no dead-letter line:\n{log}"));
    // The log shows the code, never the plugin's words (which could carry a value however
    // they are written).
    assert!(
        line.contains("rejected") && !line.contains("is not a name we accept"),
        "the reason as its code: {line}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&marker)).collect();
    assert!(leaks.is_empty(), "marker in the log:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn refused_calls_log_the_route_template_never_the_key() {
    let auth = common::api_keys_table(&[
        ("profile-service", "writer-key", &["patient-profile:write"]),
        ("operator", "admin-key", &["admin"]),
    ]);
    let engine = Engine::builder(Names::unique("phi-auth"))
        .extra(&auth)
        .start();
    let marker = format!("phi-refused-{}", std::process::id());
    let client = reqwest::Client::new();
    let body = format!(r#"{{"PatientId":"{marker}","FirstName":"{marker}"}}"#);
    // A read without credentials, with wrong ones, and with a key that may only write; a
    // write without credentials; the key in the path and in the query each time.
    for (bearer, read, expected) in [
        (None, true, 401),
        (Some("not-a-key"), true, 401),
        (Some("writer-key"), true, 403),
        (None, false, 401),
        (Some("not-a-key"), false, 401),
    ] {
        let mut request = if read {
            client.get(format!(
                "{}/patientprofile/{marker}?PatientId={marker}",
                engine.url
            ))
        } else {
            client
                .post(format!("{}/patientprofile?PatientId={marker}", engine.url))
                .header("content-type", "application/json")
                .body(body.clone())
        };
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let answer = request.send().await.expect("the engine answers");
        assert_eq!(answer.status().as_u16(), expected, "{bearer:?} read={read}");
    }
    // The admin side refused too.
    let admin = client
        .post(format!(
            "{}/admin/pipelines/{marker}/reload?x={marker}",
            engine.url
        ))
        .bearer_auth("writer-key")
        .send()
        .await
        .expect("answers");
    assert_eq!(admin.status().as_u16(), 403);
    let metrics = client
        .get(format!("{}/metrics", engine.url))
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("answers");
    assert_eq!(metrics.status().as_u16(), 200);
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("ordo_"), "{metrics}");
    let log = engine.log();
    assert!(
        log.contains("route=/patientprofile/{id}") || log.contains("/patientprofile/{id}"),
        "a refused read is logged by its route's template:\n{log}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&marker)).collect();
    assert!(leaks.is_empty(), "marker in the log:\n{}", leaks.join("\n"));
    assert!(!metrics.contains(&marker), "marker in /metrics");
}

/// Runs `ordo args…` at debug level; its log (standard error), after asserting it succeeded.
fn ordo_log(args: &[&str]) -> String {
    let output = common::ordo_command()
        .env("ORDO_LOG", "info,ordo=debug")
        .args(args)
        .output()
        .expect("run ordo");
    let err = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success() || args[0] == "load",
        "ordo {args:?}: {}\n{err}",
        String::from_utf8_lossy(&output.stdout)
    );
    err
}

#[tokio::test]
async fn every_kind_of_answer_and_command_leaves_no_marker_in_logs_traces_or_metrics() {
    use std::time::Duration;

    let auth = common::api_keys_table(&[
        ("w", "writer-key", &["patient-profile:write"]),
        ("r", "reader-key", &["patient-profile:read"]),
        ("a", "admin-key", &["admin"]),
    ]);
    let collector = common::Collector::start().await;
    let endpoint = collector.url.clone();
    // Two shares of 1 MiB, so a bulk body declaring 3 MiB is turned away with a 503.
    let engine = Engine::builder(Names::unique("phi-sweep"))
        .extra(&auth)
        .args(&["--max-in-flight", "2"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .start();
    let m = format!("Swept{}Marker", std::process::id());
    let key = format!("{m}-key");
    let full = format!(
        r#"{{"PatientId":"{key}","FirstName":"{m}-first","LastName":"{m}-last","IsPregnant":"True","Sex":"{m}-sex","UpdatedAt":"2006-01-02T15:00:00Z"}}"#
    );
    let client = reqwest::Client::new();
    let post = |bearer: Option<&str>, content_type: &'static str, body: String| {
        let mut request = client
            .post(format!("{}/patientprofile?PatientId={m}", engine.url))
            .header("content-type", content_type)
            .header("x-request-id", "sweep")
            .body(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let json = "application/json";
    // 2xx, 4xx of every kind, and auth refusals, each carrying the marker.
    assert_eq!(post(Some("writer-key"), json, full.clone()).await, 202);
    assert_eq!(
        post(
            Some("writer-key"),
            json,
            format!("{{\"PatientId\":\"{m}\",")
        )
        .await,
        400
    );
    assert_eq!(
        post(
            Some("writer-key"),
            json,
            format!(r#"{{"PatientId":"{key}","UpdatedAt":"{m}"}}"#)
        )
        .await,
        422
    );
    assert_eq!(post(None, json, full.clone()).await, 401);
    assert_eq!(post(Some(&m), json, full.clone()).await, 401);
    assert_eq!(post(Some("reader-key"), json, full.clone()).await, 403);
    let bulk = format!("{full}\n{{\"FirstName\":\"{m}-no-key\"}}\n{{\"PatientId\":\"{m}-bad\",\"UpdatedAt\":\"{m}\"}}\n");
    assert_eq!(
        post(Some("writer-key"), "application/x-ndjson", bulk).await,
        207
    );
    // 5xx: a bulk body beyond the in-flight budget, turned away before it is read.
    let addr = engine.url.trim_start_matches("http://").to_string();
    let mut raw = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /patientprofile?PatientId={m} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer writer-key\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    );
    let answer = common::first_answer(&mut raw, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(raw);
    // Reads: found, not found, refused; the key in the path and the query.
    let get = |bearer: &'static str, id: String| {
        let request = client
            .get(format!("{}/patientprofile/{id}?PatientId={m}", engine.url))
            .bearer_auth(bearer);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let deadline = std::time::Instant::now() + common::EFFECT_TIMEOUT;
    while get("reader-key", key.clone()).await != 200 {
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("reader-key", format!("{m}-absent")).await, 404);
    assert_eq!(get("writer-key", key.clone()).await, 403);
    // A dead letter: an event the plugin refuses, produced straight to the topic.
    produce_raw(
        &engine.names.topic,
        &format!("{m}-dl"),
        &format!(r#"{{"PatientId":"{m}-dl","FirstName":"{m}","UpdatedAt":"{m}-not-a-time"}}"#),
    )
    .await;
    common::read_dead_letters(&engine, 1).await;
    // The operator's side: the listing, a live stream, the metrics.
    let admin = |path: &str| {
        client
            .get(format!("{}{path}", engine.url))
            .bearer_auth("admin-key")
            .send()
    };
    assert_eq!(
        admin("/admin/pipelines").await.expect("answers").status(),
        200
    );
    let mut live = admin("/admin/live?interval_ms=100").await.expect("answers");
    for _ in 0..3 {
        live.chunk().await.expect("a reading");
    }
    drop(live);
    // The commands: load (with rejects), tap, and the dead letters re-driven.
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!("{full}\n{{\"PatientId\":\"{m}-l\",\"UpdatedAt\":\"{m}\"}}\n"),
    )
    .expect("input");
    let config = engine.config_path().display().to_string();
    let pipeline = engine.names.pipeline.clone();
    let rejects = dir.path().join("rejects.jsonl").display().to_string();
    let mut commands = String::new();
    commands += &ordo_log(&[
        "load",
        "--config",
        &config,
        "--brokers",
        &engine.brokers,
        "--rejects",
        &rejects,
        &pipeline,
        &input.display().to_string(),
    ]);
    assert!(
        std::fs::read_to_string(&rejects).is_ok_and(|r| r.contains(&m)),
        "the rejected line is kept, in its file"
    );
    commands += &ordo_log(&[
        "tap",
        &pipeline,
        "--config",
        &config,
        "--brokers",
        &engine.brokers,
        "--from-beginning",
        "--limit",
        "3",
    ]);
    commands += &ordo_log(&[
        "dlq",
        "replay",
        &pipeline,
        "--config",
        &config,
        "--brokers",
        &engine.brokers,
    ]);
    // The table restored from the topic's first events.
    commands += &ordo_log(&[
        "replay",
        &pipeline,
        "--from",
        "0",
        "--config",
        &config,
        "--brokers",
        &engine.brokers,
    ]);

    let metrics = admin("/metrics")
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    // Spans are exported every 200 ms; wait until some have arrived.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while collector.bodies().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no spans exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = engine.log();
    assert!(
        log.contains("Event dead-lettered."),
        "the run logged at debug"
    );
    let spans = collector.bodies().join("\n");
    assert!(
        spans.contains("/patientprofile") && spans.contains(&engine.names.table),
        "the spans carry their attributes (route, table), so a value among them would show"
    );
    for (what, text) in [
        ("the engine's log", log),
        ("the commands' logs", commands),
        ("/metrics", metrics),
        ("the exported spans", spans),
    ] {
        let leaks: Vec<&str> = text.lines().filter(|l| l.contains(&m)).collect();
        assert!(leaks.is_empty(), "marker in {what}:\n{}", leaks.join("\n"));
    }
}
