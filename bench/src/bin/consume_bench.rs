//! Consumer throughput and write cost on the local stack, against a sequential baseline
//! measured in the same run.
//!
//! The baseline is the original Go service's design: one event at a time, read, merge, write,
//! store the offset. Ordo is the real consumer (`ordo::pipeline::consume::run`, with its record
//! cache). Both read the same topic, filled before either starts (a consumer catching up), in
//! their own consumer groups and write their own tables, through the same plugin.
//!
//! Three stores: the local DynamoDB API (moto: throughput-bound, about 430 writes/s here), a
//! latency **model** of real DynamoDB (every read and write takes `MODEL_LATENCY`, any number
//! at once), and the model with no latency, which is the consumer's own ceiling.
//!
//! `cargo run --release -p ordo-bench --bin consume_bench` (the local stack must be up: `make
//! local-dev-stack`). `ORDO_BENCH_SCALE` sizes the workloads (default 10: 1,000 keys),
//! `ORDO_BENCH_RUNS` repeats each measurement (default 5) and reports the median and range,
//! `ORDO_BENCH_STORES` runs only some stores (`moto`, `model`, `ceiling`, comma-separated),
//! `ORDO_BENCH_CONCURRENCY` overrides the pipeline default (64).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo::bus::kafka::{GroupSettings, KafkaConfig};
use ordo::metrics::ConsumerMetrics;
use ordo::pipeline::{Applier, Outcome};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::PolicyHandle;
use ordo::store::dynamo::DynamoStore;
use ordo::store::{Precondition, PutOutcome, Record, Store, StoreError, META_ATTRIBUTE};

const PARTITIONS: i32 = 6;
/// What one DynamoDB request costs in the model: a same-region round trip.
const MODEL_LATENCY: Duration = Duration::from_millis(4);
/// Events the baseline handles on a slow store (moto, the model): enough for a steady rate.
const BASELINE_EVENTS: usize = 1_000;
/// Updates per key on the model and the ceiling: enough events (50,000 at the default scale)
/// for Ordo's rate to be a steady one rather than its start-up.
const MODEL_UPDATES: usize = 50;
/// Longest one design may take over one workload before the benchmark fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// A store that answers after `latency`, as many requests at once as asked: a model of a
/// latency-bound DynamoDB, with the same conditional-write semantics (on the revision).
#[derive(Clone, Default)]
struct ModelStore {
    latency: Duration,
    records: Arc<std::sync::Mutex<std::collections::HashMap<String, Record>>>,
}

