//! The ordered, exactly-effective consumer, end to end on the local stack.

mod common;

use std::time::Duration;

use common::{assert_newest, produce_raw, Engine, Names, Rng, Workload};

#[tokio::test]
async fn shuffled_updates_through_http_and_the_topic_end_at_each_patients_newest() {
    let engine = Engine::start("shuffled");
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "shuffled", 40, 5);
    let mut produced = Vec::new();
    for (i, (id, body)) in workload.events.iter().enumerate() {
        if i % 2 == 0 {
            produced.push(engine.post_accepted(body).await);
        } else {
            produced.push(produce_raw(&engine.names.topic, id, body).await);
        }
    }
    engine.wait_all_committed(&produced).await;
    assert_newest(&engine, &workload.newest).await;
}

#[tokio::test]
async fn two_engines_racing_on_the_same_keys_converge_on_the_newest() {
    // Two groups on one topic and one table: every event is applied twice, concurrently,
    // so only the conditional writes keep a late merge from regressing a record.
    let names = Names::unique("race");
    let mut other = names.clone();
    other.group = format!("{}-b", names.group);
    let a = Engine::builder(names).start();
    let b = Engine::builder(other).start();
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "race", 10, 20);
    let mut produced = Vec::new();
    for (id, body) in &workload.events {
        produced.push(produce_raw(&a.names.topic, id, body).await);
    }
    a.wait_all_committed(&produced).await;
    b.wait_all_committed(&produced).await;
    assert_newest(&a, &workload.newest).await;
    // The two did race: conditional writes were refused, and each was merged again.
    let mut refused = 0;
    for engine in [&a, &b] {
        refused += engine
            .metric("ordo_dynamodb_conditional_failures_total", "")
            .await;
    }
    assert!(
        refused > 0,
        "no conditional write was refused: the engines never raced"
    );
}

#[tokio::test]
async fn two_engines_in_one_consumer_group_converge_on_the_newest() {
    let names = Names::unique("group");
    let a = Engine::builder(names.clone()).start();
    let b = Engine::builder(names).start();
    // Both members own partitions before the load starts, so both take part in it.
    for engine in [&a, &b] {
        let deadline = std::time::Instant::now() + common::EFFECT_TIMEOUT;
        while !owns_partitions(engine) {
            assert!(
                std::time::Instant::now() < deadline,
                "the engine never got partitions:\n{}",
                engine.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "group", 20, 10);
    let mut produced = Vec::new();
    for (i, (_, body)) in workload.events.iter().enumerate() {
        // Both engines take HTTP traffic: two producers of the same keys.
        let engine = if i % 2 == 0 { &a } else { &b };
        produced.push(engine.post_accepted(body).await);
    }
    a.wait_all_committed(&produced).await;
    assert_newest(&a, &workload.newest).await;
}

/// Whether the engine's log shows it was assigned at least one partition.
fn owns_partitions(engine: &Engine) -> bool {
    engine
        .log()
        .lines()
        .any(|l| l.contains("Partitions assigned.") && !l.trim_end().ends_with("partitions="))
}

#[tokio::test]
async fn poison_and_rejected_events_go_to_the_dead_letter_topic_and_the_rest_applies() {
    let engine = Engine::start("dlq");
    let topic = engine.names.topic.clone();
    let poison = produce_raw(&topic, "p-dlq", "this is not json").await;
    let rejected = produce_raw(
        &topic,
        "p-dlq",
        r#"{"PatientId":"p-dlq","IsPregnant":false,"UpdatedAt":"2006-01-02T15:00:00Z"}"#,
    )
    .await;
    let good = produce_raw(
        &topic,
        "p-dlq",
        r#"{"PatientId":"p-dlq","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00Z"}"#,
    )
    .await;
    engine.wait_all_committed(&[poison, rejected, good]).await;
    let item = common::get_item(&common::dynamodb().await, &engine.names.table, "p-dlq")
        .await
        .expect("good event applied");
    assert_eq!(common::s(&item, "IsPregnant"), "True");

    let mut letters = common::read_dead_letters(&engine, 2).await;
    letters.sort();
    assert_eq!(letters[0].offset, poison.1);
    assert!(letters[0].reason.contains("not JSON"), "{:?}", letters[0]);
    assert_eq!(letters[1].offset, rejected.1);
    assert!(letters[1].reason.contains("IsPregnant"), "{:?}", letters[1]);
    for letter in &letters {
        assert_eq!(
            (letter.pipeline.as_str(), letter.topic.as_str()),
            ("patient-profile", topic.as_str())
        );
    }
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_loses_nothing_after_restart() {
    let names = Names::unique("kill");
    let mut engine = Engine::builder(names.clone()).start();
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "kill", 30, 10);
    let mut produced = Vec::new();
    let half = workload.events.len() / 2;
    for (id, body) in &workload.events[..half] {
        produced.push(produce_raw(&names.topic, id, body).await);
    }
    // Kill once the consumer is demonstrably mid-stream: some records exist.
    let first = &workload.events[0].0;
    common::wait_item(&engine, first, |_| true).await;
    engine.kill();
    for (id, body) in &workload.events[half..] {
        produced.push(produce_raw(&names.topic, id, body).await);
    }
    // Restarted at once, as a supervisor would: the new member gets the partitions once the
    // dead one's session lapses.
    let engine = Engine::builder(names).start();
    engine.wait_all_committed(&produced).await;
    assert_newest(&engine, &workload.newest).await;
}

#[tokio::test]
async fn sigterm_drains_commits_and_exits_zero() {
    let names = Names::unique("term");
    let mut engine = Engine::builder(names.clone()).start();
    let mut rng = Rng::from_env();
    let workload = Workload::new(&mut rng, "term", 10, 3);
    let mut produced = Vec::new();
    for (_, body) in &workload.events {
        produced.push(engine.post_accepted(body).await);
    }
    // Every record is in the table: each offset is stored for commit (librdkafka commits
    // stored offsets every second). SIGTERM now, so the final commit of the drain is what
    // carries the last of them.
    for (id, name) in &workload.newest {
        common::wait_item(&engine, id, |item| common::s(item, "FirstName") == name).await;
    }
    let status = engine.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        engine.log()
    );
    // Read from the broker before anything could restart and replay: every acknowledged
    // event is committed.
    let committed = engine.committed();
    let behind: Vec<(i32, i64)> = produced
        .iter()
        .filter(|(p, o)| committed.get(p).is_none_or(|c| c <= o))
        .copied()
        .collect();
    assert!(
        behind.is_empty(),
        "after SIGTERM, not committed: {behind:?} (committed {committed:?}); log:\n{}",
        engine.log()
    );
    // And what is committed is in the table.
    assert_newest(&engine, &workload.newest).await;
}
