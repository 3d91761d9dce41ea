//! Ingest throughput: each way into Ordo as a ratio of rdkafka's own producer with every
//! message in flight, all measured in every run against the same broker.
//!
//! The designs, each measured once per run:
//! 1. **rdkafka, every message in flight** (the baseline): `ORDO_BENCH_EVENTS` messages sent at
//!    once by a producer configured as Ordo's (idempotent, `acks=all`, linger
//!    `ordo::bus::kafka::LINGER_MS`, the murmur2 partitioner), each keyed, with the same body
//!    as the others and no headers; timed from the first send to the last ack.
//! 2. **Ordo, one POST per event**: `CONNECTIONS` keep-alive connections, each sending its next
//!    request when the last one is answered (202 after the broker's ack), for
//!    `ORDO_BENCH_SECONDS`.
//! 3. **Ordo, bulk NDJSON**: the same route with `Content-Type: application/x-ndjson`,
//!    `BULK_LINES` events a body over `BULK_CONNECTIONS` connections, each sending its next
//!    body when the last one is answered, until `ORDO_BENCH_EVENTS` events are sent; every
//!    answer must be 200 with every line accepted, or the bench fails.
//! 4. **`ordo load`**: the real `ordo` binary (`ORDO_BIN`, else the one beside this program)
//!    loading a file of `ORDO_BENCH_EVENTS` lines through a pipelines file of its own (audit
//!    off, as on the servers); the rate it prints (first line read to last ack) is the figure,
//!    and the whole process's wall-clock rate (start-up included) is given in the note. It
//!    must exit successfully, having produced every event and rejected none.
//!
//! The goals' baseline (issue 34: "with the same headers"): rdkafka with every message in
//! flight and a request-id header on each, as Ordo adds (what a header costs this broker).
//! As context, not goals: the same server answering 202 without producing
//! (the HTTP ceiling); rdkafka with `CONNECTIONS` senders each waiting for its ack (ingest's
//! shape without HTTP); and one message's ack latency.
//!
//! The servers are `ordo::ingest::app` with the real handler (body checks, plugin validation,
//! stamping); only the publisher differs. Each runs in a child process of this program
//! (`ingest_bench serve <kafka|none> <topic>`), started afresh for each design; the load comes
//! from this process. Every design writes to a fresh topic, created before it starts (see
//! `compare` for why), and the order of the designs rotates by one each run.
//!
//! Settings: `ORDO_BENCH_RUNS` (default 5), `ORDO_BENCH_EVENTS` (default 50,000),
//! `ORDO_BENCH_SECONDS` (default 5), `KAFKA_BROKERS` (default 127.0.0.1:9092), `ORDO_BIN`.
//!
//! `cargo build --release -p ordo --bins && cargo run --release -p ordo-bench --bin
//! ingest_bench` (the local stack and the plugins must be up). Prints a Markdown table: the
//! median and range of the runs, and the goals; per-run figures go to standard error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ordo::bus::kafka::KafkaConfig;
use ordo::bus::{BusError, Delivery, Publisher};
use ordo::ingest;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo_bench::{process_peak_rss_kib, setting, spread, Spread};

/// Connections of the one-POST-per-event load (and of the HTTP ceiling).
const CONNECTIONS: usize = 64;
/// Events per bulk body: a typical backfill batch, well under the server's default
/// `--bulk-max-lines` (`ingest::DEFAULT_BULK_MAX_LINES`, 10,000). About 140 KB of NDJSON.
const BULK_LINES: u64 = 1_000;
/// Bulk connections, each with one body in flight. A body takes one share of the server's
/// in-flight budget per started `DEFAULT_BODY_LIMIT` (1 MiB) of body, so a 1,000-line body
/// takes one of the `DEFAULT_MAX_IN_FLIGHT` (1,024) shares: four fit with room to spare, and
/// the bench fails on any answer but 200 (a refusal would be 503).
const BULK_CONNECTIONS: usize = 4;
const PARTITIONS: i32 = 6;
use ordo_bench::engine::ROUTE;
/// The pipeline's name in the pipelines file written for `ordo load`.
const PIPELINE: &str = "patient-profile";
/// Keys of warm-up requests start here (the measured ones count up from 0).
const WARM_UP_KEYS: u64 = 900_000_000;

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

