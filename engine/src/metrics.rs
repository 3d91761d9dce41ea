//! `/metrics`: the engine's Prometheus registry, on the `prometheus` crate.
//!
//! A leaf module: it declares the metric families and their labels and knows nothing of the
//! components that update them. Each component takes a per-pipeline handle from [`Metrics`]
//! ([`IngestMetrics`], [`ConsumerMetrics`], [`PluginMetrics`], [`StoreMetrics`]) and updates
//! it; `GET /metrics` renders the registry. The names and labels are a public interface
//! (dashboards and alerts use them): `tests::every_family_keeps_its_name_and_labels` pins them.
//!
//! Metric names and bucket bounds are constants, so building a family cannot fail on input;
//! the `expect`s below only guard against a typo in this file, which the tests would catch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Bucket bounds of latency histograms, in seconds: 10 µs to 10 s.
pub const SECONDS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];
/// Bucket bounds of plugin fuel histograms, in fuel units.
pub const FUEL: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
/// The plugin exports whose calls are measured.
pub const PLUGIN_CALLS: [&str; 3] = ["validate", "merge", "schema"];
/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Every metric family of the engine, registered once. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    /// The families, shared by every handle made from them.
    families: Arc<Families>,
}

/// The registry and its families.
struct Families {
    /// What `/metrics` renders.
    registry: Registry,
    /// `ordo_ingest_requests_total{pipeline, status}`.
    ingest_requests: IntCounterVec,
    /// `ordo_produce_seconds{pipeline}`.
    produce_seconds: HistogramVec,
    /// `ordo_events_total{pipeline, outcome}`.
    events: IntCounterVec,
    /// `ordo_dynamodb_writes_total{pipeline}`.
    writes: IntCounterVec,
    /// `ordo_dynamodb_conditional_failures_total{pipeline}`.
    conflicts: IntCounterVec,
    /// `ordo_consumer_lag{pipeline, partition}`.
    lag: IntGaugeVec,
    /// `ordo_dynamodb_write_seconds{pipeline}`.
    write_seconds: HistogramVec,
    /// `ordo_plugin_call_seconds{pipeline, call}`.
    plugin_seconds: HistogramVec,
    /// `ordo_plugin_fuel{pipeline, call}`.
    plugin_fuel: HistogramVec,
    /// `ordo_plugin_reloads_total{outcome}`.
    reloads: IntCounterVec,
    /// `ordo_plugin_info{pipeline, plugin}`.
    plugin_info: IntGaugeVec,
}

fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter family")
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge family")
}

