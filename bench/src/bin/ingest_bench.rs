//! Ingest throughput: `POST /patientprofile` answered 202 after the broker's ack, against the
//! same server answering 202 without producing (the HTTP ceiling) and against rdkafka's raw
//! producer sending the same messages, measured in one run.
//!
//! Both servers are `ordo::ingest::app` with the real handler (body checks, plugin validation,
//! stamping); only the publisher differs. Each runs in a child process of this program, and
//! the load comes from this process: `CONNECTIONS` keep-alive connections, each sending its
//! next request when the last one is answered, for `ORDO_BENCH_SECONDS` (default 5) a run.
//!
//! `cargo run --release -p ordo-bench --bin ingest_bench` (the local stack must be up). Prints a
//! Markdown table: median and range of `ORDO_BENCH_RUNS` runs (default 5).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ordo::bus::kafka::KafkaConfig;
use ordo::bus::{BusError, Delivery, Publisher};
use ordo::ingest::{self, PipelineApi};
use ordo::metrics::{IngestMetrics, Metrics};
use ordo::plugin::reload::{load_checked, PluginSpec, Reloader};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::PolicyHandle;
use ordo::testing::MemoryStore;
use poem::listener::{Acceptor, Listener, TcpListener};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo_bench::{process_peak_rss_kib, setting, spread};

/// Connections the load driver keeps busy.
const CONNECTIONS: usize = 64;
const PARTITIONS: i32 = 6;
const ROUTE: &str = "/patientprofile";

/// A publisher that acknowledges at once and stores nothing: the server's HTTP ceiling.
struct AckAtOnce(AtomicU64);

impl Publisher for AckAtOnce {
    async fn publish(
        &self,
        _: &str,
        _: &str,
        _: &[u8],
        _: &[(&str, &str)],
    ) -> Result<Delivery, BusError> {
        let offset = self.0.fetch_add(1, Ordering::Relaxed) as i64;
        Ok(Delivery {
            partition: 0,
            offset,
        })
    }

    fn flush(&self, _: Duration) -> Result<(), BusError> {
        Ok(())
    }

    async fn check(&self, _: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// The body the load sends for request `n`: the seed's fields, one patient per request.
fn body(n: u64) -> String {
    format!(
        r#"{{"PatientId":"{n}","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}}"#
    )
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let bus = args.get(2).context("serve <kafka|none> <topic>")?;
            let topic = args.get(3).context("serve <kafka|none> <topic>")?;
            runtime.block_on(serve(bus, topic))
        }
        _ => runtime.block_on(compare()),
    }
}

/// The child: serves the ingest route with the chosen publisher until killed.
async fn serve(bus: &str, topic: &str) -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    match bus {
        "kafka" => {
            let publisher = KafkaConfig::new(&brokers).producer(Duration::from_secs(300))?;
            serve_with(publisher, topic).await
        }
        _ => serve_with(AckAtOnce(AtomicU64::new(0)), topic).await,
    }
}

async fn serve_with<P: Publisher>(publisher: P, topic: &str) -> anyhow::Result<()> {
    let plugin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build/patient_profile_lww.wasm");
    let spec = PluginSpec {
        path: plugin,
        limits: Limits::default(),
        capabilities: Capabilities::default(),
        self_test: None,
        key_field: "PatientId".into(),
    };
    let policy = PolicyHandle::new(Arc::new(load_checked(&spec)?));
    let mut pipeline = ordo::testing::pipeline("patient-profile");
    pipeline.route = ROUTE.into();
    pipeline.topic = topic.into();
    let publisher = Arc::new(publisher);
    let api = Arc::new(PipelineApi {
        pipeline: Arc::new(pipeline),
        policy,
        publisher: Arc::clone(&publisher),
        store: MemoryStore::new("PatientId"),
        limits: ingest::Limits {
            body_limit: ingest::DEFAULT_BODY_LIMIT,
            bulk_body_limit: ingest::DEFAULT_BULK_BODY_LIMIT,
            bulk_max_lines: ingest::DEFAULT_BULK_MAX_LINES,
            body_timeout: ingest::DEFAULT_BODY_TIMEOUT,
            produce_timeout: Duration::from_secs(10),
        },
        in_flight: Arc::new(tokio::sync::Semaphore::new(ingest::DEFAULT_MAX_IN_FLIGHT)),
        idempotency: ingest::idempotency::IdempotencyKeys::default(),
        metrics: IngestMetrics::default(),
        auth: None,
        waits: Default::default(),
    });
    let admin = ingest::Admin {
        reloader: Arc::new(Reloader::new(Vec::new())),
        token: None,
        auth: None,
    };
    let app = ingest::app(vec![api], publisher, Metrics::new(), admin);
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("no local address")?;
    println!("listening on {addr}");
    poem::Server::new_with_acceptor(acceptor).run(app).await?;
    Ok(())
}

/// A server child process; killed on drop.
struct Child {
    process: std::process::Child,
    url: String,
}

impl Child {
    fn start(bus: &str, topic: &str) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut process = std::process::Command::new(std::env::current_exe()?)
            .args(["serve", bus, topic])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = process.stdout.take().context("child stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .context("child did not start")?;
        Ok(Self {
            url: format!("http://{addr}{ROUTE}"),
            process,
        })
    }

