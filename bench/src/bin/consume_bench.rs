//! Consumer throughput and write cost, against a sequential baseline and a no-op consumer
//! measured in the same run.
//!
//! The baseline is the original Go service's design: one event at a time, read, merge, write,
//! store the offset. Ordo is the real consumer (`ordo::pipeline::consume::run`, with its record
//! cache). The ceiling is an rdkafka consumer that reads the same topic and does nothing with
//! it: how fast the broker hands these events to one consumer, which no design can beat. All
//! read the same topic, filled before any starts (a consumer catching up), in consumer groups
//! of their own, through the same plugin.
//!
//! Two stores: the local DynamoDB API (moto: throughput-bound, about 430 writes/s here) and a
//! latency **model** of real DynamoDB (every read and write takes `MODEL_LATENCY`, any number
//! at once, the same conditional semantics).
//!
//! Two workload shapes, fixed here before any figure was read (issue 19), the same for every
//! design: **uniform**, every key updated once (nothing to fold: every event costs a write, the
//! worst case for Ordo and the steady state of a replica of many patients), and **bursty**,
//! every key updated `BURST` times back to back (the case Ordo exists for: updates of one
//! patient produced almost at once).
//!
//! Last, the change feed's cost: one consumer with and without `changes_topic`, uniform shape.
//! (Several engines in one group are `scaling_bench`'s: separate `ordo` processes.)
//!
//! `cargo run --release -p ordo-bench --bin consume_bench` (the local stack must be up: `make
//! local-dev-stack`). `ORDO_BENCH_SCALE` sizes the workloads (default 10: 20,000 events per
//! shape on the model, 60,000 for the change feed), `ORDO_BENCH_RUNS` repeats each measurement
//! (default 3) and reports the median and range, `ORDO_BENCH_STORES` runs only some parts
//! (`moto`, `model`, `changes`, comma-separated), `ORDO_BENCH_CONCURRENCY` overrides the
//! pipeline default (64).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message;

use ordo::pipeline::{Applier, Outcome};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::PolicyHandle;
use ordo::store::dynamo::DynamoStore;
use ordo::store::Store;
use ordo_bench::engine::{ensure_consumed_topic, Member, Source};
use ordo_bench::model::{ModelStore, MODEL_LATENCY};
use ordo_bench::topic::{consumer, fill_uniform, produce, read_rate, workload, BURST};
use ordo_bench::{setting, spread, Spread};