fn histograms(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("a valid histogram family")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered in a registry of its own (not the process-wide default one,
    /// so tests and benchmarks can build as many as they like).
    pub fn new() -> Self {
        let families = Families {
            registry: Registry::new(),
            ingest_requests: counters(
                "ordo_ingest_requests_total",
                "Answers of each pipeline's POST route, by status.",
                &["pipeline", "status"],
            ),
            produce_seconds: histograms(
                "ordo_produce_seconds",
                "Time from produce to the broker's acknowledgement, at ingest.",
                SECONDS,
                &["pipeline"],
            ),
            events: counters(
                "ordo_events_total",
                "Events the consumer settled, by outcome.",
                &["pipeline", "outcome"],
            ),
            writes: counters(
                "ordo_dynamodb_writes_total",
                "Conditional writes that went through.",
                &["pipeline"],
            ),
            conflicts: counters(
                "ordo_dynamodb_conditional_failures_total",
                "Conditional writes lost to another writer, then merged again.",
                &["pipeline"],
            ),
            lag: gauges(
                "ordo_consumer_lag",
                "Messages of each partition not yet committed, as librdkafka last reported (every 5 s).",
                &["pipeline", "partition"],
            ),
            write_seconds: histograms(
                "ordo_dynamodb_write_seconds",
                "Time of one conditional PutItem, won or lost.",
                SECONDS,
                &["pipeline"],
            ),
            plugin_seconds: histograms(
                "ordo_plugin_call_seconds",
                "Time of one plugin call, by export.",
                SECONDS,
                &["pipeline", "call"],
            ),
            plugin_fuel: histograms(
                "ordo_plugin_fuel",
                "Fuel one plugin call burnt, by export.",
                FUEL,
                &["pipeline", "call"],
            ),
            reloads: counters(
                "ordo_plugin_reloads_total",
                "Plugin reloads (file change, SIGHUP, admin endpoint), by outcome.",
                &["outcome"],
            ),
            plugin_info: gauges(
                "ordo_plugin_info",
                "The plugin in force for each pipeline (sha256 of its file).",
                &["pipeline", "plugin"],
            ),
        };
        let f = &families;
        let all: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(f.ingest_requests.clone()),
            Box::new(f.produce_seconds.clone()),
            Box::new(f.events.clone()),
            Box::new(f.writes.clone()),
            Box::new(f.conflicts.clone()),
            Box::new(f.lag.clone()),
            Box::new(f.write_seconds.clone()),
            Box::new(f.plugin_seconds.clone()),
            Box::new(f.plugin_fuel.clone()),
            Box::new(f.reloads.clone()),
            Box::new(f.plugin_info.clone()),
        ];
        for collector in all {
            f.registry
                .register(collector)
                .expect("each family is registered once");
        }
        // Shown at zero from the start, so a rate over them is defined before the first reload.
        for outcome in ["swapped", "refused"] {
            f.reloads.with_label_values(&[outcome]);
        }
        Self {
            families: Arc::new(families),
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a family with no metrics of a known type.
        let _ = TextEncoder::new().encode(&self.families.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The handle of `pipeline`'s ingest route.
    pub fn ingest(&self, pipeline: &str) -> IngestMetrics {
        let f = &self.families;
        IngestMetrics {
            pipeline: pipeline.to_string(),
            requests: f.ingest_requests.clone(),
            produce: f.produce_seconds.with_label_values(&[pipeline]),
        }
    }

    /// The handle of `pipeline`'s consumer; its counters show at zero from now on.
    pub fn consumer(&self, pipeline: &str) -> ConsumerMetrics {
        let f = &self.families;
        let outcome = |o: &str| f.events.with_label_values(&[pipeline, o]);
        ConsumerMetrics {
            applied: outcome("applied"),
            skipped: outcome("skipped_stale"),
            dead_lettered: outcome("dead_lettered"),
            writes: f.writes.with_label_values(&[pipeline]),
            conflicts: f.conflicts.with_label_values(&[pipeline]),
            lag: Lag {
                pipeline: pipeline.to_string(),
                gauges: f.lag.clone(),
                partitions: Arc::default(),
            },
        }
    }

    /// The handle of `pipeline`'s plugin slot.
    pub fn plugin(&self, pipeline: &str) -> PluginMetrics {
        let f = &self.families;
        PluginMetrics {
            calls: Arc::new(
                PLUGIN_CALLS
                    .iter()
                    .map(|call| {
                        (
                            *call,
                            f.plugin_seconds.with_label_values(&[pipeline, call]),
                            f.plugin_fuel.with_label_values(&[pipeline, call]),
                        )
                    })
                    .collect(),
            ),
            in_force: Arc::new(InForce {
                pipeline: pipeline.to_string(),
                gauges: f.plugin_info.clone(),
                id: Mutex::new(None),
                swapped: f.reloads.with_label_values(&["swapped"]),
                refused: f.reloads.with_label_values(&["refused"]),
            }),
        }
    }

    /// The handle of `pipeline`'s table.
    pub fn store(&self, pipeline: &str) -> StoreMetrics {
        StoreMetrics {
            writes: self.families.write_seconds.with_label_values(&[pipeline]),
        }
    }
}

/// Answers of one pipeline's ingest route and its produce latency.
#[derive(Clone)]
pub struct IngestMetrics {
    /// The label value.
    pipeline: String,
    /// Answers by pipeline and status.
    requests: IntCounterVec,
    /// Seconds from produce to the broker's ack (or its refusal).
    pub produce: Histogram,
}

impl IngestMetrics {
    /// Counts one answer with `status`.
    pub fn answered(&self, status: u16) {
        self.requests
            .with_label_values(&[self.pipeline.as_str(), &status.to_string()])
            .inc();
    }

    /// Answers counted with `status` so far.
    pub fn answers(&self, status: u16) -> u64 {
        self.requests
            .with_label_values(&[self.pipeline.as_str(), &status.to_string()])
            .get()
    }
}

impl Default for IngestMetrics {
    /// A handle on a registry of its own (for tests and tools that serve no `/metrics`).
    fn default() -> Self {
        Metrics::new().ingest("")
    }
}

/// What one pipeline's consumer did; cheap to update from many workers.
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// Events whose merge changed the record.
    pub applied: IntCounter,
    /// Events older than the stored record.
    pub skipped: IntCounter,
    /// Events sent to the dead-letter topic.
    pub dead_lettered: IntCounter,
    /// Conditional writes that went through.
    pub writes: IntCounter,
    /// Conditional writes lost to another writer (then merged again).
    pub conflicts: IntCounter,
    /// Uncommitted messages per assigned partition.
    pub lag: Lag,
}

impl ConsumerMetrics {
    /// Events taken from the topic and settled (applied, skipped or dead-lettered).
    pub fn settled(&self) -> u64 {
        self.applied.get() + self.skipped.get() + self.dead_lettered.get()
    }
}

impl Default for ConsumerMetrics {
    /// A handle on a registry of its own (for tests and benchmarks).
    fn default() -> Self {
        Metrics::new().consumer("")
    }
}

impl fmt::Display for ConsumerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events={} applied={} skipped={} dead_lettered={} writes={}",
            self.settled(),
            self.applied.get(),
            self.skipped.get(),
            self.dead_lettered.get(),
            self.writes.get()
        )
    }
}

