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
async fn a_plugin_that_quotes_a_value_in_its_reason_does_not_put_it_in_the_log() {
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
    assert!(
        line.contains("is not a name we accept") && line.contains("\"…\""),
        "the reason, masked: {line}"
    );
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&marker)).collect();
    assert!(leaks.is_empty(), "marker in the log:\n{}", leaks.join("\n"));
}