const PARTITIONS: i32 = 6;
/// Events the baseline handles on a slow store (moto, the model): enough for a steady rate.
const BASELINE_EVENTS: usize = 1_000;
/// Events per shape on the model, per unit of `ORDO_BENCH_SCALE` (20,000 at the default 10):
/// several seconds of Ordo, so its rate is a steady one rather than its start-up.
const MODEL_EVENTS: usize = 2_000;
/// Events per shape on moto, per unit of scale: it takes about 430 writes/s.
const MOTO_EVENTS: usize = 100;
/// Events of the change-feed workload, per unit of scale (60,000 at the default): several
/// seconds of one consumer, so its rate is a steady one.
const CHANGES_EVENTS: usize = 6_000;
/// Longest one design may take over one workload before the benchmark fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// Keys applied at once: `ORDO_BENCH_CONCURRENCY`, else a pipeline's default.
fn concurrency() -> usize {
    std::env::var("ORDO_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ordo::config::DEFAULT_CONCURRENCY)
}

fn env(k: &str, d: &str) {
    if std::env::var(k).is_err() {
        // Single-threaded start-up, before any client reads the environment.
        unsafe { std::env::set_var(k, d) };
    }
}

/// One design's figures over the runs.
#[derive(Default)]
struct Figures {
    events: usize,
    rates: Vec<f64>,
    writes_per_event: Vec<f64>,
}

impl Figures {
    fn add(&mut self, events: usize, rate: f64, writes: usize) {
        self.events = events;
        self.rates.push(rate);
        self.writes_per_event.push(writes as f64 / events as f64);
    }

    fn rate(&mut self) -> Spread {
        spread(&mut self.rates)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordo_bench::init_logs();
    let scale = setting("ORDO_BENCH_SCALE", 10);
    let runs = setting("ORDO_BENCH_RUNS", 3);
    env("AWS_ACCESS_KEY_ID", "test");
    env("AWS_SECRET_ACCESS_KEY", "test");
    env("AWS_REGION", "us-east-1");
    env("AWS_ENDPOINT_URL", "http://127.0.0.1:4566");
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let plugin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build/patient_profile_lww.wasm");
    let policy = PolicyHandle::new(Arc::new(WasmPolicy::load_configured(
        &plugin,
        Limits::default(),
        Capabilities::default(),
        &ordo_bench::engine::patient_config(),
    )?));
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let run_id = std::process::id();
    // `ORDO_BENCH_STORES` picks some parts by name, e.g. `model,changes`.
    let only = std::env::var("ORDO_BENCH_STORES").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|w| w == part);
    let show = |s: Spread, decimals: usize| s.show(decimals);

    println!("| store | workload | events | design | events/s, median (range) | writes/event, median (range) | vs baseline | vs no-op ceiling |");
    println!("|---|---|---|---|---|---|---|---|");
    // (store, shape) → (baseline, Ordo, ceiling) medians, for the goals.
    let mut medians = std::collections::HashMap::new();
    for (word, store_kind) in [
        ("moto", "moto (local DynamoDB API)"),
        ("model", "model: 4 ms per request"),
    ] {
        if !wanted(word) {
            continue;
        }
        let per_scale = if word == "moto" {
            MOTO_EVENTS
        } else {
            MODEL_EVENTS
        };
        for shape in ["uniform", "bursty"] {
            let w = workload(shape, per_scale * scale);
            let n = w.len();
            // One topic per workload, read by every run in consumer groups of its own.
            let topic = format!("bench.{run_id}.{word}.{shape}");
            ensure_consumed_topic(&brokers, &topic, PARTITIONS).await?;
            produce(&brokers, &topic, &w).await?;
            let (mut base, mut ordo, mut noop) =
                (Figures::default(), Figures::default(), Figures::default());
            for run in 0..runs {
                let reader = Reader {
                    brokers: &brokers,
                    topic: &topic,
                    label: format!("{topic}.{run}"),
                };
                let events = n.min(BASELINE_EVENTS);
                if word == "moto" {
                    let table = |design: &str| {
                        DynamoStore::new(
                            dynamodb.clone(),
                            &format!("{}-{design}", reader.label),
                            "PatientId",
                        )
                    };
                    let (b, o) = (table("base"), table("ordo"));
                    b.ensure_table().await?;
                    o.ensure_table().await?;
                    let (rate, writes) = baseline(&reader, &policy, b, events).await?;
                    base.add(events, rate, writes);
                    let (rate, writes) = ordo_one(&reader, &policy, o, n, None).await?;
                    ordo.add(n, rate, writes);
                } else {
                    let (rate, writes) =
                        baseline(&reader, &policy, ModelStore::new(MODEL_LATENCY), events).await?;
                    base.add(events, rate, writes);
                    noop.add(n, no_op(&reader, n).await?, 0);
                    let store = ModelStore::new(MODEL_LATENCY);
                    let (rate, writes) = ordo_one(&reader, &policy, store, n, None).await?;
                    ordo.add(n, rate, writes);
                }
            }
            let (b, o) = (base.rate(), ordo.rate());
            let c = (!noop.rates.is_empty()).then(|| noop.rate());
            let vs_ceiling =
                |x: f64| c.map_or("—".to_string(), |c| format!("{:.2}×", x / c.median));
            println!(
                "| {store_kind} | {shape} | {} | sequential baseline | {} | {} | 1.0× | {} |",
                base.events,
                show(b, 0),
                show(spread(&mut base.writes_per_event), 2),
                vs_ceiling(b.median)
            );
            println!(
                "| {store_kind} | {shape} | {n} | Ordo (concurrency {}) | {} | {} | {:.1}× | {} |",
                concurrency(),
                show(o, 0),
                show(spread(&mut ordo.writes_per_event), 2),
                o.median / b.median,
                vs_ceiling(o.median)
            );
            if let Some(c) = c {
                println!(
                    "| — (reads only) | {shape} | {n} | no-op rdkafka consumer (ceiling) | {} | — | {:.1}× | 1.00× |",
                    show(c, 0),
                    c.median / b.median
                );
            }
            medians.insert((word, shape), (b.median, o.median, c.map(|c| c.median)));
        }
    }
    println!(
        "\nMedian of {runs} runs (range in brackets); each rate from the design's first settled event (joining the group is not counted). Shapes: uniform is {} keys × 1 update on the model ({} on moto); bursty is {} keys × {BURST} updates back to back on the model ({} on moto). The baseline's rate is taken over the first {BASELINE_EVENTS} events (a steady rate: it has no start-up to amortise).",
        MODEL_EVENTS * scale,
        MOTO_EVENTS * scale,
        MODEL_EVENTS * scale / BURST,
        MOTO_EVENTS * scale / BURST,
    );
    if let (Some((ub, uo, _)), Some((bb, bo, Some(bc)))) = (
        medians.get(&("model", "uniform")),
        medians.get(&("model", "bursty")),
    ) {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "\nGoals on the model: Ordo {:.2}× the no-op ceiling on the bursty shape (goal ≥ 0.5×: {}); Ordo {:.1}× the sequential baseline on the uniform shape and {:.1}× on the bursty one (goal ≥ 10× on both: {}).",
            bo / bc,
            met(bo / bc >= 0.5),
            uo / ub,
            bo / bb,
            met(uo / ub >= 10.0 && bo / bb >= 10.0),
        );
    }
    if wanted("changes") {
        change_feed(&brokers, &policy, scale, runs, run_id).await?;
    }
    Ok(())
}

