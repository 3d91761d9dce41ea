//! Scaling with separate processes: 1, 2 and 3 real `ordo run --role apply` processes in one
//! consumer group, each its own process with its own Kafka consumer, applier and record cache,
//! as engines on separate machines would be, against one wire model (`model_dynamo`: every
//! request answered after 4 ms, any number at once).
//!
//! The workload is the uniform shape (every key updated once: every event a write, the
//! latency-bound case where more engines are what a user adds). For each engine count, the
//! engines start at once in a fresh group on a fresh model and an empty topic of their own;
//! the bench sends one new key to each partition every second until every member has written
//! one (so every member holds partitions, however slow the group's rebalance), then produces
//! the whole workload. The rate is taken from the first write of the workload to its last,
//! read from outside the engines: the model counts each engine's writes by its client id
//! (`AWS_SDK_UA_APP_ID`). The CPU of the engines, of the model and of the machine is taken over
//! the same window. A no-op rdkafka consumer reads the same events from a topic filled before
//! it starts, once per run: the broker's ceiling for one reader, which the arithmetic on paper
//! needs.
//!
//! `cargo run --release -p ordo-bench --bin scaling_bench` after `cargo build --release -p ordo`
//! (a broker at `KAFKA_BROKERS`, the plugins built). `ORDO_BENCH_SCALE` sizes the topic (default
//! 10: 60,000 events; `ORDO_BENCH_EVENTS` sets the count itself), `ORDO_BENCH_RUNS` repeats each
//! measurement (default 3: median and range).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use ordo_bench::engine::ensure_consumed_topic;
use ordo_bench::model::MODEL_LATENCY;
use ordo_bench::process::{EngineProcess, PipelinesFile};
use ordo_bench::results::Table;
use ordo_bench::topic::{consumer, fill_uniform, read_rate};
use ordo_bench::wire::child::ModelProcess;
use ordo_bench::workload::{produce, workload, Shape, Workload};
use ordo_bench::{setting, spread, CpuMeter};

/// The topic's partitions (a pipeline's default): at most this many engines have work.
const PARTITIONS: i32 = 6;
/// Events per unit of `ORDO_BENCH_SCALE` (60,000 at the default): long enough that every
/// member has joined while most of the events are still to come.
const EVENTS: usize = 6_000;
/// The engine counts measured.
const MEMBERS: [usize; 3] = [1, 2, 3];
/// Longest one measurement may take.
const DEADLINE: Duration = Duration::from_secs(300);
/// How often a new key goes to each partition while the bench waits for every member to
/// hold partitions.
const JOIN_ROUND: Duration = Duration::from_secs(1);
/// How often the model's counts are read while engines run.
const POLL: Duration = Duration::from_millis(20);
/// Keys an engine applies at once: a pipeline's default, as the engines run it.
const CONCURRENCY: usize = ordo::config::DEFAULT_CONCURRENCY;
/// Seconds without a settled event after which the engines are taken to be done.
const STILL_READS: usize = 3;
/// Longest the bench waits for that, in seconds.
const MOST_READS: usize = 30;
/// Model requests per event of the uniform shape: a read (the key is new to the engine's
/// cache) and a conditional write.
const REQUESTS_PER_EVENT: usize = 2;

/// One engine count's measurement.
struct Measured {
    rate: f64,
    /// Writes by each engine, in start order.
    writes: Vec<u64>,
    /// Cores the engines used together, the model, and the machine's busy share.
    engines_cores: f64,
    model_cores: f64,
    busy: f64,
}

