//! The real `ordo` binary on the local stack: the engine's peak memory while it consumes a
//! backlog and while it takes ingest load, and what bursts of updates cost in DynamoDB writes.
//! (POST → visible latency is `latency_bench`'s: at its rate moto would only measure itself.)
//!
//! Each run starts a fresh engine (its own topic, table and group) and goes through three
//! phases, resetting the peak-RSS counter (`/proc/<pid>/clear_refs`) between them:
//! 1. **consume**: a backlog of `200 × ORDO_BENCH_SCALE` keys × 10 updates, produced before the
//!    engine starts, applied to the table;
//! 2. **ingest**: `CONNECTIONS` connections POSTing as fast as answered, for
//!    `ORDO_BENCH_SECONDS` (default 5), with the consumer applying behind them;
//! 3. **bursts** (write cost): `100 × ORDO_BENCH_SCALE` keys, each sent 20 updates within
//!    100 ms straight to the topic while the engine consumes; DynamoDB writes per event.
//!
//! `cargo run --release -p ordo-bench --bin system_bench` after `cargo build --release -p ordo` (the
//! local stack must be up). Prints Markdown: median and range over `ORDO_BENCH_RUNS` runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo_bench::process::{EngineProcess, PipelinesFile};
use ordo_bench::{process_peak_rss_kib, setting, spread};

/// Connections in the ingest phase.
const CONNECTIONS: usize = 64;
/// Updates per key in the backlog.
const BACKLOG_UPDATES: usize = 10;
/// Updates per key in a burst, and the time between two of them: 20 within 100 ms.
const BURST_UPDATES: usize = 20;
const BURST_GAP: Duration = Duration::from_millis(5);

fn env_default(k: &str, d: &str) {
    if std::env::var(k).is_err() {
        // Single-threaded start-up, before any client reads the environment.
        unsafe { std::env::set_var(k, d) };
    }
}

fn body(key: &str, update: usize) -> String {
    format!(
        r#"{{"PatientId":"{key}","FirstName":"v{update}","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:{:02}.{:03}+10:00"}}"#,
        update / 1000,
        update % 1000
    )
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> bool {
    http.post(format!("{url}/patientprofile"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 202)
}

/// Produces the backlog straight to the topic: every key's first update, then every second...
async fn backlog(brokers: &str, topic: &str, keys: usize) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    let events: Vec<(String, String)> = (0..BACKLOG_UPDATES)
        .flat_map(|u| (0..keys).map(move |k| (format!("b{k}"), body(&format!("b{k}"), u))))
        .collect();
    let sends: Vec<_> = events
        .iter()
        .map(|(k, v)| producer.send(FutureRecord::to(topic).key(k).payload(v), Timeout::Never))
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e)?;
    }
    Ok(events.len() as u64)
}

/// Bursts straight to the topic while the engine consumes: `keys` keys each get
/// `BURST_UPDATES` updates `BURST_GAP` apart (20 within 100 ms), all keys at once.
async fn bursts(brokers: &str, topic: &str, run: usize, keys: usize) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "0")
        .create()?;
    let mut sends = Vec::new();
    let mut tick = tokio::time::interval(BURST_GAP);
    for u in 0..BURST_UPDATES {
        tick.tick().await;
        for k in 0..keys {
            let key = format!("burst{run}-{k}");
            let value = body(&key, u);
            sends.push(
                producer
                    .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                    .map_err(|(e, _)| e)?,
            );
        }
    }
    for sent in futures::future::join_all(sends).await {
        sent?.map_err(|(e, _)| e)?;
    }
    Ok((BURST_UPDATES * keys) as u64)
}

/// Requests answered 202 in `seconds` from `CONNECTIONS` connections.
async fn ingest_load(engine: &EngineProcess, run: usize, seconds: u64) -> u64 {
    let http = reqwest::Client::new();
    let sent = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (http, url, sent) = (http.clone(), engine.url.clone(), Arc::clone(&sent));
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < until {
                    if post(&http, &url, body(&format!("i{run}-{c}-{i}"), 0)).await {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    futures::future::join_all(workers).await;
    sent.load(Ordering::Relaxed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_default("AWS_ACCESS_KEY_ID", "test");
    env_default("AWS_SECRET_ACCESS_KEY", "test");
    env_default("AWS_REGION", "us-east-1");
    env_default("AWS_ENDPOINT_URL", "http://127.0.0.1:4566");
    let brokers = ordo_bench::brokers();
    let runs = setting("ORDO_BENCH_RUNS", 3);
    let scale = setting("ORDO_BENCH_SCALE", 10);
    let seconds = setting("ORDO_BENCH_SECONDS", 5) as u64;
    let keys = 200 * scale;
    let http = reqwest::Client::new();
    let (mut idle, mut consume_peak, mut ingest_peak, mut rates) = (vec![], vec![], vec![], vec![]);
    let mut burst_cost = vec![];
    for run in 0..runs {
        let topic = format!("bench.system.{}-{run}", std::process::id());
        ordo::bus::kafka::ensure_topics(
            &ordo::bus::kafka::KafkaConfig::new(&brokers),
            &[&topic],
            6,
            1,
        )
        .await?;
        let events = backlog(&brokers, &topic, keys).await?;
        // The engine finds moto through this process's AWS_* settings.
        let pipelines = PipelinesFile::write(&topic, &topic, &format!("{topic}.ordo"))?;
        let engine = EngineProcess::start(&pipelines.path(), &brokers, "all", &[])?;
        idle.push(process_peak_rss_kib(engine.pid()) as f64 / 1024.0);
        engine.wait_settled(&http, events).await?;
        consume_peak.push(engine.peak_mib());

        engine.reset_peak();
        let started = Instant::now();
        let sent = ingest_load(&engine, run, seconds).await;
        rates.push(sent as f64 / started.elapsed().as_secs_f64());
        ingest_peak.push(engine.peak_mib());
        let settled = events + sent;
        engine.wait_settled(&http, settled).await?;

        let writes_before = engine.metric(&http, "ordo_dynamodb_writes_total").await;
        let burst_events = bursts(&brokers, &topic, run, keys / 2).await?;
        engine.wait_settled(&http, settled + burst_events).await?;
        let writes = engine.metric(&http, "ordo_dynamodb_writes_total").await - writes_before;
        burst_cost.push(writes as f64 / burst_events as f64);
    }
    println!("| figure | median (range) over {runs} runs |");
    println!("|---|---|");
    println!(
        "| engine RSS at start (MiB) | {} |",
        spread(&mut idle).show(0)
    );
    println!(
        "| engine peak RSS consuming a backlog of {} events (MiB) | {} |",
        keys * BACKLOG_UPDATES,
        spread(&mut consume_peak).show(0)
    );
    println!(
        "| engine peak RSS under ingest load, {CONNECTIONS} connections, consumer running (MiB) | {} |",
        spread(&mut ingest_peak).show(0)
    );
    println!(
        "| ingest rate during that load (requests/s) | {} |",
        spread(&mut rates).show(0)
    );
    println!(
        "| DynamoDB writes per event, bursts of {BURST_UPDATES} updates per key within 100 ms, {} keys at once | {} |",
        keys / 2,
        spread(&mut burst_cost).show(2)
    );
    println!(
        "\nThe real `ordo` binary (release) on tansu and moto, a fresh engine, topic and table per run; {seconds} s of ingest load per run."
    );
    Ok(())
}
