//! Consumer throughput, write cost and correctness: Ordo against its peers and a no-op
//! consumer, measured in the same run on the same topics, stores and events.
//!
//! The designs ([`designs`]): the **sequential baseline**, the original Go service's design
//! (one event at a time: read, merge, write, store the offset); **Ordo**, the real consumer
//! (`ordo::pipeline::consume::run`, with its record cache and folding); two peers a team would
//! otherwise build (issue 34): a **key-ordered parallel consumer** in Rust (the KEY mode of
//! Confluent's Parallel Consumer: one event per key at a time, as many keys at once as Ordo's
//! concurrency, every event read, merged and written on its own) and a **Quix Streams** job in
//! Python (`bench/peers/quix_app.py`: one conditional put per message); and the **no-op
//! ceiling**, an rdkafka consumer that reads the same topic and does nothing with it. All read
//! the same topic, filled before any starts (a consumer catching up), in consumer groups of
//! their own; the Rust designs merge through the same plugin. The order of the designs turns
//! by one each run.
//!
//! Two stores, both reached over DynamoDB's API (the Rust designs with the AWS SDK, the Python
//! job with boto3): the local DynamoDB API (moto: throughput-bound, about 430 writes/s here),
//! through a counting proxy of its own (`ordo_bench::proxy`), and a latency **model** of real
//! DynamoDB (`model_dynamo`: every request answered after `MODEL_LATENCY`, any number at once,
//! the same conditional semantics), a process of its own per design and run, which counts the
//! requests itself. The store's side counts every design's requests.
//!
//! Three workload shapes, fixed before any figure was read (`ordo_bench::workload`), the same
//! for every design: **uniform** (every key updated once), **bursty** (every key updated
//! `BURST` times back to back) and **shuffled** (every key updated 5 times with increasing
//! `UpdatedAt`, produced keyed in a seeded shuffle, so a key's updates reach its partition out
//! of order). After each design the benchmark reads its table and counts the stale records:
//! keys whose record is not their newest update.
//!
//! Last, the change feed's cost: one consumer with and without `changes_topic`, uniform shape.
//! (Several engines in one group are `scaling_bench`'s: separate `ordo` processes.)
//!
//! `cargo run --release -p ordo-bench --bin consume_bench` (the local stack must be up: `make
//! local-dev-stack`, and `make quix-tools` for the Python job). `ORDO_BENCH_SCALE` sizes the
//! workloads (default 10: 20,000 events per shape on the model, 1,000 on moto, 60,000 for
//! the change feed), `ORDO_BENCH_RUNS` repeats each measurement (default 3) and reports the median and
//! range, `ORDO_BENCH_STORES` runs only some parts (`moto`, `model`, `changes`,
//! comma-separated), `ORDO_BENCH_CONCURRENCY` overrides the pipeline default (64).

mod designs;
mod report;

use std::path::Path;
use std::sync::Arc;

use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::PolicyHandle;
use ordo_bench::engine::ensure_consumed_topic;
use ordo_bench::model::{ModelStore, MODEL_LATENCY};
use ordo_bench::peers::quix::Quix;
use ordo_bench::results::Table;
use ordo_bench::workload::{produce, workload, Shape, BURST, SHUFFLED_UPDATES};
use ordo_bench::{setting, spread};

use designs::{concurrency, ordo_consumer, Bench, Reader, StoreKind, BASELINE_EVENTS};
use report::Figures;

