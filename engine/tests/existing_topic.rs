//! Pointing Ordo at a topic another service already produces: a pipeline without a route
//! consumes it, takes each event's entity id from the body, and never creates or changes the
//! topic. The first test is the seed's story played literally: the Profile service (here a
//! plain Kafka producer, not Ordo) sends the two updates of patient 1 unkeyed, to different
//! partitions, and Event2 is consumed before Event1.

mod common;

use std::time::Duration;

use common::{
    brokers, create_topic, dynamodb, get_item, produce_unkeyed, read_all, s, wait_item, Engine,
    Names,
};

/// The seed's Event1 and Event2 in the pipeline's field names (the seed's `Z10:00` is read
/// as the `+10:00` offset it means).
const EVENT1: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}"#;
const EVENT2: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.500000000+10:00"}"#;

#[tokio::test]
async fn the_seed_unkeyed_on_two_partitions_event2_first_keeps_is_pregnant_true() {
    let names = Names::unique("seed-topic");
    let brokers = brokers();
    create_topic(&brokers, &names.topic, 2).await;
    let engine = Engine::builder(names.clone()).routeless().start();

    // Event2 on partition 1 is consumed and applied before Event1 is even produced.
    let second = produce_unkeyed(&brokers, &names.topic, 1, EVENT2).await;
    wait_item(&engine, "1", |item| s(item, "IsPregnant") == "True").await;
    let first = produce_unkeyed(&brokers, &names.topic, 0, EVENT1).await;
    engine.wait_committed_past(0, first).await;
    engine.wait_committed_past(1, second).await;

    let item = get_item(&dynamodb().await, &names.table, "1")
        .await
        .expect("patient 1's record");
    assert_eq!(s(&item, "IsPregnant"), "True", "the late Event1 lost");
    assert_eq!(s(&item, "UpdatedAt"), "2006-01-02T15:00:00.500000000+10:00");
    let letters = read_all(&brokers, &format!("{}.dlq", names.topic));
    assert!(
        letters.is_empty(),
        "an unkeyed event is not poison: {letters:?}"
    );
    let topic = read_all(&brokers, &names.topic);
    assert_eq!(
        topic.len(),
        2,
        "Ordo wrote nothing to a topic it does not own"
    );
    assert!(topic.iter().all(|m| m.key.is_none()));
}

#[tokio::test]
async fn a_routeless_pipeline_serves_no_route_and_sizes_its_own_topics_from_the_brokers() {
    let names = Names::unique("routeless");
    let brokers = brokers();
    create_topic(&brokers, &names.topic, 4).await;
    let engine = Engine::builder(names.clone()).routeless().start();

    let (status, _) = engine.post(EVENT1).await;
    assert_eq!(status, 404, "no route, no ingest");
    let (_, spec) = engine.get_json("/docs/openapi.json").await;
    assert!(
        spec["paths"].get("/patientprofile").is_none(),
        "{}",
        spec["paths"]
    );
    // The dead-letter topic is Ordo's: created with the partitions the brokers report.
    assert_eq!(partitions(&brokers, &format!("{}.dlq", names.topic)), 4);
    assert_eq!(partitions(&brokers, &names.topic), 4);
}

#[tokio::test]
async fn a_missing_topic_is_named_and_not_created_by_run_or_validate() {
    let names = Names::unique("no-topic");
    let brokers = brokers();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pipelines.toml");
    std::fs::write(&config, routeless_file(&names)).expect("write config");

    let validated = common::ordo_command()
        .args([
            "validate",
            &config.display().to_string(),
            "--brokers",
            &brokers,
        ])
        .output()
        .expect("run ordo validate");
    let out = String::from_utf8_lossy(&validated.stdout);
    assert!(!validated.status.success(), "{out}");
    assert!(
        out.contains(&format!("`topic` \"{}\" does not exist", names.topic)),
        "{out}"
    );

    let log_path = dir.path().join("engine.log");
    let mut run = common::ordo_command()
        .args([
            "--config",
            &config.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("KAFKA_BROKERS", &brokers)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("run the engine");
    let deadline = std::time::Instant::now() + common::EFFECT_TIMEOUT;
    let status = loop {
        if let Some(status) = run.try_wait().expect("engine status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("the engine started without its topic");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("does not exist") && log.contains(&names.topic),
        "{log}"
    );
    assert_eq!(
        partitions(&brokers, &names.topic),
        0,
        "Ordo created a topic it does not own"
    );

    // Once the owner created it with a message of each kind, validate samples them.
    create_topic(&brokers, &names.topic, 2).await;
    produce_unkeyed(&brokers, &names.topic, 0, EVENT1).await;
    produce_unkeyed(&brokers, &names.topic, 1, "not json").await;
    let validated = common::ordo_command()
        .args([
            "validate",
            &config.display().to_string(),
            "--brokers",
            &brokers,
        ])
        .output()
        .expect("run ordo validate");
    let out = String::from_utf8_lossy(&validated.stdout);
    assert!(validated.status.success(), "{out}");
    for says in [
        "exists with 2 partition(s), not Ordo's",
        "sampled the last 2 message(s)",
        "1 would apply, 1 would be dead-lettered (1 not-json)",
    ] {
        assert!(out.contains(says), "{says}: {out}");
    }
    assert!(
        !out.contains("John"),
        "values stay out of the report: {out}"
    );
}

/// A pipelines file with one route-less pipeline on `names`' topic and table.
fn routeless_file(names: &Names) -> String {
    format!(
        r#"[pipelines.patient-profile]
topic = "{topic}"
key_field = "PatientId"
version_field = "UpdatedAt"
table = "{table}"
plugin = "{plugin}"
consumer_group = "{group}"

[idempotency]
table = "{table}-idempotency"

[audit]
enabled = false
"#,
        topic = names.topic,
        table = names.table,
        group = names.group,
        plugin = common::lww_plugin().display(),
    )
}

/// How many partitions `topic` has (0 when it does not exist).
fn partitions(brokers: &str, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("metadata reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata from the broker");
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .sum()
}
