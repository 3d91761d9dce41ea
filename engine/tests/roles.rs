//! `ordo run --role`: an ingest process serves the routes and joins no consumer group; an
//! apply process consumes and applies, and serves no pipeline route. Their metrics and
//! readiness follow the role.

mod common;

use std::time::Duration;

use common::{s, wait_item, Engine, Names};

const EVENT: &str = r#"{"PatientId":"r1","FirstName":"Jane","LastName":"Doe","IsPregnant":"True","Sex":"Female","UpdatedAt":"2026-01-02T03:04:05Z"}"#;

#[tokio::test]
async fn ingest_and_apply_run_as_separate_processes() {
    let names = Names::unique("roles");
    let ingest = Engine::builder(names.clone())
        .args(&["--role", "ingest"])
        .start();
    let (status, answer) = ingest.post(EVENT).await;
    assert_eq!(status, 202, "{answer}");
    // The ingest process is no member of the group: a consumer joining it gets every
    // partition.
    assert_eq!(
        partitions_of_a_lone_member(&ingest).await,
        3,
        "an ingest process joined the consumer group"
    );

    let apply = Engine::builder(names.clone())
        .args(&["--role", "apply"])
        .start();
    let item = wait_item(&apply, "r1", |_| true).await;
    assert_eq!(s(&item, "IsPregnant"), "True");

    // The apply process serves no pipeline route, and documents none.
    let (status, _) = apply.post(EVENT).await;
    assert_eq!(status, 404);
    let (_, spec) = apply.get_json("/docs/openapi.json").await;
    assert!(spec["paths"].get("/patientprofile").is_none());
    let (_, spec) = ingest.get_json("/docs/openapi.json").await;
    assert!(spec["paths"].get("/patientprofile").is_some());

    // Readiness names the role; metrics show only the role's series.
    for (engine, role) in [(&ingest, "ingest"), (&apply, "apply")] {
        let (status, ready) = engine.get_json("/readyz").await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["role"], role);
    }
    let (ingest_metrics, apply_metrics) = (
        ingest.get_text("/metrics").await,
        apply.get_text("/metrics").await,
    );
    let pipeline = format!("pipeline=\"{}\"", names.pipeline);
    let has = |text: &str, family: &str| {
        text.lines()
            .any(|l| l.starts_with(family) && l.contains(&pipeline))
    };
    assert!(has(&ingest_metrics, "ordo_ingest_requests_total"));
    assert!(
        !has(&ingest_metrics, "ordo_events_total"),
        "{ingest_metrics}"
    );
    assert!(has(&apply_metrics, "ordo_events_total"));
    assert!(
        !has(&apply_metrics, "ordo_produce_seconds"),
        "{apply_metrics}"
    );
}

/// How many partitions of the engine's topic a consumer joining the engine's group is
/// assigned (it commits nothing, and leaves the group when dropped).
async fn partitions_of_a_lone_member(engine: &Engine) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &engine.brokers)
        .set("group.id", &engine.names.group)
        .set("enable.auto.commit", "false")
        // The engine's protocol: a member with another one would be refused.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("group member");
    consumer
        .subscribe(&[&engine.names.topic])
        .expect("subscribe");
    let deadline = std::time::Instant::now() + common::EFFECT_TIMEOUT;
    loop {
        // Polling drives the join; no message is read before the assignment.
        let _ = consumer.poll(Duration::from_millis(100));
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or_default();
        if assigned > 0 {
            consumer.unsubscribe();
            return assigned;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never assigned a partition"
        );
        tokio::task::yield_now().await;
    }
}
