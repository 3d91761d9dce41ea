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
    let changes = format!("{}.changes", names.topic);
    let engine = Engine::builder(names.clone())
        .routeless()
        .extra(&format!("changes_topic = \"{changes}\""))
        .start();

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

    // One change for patient 1, not two: Event1 was stale and published nothing.
    let feed = read_all(&brokers, &changes);
    assert_eq!(feed.len(), 1, "{feed:?}");
    let change = &feed[0];
    assert_eq!(change.key.as_deref(), Some(&b"1"[..]));
    assert_eq!(change.header("ordo-revision"), Some("1"));
    assert_eq!(change.header("ordo-pipeline"), Some("patient-profile"));
    assert!(change
        .header("ordo-plugin")
        .is_some_and(|p| p.starts_with("sha256:")));
    let record = change.json().expect("the record as JSON");
    assert_eq!(record["IsPregnant"], "True");
    assert!(
        record.get("Ordo").is_none(),
        "the engine's attribute stays home"
    );
}

/// A downstream service reading the change feed: per key, the highest revision seen; a change
/// whose revision is not higher is a repeat (at least once) and is dropped.
#[derive(Default)]
struct Downstream {
    /// Key → (revision, record) last kept.
    last: std::collections::HashMap<String, (u64, serde_json::Value)>,
    /// Key → revision → the record first seen under it.
    seen: std::collections::HashMap<(String, u64), serde_json::Value>,
    /// Changes dropped as repeats.
    repeats: usize,
}

impl Downstream {
    fn read(&mut self, change: &common::Read) {
        let key =
            String::from_utf8(change.key.clone().expect("keyed by entity id")).expect("UTF-8 key");
        let revision: u64 = change
            .header("ordo-revision")
            .and_then(|r| r.parse().ok())
            .expect("ordo-revision header");
        let record = change.json().expect("JSON record");
        assert_eq!(
            record["PatientId"],
            key.as_str(),
            "keyed by the record's id"
        );
        // One revision, one record: a repeat never carries another state.
        let first = self
            .seen
            .entry((key.clone(), revision))
            .or_insert_with(|| record.clone());
        assert_eq!(
            *first, record,
            "{key} revision {revision} published with two states"
        );
        match self.last.get(&key) {
            Some((kept, _)) if *kept >= revision => self.repeats += 1,
            _ => {
                self.last.insert(key, (revision, record));
            }
        }
    }
}

#[tokio::test]
async fn a_downstream_consumer_of_the_change_feed_ends_on_every_record_through_kills_and_rebalances(
) {
    use common::{produce_raw, Rng, Workload};
    let names = Names::unique("changes");
    let brokers = brokers();
    let changes = format!("{}.changes", names.topic);
    let start = |names: &Names| {
        Engine::builder(names.clone())
            .extra(&format!("changes_topic = \"{changes}\""))
            .start()
    };
    let workload = Workload::new(&mut Rng::from_env(), "c", 24, 15);
    let thirds: Vec<&[(String, String)]> = workload.events.chunks(120).collect();
    let mut produced = Vec::new();

    // One engine, then killed (SIGKILL: no drain, offsets uncommitted) mid-stream.
    let mut first = start(&names);
    for (key, body) in thirds[0] {
        produced.push(produce_raw(&names.topic, key, body).await);
    }
    wait_item(&first, &thirds[0][0].0, |_| true).await;
    first.kill();
    // Two engines in the group: every partition moves, and the first's last events come again.
    let second = start(&names);
    let mut third = start(&names);
    for (key, body) in thirds[1] {
        produced.push(produce_raw(&names.topic, key, body).await);
    }
    wait_item(&second, &thirds[1][0].0, |_| true).await;
    third.kill();
    for (key, body) in thirds[2] {
        produced.push(produce_raw(&names.topic, key, body).await);
    }
    second.wait_all_committed(&produced).await;

    let mut downstream = Downstream::default();
    for change in read_all(&brokers, &changes) {
        downstream.read(&change);
    }
    let client = dynamodb().await;
    for (key, newest) in &workload.newest {
        let item = get_item(&client, &names.table, key).await.expect("record");
        let table_revision = match item.get("Ordo") {
            Some(aws_sdk_dynamodb::types::AttributeValue::M(meta)) => match meta.get("revision") {
                Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => {
                    n.parse::<u64>().expect("revision")
                }
                other => panic!("revision: {other:?}"),
            },
            other => panic!("Ordo: {other:?}"),
        };
        let (revision, record) = downstream
            .last
            .get(key)
            .unwrap_or_else(|| panic!("{key}: no change published"));
        assert_eq!(
            *revision, table_revision,
            "{key}: the feed ends at the table's revision"
        );
        assert_eq!(record["FirstName"], newest.as_str(), "{key}");
        for field in ["FirstName", "LastName", "IsPregnant", "UpdatedAt"] {
            assert_eq!(record[field], s(&item, field), "{key} {field}");
        }
    }
    assert_eq!(
        downstream.last.len(),
        workload.newest.len(),
        "no change for a key never written"
    );
    println!(
        "change feed: {} changes kept, {} repeats dropped",
        downstream.seen.len(),
        downstream.repeats
    );
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
    let text = Engine::builder(names.clone()).routeless().config_text();
    std::fs::write(&config, text).expect("write config");

    let (validated, out) = validate(&config, &brokers);
    assert!(!validated, "{out}");
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
    let (validated, out) = validate(&config, &brokers);
    assert!(validated, "{out}");
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

/// Runs `ordo validate` on `config` against `brokers`: (passed, what it printed).
fn validate(config: &std::path::Path, brokers: &str) -> (bool, String) {
    let out = common::ordo_command()
        .args([
            "validate",
            &config.display().to_string(),
            "--brokers",
            brokers,
        ])
        .output()
        .expect("run ordo validate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
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