/// The consumer lag of one pipeline's assigned partitions.
#[derive(Clone)]
pub struct Lag {
    /// The label value.
    pipeline: String,
    /// The family.
    gauges: IntGaugeVec,
    /// Partitions with a gauge now, so a partition no longer reported loses its gauge.
    partitions: Arc<Mutex<BTreeSet<i32>>>,
}

impl Lag {
    /// Replaces the lag of every partition with `lag` (partition, messages).
    pub fn set(&self, lag: impl IntoIterator<Item = (i32, u64)>) {
        let Ok(mut known) = self.partitions.lock() else {
            return;
        };
        let now: BTreeMap<i32, u64> = lag.into_iter().collect();
        for gone in known.difference(&now.keys().copied().collect()) {
            let _ = self
                .gauges
                .remove_label_values(&[self.pipeline.as_str(), &gone.to_string()]);
        }
        for (partition, messages) in &now {
            self.gauges
                .with_label_values(&[self.pipeline.as_str(), &partition.to_string()])
                .set(i64::try_from(*messages).unwrap_or(i64::MAX));
        }
        *known = now.into_keys().collect();
    }

    /// The lag last reported, by partition.
    pub fn get(&self) -> BTreeMap<i32, u64> {
        let known = self
            .partitions
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default();
        known
            .into_iter()
            .map(|p| {
                let gauge = self
                    .gauges
                    .with_label_values(&[self.pipeline.as_str(), &p.to_string()]);
                (p, u64::try_from(gauge.get()).unwrap_or(0))
            })
            .collect()
    }
}

/// What one pipeline's plugin calls cost, and which plugin is in force.
#[derive(Clone)]
pub struct PluginMetrics {
    /// (export, wall-clock seconds, fuel burnt) per export.
    calls: Arc<Vec<(&'static str, Histogram, Histogram)>>,
    /// The plugin in force and the reload counters.
    in_force: Arc<InForce>,
}

/// `ordo_plugin_info` of one pipeline and the reload outcomes.
struct InForce {
    /// The label value.
    pipeline: String,
    /// The family.
    gauges: IntGaugeVec,
    /// The id shown now.
    id: Mutex<Option<String>>,
    /// Reloads that put a new plugin in force.
    swapped: IntCounter,
    /// Reloads refused.
    refused: IntCounter,
}

impl PluginMetrics {
    /// Counts one call of `call` that took `elapsed` and burnt `fuel`.
    pub fn record(&self, call: &str, elapsed: Duration, fuel: u64) {
        if let Some((_, seconds, burnt)) = self.calls.iter().find(|(c, _, _)| *c == call) {
            seconds.observe(elapsed.as_secs_f64());
            burnt.observe(fuel as f64);
        }
    }

    /// Shows `id` as the plugin in force.
    pub fn in_force(&self, id: &str) {
        let f = &self.in_force;
        let Ok(mut shown) = f.id.lock() else {
            return;
        };
        if let Some(old) = shown.take() {
            let _ = f
                .gauges
                .remove_label_values(&[f.pipeline.as_str(), old.as_str()]);
        }
        f.gauges
            .with_label_values(&[f.pipeline.as_str(), id])
            .set(1);
        *shown = Some(id.to_string());
    }

    /// Counts a reload that put a new plugin in force.
    pub fn swapped(&self) {
        self.in_force.swapped.inc();
    }

    /// Counts a reload that was refused.
    pub fn refused(&self) {
        self.in_force.refused.inc();
    }

    /// (reloads swapped, reloads refused) so far, over every pipeline.
    pub fn reloads(&self) -> (u64, u64) {
        (self.in_force.swapped.get(), self.in_force.refused.get())
    }
}

impl Default for PluginMetrics {
    /// A handle on a registry of its own (for tests and tools that serve no `/metrics`).
    fn default() -> Self {
        Metrics::new().plugin("")
    }
}

/// Latency of one pipeline's conditional writes.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Seconds per conditional write, won or lost.
    pub writes: Histogram,
}