/// Starts `members` engines at once on `pipelines` against `model`, client ids `<label>-<i>`.
fn start_engines(
    members: usize,
    pipelines: &PipelinesFile,
    brokers: &str,
    model: &ModelProcess,
    label: &str,
) -> anyhow::Result<Vec<EngineProcess>> {
    let path = pipelines.path();
    std::thread::scope(|scope| {
        let starting: Vec<_> = (0..members)
            .map(|i| {
                let env = model.client_env(&format!("{label}-{i}"));
                let path = &path;
                scope.spawn(move || EngineProcess::start(path, brokers, "apply", &env))
            })
            .collect();
        starting
            .into_iter()
            .map(|s| {
                s.join()
                    .map_err(|_| anyhow::anyhow!("an engine's start panicked"))?
            })
            .collect()
    })
}

/// `members` engines in one group on a fresh model and a fresh topic, until the backlog `w`
/// produced once all have joined is written.
async fn measure(
    brokers: &str,
    label: &str,
    members: usize,
    w: &Workload,
) -> anyhow::Result<Measured> {
    let topic = format!("{label}.events");
    ensure_consumed_topic(brokers, &topic, PARTITIONS).await?;
    let model = ModelProcess::start(MODEL_LATENCY)?;
    let pipelines = PipelinesFile::write(&topic, label, &format!("{label}.ordo"))?;
    let engines = start_engines(members, &pipelines, brokers, &model, label)?;
    let ids: Vec<String> = (0..members).map(|i| format!("{label}-{i}")).collect();
    let pids: Vec<u32> = engines.iter().map(EngineProcess::pid).collect();
    let n = w.events.len() as u64;
    let run = async {
        // Every member holds partitions before the backlog exists, so none finds it drained
        // when it joins, however slow the group's rebalance is.
        let warm = joined(brokers, &topic, &model, &ids).await?;
        produce(brokers, &topic, &w.events).await?;
        let (end, first) = loop {
            let counts = model.counts().await?;
            if counts.writes() > warm {
                break (warm + n, counts.writes());
            }
            tokio::time::sleep(POLL).await;
        };
        let (start, engines_cpu, model_cpu) = (
            Instant::now(),
            CpuMeter::start(&pids),
            CpuMeter::start(&[model.pid()]),
        );
        let counts = loop {
            let counts = model.counts().await?;
            if counts.writes() >= end {
                break counts;
            }
            tokio::time::sleep(POLL).await;
        };
        let rate = (end - first) as f64 / start.elapsed().as_secs_f64();
        let ((engines_cores, busy), (model_cores, _)) = (engines_cpu.read(), model_cpu.read());
        anyhow::Ok((
            Measured {
                rate,
                writes: ids.iter().map(|id| counts.puts_by(id)).collect(),
                engines_cores,
                model_cores,
                busy,
            },
            end,
        ))
    };
    let (measured, written) = tokio::time::timeout(DEADLINE, run)
        .await
        .map_err(|_| anyhow::anyhow!("{members} engines did not write the {n} events of {topic} within {DEADLINE:?} (see their log for why)"))??;
    // One group splits the topic: each event is settled by one member (by two when a
    // rebalance moves its partition before its offset was committed), where members of a
    // group each would each settle all of it. (The broker here, tansu, cannot describe a
    // group to ask it directly.)
    let settled = settled_when_still(&engines).await;
    let total: u64 = settled.iter().sum();
    anyhow::ensure!(
        members == 1 || total < 2 * written,
        "{members} engines settled {total} events of {written} ({settled:?}): they did not share one consumer group"
    );
    drop(engines);
    Ok(measured)
}

/// Waits until each of the members `ids` has written an event, producing one new key to
/// each partition of `topic` every [`JOIN_ROUND`] until then (a member's first write shows it
/// holds a partition; a member only holds partitions once the group has rebalanced for it).
/// Returns the writes made so far.
async fn joined(
    brokers: &str,
    topic: &str,
    model: &ModelProcess,
    ids: &[String],
) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    for round in 0.. {
        for partition in 0..PARTITIONS {
            let key = format!("joining-{round}-{partition}");
            let body = serde_json::json!({
                "PatientId": key, "FirstName": "Joining", "LastName": "Doe",
                "IsPregnant": "False", "Sex": "Female", "UpdatedAt": "2006-01-02T15:00:00+10:00",
            })
            .to_string();
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&body);
            producer
                .send(record, Timeout::Never)
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce to {topic}: {e}"))?;
        }
        let round_ends = Instant::now() + JOIN_ROUND;
        while Instant::now() < round_ends {
            let counts = model.counts().await?;
            if ids.iter().all(|id| counts.puts_by(id) > 0) {
                return Ok(counts.writes());
            }
            tokio::time::sleep(POLL).await;
        }
    }
    unreachable!("the rounds above end only by returning")
}

