//! OpenTelemetry traces end to end: a `traceparent` sent with a POST continues in the ingest
//! span, travels in the Kafka message's headers, and the consumer's spans (apply, plugin call,
//! DynamoDB write) belong to the same trace, children of the producer's span. The spans are
//! received by an OTLP/HTTP (JSON) endpoint the test serves.

mod common;

use std::time::{Duration, Instant};

use common::{Engine, Names, EFFECT_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The headers of the message at `partition`/`offset` of `topic`.
fn headers_at(brokers: &str, topic: &str, partition: i32, offset: i64) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("traces-reader-{}", std::process::id()))
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("offset");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + EFFECT_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "message {partition}/{offset} never read"
        );
        let Some(Ok(message)) = consumer.poll(Duration::from_secs(1)) else {
            continue;
        };
        return message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        let value = x.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (x.key.to_string(), value.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
}

#[tokio::test]
async fn one_trace_follows_an_event_from_http_through_kafka_to_dynamodb() {
    let collector = common::Collector::start().await;
    let endpoint = collector.url.clone();
    let engine = Engine::builder(Names::unique("traces"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .start();
    let response = reqwest::Client::new()
        .post(format!("{}/patientprofile", engine.url))
        .header("Content-Type", "application/json")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .body(r#"{ "PatientId": "t1", "FirstName": "John", "LastName": "Doe", "IsPregnant": "False", "Sex": "Female"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 202);
    let accepted: Value = response.json().await.expect("JSON");
    let (partition, offset) = (
        accepted["partition"].as_i64().expect("partition") as i32,
        accepted["offset"].as_i64().expect("offset"),
    );

    // The message carries the ingest span's context: the caller's trace, a span of its own.
    let headers = headers_at(&engine.brokers, &engine.names.topic, partition, offset);
    let traceparent = headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no traceparent header in {headers:?}"));
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID, "{traceparent}");
    let ingest_span = parts[2].to_string();
    assert_ne!(
        ingest_span, CALLER_SPAN,
        "the engine's own span is the parent"
    );

    // The spans arrive at the collector: ingest (child of the caller), apply (child of
    // ingest, from the Kafka header), the plugin call and the DynamoDB write (in apply).
    let deadline = Instant::now() + EFFECT_TIMEOUT;
    let named = |name: &str, spans: &[common::otlp::Span]| {
        spans
            .iter()
            .find(|(t, _, _, n)| t == TRACE_ID && n == name)
            .cloned()
    };
    loop {
        let seen = collector.spans();
        let (ingest, apply, plugin, write) = (
            named("ingest", &seen),
            named("apply", &seen),
            named("plugin.merge", &seen),
            named("DynamoDB.PutItem", &seen),
        );
        if let (Some(ingest), Some(apply), Some(plugin), Some(write)) =
            (ingest, apply, plugin, write)
        {
            assert_eq!(ingest.1, ingest_span, "the header names the ingest span");
            assert_eq!(ingest.2, CALLER_SPAN, "ingest continues the caller's trace");
            assert_eq!(
                apply.2, ingest_span,
                "the consumer continues the producer's span"
            );
            assert_eq!(plugin.2, apply.1, "the plugin call is part of applying");
            assert_eq!(write.2, apply.1, "the write is part of applying");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans of trace {TRACE_ID} incomplete: {seen:#?}\nengine log:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = collector.spans();
    assert!(
        !format!("{all:?}").contains("t1"),
        "no key in span names: {all:?}"
    );
}