/// The designs measured in every run, in the first run's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Design {
    Rdkafka,
    Post,
    Bulk,
    Load,
    RdkafkaHeader,
    Ceiling,
    Waiting,
}

const DESIGNS: [Design; 7] = [
    Design::Rdkafka,
    Design::Post,
    Design::Bulk,
    Design::Load,
    Design::RdkafkaHeader,
    Design::Ceiling,
    Design::Waiting,
];

impl Design {
    fn index(self) -> usize {
        DESIGNS.iter().position(|d| *d == self).unwrap_or(0)
    }

    /// A short name, for the per-run lines and topic names.
    fn name(self) -> &'static str {
        match self {
            Design::Rdkafka => "rdkafka",
            Design::Post => "post",
            Design::Bulk => "bulk",
            Design::Load => "load",
            Design::RdkafkaHeader => "rdkafka-header",
            Design::Ceiling => "ceiling",
            Design::Waiting => "waiting",
        }
    }
}

/// Event `n`'s key for `design` in `run`: one key per event, every key of the same length.
fn key(run: usize, design: Design, n: u64) -> String {
    format!("{:03}{}{n:09}", run % 1000, design.index())
}

/// An event: the seed's fields plus its version, for patient `key`.
fn body(key: &str) -> String {
    format!(
        r#"{{"PatientId":"{key}","FirstName":"John","LastName":"Doe","IsPregnant":"False","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00.5+10:00"}}"#
    )
}

/// Events `from..to` of `design` in `run` as an NDJSON body.
fn ndjson(run: usize, design: Design, from: u64, to: u64) -> String {
    let mut text = String::with_capacity(160 * (to - from) as usize);
    for n in from..to {
        text.push_str(&body(&key(run, design, n)));
        text.push('\n');
    }
    text
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

fn brokers() -> String {
    ordo_bench::brokers()
}

/// The policy plugin every design validates with (`make plugins` builds it).
fn plugin_path() -> anyhow::Result<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build/patient_profile_lww.wasm");
    path.canonicalize()
        .with_context(|| format!("{} is missing: make plugins", path.display()))
}

/// The child: serves the ingest route with the chosen publisher until killed.
async fn serve(bus: &str, topic: &str) -> anyhow::Result<()> {
    match bus {
        "kafka" => {
            let publisher = KafkaConfig::new(&brokers()).producer(Duration::from_secs(300))?;
            serve_with(publisher, topic).await
        }
        _ => serve_with(AckAtOnce(AtomicU64::new(0)), topic).await,
    }
}

async fn serve_with<P: Publisher>(publisher: P, topic: &str) -> anyhow::Result<()> {
    let url = ordo_bench::engine::serve_ingest(publisher, topic).await?;
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix(ROUTE))
        .context("the server's URL")?;
    println!("listening on {addr}");
    std::future::pending::<()>().await;
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
            .spawn()
            .context("start the server child")?;
        let stdout = process.stdout.take().context("child stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the {bus} server child did not start: {line:?}"))?;
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

/// Requests answered 202 per second, over `seconds`, from `CONNECTIONS` connections, one
/// event (a new key) per request.
async fn drive(url: &str, seconds: f64, run: usize, design: Design) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Warm up: every connection open, the plugin pool filled.
    futures::future::try_join_all((0..CONNECTIONS as u64).map(|i| {
        client
            .post(url)
            .header("content-type", "application/json")
            .body(body(&key(run, design, WARM_UP_KEYS + i)))
            .send()
    }))
    .await
    .context("warm-up POSTs")?;
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
                        .body(body(&key(run, design, n)))
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

