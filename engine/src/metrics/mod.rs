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

use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

mod handles;
pub mod recent;
pub mod snapshot;

use handles::InForce;
pub use handles::{ConsumerMetrics, IngestMetrics, Lag, PluginMetrics, StoreMetrics};
pub use recent::{DeadLetterNote, RecentDeadLetters};

/// Bucket bounds of latency histograms, in seconds: 10 µs to 10 s.
pub const SECONDS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];
/// Bucket bounds of plugin fuel histograms, in fuel units.
pub const FUEL: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
/// The plugin exports whose calls are measured.
pub const PLUGIN_CALLS: [&str; 3] = ["validate", "merge", "schema"];
/// The causes of a retried attempt, as `ordo_apply_retries_total` labels them.
pub const RETRY_CAUSES: [&str; 4] = ["unavailable", "throttled", "plugin_busy", "contended"];
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
    /// `ordo_changes_published_total{pipeline}`.
    changes: IntCounterVec,
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
    /// `ordo_apply_retries_total{pipeline, cause}`.
    retries: IntCounterVec,
    /// `ordo_keys_waiting{pipeline}`.
    waiting: IntGaugeVec,
    /// `ordo_apply_concurrency{pipeline}`.
    concurrency: IntGaugeVec,
    /// `ordo_worker_panics_total{pipeline}`.
    panics: IntCounterVec,
    /// `ordo_ready{check}`.
    ready: IntGaugeVec,
    /// The last dead letters of each pipeline (not a metric: the operator page shows them).
    recent: Mutex<std::collections::BTreeMap<String, RecentDeadLetters>>,
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
            changes: counters(
                "ordo_changes_published_total",
                "Changed records published to the pipeline's changes_topic (again after a redelivery).",
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
            retries: counters(
                "ordo_apply_retries_total",
                "Failed attempts to apply events that are retried, not dead-lettered, by cause (unavailable, throttled, plugin_busy, contended).",
                &["pipeline", "cause"],
            ),
            waiting: gauges(
                "ordo_keys_waiting",
                "Keys whose events wait for a transient failure to pass (store away, throttled, host starved).",
                &["pipeline"],
            ),
            concurrency: gauges(
                "ordo_apply_concurrency",
                "Keys the consumer may apply at once now: as many as do not lower the throughput, at most the pipeline's concurrency, halved while DynamoDB throttles.",
                &["pipeline"],
            ),
            panics: counters(
                "ordo_worker_panics_total",
                "Workers that panicked; their events were retried.",
                &["pipeline"],
            ),
            ready: gauges(
                "ordo_ready",
                "Each readiness check (kafka, dynamodb:<pipeline>): 1 passing, 0 failing; checked every 10 s and on each GET /readyz.",
                &["check"],
            ),
            recent: Mutex::default(),
        };
        let f = &families;
        let all: [Box<dyn prometheus::core::Collector>; 17] = [
            Box::new(f.ingest_requests.clone()),
            Box::new(f.produce_seconds.clone()),
            Box::new(f.events.clone()),
            Box::new(f.writes.clone()),
            Box::new(f.conflicts.clone()),
            Box::new(f.changes.clone()),
            Box::new(f.lag.clone()),
            Box::new(f.write_seconds.clone()),
            Box::new(f.plugin_seconds.clone()),
            Box::new(f.plugin_fuel.clone()),
            Box::new(f.reloads.clone()),
            Box::new(f.plugin_info.clone()),
            Box::new(f.retries.clone()),
            Box::new(f.waiting.clone()),
            Box::new(f.concurrency.clone()),
            Box::new(f.panics.clone()),
            Box::new(f.ready.clone()),
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
        let text = String::from_utf8(out).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(pipeline_first).collect();
        lines.push(String::new());
        lines.join("\n")
    }

    /// Every pipeline's counters and gauges now, read from the registry's families.
    pub fn snapshot(&self) -> snapshot::Snapshot {
        snapshot::Snapshot::from_samples(&snapshot::samples(&self.families.registry.gather()))
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
            changes: f.changes.with_label_values(&[pipeline]),
            retries: RETRY_CAUSES
                .iter()
                .map(|cause| (*cause, f.retries.with_label_values(&[pipeline, cause])))
                .collect(),
            waiting: f.waiting.with_label_values(&[pipeline]),
            concurrency: f.concurrency.with_label_values(&[pipeline]),
            panics: f.panics.with_label_values(&[pipeline]),
            recent: self.recent_dead_letters(pipeline),
            lag: Lag {
                pipeline: pipeline.to_string(),
                gauges: f.lag.clone(),
                partitions: Arc::default(),
            },
        }
    }

    /// Shows the outcome of each readiness check (`true`: passing).
    pub fn checked(&self, checks: &std::collections::BTreeMap<String, bool>) {
        for (check, passing) in checks {
            self.families
                .ready
                .with_label_values(&[check.as_str()])
                .set(i64::from(*passing));
        }
    }

    /// `pipeline`'s last dead letters, shared with its consumer's handle.
    pub fn recent_dead_letters(&self, pipeline: &str) -> RecentDeadLetters {
        self.families
            .recent
            .lock()
            .map(|mut all| all.entry(pipeline.to_string()).or_default().clone())
            .unwrap_or_default()
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

/// `line` with the `pipeline` label first. The `prometheus` crate writes a sample's labels in
/// name order; Ordo's exposition has always put `pipeline` first (then the others, and `le`
/// last), and scrapers or scripts that match sample lines as text keep working. A scraper does
/// not care; the order is only put back, never the content changed. Label values here cannot
/// hold `"` or `,` (pipeline names, ids and numbers), so pairs split on `",`.
fn pipeline_first(line: &str) -> String {
    let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
        return line.to_string();
    };
    if line.starts_with('#') || open > close {
        return line.to_string();
    }
    let labels = &line[open + 1..close];
    let Some(start) = labels.find("pipeline=\"").filter(|&i| i > 0) else {
        return line.to_string();
    };
    let rest = &labels[start..];
    let end = rest.find("\",").map_or(rest.len(), |i| i + 1);
    format!(
        "{}{{{},{}{}}}{}",
        &line[..open],
        &rest[..end],
        &labels[..start - 1],
        &rest[end..],
        &line[close + 1..]
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    /// Every family as `/metrics` names it, with its type and label names: dashboards and
    /// alert rules depend on these, so a change here must be deliberate.
    const FAMILIES: [(&str, &str, &str); 17] = [
        ("ordo_ingest_requests_total", "counter", "pipeline,status"),
        ("ordo_produce_seconds", "histogram", "pipeline"),
        ("ordo_events_total", "counter", "outcome,pipeline"),
        ("ordo_dynamodb_writes_total", "counter", "pipeline"),
        (
            "ordo_dynamodb_conditional_failures_total",
            "counter",
            "pipeline",
        ),
        ("ordo_changes_published_total", "counter", "pipeline"),
        ("ordo_consumer_lag", "gauge", "partition,pipeline"),
        ("ordo_dynamodb_write_seconds", "histogram", "pipeline"),
        ("ordo_plugin_call_seconds", "histogram", "call,pipeline"),
        ("ordo_plugin_fuel", "histogram", "call,pipeline"),
        ("ordo_plugin_reloads_total", "counter", "outcome"),
        ("ordo_plugin_info", "gauge", "pipeline,plugin"),
        ("ordo_apply_retries_total", "counter", "cause,pipeline"),
        ("ordo_keys_waiting", "gauge", "pipeline"),
        ("ordo_apply_concurrency", "gauge", "pipeline"),
        ("ordo_worker_panics_total", "counter", "pipeline"),
        ("ordo_ready", "gauge", "check"),
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
        metrics.checked(&BTreeMap::from([
            ("kafka".into(), true),
            ("dynamodb:p".into(), false),
        ]));
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
            "ordo_events_total{pipeline=\"p\",outcome=\"skipped_stale\"} 3",
            "ordo_events_total{pipeline=\"p\",outcome=\"applied\"} 0",
            "ordo_dynamodb_writes_total{pipeline=\"p\"} 0",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"0.001\"} 0",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"0.005\"} 1",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"+Inf\"} 1",
            "ordo_produce_seconds_count{pipeline=\"p\"} 1",
            "ordo_plugin_call_seconds_bucket{pipeline=\"p\",call=\"merge\",le=\"0.00001\"} 1",
            "ordo_plugin_fuel_bucket{pipeline=\"p\",call=\"merge\",le=\"10000\"} 0",
            "ordo_plugin_fuel_bucket{pipeline=\"p\",call=\"merge\",le=\"100000\"} 1",
            "ordo_plugin_fuel_count{pipeline=\"p\",call=\"validate\"} 0",
            "ordo_consumer_lag{pipeline=\"p\",partition=\"0\"} 5",
            "ordo_dynamodb_write_seconds_count{pipeline=\"p\"} 1",
            "ordo_plugin_reloads_total{outcome=\"refused\"} 0",
            "ordo_plugin_info{pipeline=\"p\",plugin=\"sha256:ab\"} 1",
            "ordo_ready{check=\"kafka\"} 1",
            "ordo_ready{check=\"dynamodb:p\"} 0",
        ] {
            assert!(text.contains(sample), "{sample} missing from:\n{text}");
        }
    }

    #[test]
    fn pipeline_goes_first_and_le_stays_last() {
        for (from, to) in [
            (
                "x{call=\"m\",pipeline=\"p\",le=\"0.1\"} 1",
                "x{pipeline=\"p\",call=\"m\",le=\"0.1\"} 1",
            ),
            (
                "x{outcome=\"a\",pipeline=\"p\"} 0",
                "x{pipeline=\"p\",outcome=\"a\"} 0",
            ),
            (
                "x{pipeline=\"p\",status=\"202\"} 2",
                "x{pipeline=\"p\",status=\"202\"} 2",
            ),
            ("x{outcome=\"swapped\"} 0", "x{outcome=\"swapped\"} 0"),
            (
                "# HELP x help {a=\"b\",pipeline=\"c\"}",
                "# HELP x help {a=\"b\",pipeline=\"c\"}",
            ),
        ] {
            assert_eq!(pipeline_first(from), to);
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