/// One Ordo consumer on the model store, uniform shape (every event a write, so every event
/// publishes a change: the feed's worst case), without and with `changes_topic`, alternating
/// within each run; prints a table and the feed's cost per applied event.
async fn change_feed(
    brokers: &str,
    policy: &PolicyHandle,
    scale: usize,
    runs: usize,
    run_id: u32,
) -> anyhow::Result<()> {
    let topic = format!("bench.{run_id}.changes");
    let n = fill_uniform(brokers, &topic, PARTITIONS, CHANGES_EVENTS * scale).await?;
    let changes = format!("{topic}.changed");
    ordo::bus::kafka::ensure_topics(
        &ordo::bus::kafka::KafkaConfig::new(brokers),
        &[&changes],
        PARTITIONS,
        1,
    )
    .await?;
    let (mut plain, mut feed) = (Figures::default(), Figures::default());
    for run in 0..runs {
        for with_feed in [false, true] {
            let reader = Reader {
                brokers,
                topic: &topic,
                label: format!("{topic}.{run}.{with_feed}"),
            };
            let store = ModelStore::new(MODEL_LATENCY);
            let feed_topic = with_feed.then(|| changes.clone());
            let (rate, writes) = ordo_one(&reader, policy, store, n, feed_topic).await?;
            if with_feed {
                feed.add(n, rate, writes);
            } else {
                plain.add(n, rate, writes);
            }
        }
    }
    let (p, f) = (plain.rate(), feed.rate());
    println!("\n| design | events/s, median (range) | writes/event, median (range) | vs without the feed |");
    println!("|---|---|---|---|");
    println!(
        "| Ordo | {} | {} | 1.00× |",
        p.show(0),
        spread(&mut plain.writes_per_event).show(2)
    );
    println!(
        "| Ordo with `changes_topic` | {} | {} | {:.2}× |",
        f.show(0),
        spread(&mut feed.writes_per_event).show(2),
        f.median / p.median
    );
    let cost_us = (1.0 / f.median - 1.0 / p.median) * 1e6;
    println!(
        "\n{n} events, uniform shape (every event a write, so every applied event publishes one change), model store, {PARTITIONS} partitions, one consumer (concurrency {}), median of {runs} runs, the two designs alternating in each run on one broker. The change feed's cost per applied event: {cost_us:.0} µs of the consumer's wall time at this concurrency (medians: 1/{:.0} − 1/{:.0} events/s); the publish is awaited before the event's offset can be committed. No goal was set before measuring.",
        concurrency(),
        f.median,
        p.median,
    );
    Ok(())
}