/// Sends one bulk body of `lines` events; fails unless the answer is 200 with every line
/// accepted. Returns the lines accepted.
async fn post_bulk(
    client: &reqwest::Client,
    url: &str,
    body: String,
    lines: u64,
) -> anyhow::Result<u64> {
    let answer = client
        .post(url)
        .header("content-type", ingest::NDJSON)
        .body(body)
        .send()
        .await
        .context("bulk POST")?;
    let status = answer.status();
    let text = answer.text().await.context("bulk answer")?;
    anyhow::ensure!(
        status.as_u16() == 200,
        "bulk POST of {lines} lines answered {status}: {text:.500}"
    );
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("bulk answer is not JSON: {text:.500}"))?;
    let accepted = json["accepted"]
        .as_u64()
        .with_context(|| format!("bulk answer without `accepted`: {text:.500}"))?;
    anyhow::ensure!(
        accepted == lines && json["rejected"].as_u64() == Some(0),
        "bulk POST of {lines} lines: {accepted} accepted, {} rejected",
        json["rejected"]
    );
    Ok(accepted)
}

/// Events accepted per second by bulk POSTs of `BULK_LINES` lines from `BULK_CONNECTIONS`
/// connections, `events` events in all.
async fn bulk(url: &str, events: u64, run: usize) -> anyhow::Result<f64> {
    let design = Design::Bulk;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(BULK_CONNECTIONS)
        .timeout(Duration::from_secs(120))
        .build()?;
    // Warm up: every connection open, the plugin pool filled, with a small body each.
    futures::future::try_join_all((0..BULK_CONNECTIONS as u64).map(|c| {
        let from = WARM_UP_KEYS + c * 10;
        post_bulk(&client, url, ndjson(run, design, from, from + 10), 10)
    }))
    .await
    .context("warm-up bulk POSTs")?;
    // The bodies are written before the clock starts, as the baseline's messages are.
    let bodies: Vec<(u64, String)> = (0..events)
        .step_by(BULK_LINES as usize)
        .map(|from| {
            let to = (from + BULK_LINES).min(events);
            (to - from, ndjson(run, design, from, to))
        })
        .collect();
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let workers: Vec<_> = (0..BULK_CONNECTIONS)
        .map(|_| {
            let (client, url, queue) = (client.clone(), url.to_string(), Arc::clone(&queue));
            tokio::spawn(async move {
                let mut accepted = 0;
                loop {
                    let next = queue
                        .lock()
                        .map_err(|_| anyhow::anyhow!("a bulk sender panicked"))?
                        .next();
                    let Some((lines, body)) = next else {
                        return Ok::<u64, anyhow::Error>(accepted);
                    };
                    accepted += post_bulk(&client, &url, body, lines).await?;
                }
            })
        })
        .collect();
    let mut accepted = 0;
    for worker in workers {
        accepted += worker.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted == events,
        "{accepted} of {events} bulk events accepted"
    );
    Ok(accepted as f64 / elapsed)
}

/// What one `ordo load` did.
struct LoadRates {
    /// The rate it printed: events produced over the time from its first line read to its
    /// last ack.
    own: f64,
    /// Events over the whole process's wall clock, start-up (plugin compile) included.
    wall: f64,
}

/// The number just before `marker` in `line` (`"... 50000 events produced"` → 50000).
fn number_before(line: &str, marker: &str) -> anyhow::Result<f64> {
    let head = &line[..line
        .find(marker)
        .with_context(|| format!("no `{marker}` in {line:?}"))?];
    let number = head.rsplit([' ', ',']).next().unwrap_or_default();
    number
        .parse()
        .with_context(|| format!("no number before `{marker}` in {line:?}"))
}

