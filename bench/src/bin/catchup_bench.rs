//! A replica catching up, against what its store can take at all: the keys applied at once
//! follow the throughput (issue 34), and this measures whether that finds the store's
//! ceiling.
//!
//! **moto** (the local DynamoDB API) is throughput-bound. Its ceiling is measured here, in
//! the same run, by a plain client: the SDK's conditional put of each record as new
//! (`DynamoStore::put`, no Kafka, no plugin), at each concurrency of a sweep; the best is
//! the ceiling. Then Ordo's consumer catches up on a topic of as many new patients, once with
//! the keys at once following the throughput (the default) and once fixed at `concurrency` 64
//! (`adaptive_concurrency = false`, what every release before did). Goal: Ordo, adaptive,
//! ≥ 0.9× moto's ceiling.
//!
//! **The 4 ms model** (bench/src/model.rs: every request 4 ms, any number at once) is
//! latency-bound: there the limit should stay at the ceiling. Goal: adaptive ≥ 0.95× fixed
//! (no loss against the fixed limit, within the runs' spread here).
//!
//! Both workloads were fixed before any figure was read: uniform, one update per new key.
//!
//! `cargo run --release -p ordo-bench --bin catchup_bench` (the local stack must be up).
//! `ORDO_BENCH_SCALE` (default 10: 5,000 events on moto, 20,000 on the model),
//! `ORDO_BENCH_RUNS` (default 3).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo::store::dynamo::DynamoStore;
use ordo::store::{Precondition, PutOutcome, Record, Store};
use ordo_bench::engine::{ensure_consumed_topic, lww_policy, Member, Source};
use ordo_bench::model::{ModelStore, MODEL_LATENCY};
use ordo_bench::results::Table;
use ordo_bench::{setting, spread, Spread};

const PARTITIONS: i32 = 6;
/// Events on moto per unit of scale.
const MOTO_EVENTS: usize = 500;
/// Events on the model per unit of scale.
const MODEL_EVENTS: usize = 2_000;
/// The plain client's concurrencies.
const SWEEP: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Writes per point of the sweep per unit of scale.
const SWEEP_WRITES: usize = 100;
/// Ordo's ceiling: the pipeline default.
const CEILING: usize = ordo::config::DEFAULT_CONCURRENCY;
/// Longest one design may take.
const DEADLINE: Duration = Duration::from_secs(300);

fn record(k: &str) -> Record {
    let body = serde_json::json!({
        "PatientId": k, "FirstName": "John", "LastName": "Doe", "IsPregnant": "False",
        "Sex": "Female", "UpdatedAt": "2006-01-02T15:00:00.5+10:00",
    });
    body.as_object().cloned().unwrap_or_default()
}

/// The plain client: `writes` new records put conditionally, `concurrency` at once; writes/s.
async fn plain(
    store: &DynamoStore,
    prefix: &str,
    writes: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut puts = futures::stream::iter(0..writes)
        .map(|i| {
            let r = record(&format!("{prefix}-{i}"));
            async move { store.put(&r, &Precondition::Absent).await }
        })
        .buffer_unordered(concurrency);
    while let Some(put) = puts.next().await {
        anyhow::ensure!(put? == PutOutcome::Written, "a new key's put conflicted");
    }
    Ok(writes as f64 / start.elapsed().as_secs_f64())
}

