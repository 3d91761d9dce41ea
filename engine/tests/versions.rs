//! Versions from the future: an `UpdatedAt` far ahead of its receipt is refused (422 at
//! ingest, dead-lettered when produced straight to the topic), so nobody can pin a record
//! against every real update to come; a version within the skew is applied.

mod common;

use common::{produce_raw, Engine, Names};

#[tokio::test]
async fn a_version_past_the_skew_is_refused_at_ingest_and_from_the_topic() {
    let engine = Engine::builder(Names::unique("skew"))
        .extra("max_version_skew = \"2m\"")
        .start();
    let pinned = r#"{"PatientId":"s1","FirstName":"Pinned","UpdatedAt":"9999-12-31T23:59:59Z"}"#;
    let (status, problem) = engine.post(pinned).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "UpdatedAt", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 120 s")),
        "{problem}"
    );
    assert_eq!(engine.topic_size(), 0);

    // Straight to the topic, judged against the message's timestamp.
    let refused = produce_raw(&engine.names.topic, "s1", pinned).await;
    let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(60))
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let fine = format!(r#"{{"PatientId":"s1","FirstName":"Real","UpdatedAt":"{soon}"}}"#);
    let applied = produce_raw(&engine.names.topic, "s1", &fine).await;
    engine.wait_all_committed(&[refused, applied]).await;
    let letters = common::read_dead_letters(&engine, 1).await;
    assert_eq!(letters[0].offset, refused.1);
    assert!(
        letters[0].reason.contains("max_version_skew"),
        "{letters:?}"
    );
    let (status, record) = engine.get_json("/patientprofile/s1").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["FirstName"], "Real");
}
