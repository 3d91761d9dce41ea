//! No patient data in operational logs: a run that writes, reads back, dead-letters and
//! refuses records carrying a unique marker, at debug level, leaves no marker in any log
//! line. Keys appear only as keyed hashes.

mod common;

use common::{produce_raw, Engine, Names};

#[tokio::test]
async fn no_marker_value_or_key_reaches_any_log_line() {
    let engine = Engine::builder(Names::unique("phi")).start();
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
    let hash = |key: &str| -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let auth = format!(
        r#"
[auth]
[[auth.api_keys]]
name = "profile-service"
sha256 = "{writer}"
scopes = ["patient-profile:write"]
[[auth.api_keys]]
name = "operator"
sha256 = "{admin}"
scopes = ["admin"]
"#,
        writer = hash("writer-key"),
        admin = hash("admin-key"),
    );
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