    fn peak_rss_kib(&self) -> u64 {
        process_peak_rss_kib(self.process.id())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Requests answered 202 per second, over `seconds`, from `CONNECTIONS` connections.
async fn drive(url: &str, seconds: f64, first: u64) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let next = Arc::new(AtomicU64::new(first));
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Warm up: every connection open, the plugin pool filled.
    futures::future::try_join_all((0..CONNECTIONS as u64).map(|i| {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(body(first + 1_000_000_000 + i))
            .send()
    }))
    .await?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            let (next, accepted, failed) = (
                Arc::clone(&next),
                Arc::clone(&accepted),
                Arc::clone(&failed),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body(n))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().as_u16() == 202 => {
                            accepted.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    futures::future::join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        failed.load(Ordering::Relaxed) == 0,
        "{} requests were not answered 202",
        failed.load(Ordering::Relaxed)
    );
    Ok(accepted.load(Ordering::Relaxed) as f64 / elapsed)
}

/// rdkafka's producer, configured as Ordo's (idempotent, acks=all, the same linger).
fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", ordo::bus::kafka::LINGER_MS)
        .create()?)
}

/// Milliseconds from send to ack of one message at a time (median of 100): the broker's
/// round trip, which bounds how fast a client waiting for each ack can go.
async fn ack_latency_ms(brokers: &str, topic: &str) -> anyhow::Result<f64> {
    let producer = producer(brokers)?;
    let mut times = Vec::new();
    for n in 0..100u64 {
        let (key, value) = (n.to_string(), body(n));
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Timeout::Never,
            )
            .await
            .map_err(|(e, _)| e)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(spread(&mut times).median)
}

/// Messages/s of `CONNECTIONS` senders, each sending its next message once the last one is
/// acknowledged: ingest's shape, without HTTP.
async fn waiting_senders(brokers: &str, topic: &str, seconds: f64) -> anyhow::Result<f64> {
    let producer = producer(brokers)?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let senders: Vec<_> = (0..CONNECTIONS as u64)
        .map(|c| {
            let (producer, topic) = (producer.clone(), topic.to_string());
            tokio::spawn(async move {
                let mut acked = 0u64;
                while Instant::now() < until {
                    let n = c * 1_000_000 + acked;
                    let (key, value) = (n.to_string(), body(n));
                    let record = FutureRecord::to(&topic).key(&key).payload(&value);
                    if producer.send(record, Timeout::Never).await.is_ok() {
                        acked += 1;
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = 0;
    for sender in senders {
        acked += sender.await?;
    }
    Ok(acked as f64 / started.elapsed().as_secs_f64())
}

/// Messages/s of rdkafka's producer sending `count` bodies, all in flight at once.
async fn raw_producer(brokers: &str, topic: &str, count: u64) -> anyhow::Result<f64> {
    let producer = producer(brokers)?;
    let bodies: Vec<(String, String)> = (0..count).map(|n| (n.to_string(), body(n))).collect();
    let started = Instant::now();
    let sends: Vec<_> = bodies
        .iter()
        .map(|(k, v)| producer.send(FutureRecord::to(topic).key(k).payload(v), Timeout::Never))
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e)?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn compare() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let runs = setting("ORDO_BENCH_RUNS", 5);
    let seconds = setting("ORDO_BENCH_SECONDS", 5) as f64;
    let topic = format!("bench.ingest.{}", std::process::id());
    ordo::bus::kafka::ensure_topics(&KafkaConfig::new(&brokers), &[&topic], PARTITIONS, 1).await?;
    let (mut ceiling, mut ordo, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let (mut waiting, mut ack) = (Vec::new(), Vec::new());
    let mut peak_rss = 0;
    for run in 0..runs as u64 {
        let first = run * 10_000_000;
        let none = Child::start("none", &topic)?;
        ceiling.push(drive(&none.url, seconds, first).await?);
        drop(none);
        let kafka = Child::start("kafka", &topic)?;
        ordo.push(drive(&kafka.url, seconds, first + 5_000_000).await?);
        peak_rss = peak_rss.max(kafka.peak_rss_kib());
        drop(kafka);
        let count = (*ordo.last().unwrap_or(&1000.0) * seconds) as u64;
        raw.push(raw_producer(&brokers, &topic, count.max(1000)).await?);
        waiting.push(waiting_senders(&brokers, &topic, seconds).await?);
        ack.push(ack_latency_ms(&brokers, &topic).await?);
    }
    let (w, a) = (spread(&mut waiting), spread(&mut ack));
    let (c, o, r) = (spread(&mut ceiling), spread(&mut ordo), spread(&mut raw));
    println!("| design | requests (messages)/s, median (range) | vs HTTP ceiling |");
    println!("|---|---|---|");
    println!(
        "| HTTP ceiling: same server, 202 without producing | {} | 1.00× |",
        c.show(0)
    );
    println!(
        "| Ordo: 202 after the broker's ack (acks=all, idempotent) | {} | {:.2}× |",
        o.show(0),
        o.median / c.median
    );
    println!(
        "| rdkafka producer, {CONNECTIONS} senders each waiting for its ack (ingest's shape, no HTTP) | {} | {:.2}× |",
        w.show(0),
        w.median / c.median
    );
    println!(
        "| rdkafka producer, same messages all in flight, no HTTP | {} | {:.2}× |",
        r.show(0),
        r.median / c.median
    );
    println!(
        "\n{CONNECTIONS} connections, {seconds:.0} s per run, median of {runs} runs (range in brackets); the load driver and the broker share the machine's two cores with the server. Ordo reaches {:.2}× of rdkafka's own rate for {CONNECTIONS} senders that each wait for their ack: that rate, not HTTP, bounds acknowledged ingest here. The broker (tansu, storing in SQLite) runs on the same two cores; one message alone takes {} ms from send to ack, and more under load. Peak RSS of the Ordo ingest server: {:.0} MiB.",
        o.median / w.median,
        a.show(1),
        peak_rss as f64 / 1024.0
    );
    Ok(())
}