/// Runs `ordo load` on a file of `events` events into `topic`; fails unless it exits
/// successfully having produced every one and rejected none.
async fn ordo_load(
    bin: &Path,
    brokers: &str,
    topic: &str,
    events: u64,
    run: usize,
) -> anyhow::Result<LoadRates> {
    let dir = tempfile::tempdir().context("temporary folder for ordo load")?;
    let config = dir.path().join("pipelines.toml");
    // Auditing is on by default (`ordo.audit`); off here, as on the ingest servers, so that
    // each event is one message as in the baseline.
    std::fs::write(
        &config,
        format!(
            "[audit]\nenabled = false\n\n[pipelines.{PIPELINE}]\nroute = \"{ROUTE}\"\ntopic = \"{topic}\"\nkey_field = \"PatientId\"\nversion_field = \"UpdatedAt\"\ntable = \"{topic}\"\nplugin = \"{}\"\n{}\n",
            plugin_path()?.display(),
            ordo_bench::engine::PATIENT_PLUGIN_CONFIG,
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let input = dir.path().join("events.jsonl");
    {
        let file = std::fs::File::create(&input)
            .with_context(|| format!("cannot write {}", input.display()))?;
        let mut file = std::io::BufWriter::new(file);
        for n in 0..events {
            writeln!(file, "{}", body(&key(run, Design::Load, n)))?;
        }
        file.flush()?;
    }
    let mut command = std::process::Command::new(bin);
    command
        .args(["load", "--config"])
        .arg(&config)
        .args(["--brokers", brokers, PIPELINE])
        .arg(&input)
        .env("ORDO_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let (out, wall) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = command.output();
        (out, started.elapsed().as_secs_f64())
    })
    .await?;
    let out = out.with_context(|| format!("cannot run {}", bin.display()))?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    anyhow::ensure!(
        out.status.success(),
        "ordo load failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("load `"))
        .with_context(|| format!("ordo load printed no summary:\n{stdout}\n{stderr}"))?;
    let produced = number_before(line, " events produced")?;
    let rejected = number_before(line, " rejected")?;
    anyhow::ensure!(
        produced == events as f64 && rejected == 0.0,
        "ordo load produced {produced} of {events} events and rejected {rejected}: {line}"
    );
    Ok(LoadRates {
        own: number_before(line, " events/s")?,
        wall: events as f64 / wall,
    })
}

/// rdkafka's producer, configured as Ordo's (idempotent, acks=all, the same linger,
/// partitioner and delivery timeout).
fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "300000")
        .set("linger.ms", ordo::bus::kafka::LINGER_MS)
        .create()?)
}

/// A keyed record; with `header`, it carries a request-id header as Ordo's ingest adds.
fn record<'a>(
    topic: &'a str,
    key: &'a str,
    value: &'a str,
    header: bool,
) -> FutureRecord<'a, str, str> {
    let record = FutureRecord::to(topic).key(key).payload(value);
    match header {
        false => record,
        true => record.headers(OwnedHeaders::new().insert(Header {
            key: ordo::audit::REQUEST_ID_KAFKA_HEADER,
            value: Some(key),
        })),
    }
}

/// Sends one message and waits for its ack: the connection, metadata and producer id are
/// in place before a producer is timed.
async fn warm_up(
    producer: &FutureProducer,
    topic: &str,
    run: usize,
    design: Design,
) -> anyhow::Result<()> {
    let k = key(run, design, WARM_UP_KEYS);
    let v = body(&k);
    producer
        .send(record(topic, &k, &v, false), Timeout::Never)
        .await
        .map_err(|(e, _)| e)
        .context("warm-up message")?;
    Ok(())
}

/// Milliseconds from send to ack of one message at a time (median of 100): the broker's
/// round trip, which bounds how fast a client waiting for each ack can go.
async fn ack_latency_ms(brokers: &str, topic: &str, run: usize) -> anyhow::Result<f64> {
    let producer = producer(brokers)?;
    warm_up(&producer, topic, run, Design::Waiting).await?;
    let mut times = Vec::new();
    for n in 0..100u64 {
        let k = key(run, Design::Waiting, WARM_UP_KEYS + 1 + n);
        let v = body(&k);
        let started = Instant::now();
        producer
            .send(record(topic, &k, &v, false), Timeout::Never)
            .await
            .map_err(|(e, _)| e)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(spread(&mut times).median)
}

/// Messages/s of `CONNECTIONS` senders, each sending its next message once the last one is
/// acknowledged: ingest's shape, without HTTP.
async fn waiting_senders(
    brokers: &str,
    topic: &str,
    seconds: f64,
    run: usize,
) -> anyhow::Result<f64> {
    let producer = producer(brokers)?;
    warm_up(&producer, topic, run, Design::Waiting).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (producer, topic, next) = (producer.clone(), topic.to_string(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut acked = 0u64;
                while Instant::now() < until {
                    let k = key(run, Design::Waiting, next.fetch_add(1, Ordering::Relaxed));
                    let v = body(&k);
                    producer
                        .send(record(&topic, &k, &v, false), Timeout::Never)
                        .await
                        .map_err(|(e, _)| e)?;
                    acked += 1;
                }
                Ok::<u64, anyhow::Error>(acked)
            })
        })
        .collect();
    let mut acked = 0;
    for sender in senders {
        acked += sender.await??;
    }
    Ok(acked as f64 / started.elapsed().as_secs_f64())
}

/// Messages/s of rdkafka's producer sending `count` events, every one in flight at once;
/// each with a request-id header for `Design::RdkafkaHeader`.
async fn every_in_flight(
    brokers: &str,
    topic: &str,
    count: u64,
    run: usize,
    design: Design,
) -> anyhow::Result<f64> {
    let producer = producer(brokers)?;
    warm_up(&producer, topic, run, design).await?;
    let header = design == Design::RdkafkaHeader;
    let events: Vec<(String, String)> = (0..count)
        .map(|n| {
            let k = key(run, design, n);
            let v = body(&k);
            (k, v)
        })
        .collect();
    let started = Instant::now();
    let sends: Vec<_> = events
        .iter()
        .map(|(k, v)| producer.send(record(topic, k, v, header), Timeout::Never))
        .collect();
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e)?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Every figure of the runs so far, one list per design.
#[derive(Default)]
struct Figures {
    rates: [Vec<f64>; DESIGNS.len()],
    load_wall: Vec<f64>,
    ack_ms: Vec<f64>,
    post_rss_kib: u64,
    bulk_rss_kib: u64,
}

impl Figures {
    fn rates(&self, design: Design) -> Spread {
        spread(&mut self.rates[design.index()].clone())
    }

    /// The ratio of `design`'s median to the baseline's, and the range of the per-run ratios.
    fn ratio(&self, design: Design) -> String {
        self.ratio_to(design, Design::Rdkafka)
    }

    /// `design`'s median over `baseline`'s, with the range of the per-run ratios.
    fn ratio_to(&self, design: Design, baseline: Design) -> String {
        let base = &self.rates[baseline.index()];
        let mut per_run: Vec<f64> = self.rates[design.index()]
            .iter()
            .zip(base)
            .map(|(rate, base)| rate / base)
            .collect();
        let r = spread(&mut per_run);
        format!(
            "{:.2}× ({:.2}–{:.2})",
            self.rates(design).median / self.rates(baseline).median,
            r.min,
            r.max
        )
    }
}

async fn compare() -> anyhow::Result<()> {
    let brokers = brokers();
    let runs = setting("ORDO_BENCH_RUNS", 5);
    let seconds = setting("ORDO_BENCH_SECONDS", 5) as f64;
    let events = setting("ORDO_BENCH_EVENTS", 50_000) as u64;
    let ordo = ordo_bench::ordo_bin()?;
    plugin_path()?;
    let kafka = KafkaConfig::new(&brokers);
    // Every design writes to a fresh topic, so none writes into partitions another design
    // has grown. Checked on tansu 0.6 with one shared topic instead, four runs growing it to
    // about a million records: the baseline did not slow, bulk drifted down 13 % and
    // `ordo load` 5 % from the first run to the fourth, against 3 % and 4 % with fresh topics
    // (within the run-to-run spread, but not clearly nothing). Fresh topics cost nothing
    // and keep the designs' conditions equal by construction. tansu keeps every topic in one
    // SQLite file, which grows either way; the rotating order spreads that over the designs.
    let mut figures = Figures::default();
    for run in 0..runs {
        let mut order = DESIGNS;
        order.rotate_left(run % DESIGNS.len());
        let mut line = format!("run {}/{runs}:", run + 1);
        for design in order {
            let topic = format!(
                "bench.ingest.{}.{run}.{}",
                std::process::id(),
                design.name()
            );
            ordo::bus::kafka::ensure_topics(&kafka, &[&topic], PARTITIONS, 1).await?;
            let rate = match design {
                Design::Rdkafka | Design::RdkafkaHeader => {
                    every_in_flight(&brokers, &topic, events, run, design).await?
                }
                Design::Post => {
                    let child = Child::start("kafka", &topic)?;
                    let rate = drive(&child.url, seconds, run, design).await?;
                    figures.post_rss_kib = figures.post_rss_kib.max(child.peak_rss_kib());
                    rate
                }
                Design::Bulk => {
                    let child = Child::start("kafka", &topic)?;
                    let rate = bulk(&child.url, events, run).await?;
                    figures.bulk_rss_kib = figures.bulk_rss_kib.max(child.peak_rss_kib());
                    rate
                }
                Design::Load => {
                    let rates = ordo_load(&ordo, &brokers, &topic, events, run).await?;
                    figures.load_wall.push(rates.wall);
                    rates.own
                }
                Design::Ceiling => {
                    let child = Child::start("none", &topic)?;
                    drive(&child.url, seconds, run, design).await?
                }
                Design::Waiting => waiting_senders(&brokers, &topic, seconds, run).await?,
            };
            figures.rates[design.index()].push(rate);
            line.push_str(&format!(" {} {rate:.0}/s;", design.name()));
        }
        let topic = format!("bench.ingest.{}.{run}.ack", std::process::id());
        ordo::bus::kafka::ensure_topics(&kafka, &[&topic], PARTITIONS, 1).await?;
        figures
            .ack_ms
            .push(ack_latency_ms(&brokers, &topic, run).await?);
        eprintln!("{line} ack {:.2} ms", figures.ack_ms[run]);
    }
    report(&figures, runs, events, seconds);
    Ok(())
}

fn report(figures: &Figures, runs: usize, events: u64, seconds: f64) {
    let f = figures;
    let show = |d: Design| f.rates(d).show(0);
    println!("| design | events/s, median (range) | vs rdkafka all in flight | vs rdkafka all in flight, same header |");
    println!("|---|---|---|---|");
    println!(
        "| rdkafka producer, every message in flight (baseline: idempotent, acks=all, linger {} ms, keyed, no headers) | {} | 1.00× | — |",
        ordo::bus::kafka::LINGER_MS,
        show(Design::Rdkafka)
    );
    let rows = [
        (Design::Post, format!("Ordo, one POST per event ({CONNECTIONS} connections, 202 after the broker's ack)")),
        (Design::Bulk, format!("Ordo, bulk NDJSON ({BULK_LINES} lines a body, {BULK_CONNECTIONS} connections, 200 after every line's ack)")),
        (Design::Load, "`ordo load` (its own figure: first line read to last ack)".to_string()),
        (Design::RdkafkaHeader, "rdkafka producer, every message in flight, each with a request-id header as Ordo's (the goals' baseline)".to_string()),
        (Design::Ceiling, format!("context: HTTP ceiling, the same server answering 202 without producing ({CONNECTIONS} connections)")),
        (Design::Waiting, format!("context: rdkafka producer, {CONNECTIONS} senders each waiting for its ack (ingest's shape without HTTP)")),
    ];
    for (design, label) in rows {
        let same = match design {
            Design::Post | Design::Bulk | Design::Load => f.ratio_to(design, Design::RdkafkaHeader),
            _ => "—".to_string(),
        };
        println!(
            "| {label} | {} | {} | {same} |",
            show(design),
            f.ratio(design)
        );
    }
    // The goals compare like with like: Ordo's events carry one request-id header each.
    let baseline = f.rates(Design::RdkafkaHeader).median;
    let (bulk, load) = (
        f.rates(Design::Bulk).median / baseline,
        f.rates(Design::Load).median / baseline,
    );
    let met = |x: f64| if x >= 0.8 { "met" } else { "NOT met" };
    let order: Vec<&str> = DESIGNS.iter().map(|d| d.name()).collect();
    println!(
        "\nShape: each event is the seed's fields (PatientId, FirstName, LastName, IsPregnant, Sex) plus UpdatedAt, {} bytes of JSON, with one key per event (no key repeats). \
The baseline, bulk NDJSON, `ordo load` and the header row send {events} events per run; one POST per event, the HTTP ceiling and the waiting senders run for {seconds:.0} s. \
Figures are the median of {runs} runs with the range in brackets; the ratio column is the ratio of the medians, with the range of the per-run ratios in brackets. \
Every design is measured in every run, each against a fresh topic of {PARTITIONS} partitions on the same broker, in an order that rotates by one each run (run 1: {}); clients are warmed up (connections open, producer id and metadata fetched) before the clock starts, except inside `ordo load`, whose own figure starts once its own set-up is done (plugin loaded, topics checked, its topic's metadata fetched, after which librdkafka asks for the producer id at once instead of on its half-second retry; that id's round trip is inside the figure). \
Connections: {CONNECTIONS} for one POST per event and the ceiling; {BULK_CONNECTIONS} for bulk, each with one {BULK_LINES}-line body in flight; `ordo load` is one process with its default window of {} events in flight; the baseline has all {events} in flight. \
Ordo's messages carry headers the baseline's do not: ingest and `ordo load` add a request id to each (`ordo load` also its principal when `[audit]` is on), and headers cost tansu dearly (it appears to store each as a row of its own): the header row shows what that one header costs this broker, and the fair comparison for bulk and `ordo load` is against it. \
The servers and `ordo load` validate every event with the patient_profile_lww plugin. No audit topic is configured (`[audit] enabled = false` for `ordo load`, whose default is on): with `[audit]`, each accepted event also produces one audit record. \
`ordo load`'s wall-clock rate, process start-up and plugin compile included: {} events/s. \
One message alone takes {} ms from send to ack. Peak RSS of the Ordo ingest server: {:.0} MiB under one POST per event, {:.0} MiB under bulk. \
The load driver, the servers, `ordo load` and the broker (tansu, storing in SQLite) share the machine's cores.",
        body(&key(0, Design::Rdkafka, 0)).len(),
        order.join(", "),
        ordo::ops::load::DEFAULT_IN_FLIGHT,
        spread(&mut f.load_wall.clone()).show(0),
        spread(&mut f.ack_ms.clone()).show(2),
        f.post_rss_kib as f64 / 1024.0,
        f.bulk_rss_kib as f64 / 1024.0,
    );
    println!(
        "\nGoals, against rdkafka with every message in flight and the same request-id header: bulk NDJSON {bulk:.2}× (goal ≥ 0.8×: {}); ordo load {load:.2}× (goal ≥ 0.8×: {}).",
        met(bulk),
        met(load)
    );
}
