//! Consumer throughput and write cost on the local stack, against a sequential baseline
//! measured in the same run.
//!
//! The baseline is the original Go service's design: one event at a time, read, merge, write,
//! store the offset. Ordo is the real consumer (`ordo::bus::consumer::run`). Both read the same
//! topic in their own consumer groups and write their own tables, through the same plugin.
//!
//! `cargo run --release --example consume_bench` (the local stack must be up: `make
//! local-dev-stack`). The figures depend on the DynamoDB API: moto serves about 430 writes/s
//! here and is the bottleneck, so ratios matter more than absolute rates.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo::bus::consumer::{ConsumerSettings, Stats};
use ordo::bus::producer::KafkaPublisher;
use ordo::pipeline::{Applier, Outcome};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::PolicyHandle;
use ordo::store::dynamo::DynamoStore;

const PARTITIONS: i32 = 6;

struct Workload {
    name: &'static str,
    events: Vec<(String, String)>,
}

/// `keys` patients × `updates` each; `bursty` sends a key's updates back to back (uniform
/// spreads them: every key's first update, then every key's second, ...).
fn workload(name: &'static str, keys: usize, updates: usize, bursty: bool) -> Workload {
    let mut events = Vec::new();
    for u in 0..updates {
        for k in 0..keys {
            let body = serde_json::json!({
                "PatientId": format!("p{k}"), "FirstName": format!("v{u}"), "LastName": "Doe",
                "IsPregnant": "False", "Sex": "Female",
                "UpdatedAt": format!("2006-01-02T15:00:{:02}.{:09}+10:00", u / 1000, (u % 1000) * 1_000_000),
            });
            events.push((format!("p{k}"), body.to_string()));
        }
    }
    if bursty {
        events.sort_by(|a, b| a.0.cmp(&b.0)); // stable: a key's updates stay in order, together
    }
    Workload { name, events }
}

fn env(k: &str, d: &str) {
    if std::env::var(k).is_err() {
        // Single-threaded start-up, before any client reads the environment.
        unsafe { std::env::set_var(k, d) };
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORDO_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let scale: usize = std::env::var("ORDO_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    env("AWS_ACCESS_KEY_ID", "test");
    env("AWS_SECRET_ACCESS_KEY", "test");
    env("AWS_REGION", "us-east-1");
    env("AWS_ENDPOINT_URL", "http://127.0.0.1:4566");
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let plugin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build/patient_profile_lww.wasm");
    let policy = PolicyHandle::new(Arc::new(WasmPolicy::load(
        &plugin,
        Limits::default(),
        Capabilities::default(),
    )?));
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let run_id = std::process::id();

    println!("| workload | events | design | events/s | DynamoDB writes/event |");
    println!("|---|---|---|---|---|");
    for w in [
        workload("uniform", 100 * scale, 3, false),
        workload("bursty", 10 * scale, 20, true),
    ] {
        let topic = format!("bench.{run_id}.{}", w.name);
        ordo::bus::admin::ensure_topics(&brokers, &[&topic], PARTITIONS, 1).await?;
        produce(&brokers, &topic, &w.events).await?;
        let n = w.events.len();

        let store = DynamoStore::new(dynamodb.clone(), &format!("{topic}-base"), "PatientId");
        store.ensure_table().await?;
        let applier = Applier::new(store, policy.clone(), "PatientId");
        let (rate, writes) = sequential(&brokers, &topic, &applier, n).await?;
        println!(
            "| {} | {n} | sequential baseline | {:.0} | {:.2} |",
            w.name,
            rate,
            writes as f64 / n as f64
        );

        let store = DynamoStore::new(dynamodb.clone(), &format!("{topic}-ordo"), "PatientId");
        store.ensure_table().await?;
        let applier = Arc::new(Applier::new(store, policy.clone(), "PatientId"));
        let (rate, writes) = ordo_consumer(&brokers, &topic, applier, n).await?;
        println!(
            "| {} | {n} | Ordo (concurrency 64) | {:.0} | {:.2} |",
            w.name,
            rate,
            writes as f64 / n as f64
        );
    }
    Ok(())
}

async fn produce(brokers: &str, topic: &str, events: &[(String, String)]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    let sends: Vec<_> = events
        .iter()
        .map(|(k, v)| producer.send(FutureRecord::to(topic).key(k).payload(v), Timeout::Never))
        .collect();
    for s in futures::future::join_all(sends).await {
        s.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// One event at a time: read, merge, write, store the offset. Returns events/s and writes.
async fn sequential(
    brokers: &str,
    topic: &str,
    applier: &Applier<DynamoStore>,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.base"))
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", ordo::bus::consumer::FETCH_WAIT_MAX_MS)
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut writes = 0;
    let mut start = None;
    let (mut in_recv, mut in_apply) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let m = consumer.recv().await?;
        in_recv += t.elapsed();
        start.get_or_insert_with(Instant::now);
        let t = Instant::now();
        if applier
            .apply(m.key(), m.payload().unwrap_or_default())
            .await?
            == Outcome::Written
        {
            writes += 1;
        }
        in_apply += t.elapsed();
        consumer.store_offset_from_message(&m)?;
    }
    eprintln!("baseline: {in_recv:?} waiting for messages, {in_apply:?} applying");
    // Rate from the first event on, so joining the group is not counted.
    let rate = start.map_or(f64::NAN, |s| (n - 1) as f64 / s.elapsed().as_secs_f64());
    Ok((rate, writes))
}

/// The real consumer, until it has settled `n` events.
async fn ordo_consumer(
    brokers: &str,
    topic: &str,
    applier: Arc<Applier<DynamoStore>>,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let settings = ConsumerSettings {
        pipeline: "bench".into(),
        brokers: brokers.into(),
        group: format!("{topic}.ordo"),
        topic: topic.into(),
        dead_letter_topic: format!("{topic}.dlq"),
        concurrency: 64,
        max_attempts: 20,
    };
    let stats = Arc::new(Stats::default());
    let (trigger, shutdown) = ordo::shutdown::channel();
    let publisher = Arc::new(KafkaPublisher::new(brokers, Duration::from_secs(10))?);
    let task = tokio::spawn(ordo::bus::consumer::run(
        settings,
        applier,
        publisher,
        Arc::clone(&stats),
        shutdown,
    ));
    // Time from the first settled event, as for the baseline (group join excluded).
    while Stats::get(&stats.events) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let first = Stats::get(&stats.events);
    while (Stats::get(&stats.events) as usize) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = (n as u64 - first) as f64 / start.elapsed().as_secs_f64();
    trigger.fire();
    task.await??;
    Ok((rate, Stats::get(&stats.writes) as usize))
}
