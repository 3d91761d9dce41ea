//! `Idempotency-Key`s kept in DynamoDB: a retry is recognised by another engine and after a
//! kill -9, a key in flight is not produced twice, a stale claim is taken over, and the table
//! holds hashes only. Against the real local stack.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use common::{Engine, Names};
use ordo::store::keys::{DynamoKeys, IdempotencyKeys, Refused};

const BODY: &str = r#"{"PatientId":"idem-durable","FirstName":"Jane","LastName":"Doe","IsPregnant":"False","Sex":"Female"}"#;

/// POSTs `body` to the engine at `url` with `Idempotency-Key: key`.
async fn send(url: &str, key: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/patientprofile"))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .await
        .expect("POST")
}

/// POSTs `body` to `engine` with `Idempotency-Key: key`: status, whether replayed, answer.
async fn post(engine: &Engine, key: &str, body: &str) -> (u16, bool, serde_json::Value) {
    let answer = send(&engine.url, key, body).await;
    let status = answer.status().as_u16();
    let replayed = answer.headers().get("idempotency-replayed").is_some();
    (
        status,
        replayed,
        answer.json().await.expect("a JSON answer"),
    )
}

/// Every item of `table`.
async fn scan(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default()
}

#[tokio::test]
async fn a_key_is_recognised_by_another_engine_and_after_a_kill() {
    let names = Names::unique("idem-durable");
    let mut first = Engine::builder(names.clone()).start();
    let second = Engine::builder(names.clone()).start();
    let key = format!("order-{}", std::process::id());
    let (status, replayed, answer) = post(&first, &key, BODY).await;
    assert_eq!((status, replayed), (202, false), "{answer}");
    // Another engine behind the same load balancer knows the key.
    let (status, replayed, again) = post(&second, &key, BODY).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, answer, "the first answer, replayed");
    let other = BODY.replace("Jane", "Janet");
    let (status, _, problem) = post(&second, &key, &other).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "Idempotency-Key");
    // So does an engine started after a kill -9.
    first.kill();
    let restarted = Engine::builder(names.clone()).start();
    let (status, replayed, again) = post(&restarted, &key, BODY).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, answer);
    assert_eq!(restarted.topic_size(), 1, "one event for three requests");
    // The table holds hashes, the 202 answer (which names the record's key, as the replica
    // does) and a TTL: never the Idempotency-Key, the caller or the body.
    let dynamo = common::dynamodb().await;
    let table = format!("{}-idempotency", names.table);
    let items = scan(&dynamo, &table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let text = format!("{items:?}");
    for secret in [key.as_str(), "Jane", "Female"] {
        assert!(!text.contains(secret), "{secret} is in the table: {text}");
    }
    let ttl = dynamo
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("DescribeTimeToLive");
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some("expires_at")
    );
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_key_in_flight_is_refused_a_failure_released_and_a_stale_claim_taken_over() {
    let dynamo = common::dynamodb().await;
    let table = format!("{}-keys", Names::unique("idem-claims").table);
    let prepared = DynamoKeys::new(dynamo.clone(), &table, "p", Duration::from_secs(3600));
    prepared.prepare(true).await.expect("table");
    let keys = std::sync::Arc::new(IdempotencyKeys::new(prepared));
    let body = [7u8; 32];

    // A request in flight holds its key: a second one is told to retry, not produced.
    let (release, produced) = tokio::sync::oneshot::channel::<()>();
    let in_flight = {
        let keys = std::sync::Arc::clone(&keys);
        tokio::spawn(async move {
            keys.once("alice", "k1", body, || async move {
                let _ = produced.await;
                Ok::<_, ()>("first".to_string())
            })
            .await
        })
    };
    while scan(&dynamo, &table).await.is_empty() {
        tokio::task::yield_now().await;
    }
    let second = keys
        .once("alice", "k1", body, || async {
            Ok::<_, ()>("second".into())
        })
        .await;
    assert_eq!(second, Err(Refused::InProgress));
    release.send(()).expect("the first request waits");
    let first = in_flight.await.expect("task");
    assert_eq!(first, Ok(("first".to_string(), false)));
    let third = keys
        .once("alice", "k1", body, || async {
            Ok::<_, ()>("third".into())
        })
        .await;
    assert_eq!(third, Ok(("first".to_string(), true)));

    // A failed produce is not remembered: the retry produces.
    let failed = keys
        .once("alice", "k2", body, || async {
            Err::<String, _>("broker away")
        })
        .await;
    assert_eq!(failed, Err(Refused::Failed("broker away")));
    let retried = keys
        .once("alice", "k2", body, || async {
            Ok::<_, &str>("retried".into())
        })
        .await;
    assert_eq!(retried, Ok(("retried".to_string(), false)));

    // An engine that died between its claim and its answer: once the claim is older than
    // the lease, a retry takes it over and produces.
    let abandoned = {
        let keys = std::sync::Arc::clone(&keys);
        tokio::spawn(async move {
            keys.once("alice", "k3", body, || {
                std::future::pending::<Result<String, ()>>()
            })
            .await
        })
    };
    let items_before = 2;
    while scan(&dynamo, &table).await.len() <= items_before {
        tokio::task::yield_now().await;
    }
    abandoned.abort();
    let pending: Vec<_> = scan(&dynamo, &table)
        .await
        .into_iter()
        .filter(|i| i.get("state") == Some(&AttributeValue::S("pending".into())))
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0].get("id").cloned().expect("id");
    let too_old = (now_s() - 2 * ordo::store::keys::CLAIM_LEASE.as_secs()) * 1000;
    dynamo
        .update_item()
        .table_name(&table)
        .key("id", id)
        .update_expression("SET claimed_at = :old")
        .expression_attribute_values(":old", AttributeValue::N(too_old.to_string()))
        .send()
        .await
        .expect("age the claim");
    let taken_over = keys
        .once("alice", "k3", body, || async {
            Ok::<_, ()>("taken over".into())
        })
        .await;
    assert_eq!(taken_over, Ok(("taken over".to_string(), false)));
}