const PARTITIONS: i32 = 6;
/// Events per shape on the model, per unit of `ORDO_BENCH_SCALE` (20,000 at the default 10):
/// several seconds of Ordo, so its rate is a steady one rather than its start-up.
const MODEL_EVENTS: usize = 2_000;
/// Events per shape on moto, per unit of scale: it takes about 430 writes/s.
const MOTO_EVENTS: usize = 100;
/// Events of the change-feed workload, per unit of scale (60,000 at the default): several
/// seconds of one consumer, so its rate is a steady one.
const CHANGES_EVENTS: usize = 6_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordo_bench::init_logs();
    let scale = setting("ORDO_BENCH_SCALE", 10);
    let runs = setting("ORDO_BENCH_RUNS", 3);
    ordo_bench::local_aws_env();
    let brokers = ordo_bench::brokers();
    let plugin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build/patient_profile_lww.wasm");
    let policy = PolicyHandle::new(Arc::new(WasmPolicy::load_configured(
        &plugin,
        Limits::default(),
        Capabilities::default(),
        &ordo_bench::engine::patient_config(),
    )?));
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let run_id = std::process::id();
    // `ORDO_BENCH_STORES` picks some parts by name, e.g. `model,changes`.
    let only = std::env::var("ORDO_BENCH_STORES").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|w| w == part);
    let quix = if wanted("moto") || wanted("model") {
        Some(Quix::find()?)
    } else {
        None
    };
    let bench = Bench {
        brokers: &brokers,
        policy: &policy,
        aws: &aws,
        quix: quix.as_ref(),
        baseline_events: BASELINE_EVENTS * scale,
    };
    let raw = report::raw_table();

    println!("{}", report::HEADER);
    // (store, shape) → (baseline, Ordo, ceiling) medians, for the goals.
    let mut medians = std::collections::HashMap::new();
    for (store, store_label) in [
        (StoreKind::Moto, "moto (local DynamoDB API)"),
        (StoreKind::Model, "model: 4 ms per request"),
    ] {
        if !wanted(store.word()) {
            continue;
        }
        let per_scale = match store {
            StoreKind::Moto => MOTO_EVENTS,
            StoreKind::Model => MODEL_EVENTS,
        };
        for shape in Shape::ALL {
            let w = workload(shape, per_scale * scale);
            // One topic per workload, read by every design of every run in groups of its own.
            let topic = format!("bench.{run_id}.{}.{}", store.word(), shape.name());
            ensure_consumed_topic(&brokers, &topic, PARTITIONS).await?;
            produce(&brokers, &topic, &w.events).await?;
            let designs = store.designs();
            let mut figures: Vec<_> = designs.iter().map(|d| (*d, Figures::default())).collect();
            for run in 0..runs {
                let reader = Reader {
                    brokers: &brokers,
                    topic: &topic,
                    label: format!("{topic}.{run}"),
                };
                // Each run starts one design later, so no design always goes first (a cold
                // broker cache) or last.
                for position in 0..designs.len() {
                    let (design, f) = &mut figures[(run + position) % designs.len()];
                    let measured = bench.measure(*design, store, &reader, &w).await?;
                    report::raw_row(
                        &raw,
                        store,
                        shape.name(),
                        (run, position),
                        *design,
                        &measured,
                    )?;
                    f.add(&measured);
                }
            }
            medians.insert(
                (store, shape),
                report::rows(store_label, shape.name(), &mut figures),
            );
        }
    }
    println!(
        "\nMedian of {runs} runs (range in brackets), the designs' order turned by one each run; each rate from the design's first settled event (joining the group and starting the Python interpreter are not counted). Shapes: uniform is {} keys × 1 update on the model ({} on moto); bursty is {} keys × {BURST} updates back to back on the model ({} on moto); shuffled is {} keys × {SHUFFLED_UPDATES} updates with increasing `UpdatedAt` in a seeded shuffle, keyed, so a key's updates reach its partition out of order, on the model ({} on moto). The baseline's rate is taken over the first {} events (a steady rate: it has no start-up to amortise), so its stale records are counted only where that is the whole workload. Writes/event are conditional writes that went through; requests/event are reads plus writes tried (DynamoDB bills a failed condition as a write); both counted on the store's side, by a counting proxy in front of moto that every design goes through, and by the model itself (a `model_dynamo` process per design and run, which every design reaches over DynamoDB's API with the AWS SDK or boto3). Stale records: keys whose record, read back by the benchmark after the design, is missing or not the key's newest update. The Quix Streams app (Python, quixstreams {}) runs as its own process, one conditional put per message (`attribute_not_exists(PatientId) OR UpdatedAt < :v`, comparing instants as strings of one format), at-least-once with Quix Streams' default commit interval; it is timed from its first answered put to its n-th.",
        MODEL_EVENTS * scale,
        MOTO_EVENTS * scale,
        MODEL_EVENTS * scale / BURST,
        MOTO_EVENTS * scale / BURST,
        MODEL_EVENTS * scale / SHUFFLED_UPDATES,
        MOTO_EVENTS * scale / SHUFFLED_UPDATES,
        BASELINE_EVENTS * scale,
        quix.as_ref().map_or("—".to_string(), |q| q.version()),
    );
    if let (Some((ub, uo, _)), Some((bb, bo, Some(bc)))) = (
        medians.get(&(StoreKind::Model, Shape::Uniform)),
        medians.get(&(StoreKind::Model, Shape::Bursty)),
    ) {
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "\nGoals on the model: Ordo {:.2}× the no-op ceiling on the bursty shape (goal ≥ 0.5×: {}); Ordo {:.1}× the sequential baseline on the uniform shape and {:.1}× on the bursty one (goal ≥ 10× on both: {}). No goal was set for the peers or the shuffled shape before measuring.",
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
    let (topic, n) = uniform_topic(brokers, scale, &format!("bench.{run_id}.changes")).await?;
    let changes = format!("{topic}.changed");
    ordo::bus::kafka::ensure_topics(
        &ordo::bus::kafka::KafkaConfig::new(brokers),
        &[&changes],
        PARTITIONS,
        1,
    )
    .await?;
    // (rates, writes per event) without and with the feed.
    let (mut plain, mut feed) = ((vec![], vec![]), (vec![], vec![]));
    let raw = Table::new(
        "consume_bench-change-feed",
        &["run", "changes_topic", "events", "events_per_s", "writes"],
    );
    for run in 0..runs {
        for with_feed in [false, true] {
            let reader = Reader {
                brokers,
                topic: &topic,
                label: format!("{topic}.{run}.{with_feed}"),
            };
            let store = ModelStore::new(MODEL_LATENCY);
            let feed_topic = with_feed.then(|| changes.clone());
            let (rate, writes) = ordo_consumer(&reader, policy, store, n, feed_topic).await?;
            raw.row(&[
                run.to_string(),
                with_feed.to_string(),
                n.to_string(),
                format!("{rate:.1}"),
                writes.to_string(),
            ])?;
            let (rates, writes_per_event) = if with_feed { &mut feed } else { &mut plain };
            rates.push(rate);
            writes_per_event.push(writes as f64 / n as f64);
        }
    }
    let (p, f) = (spread(&mut plain.0), spread(&mut feed.0));
    println!("\n| design | events/s, median (range) | writes/event, median (range) | vs without the feed |");
    println!("|---|---|---|---|");
    println!(
        "| Ordo | {} | {} | 1.00× |",
        p.show(0),
        spread(&mut plain.1).show(2)
    );
    println!(
        "| Ordo with `changes_topic` | {} | {} | {:.2}× |",
        f.show(0),
        spread(&mut feed.1).show(2),
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

/// `topic` made and filled with the uniform workload at `scale` (every event a write);
/// returns it and its event count.
async fn uniform_topic(
    brokers: &str,
    scale: usize,
    topic: &str,
) -> anyhow::Result<(String, usize)> {
    let w = workload(Shape::Uniform, CHANGES_EVENTS * scale);
    ensure_consumed_topic(brokers, topic, PARTITIONS).await?;
    produce(brokers, topic, &w.events).await?;
    Ok((topic.to_string(), w.events.len()))
}