impl ModelStore {
    fn new(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    async fn wait(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

impl Store for ModelStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.wait().await;
        Ok(self.records.lock().ok().and_then(|r| r.get(key).cloned()))
    }

    async fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.wait().await;
        let key = record["PatientId"].as_str().unwrap_or_default().to_string();
        let Ok(mut records) = self.records.lock() else {
            return Ok(PutOutcome::Conflict);
        };
        let revision = |r: &Record| r.get(META_ATTRIBUTE).and_then(|m| m["revision"].as_u64());
        let holds = match (precondition, records.get(&key)) {
            (Precondition::Absent, None) => true,
            (Precondition::Unrevised, Some(r)) => revision(r).is_none(),
            (Precondition::Revision(n), Some(r)) => revision(r) == Some(*n),
            _ => false,
        };
        if !holds {
            return Ok(PutOutcome::Conflict);
        }
        records.insert(key, record.clone());
        Ok(PutOutcome::Written)
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Keys applied at once: `ORDO_BENCH_CONCURRENCY`, else a pipeline's default.
fn concurrency() -> usize {
    std::env::var("ORDO_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ordo::config::DEFAULT_CONCURRENCY)
}

/// Median, min and max of `values`.
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

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
    let runs: usize = std::env::var("ORDO_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);

    println!("| store | workload | events | design | events/s, median (range) | writes/event | vs baseline |");
    println!("|---|---|---|---|---|---|---|");
    // `ORDO_BENCH_STORES` picks some of them by their first word, e.g. `model,ceiling`.
    let only = std::env::var("ORDO_BENCH_STORES").unwrap_or_default();
    // Ordo's median rate by (store, workload), for the goals' ratios at the end.
    let mut ordo_medians = std::collections::HashMap::new();
    for store_kind in [
        "moto (local DynamoDB API)",
        "model: 4 ms per request",
        "ceiling: no store latency",
    ] {
        let word = store_kind.split([' ', ':']).next().unwrap_or_default();
        if !only.is_empty() && !only.split(',').any(|w| w == word) {
            continue;
        }
        // moto takes about 430 writes/s, so its workloads are small; on the model and the
        // ceiling the same 1,000 keys (at the default scale) get MODEL_UPDATES (50) each, so that a
        // run lasts long enough to measure on a shared machine.
        let (uniform, bursty) = if word == "moto" {
            (
                workload("uniform", 100 * scale, 3, false),
                workload("bursty", 10 * scale, 20, true),
            )
        } else {
            (
                workload("uniform", 100 * scale, MODEL_UPDATES, false),
                workload("bursty", 100 * scale, MODEL_UPDATES, true),
            )
        };
        // The baseline's rate is steady: on a slow store it is measured on the first events.
        let baseline_events = if word == "ceiling" {
            usize::MAX
        } else {
            BASELINE_EVENTS
        };
        for w in [uniform, bursty] {
            let n = w.events.len();
            let mut base_rates = Vec::new();
            let mut ordo_rates = Vec::new();
            let (mut base_writes, mut ordo_writes) = (0.0, 0.0);
            let mut base_n = n;
            // One topic per workload, read by every run in consumer groups of its own.
            let topic = format!("bench.{run_id}.{word}.{}", w.name);
            let dlq = format!("{topic}.dlq");
            ordo::bus::kafka::ensure_topics(
                &ordo::bus::kafka::KafkaConfig::new(&brokers),
                &[&topic, &dlq],
                PARTITIONS,
                1,
            )
            .await?;
            produce(&brokers, &topic, &w.events).await?;
            for run in 0..runs {
                let reader = Reader {
                    brokers: &brokers,
                    topic: &topic,
                    label: format!("{topic}.{run}"),
                };
                let ((b_rate, b_writes), (o_rate, o_writes)) = if store_kind.starts_with("moto") {
                    let table = |design: &str| {
                        DynamoStore::new(
                            dynamodb.clone(),
                            &format!("{}-{design}", reader.label),
                            "PatientId",
                        )
                    };
                    let (base, ordo_store) = (table("base"), table("ordo"));
                    base.ensure_table().await?;
                    ordo_store.ensure_table().await?;
                    measure(&reader, &policy, base, ordo_store, n, baseline_events).await?
                } else {
                    let latency = if store_kind.starts_with("model") {
                        MODEL_LATENCY
                    } else {
                        Duration::ZERO
                    };
                    measure(
                        &reader,
                        &policy,
                        ModelStore::new(latency),
                        ModelStore::new(latency),
                        n,
                        baseline_events,
                    )
                    .await?
                };
                base_rates.push(b_rate);
                ordo_rates.push(o_rate);
                base_n = b_writes.1;
                base_writes = b_writes.0 as f64 / b_writes.1 as f64;
                ordo_writes = o_writes as f64 / n as f64;
            }
            let base = spread(&mut base_rates);
            let ordo = spread(&mut ordo_rates);
            ordo_medians.insert((word, w.name), (base.0, ordo.0));
            let fmt = |(m, lo, hi): (f64, f64, f64)| format!("{m:.0} ({lo:.0}–{hi:.0})");
            println!(
                "| {store_kind} | {} | {base_n} | sequential baseline | {} | {base_writes:.2} | 1.0× |",
                w.name,
                fmt(base),
            );
            println!(
                "| {store_kind} | {} | {n} | Ordo (concurrency {}) | {} | {:.2} | {:.1}× |",
                w.name,
                concurrency(),
                fmt(ordo),
                ordo_writes,
                ordo.0 / base.0
            );
        }
    }
    println!("\nMedian of {runs} runs (range in brackets); rates from each design's first settled event.");
    for workload in ["uniform", "bursty"] {
        let (Some((base, model)), Some((_, ceiling))) = (
            ordo_medians.get(&("model", workload)),
            ordo_medians.get(&("ceiling", workload)),
        ) else {
            continue;
        };
        println!(
            "\nGoals on the model, {workload}: Ordo {:.1}× the sequential baseline (goal ≥ 10×) and {:.2}× its ceiling, Ordo on the no-latency store (goal ≥ 0.5×).",
            model / base,
            model / ceiling
        );
    }
    Ok(())
}

/// Where one run reads: the workload's topic, in consumer groups named after `label`.
struct Reader<'a> {
    brokers: &'a str,
    topic: &'a str,
    /// Unique per run: the designs' consumer groups (and moto tables) are named after it.
    label: String,
}

/// Runs the baseline on `base` (over the first `baseline_events` events) and Ordo on
/// `ordo_store` (over all `n`), both reading the same topic from its start. Returns (rate,
/// (writes, events)) of the baseline and (rate, writes) of Ordo. A design that has not
/// settled its events within `DEADLINE` fails the benchmark rather than hanging it.
async fn measure<S: Store + Clone>(
    reader: &Reader<'_>,
    policy: &PolicyHandle,
    base: S,
    ordo_store: S,
    n: usize,
    baseline_events: usize,
) -> anyhow::Result<((f64, (usize, usize)), (f64, usize))> {
    let late = |design: &str, events: usize| {
        anyhow::anyhow!(
            "{design} did not settle {events} events of {} within {DEADLINE:?} (does the broker assign the group its partitions?)",
            reader.topic
        )
    };
    // The naive design reads before every write: no record cache.
    let applier = Applier::new(base, policy.clone(), "PatientId").with_cache(0);
    let events = n.min(baseline_events);
    let (rate, writes) = tokio::time::timeout(DEADLINE, sequential(reader, &applier, events))
        .await
        .map_err(|_| late("the sequential baseline", events))??;
    let b = (rate, (writes, events));
    let applier = Arc::new(Applier::new(ordo_store, policy.clone(), "PatientId"));
    let o = tokio::time::timeout(DEADLINE, ordo_consumer(reader, applier, n))
        .await
        .map_err(|_| late("Ordo", n))??;
    Ok((b, o))
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
async fn sequential<S: Store>(
    reader: &Reader<'_>,
    applier: &Applier<S>,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", reader.brokers)
        .set("group.id", format!("{}.base", reader.label))
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            ordo::bus::kafka::DEFAULT_FETCH_WAIT.as_millis().to_string(),
        )
        .create()?;
    consumer.subscribe(&[reader.topic])?;
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
    tracing::debug!("baseline: {in_recv:?} waiting for messages, {in_apply:?} applying");
    // Rate from the first event on, so joining the group is not counted.
    let rate = start.map_or(f64::NAN, |s| (n - 1) as f64 / s.elapsed().as_secs_f64());
    Ok((rate, writes))
}

/// The real consumer, until it has settled `n` events.
async fn ordo_consumer<S: Store>(
    reader: &Reader<'_>,
    applier: Arc<Applier<S>>,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let kafka = KafkaConfig::new(reader.brokers);
    let mut pipeline = ordo::testing::pipeline("bench");
    pipeline.topic = reader.topic.into();
    pipeline.consumer_group = format!("{}.ordo", reader.label);
    pipeline.dead_letter_topic = format!("{}.dlq", reader.topic);
    pipeline.concurrency = concurrency();
    pipeline.max_attempts = 20;
    let metrics = ConsumerMetrics::default();
    let group = GroupSettings {
        pipeline: pipeline.name.clone(),
        group: pipeline.consumer_group.clone(),
        topic: pipeline.topic.clone(),
        fetch_wait: ordo::bus::kafka::DEFAULT_FETCH_WAIT,
    };
    let (consumer, revoked) = kafka.group(&group, metrics.lag.clone())?;
    let (trigger, shutdown) = ordo::shutdown::channel();
    let publisher = Arc::new(kafka.producer(Duration::from_secs(10))?);
    let task = tokio::spawn(ordo::pipeline::consume::run(
        consumer,
        revoked,
        Arc::new(pipeline),
        applier,
        publisher,
        metrics.clone(),
        ordo::pipeline::Waits::new("bench", metrics.clone()),
        shutdown,
    ));
    // Time from the first settled event, as for the baseline (group join excluded).
    while metrics.settled() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let first = metrics.settled();
    while (metrics.settled() as usize) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = (n as u64 - first) as f64 / start.elapsed().as_secs_f64();
    trigger.fire();
    task.await?;
    // Every bench event is valid: one dead-lettered means the engine failed, not a result.
    let dead = metrics.dead_lettered.get();
    anyhow::ensure!(
        dead == 0,
        "{dead} valid events were dead-lettered on {} (see the log for why)",
        reader.label
    );
    Ok((rate, metrics.writes.get() as usize))
}