/// Where one run reads: the workload's topic, in consumer groups named after `label`.
struct Reader<'a> {
    brokers: &'a str,
    topic: &'a str,
    /// Unique per run: the designs' consumer groups (and moto tables) are named after it.
    label: String,
}

impl Reader<'_> {
    /// An rdkafka consumer of the topic from its start, in a group of its own (`<label>.<design>`),
    /// fetching as Ordo's does, with `extra` settings.
    fn consumer(&self, design: &str, extra: &[(&str, &str)]) -> anyhow::Result<StreamConsumer> {
        consumer(
            self.brokers,
            self.topic,
            &format!("{}.{design}", self.label),
            extra,
        )
    }
}

/// The sequential baseline on `store` over the first `events` events; (rate, writes). A
/// design that has not settled its events within `DEADLINE` fails the benchmark rather than
/// hanging it.
async fn baseline<S: Store>(
    reader: &Reader<'_>,
    policy: &PolicyHandle,
    store: S,
    events: usize,
) -> anyhow::Result<(f64, usize)> {
    // The naive design reads before every write: no record cache.
    let applier = Applier::new(store, policy.clone(), "PatientId").with_cache(0);
    tokio::time::timeout(DEADLINE, sequential(reader, &applier, events))
        .await
        .map_err(|_| late(reader, "the sequential baseline", events))?
}

fn late(reader: &Reader<'_>, design: &str, events: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "{design} did not settle {events} events of {} within {DEADLINE:?} (does the broker assign the group its partitions?)",
        reader.topic
    )
}

/// An rdkafka consumer that reads `n` events and does nothing with them: the ceiling.
async fn no_op(reader: &Reader<'_>, n: usize) -> anyhow::Result<f64> {
    let consumer = reader.consumer("noop", &[("enable.auto.commit", "false")])?;
    tokio::time::timeout(DEADLINE, read_rate(&consumer, n))
        .await
        .map_err(|_| late(reader, "the no-op consumer", n))?
}

/// One event at a time: read, merge, write, store the offset. Returns events/s and writes.
async fn sequential<S: Store>(
    reader: &Reader<'_>,
    applier: &Applier<S>,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let consumer = reader.consumer("base", &[("enable.auto.offset.store", "false")])?;
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

/// One real consumer on `store` (its own applier and record cache) until it has settled `n`
/// events; (rate, writes). The rate is taken from its first settled event, so joining the
/// group is not counted.
async fn ordo_one<S: Store>(
    reader: &Reader<'_>,
    policy: &PolicyHandle,
    store: S,
    n: usize,
    changes_topic: Option<String>,
) -> anyhow::Result<(f64, usize)> {
    let source = Source {
        brokers: reader.brokers,
        topic: reader.topic,
        group: format!("{}.ordo", reader.label),
        concurrency: concurrency(),
        changes_topic,
    };
    let member = Member::start(&source, policy, store)?;
    let measured = async {
        while member.metrics.settled() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let start = Instant::now();
        let first = member.metrics.settled();
        while (member.metrics.settled() as usize) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok((n as u64 - first) as f64 / start.elapsed().as_secs_f64())
    };
    let rate = tokio::time::timeout(DEADLINE, measured)
        .await
        .map_err(|_| late(reader, "Ordo", n))??;
    let metrics = member.stop().await?;
    // Every bench event is valid: one dead-lettered means the engine failed, not a result.
    let dead = metrics.dead_lettered.get();
    anyhow::ensure!(
        dead == 0,
        "{dead} valid events were dead-lettered on {} (see the log for why)",
        reader.label
    );
    Ok((rate, metrics.writes.get() as usize))
}
