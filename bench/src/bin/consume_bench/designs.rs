//! The designs the consume benchmark compares, each run once over a workload's topic into a
//! table of its own: the sequential baseline, Ordo, its two peers (a key-ordered parallel
//! consumer in Rust, a Quix Streams application in Python) and the no-op ceiling. Every
//! design's store requests are counted outside it (the counting proxy on moto, a counting
//! store on the model), and its table is read back by the benchmark for stale records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

use ordo::pipeline::{Applier, Outcome};
use ordo::plugin::PolicyHandle;
use ordo::store::Store;
use ordo_bench::counting::Counts;
use ordo_bench::engine::{Member, Source};
use ordo_bench::model::MODEL_LATENCY;
use ordo_bench::peers::keyed;
use ordo_bench::peers::quix::{Job, Quix};
use ordo_bench::stale::{self, Audit};
use ordo_bench::target::Target;
use ordo_bench::workload::Workload;

/// Events the baseline handles on a slow store (moto, the model), per unit of
/// `ORDO_BENCH_SCALE` (1,000 at the default 10): enough for a steady rate.
pub const BASELINE_EVENTS: usize = 100;
/// Longest one design may take over one workload before the benchmark fails.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// Keys applied at once by Ordo and the key-ordered peer: `ORDO_BENCH_CONCURRENCY`, else a
/// pipeline's default.
pub fn concurrency() -> usize {
    std::env::var("ORDO_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ordo::config::DEFAULT_CONCURRENCY)
}

/// Where the designs write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// The local DynamoDB API, through a counting proxy.
    Moto,
    /// The 4 ms latency model (`model_dynamo`), a process of its own per design and run.
    Model,
}

impl StoreKind {
    /// The part's name in `ORDO_BENCH_STORES` and the raw figures.
    pub fn word(self) -> &'static str {
        match self {
            Self::Moto => "moto",
            Self::Model => "model",
        }
    }

    /// The designs measured on this store, in the order of the first run (later runs rotate
    /// it). The no-op ceiling writes nothing, so it is read once, beside the model.
    pub fn designs(self) -> &'static [Design] {
        match self {
            Self::Moto => &[
                Design::Sequential,
                Design::Ordo,
                Design::Keyed,
                Design::Quix,
            ],
            Self::Model => &[
                Design::Sequential,
                Design::Ordo,
                Design::Keyed,
                Design::Quix,
                Design::NoOp,
            ],
        }
    }
}

/// One design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Design {
    /// One event at a time: read, merge, write, store the offset (the original service).
    Sequential,
    /// Ordo's consumer, with its record cache and folding.
    Ordo,
    /// The key-ordered parallel consumer ([`keyed`]).
    Keyed,
    /// The Quix Streams application, in Python.
    Quix,
    /// Reads and does nothing: the ceiling.
    NoOp,
}

impl Design {
    /// Every design, in the report's order.
    pub const ALL: [Design; 5] = [
        Design::Sequential,
        Design::Ordo,
        Design::Keyed,
        Design::Quix,
        Design::NoOp,
    ];

    /// A short name: consumer groups, tables and the raw figures.
    pub fn word(self) -> &'static str {
        match self {
            Self::Sequential => "base",
            Self::Ordo => "ordo",
            Self::Keyed => "keyed",
            Self::Quix => "quix",
            Self::NoOp => "noop",
        }
    }

    /// The design's name in the report.
    pub fn label(self) -> String {
        match self {
            Self::Sequential => "sequential baseline".into(),
            Self::Ordo => format!("Ordo (concurrency {})", concurrency()),
            Self::Keyed => format!(
                "key-ordered parallel consumer, Rust (concurrency {})",
                concurrency()
            ),
            Self::Quix => "Quix Streams app, Python (one conditional put per event)".into(),
            Self::NoOp => "no-op rdkafka consumer (ceiling)".into(),
        }
    }
}

/// What one design did in one run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Events it consumed (the baseline stops at [`Bench::baseline_events`]).
    pub events: usize,
    /// Events per second.
    pub rate: f64,
    /// Its store requests, counted outside it; none for the no-op consumer.
    pub counts: Option<Counts>,
    /// The table read back, when it consumed the whole workload.
    pub audit: Option<Audit>,
}

/// What every design of a run shares.
pub struct Bench<'a> {
    /// The workload's topic's brokers.
    pub brokers: &'a str,
    /// The merge plugin, for the designs in this process.
    pub policy: &'a PolicyHandle,
    /// The AWS configuration moto tables are made and reached with.
    pub aws: &'a aws_config::SdkConfig,
    /// The Python application.
    pub quix: Option<&'a Quix>,
    /// The events the sequential baseline handles at most ([`BASELINE_EVENTS`] × scale).
    pub baseline_events: usize,
}