/// The events each of `engines` has settled, once no engine has settled another for
/// `STILL_READS` seconds in a row (or `MOST_READS` seconds have passed).
async fn settled_when_still(engines: &[EngineProcess]) -> Vec<u64> {
    let http = reqwest::Client::new();
    let (mut last, mut still) = (Vec::new(), 0);
    for _ in 0..MOST_READS {
        let mut settled = Vec::with_capacity(engines.len());
        for engine in engines {
            settled.push(engine.settled(&http).await);
        }
        still = if settled == last { still + 1 } else { 0 };
        last = settled;
        if still >= STILL_READS {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    last
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordo_bench::init_logs();
    let brokers = ordo_bench::brokers();
    let events = setting(
        "ORDO_BENCH_EVENTS",
        EVENTS * setting("ORDO_BENCH_SCALE", 10),
    );
    let runs = setting("ORDO_BENCH_RUNS", 3);
    let topic = format!("bench.scaling.{}", std::process::id());
    // The no-op reader's topic; each measurement produces the same events to a topic of its own.
    let n = fill_uniform(&brokers, &topic, PARTITIONS, events).await?;
    let w = workload(Shape::Uniform, events);
    let csv = Table::new(
        "scaling_bench-engines",
        &[
            "run",
            "engines",
            "events",
            "events_per_s",
            "writes_per_engine",
            "engines_cores",
            "model_cores",
            "machine_busy_pct",
        ],
    );
    // Per engine count: rates, engines' cores, model's cores, machine busy (%).
    let mut figures: Vec<[Vec<f64>; 4]> = MEMBERS.iter().map(|_| Default::default()).collect();
    let mut split: Vec<Vec<u64>> = vec![Vec::new(); MEMBERS.len()];
    let mut ceiling = Vec::new();
    for run in 0..runs {
        let reader = consumer(
            &brokers,
            &topic,
            &format!("{topic}.{run}.noop"),
            &[("enable.auto.commit", "false")],
        )?;
        let read = tokio::time::timeout(DEADLINE, read_rate(&reader, n)).await;
        ceiling.push(read.context("the no-op consumer did not read the topic in time")??);
        drop(reader);
        for (i, members) in MEMBERS.iter().copied().enumerate() {
            let label = format!("bench-scaling-{}-{run}-{members}", std::process::id());
            let m = measure(&brokers, &label, members, &w).await?;
            let writes = m.writes.iter().map(u64::to_string).collect::<Vec<_>>();
            csv.row(&[
                run.to_string(),
                members.to_string(),
                n.to_string(),
                format!("{:.1}", m.rate),
                writes.join(" "),
                format!("{:.3}", m.engines_cores),
                format!("{:.3}", m.model_cores),
                format!("{:.1}", m.busy * 100.0),
            ])?;
            let f = &mut figures[i];
            f[0].push(m.rate);
            f[1].push(m.engines_cores);
            f[2].push(m.model_cores);
            f[3].push(m.busy * 100.0);
            split[i] = m.writes;
        }
    }
    report(&mut figures, &split, spread(&mut ceiling), n, runs)
}

/// Prints the measured table, what two cores can show, and the arithmetic on paper.
fn report(
    figures: &mut [[Vec<f64>; 4]],
    split: &[Vec<u64>],
    ceiling: ordo_bench::Spread,
    n: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let one = spread(&mut figures[0][0].clone());
    let one_cores = spread(&mut figures[0][1].clone()).median;
    println!("| engines (processes) in one group | events/s, median (range) | vs one engine | writes per engine (last run, with the keys sent while members joined) | CPU of the engines (cores) | CPU of the model (cores) | machine CPU busy (%) |");
    println!("|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (i, f) in figures.iter_mut().enumerate() {
        let rate = spread(&mut f[0]);
        medians.push(rate.median);
        let writes = split[i]
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" / ");
        println!(
            "| {} | {} | {:.2}× | {writes} | {} | {} | {} |",
            MEMBERS[i],
            rate.show(0),
            rate.median / one.median,
            spread(&mut f[1]).show(2),
            spread(&mut f[2]).show(2),
            spread(&mut f[3]).show(0)
        );
    }
    let three = medians.last().copied().unwrap_or(f64::NAN) / one.median;
    let busy_one = spread(&mut figures[0][3].clone()).median;
    let cpu_us = one_cores / one.median * 1e6;
    println!(
        "\n{n} events, uniform shape (every event a write), {PARTITIONS} partitions, a fresh consumer group, topic and model per measurement, median of {runs} run(s). Each engine is the real `ordo run --role apply` in a process of its own (concurrency {CONCURRENCY}); the events are produced once every member holds partitions (each has written a key sent to every partition), and the rate runs from their first write to their last, counted by the model from outside the engines. One engine used {one_cores:.2} cores at {:.0} events/s: {cpu_us:.0} µs of CPU per event. Goal: 3 engines ≥ 2× one: {three:.2}× ({}).",
        one.median,
        if three >= 2.0 { "met" } else { "**NOT met**" }
    );
    println!(
        "\n**What two cores can and cannot show.** Every engine, the broker, the model and this program share the machine's 2 cores: a second or third engine brings its own consumer, partitions and writes in flight, but no CPU. With one engine the machine was already {busy_one:.0} % busy, so what more engines here can show is that nothing in the engine serialises the members of a group (the partitions are split, the rate does not fall as members join, the writes per engine add up to the topic), not the rate of engines that each have a machine of their own: once the cores are busy, more engines divide the same cores."
    );
    println!(
        "\n**N engines on paper** (each on a machine of its own, the same broker and store): N × R₁ while each engine has partitions, where R₁ is one engine's rate; with a backlog spread evenly over P = {PARTITIONS} partitions the engine with the most partitions finishes last, so the group's rate is R₁ × P / ⌈P/N⌉ (no gain from 3 to 4 or 5 engines, none past 6). R₁ is itself bounded by the store's latency: {CONCURRENCY} keys at once × {REQUESTS_PER_EVENT} requests of {} ms per event = {:.0} events/s per engine, and by CPU ({cpu_us:.0} µs per event here: {:.0} events/s per core). Capped by the broker (one no-op reader took {} events/s from this topic here; Apache Kafka serves a group's members from several brokers) and by the store (the model has no ceiling; DynamoDB on demand allows 40,000 writes/s per table by default, raisable).",
        MODEL_LATENCY.as_millis(),
        CONCURRENCY as f64 / (REQUESTS_PER_EVENT as f64 * MODEL_LATENCY.as_secs_f64()),
        1e6 / cpu_us,
        ceiling.show(0),
    );
    println!("\n| engines N | busiest engine's partitions ⌈P/N⌉ | on paper: R₁ × P / ⌈P/N⌉ (events/s) | the same, capped by one no-op reader ({:.0}/s) |", ceiling.median);
    println!("|---|---|---|---|");
    for engines in [1usize, 2, 3, 4, 6, 12] {
        let busiest = (PARTITIONS as usize).div_ceil(engines);
        let paper = one.median * PARTITIONS as f64 / busiest as f64;
        println!(
            "| {engines} | {busiest} | {paper:.0} | {:.0} |",
            paper.min(ceiling.median)
        );
    }
    Ok(())
}