#[tokio::test]
async fn over_http_a_key_in_flight_is_409_and_a_frozen_broker_is_503_within_the_produce_timeout() {
    let broker = common::PrivateBroker::start();
    let names = Names::unique("idem-http");
    let timeout = Duration::from_secs(3);
    let engine = Engine::builder(names.clone())
        .brokers(&broker.address)
        .args(&["--produce-timeout-ms", &timeout.as_millis().to_string()])
        .start();
    // A frozen broker takes connections and never answers, as a hung one does.
    broker.signal("STOP");
    let key = "frozen-order";
    let sent = std::time::Instant::now();
    let first = {
        let engine_url = engine.url.clone();
        tokio::spawn(async move {
            let answer = send(&engine_url, key, BODY).await;
            let retry_after = answer.headers().get("retry-after").is_some();
            (answer.status().as_u16(), retry_after, sent.elapsed())
        })
    };
    // Once the first request holds its key (its claim is in the table) ...
    let dynamo = common::dynamodb().await;
    let table = format!("{}-idempotency", names.table);
    while scan(&dynamo, &table).await.is_empty() {
        assert!(
            !first.is_finished(),
            "the first request ended before its claim was seen"
        );
        tokio::task::yield_now().await;
    }
    // ... a retry with the same key is told to come back, and produces nothing.
    let answer = send(&engine.url, key, BODY).await;
    assert_eq!(answer.status().as_u16(), 409);
    assert!(
        answer.headers().contains_key("retry-after"),
        "409 says when to retry"
    );
    let problem: serde_json::Value = answer.json().await.expect("problem JSON");
    assert_eq!(problem["field"], "Idempotency-Key", "{problem}");
    // The first is answered 503 with Retry-After once the produce timeout passed, not later.
    let (status, retry_after, took) = first.await.expect("the first request");
    assert_eq!(status, 503);
    assert!(retry_after, "503 says when to retry");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(1500),
        "answered after {took:?}, the produce timeout is {timeout:?}"
    );
    // The failure released the key: with the broker back, the retry is produced.
    broker.signal("CONT");
    let (status, replayed, answer) = post(&engine, key, BODY).await;
    assert_eq!((status, replayed), (202, false), "{answer}");
}