impl Bench<'_> {
    /// Runs `design` over the workload `w` of `reader`'s topic into a fresh table on `store`.
    pub async fn measure(
        &self,
        design: Design,
        store: StoreKind,
        reader: &Reader<'_>,
        w: &Workload,
    ) -> anyhow::Result<Run> {
        let n = w.events.len();
        if design == Design::NoOp {
            return Ok(Run {
                events: n,
                rate: no_op(reader, n).await?,
                counts: None,
                audit: None,
            });
        }
        let table = format!("{}-{}", reader.label, design.word());
        let target = match store {
            StoreKind::Moto => Target::moto(self.aws, &table).await?,
            StoreKind::Model => Target::model(self.aws, MODEL_LATENCY, &table).await?,
        };
        let policy = self.policy;
        let (events, rate) = match design {
            Design::Sequential => {
                let events = n.min(self.baseline_events);
                let (rate, _) = baseline(reader, policy, target.store(), events).await?;
                (events, rate)
            }
            Design::Ordo => {
                let (rate, writes) = ordo_consumer(reader, policy, target.store(), n, None).await?;
                let counted = target.counts().await?.written as usize;
                if writes != counted {
                    tracing::warn!(
                        writes,
                        counted,
                        "Ordo's write count differs from the store's."
                    );
                }
                (n, rate)
            }
            Design::Keyed => {
                let settled = keyed_peer(reader, policy, target.store(), n).await?;
                let counted = target.counts().await?.written as usize;
                if settled.written != counted {
                    tracing::warn!(
                        written = settled.written,
                        counted,
                        "The key-ordered peer's write count differs from the store's."
                    );
                }
                (n, settled.rate)
            }
            Design::Quix => {
                let quix = self
                    .quix
                    .ok_or_else(|| anyhow::anyhow!("the Quix Streams app was not found"))?;
                let group = format!("{}.quix", reader.label);
                let job = Job {
                    brokers: self.brokers,
                    topic: reader.topic,
                    group: &group,
                };
                (n, quix.run(&job, &target, &w.newest, n, DEADLINE).await?)
            }
            Design::NoOp => unreachable!("answered above"),
        };
        let counts = target.counts().await?;
        let audit = if events == n {
            Some(stale::audit(&target.records().await?, &w.newest))
        } else {
            None
        };
        target.remove().await?;
        Ok(Run {
            events,
            rate,
            counts: Some(counts),
            audit,
        })
    }
}

/// The key-ordered parallel consumer over `n` events into `store`.
async fn keyed_peer<S: Store>(
    reader: &Reader<'_>,
    policy: &PolicyHandle,
    store: S,
    n: usize,
) -> anyhow::Result<keyed::Settled> {
    let consumer = reader.consumer("keyed", &[("enable.auto.offset.store", "false")])?;
    // No record cache: every event is read, merged and written on its own.
    let applier = Arc::new(Applier::new(store, policy.clone(), "PatientId").with_cache(0));
    let run = keyed::run(&consumer, reader.topic, applier, concurrency(), n);
    tokio::time::timeout(DEADLINE, run)
        .await
        .map_err(|_| late(reader, "the key-ordered parallel consumer", n))?
}

/// Where one run reads: the workload's topic, in consumer groups named after `label`.
pub struct Reader<'a> {
    /// Kafka bootstrap servers.
    pub brokers: &'a str,
    /// The workload's topic.
    pub topic: &'a str,
    /// Unique per run: the designs' consumer groups (and moto tables) are named after it.
    pub label: String,
}

impl Reader<'_> {
    /// An rdkafka consumer of the topic from its start, in a group of its own (`<label>.<design>`),
    /// fetching as Ordo's does, with `extra` settings.
    pub fn consumer(&self, design: &str, extra: &[(&str, &str)]) -> anyhow::Result<StreamConsumer> {
        let group = format!("{}.{design}", self.label);
        ordo_bench::topic::consumer(self.brokers, self.topic, &group, extra)
    }
}

/// The sequential baseline on `store` over the first `events` events; (rate, writes). A
/// design that has not settled its events within `DEADLINE` fails the benchmark rather than
/// hanging it.
pub async fn baseline<S: Store>(
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
pub async fn no_op(reader: &Reader<'_>, n: usize) -> anyhow::Result<f64> {
    let consumer = reader.consumer("noop", &[("enable.auto.commit", "false")])?;
    tokio::time::timeout(DEADLINE, ordo_bench::topic::read_rate(&consumer, n))
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

/// Ordo's real consumer (its applier with its record cache, folding and adaptive limit) over
/// `store` until it has settled `n` events; (rate, writes). The rate is taken from its first
/// settled event, so joining the group is not counted.
pub async fn ordo_consumer<S: Store + Clone>(
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
        (n as u64 - first) as f64 / start.elapsed().as_secs_f64()
    };
    let rate = tokio::time::timeout(DEADLINE, measured)
        .await
        .map_err(|_| late(reader, "Ordo", n))?;
    let metrics = member.stop().await?;
    let dead = metrics.dead_lettered.get();
    // Every bench event is valid: one dead-lettered means the engine failed, not a result.
    anyhow::ensure!(
        dead == 0,
        "{dead} valid events were dead-lettered on {} (see the log for why)",
        reader.label
    );
    Ok((rate, metrics.writes.get() as usize))
}