/// `n` new patients on `topic`, keyed by id.
async fn fill(brokers: &str, topic: &str, n: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()?;
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let key = format!("p{i}");
            let body = serde_json::Value::Object(record(&key)).to_string();
            let producer = producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&body),
                        Timeout::Never,
                    )
                    .await
            }
        })
        .collect();
    for s in futures::future::join_all(sends).await {
        s.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// One Ordo consumer catching up on the `n` events of `topic` into `store`, in group `group`;
/// (events/s from its first settled event, writes, the limit in force at the end).
async fn ordo<S: Store>(
    brokers: &str,
    topic: &str,
    group: String,
    store: S,
    n: usize,
    adaptive: bool,
) -> anyhow::Result<(f64, u64, i64)> {
    let source = Source {
        brokers,
        topic,
        group,
        concurrency: CEILING,
        changes_topic: None,
    };
    let member = Member::start_with(&source, &lww_policy()?, store, adaptive)?;
    let measured = async {
        while member.metrics.settled() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (start, first) = (Instant::now(), member.metrics.settled());
        while (member.metrics.settled() as usize) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok((n as u64 - first) as f64 / start.elapsed().as_secs_f64())
    };
    let rate = tokio::time::timeout(DEADLINE, measured)
        .await
        .map_err(|_| {
            anyhow::anyhow!("Ordo did not settle {n} events of {topic} within {DEADLINE:?}")
        })??;
    let limit = member.metrics.concurrency.get();
    let metrics = member.stop().await?;
    anyhow::ensure!(
        metrics.dead_lettered.get() == 0,
        "valid events were dead-lettered on {topic}"
    );
    Ok((rate, metrics.writes.get(), limit))
}

/// A design's figures over the runs.
#[derive(Default)]
struct Figures {
    rates: Vec<f64>,
    writes: Vec<f64>,
    limits: Vec<f64>,
}

impl Figures {
    /// Keeps one run of a design over `n` events, measured as (events/s, writes, keys at
    /// once at the end), and writes it to `raw` as (run, store, design).
    fn keep(
        &mut self,
        raw: &Table,
        (run, store, design): (usize, &str, &str),
        n: usize,
        (rate, writes, limit): (f64, u64, i64),
    ) -> anyhow::Result<()> {
        let per = writes as f64 / n as f64;
        raw.row(&[
            run.to_string(),
            store.into(),
            design.into(),
            n.to_string(),
            format!("{rate:.1}"),
            format!("{per:.3}"),
            limit.to_string(),
        ])?;
        self.rates.push(rate);
        self.writes.push(per);
        self.limits.push(limit as f64);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordo_bench::init_logs();
    let scale = setting("ORDO_BENCH_SCALE", 10);
    let runs = setting("ORDO_BENCH_RUNS", 3);
    ordo_bench::local_aws_env();
    let brokers = ordo_bench::brokers();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let id = std::process::id();
    let raw_sweep = Table::new(
        "catchup-sweep",
        &["run", "concurrency", "writes", "writes_per_s"],
    );
    let raw = Table::new(
        "catchup-ordo",
        &[
            "run",
            "store",
            "design",
            "events",
            "events_per_s",
            "writes_per_event",
            "limit_at_end",
        ],
    );

    let (moto_n, model_n, sweep_n) = (
        MOTO_EVENTS * scale,
        MODEL_EVENTS * scale,
        SWEEP_WRITES * scale,
    );
    let moto_topic = format!("bench.{id}.catchup.moto");
    let model_topic = format!("bench.{id}.catchup.model");
    ensure_consumed_topic(&brokers, &moto_topic, PARTITIONS).await?;
    ensure_consumed_topic(&brokers, &model_topic, PARTITIONS).await?;
    fill(&brokers, &moto_topic, moto_n).await?;
    fill(&brokers, &model_topic, model_n).await?;

    let mut sweep: Vec<Vec<f64>> = vec![Vec::new(); SWEEP.len()];
    let mut ceilings = Vec::new();
    let (mut moto_adaptive, mut moto_fixed) = (Figures::default(), Figures::default());
    let (mut model_adaptive, mut model_fixed) = (Figures::default(), Figures::default());
    for run in 0..runs {
        // The plain client's sweep, into a table of its own each run.
        let table = DynamoStore::new(
            dynamodb.clone(),
            &format!("bench-{id}-{run}-plain"),
            "PatientId",
        );
        table.ensure_table().await?;
        let mut best: f64 = 0.0;
        for (i, c) in SWEEP.iter().enumerate() {
            let rate = plain(&table, &format!("c{c}"), sweep_n, *c).await?;
            raw_sweep.row(&[
                run.to_string(),
                c.to_string(),
                sweep_n.to_string(),
                format!("{rate:.1}"),
            ])?;
            sweep[i].push(rate);
            best = best.max(rate);
        }
        ceilings.push(best);
        // Ordo both ways, in an order that alternates by run.
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for adaptive in order {
            let design = if adaptive { "adaptive" } else { "fixed" };
            let table = DynamoStore::new(
                dynamodb.clone(),
                &format!("bench-{id}-{run}-{design}"),
                "PatientId",
            );
            table.ensure_table().await?;
            let group = format!("bench.{id}.{run}.moto.{design}");
            let (rate, writes, limit) =
                ordo(&brokers, &moto_topic, group, table, moto_n, adaptive).await?;
            let f = if adaptive {
                &mut moto_adaptive
            } else {
                &mut moto_fixed
            };
            f.keep(&raw, (run, "moto", design), moto_n, (rate, writes, limit))?;
        }
        for adaptive in order {
            let design = if adaptive { "adaptive" } else { "fixed" };
            let group = format!("bench.{id}.{run}.model.{design}");
            let store = ModelStore::new(MODEL_LATENCY);
            let (rate, writes, limit) =
                ordo(&brokers, &model_topic, group, store, model_n, adaptive).await?;
            let f = if adaptive {
                &mut model_adaptive
            } else {
                &mut model_fixed
            };
            f.keep(&raw, (run, "model", design), model_n, (rate, writes, limit))?;
        }
    }

    println!("| plain client's concurrency | moto conditional puts/s, median (range) |");
    println!("|---|---|");
    for (c, rates) in SWEEP.iter().zip(sweep.iter_mut()) {
        println!("| {c} | {} |", spread(rates).show(0));
    }
    let ceiling = spread(&mut ceilings);
    println!(
        "| **ceiling** (best of the sweep, each run) | {} |",
        ceiling.show(0)
    );
    println!();
    println!("| store | design | events | events/s, median (range) | writes/event | keys at once at the end, median (range) | vs moto's ceiling | adaptive / fixed |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |store: &str,
               design: &str,
               n: usize,
               f: &mut Figures,
               versus: Option<f64>,
               ratio: Option<f64>|
     -> Spread {
        let rate = spread(&mut f.rates);
        println!(
            "| {store} | {design} | {n} | {} | {} | {} | {} | {} |",
            rate.show(0),
            spread(&mut f.writes).show(2),
            spread(&mut f.limits).show(0),
            versus.map_or("—".into(), |c| format!("{:.2}×", rate.median / c)),
            ratio.map_or("—".into(), |r| format!("{r:.2}×")),
        );
        rate
    };
    let ratio = |a: &Figures, b: &Figures| -> f64 {
        let mut per_run: Vec<f64> = a.rates.iter().zip(&b.rates).map(|(x, y)| x / y).collect();
        spread(&mut per_run).median
    };
    let (moto_ratio, model_ratio) = (
        ratio(&moto_adaptive, &moto_fixed),
        ratio(&model_adaptive, &model_fixed),
    );
    let moto_a = row(
        "moto",
        "Ordo, keys at once following the throughput (default)",
        moto_n,
        &mut moto_adaptive,
        Some(ceiling.median),
        Some(moto_ratio),
    );
    row(
        "moto",
        &format!("Ordo, fixed at {CEILING} (`adaptive_concurrency = false`)"),
        moto_n,
        &mut moto_fixed,
        Some(ceiling.median),
        None,
    );
    row(
        "model: 4 ms per request",
        "Ordo, keys at once following the throughput (default)",
        model_n,
        &mut model_adaptive,
        None,
        Some(model_ratio),
    );
    row(
        "model: 4 ms per request",
        &format!("Ordo, fixed at {CEILING} (`adaptive_concurrency = false`)"),
        model_n,
        &mut model_fixed,
        None,
        None,
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let on_moto = moto_a.median / ceiling.median;
    println!(
        "\nMedian of {runs} runs (range in brackets). Each run: the plain client's sweep ({sweep_n} new records per concurrency, into a fresh table), then Ordo both ways (the order alternates by run), each in a consumer group of its own over the same topic of new patients ({moto_n} on moto, {model_n} on the model), into a fresh table; a rate is from the design's first settled event to its last (joining the group is not counted). \"Adaptive / fixed\" is the median of the per-run ratios. The ceiling is writes/s, Ordo's figure events/s: with one write per event (the writes/event column) they compare directly."
    );
    println!(
        "\nGoals: on moto, Ordo {on_moto:.2}× moto's ceiling (goal ≥ 0.9×: {}); on the model, adaptive {model_ratio:.2}× the fixed limit (goal ≥ 0.95×, no loss within the runs' spread: {}).",
        met(on_moto >= 0.9),
        met(model_ratio >= 0.95),
    );
    Ok(())
}