impl Default for StoreMetrics {
    /// A handle on a registry of its own (for tests and tools that serve no `/metrics`).
    fn default() -> Self {
        Metrics::new().store("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family as `/metrics` names it, with its type and label names: dashboards and
    /// alert rules depend on these, so a change here must be deliberate.
    const FAMILIES: [(&str, &str, &str); 11] = [
        ("ordo_ingest_requests_total", "counter", "pipeline,status"),
        ("ordo_produce_seconds", "histogram", "pipeline"),
        ("ordo_events_total", "counter", "outcome,pipeline"),
        ("ordo_dynamodb_writes_total", "counter", "pipeline"),
        (
            "ordo_dynamodb_conditional_failures_total",
            "counter",
            "pipeline",
        ),
        ("ordo_consumer_lag", "gauge", "partition,pipeline"),
        ("ordo_dynamodb_write_seconds", "histogram", "pipeline"),
        ("ordo_plugin_call_seconds", "histogram", "call,pipeline"),
        ("ordo_plugin_fuel", "histogram", "call,pipeline"),
        ("ordo_plugin_reloads_total", "counter", "outcome"),
        ("ordo_plugin_info", "gauge", "pipeline,plugin"),
    ];

    /// A metrics registry with one of everything counted for pipeline `p`.
    fn busy() -> Metrics {
        let metrics = Metrics::new();
        let ingest = metrics.ingest("p");
        ingest.answered(202);
        ingest.answered(202);
        ingest.answered(422);
        ingest.produce.observe(0.003);
        let consumer = metrics.consumer("p");
        consumer.skipped.inc_by(3);
        consumer.lag.set([(0, 5), (2, 0)]);
        let plugin = metrics.plugin("p");
        plugin.record("merge", Duration::from_micros(7), 20_000);
        plugin.in_force("sha256:ab");
        metrics.store("p").writes.observe(0.002);
        metrics
    }

    #[test]
    fn every_family_keeps_its_name_and_labels() {
        let families = busy().families.registry.gather();
        let found: Vec<(String, String, String)> = families
            .iter()
            .map(|f| {
                let labels = f.get_metric().first().map_or(String::new(), |m| {
                    let mut names: Vec<&str> = m.get_label().iter().map(|l| l.name()).collect();
                    names.sort_unstable();
                    names.join(",")
                });
                (
                    f.name().to_string(),
                    format!("{:?}", f.get_field_type()).to_lowercase(),
                    labels,
                )
            })
            .collect();
        for (name, kind, labels) in FAMILIES {
            assert!(
                found.contains(&(name.into(), kind.into(), labels.into())),
                "{name} ({kind}; {labels}) missing from {found:?}"
            );
        }
        assert_eq!(found.len(), FAMILIES.len(), "{found:?}");
    }

    #[test]
    fn renders_samples_with_pipeline_labels() {
        let text = busy().render();
        for sample in [
            "ordo_ingest_requests_total{pipeline=\"p\",status=\"202\"} 2",
            "ordo_ingest_requests_total{pipeline=\"p\",status=\"422\"} 1",
            "ordo_events_total{outcome=\"skipped_stale\",pipeline=\"p\"} 3",
            "ordo_events_total{outcome=\"applied\",pipeline=\"p\"} 0",
            "ordo_dynamodb_writes_total{pipeline=\"p\"} 0",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"0.001\"} 0",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"0.005\"} 1",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"+Inf\"} 1",
            "ordo_produce_seconds_count{pipeline=\"p\"} 1",
            "ordo_plugin_call_seconds_bucket{call=\"merge\",pipeline=\"p\",le=\"0.00001\"} 1",
            "ordo_plugin_fuel_bucket{call=\"merge\",pipeline=\"p\",le=\"10000\"} 0",
            "ordo_plugin_fuel_bucket{call=\"merge\",pipeline=\"p\",le=\"100000\"} 1",
            "ordo_plugin_fuel_count{call=\"validate\",pipeline=\"p\"} 0",
            "ordo_consumer_lag{partition=\"0\",pipeline=\"p\"} 5",
            "ordo_dynamodb_write_seconds_count{pipeline=\"p\"} 1",
            "ordo_plugin_reloads_total{outcome=\"refused\"} 0",
            "ordo_plugin_info{pipeline=\"p\",plugin=\"sha256:ab\"} 1",
        ] {
            assert!(text.contains(sample), "{sample} missing from:\n{text}");
        }
    }

    #[test]
    fn a_partition_no_longer_reported_and_a_replaced_plugin_disappear() {
        let metrics = Metrics::new();
        let consumer = metrics.consumer("p");
        consumer.lag.set([(0, 5), (1, 7)]);
        consumer.lag.set([(1, 2)]);
        assert_eq!(consumer.lag.get(), BTreeMap::from([(1, 2)]));
        let plugin = metrics.plugin("p");
        plugin.in_force("sha256:old");
        plugin.in_force("sha256:new");
        let text = metrics.render();
        assert!(!text.contains("partition=\"0\""), "{text}");
        assert!(!text.contains("sha256:old"), "{text}");
        assert!(text.contains("sha256:new"), "{text}");
    }
}
