//! `/metrics` in the Prometheus text format: what each pipeline's ingest and consumer did.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::consumer::Stats;
use crate::plugin::reload::Reloader;

/// Bucket bounds of latency histograms, in seconds: 10 µs to 10 s.
pub const SECONDS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];
/// Bucket bounds of plugin fuel histograms, in fuel units.
pub const FUEL: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// A Prometheus histogram with fixed buckets; lock-free, cheap to observe from many tasks.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending; `+Inf` is implied.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds` for `+Inf`.
    buckets: Vec<AtomicU64>,
    /// Sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Default for Histogram {
    /// A latency histogram.
    fn default() -> Self {
        Self::seconds()
    }
}

impl Histogram {
    /// An empty histogram with these bucket bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// A latency histogram ([`SECONDS`]).
    pub fn seconds() -> Self {
        Self::new(SECONDS)
    }

    /// Counts one observation.
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Counts one duration, in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of `name` with `labels`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let bounds = self.bounds.iter().map(|b| b.to_string());
        for (bucket, le) in self.buckets.iter().zip(bounds.chain(["+Inf".to_string()])) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// What one pipeline's plugin calls cost, by export.
#[derive(Debug)]
pub struct PluginStats {
    /// (export, wall-clock seconds, fuel burnt) per export.
    calls: Vec<(&'static str, Histogram, Histogram)>,
}

impl Default for PluginStats {
    fn default() -> Self {
        Self {
            calls: ["validate", "merge", "schema"]
                .into_iter()
                .map(|call| (call, Histogram::seconds(), Histogram::new(FUEL)))
                .collect(),
        }
    }
}

impl PluginStats {
    /// Counts one call of `call` that took `elapsed` and burnt `fuel`.
    pub fn record(&self, call: &str, elapsed: Duration, fuel: u64) {
        if let Some((_, seconds, burnt)) = self.calls.iter().find(|(c, _, _)| *c == call) {
            seconds.observe_duration(elapsed);
            burnt.observe(fuel as f64);
        }
    }
}

/// HTTP answers of one pipeline's ingest route, by status code, and produce latency.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Count per status; a mutex is cheap next to a broker round trip.
    by_status: Mutex<BTreeMap<u16, u64>>,
    /// Seconds from produce to the broker's ack (or its refusal).
    pub produce: Histogram,
}

impl IngestStats {
    /// Counts one answer.
    pub fn record(&self, status: u16) {
        if let Ok(mut map) = self.by_status.lock() {
            *map.entry(status).or_default() += 1;
        }
    }

    fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.by_status.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// One pipeline's measurements.
#[derive(Debug, Clone, Default)]
pub struct PipelineMetrics {
    /// Its ingest route.
    pub ingest: Arc<IngestStats>,
    /// Its consumer.
    pub consumer: Arc<Stats>,
    /// Its plugin's calls.
    pub plugin: Arc<PluginStats>,
    /// Seconds per DynamoDB conditional write.
    pub writes: Arc<Histogram>,
}

/// Every pipeline's counters.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// (pipeline name, its measurements).
    pipelines: Vec<(String, PipelineMetrics)>,
    /// The plugins in force and their reload counts.
    reloader: Option<Arc<Reloader>>,
}

impl Registry {
    /// Adds a pipeline's measurements.
    pub fn add(&mut self, pipeline: &str, metrics: PipelineMetrics) {
        self.pipelines.push((pipeline.to_string(), metrics));
    }

    /// Reports the plugins of `reloader`.
    pub fn set_reloader(&mut self, reloader: Arc<Reloader>) {
        self.reloader = Some(reloader);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "ordo_ingest_requests_total",
            "Answers of each pipeline's POST route, by status.",
            self.pipelines.iter().flat_map(|(name, m)| {
                m.ingest
                    .snapshot()
                    .into_iter()
                    .map(move |(status, n)| (format!("pipeline=\"{name}\",status=\"{status}\""), n))
            }),
        );
        family(
            &mut out,
            "ordo_events_total",
            "Events the consumer settled, by outcome.",
            self.pipelines.iter().flat_map(|(name, m)| {
                let s = &m.consumer;
                [
                    ("applied", &s.applied),
                    ("skipped_stale", &s.skipped),
                    ("dead_lettered", &s.dead_lettered),
                ]
                .map(|(outcome, c)| {
                    (
                        format!("pipeline=\"{name}\",outcome=\"{outcome}\""),
                        Stats::get(c),
                    )
                })
            }),
        );
        let per_pipeline = |counter: fn(&Stats) -> &AtomicU64| {
            self.pipelines.iter().map(move |(name, m)| {
                (
                    format!("pipeline=\"{name}\""),
                    Stats::get(counter(&m.consumer)),
                )
            })
        };
        family(
            &mut out,
            "ordo_dynamodb_writes_total",
            "Conditional writes that went through.",
            per_pipeline(|s| &s.writes),
        );
        family(
            &mut out,
            "ordo_dynamodb_conditional_failures_total",
            "Conditional writes lost to another writer, then merged again.",
            per_pipeline(|s| &s.conflicts),
        );
        typed_family(
            &mut out,
            "ordo_consumer_lag",
            "Messages of each partition not yet committed, as librdkafka last reported (every 5 s).",
            "gauge",
            self.pipelines.iter().flat_map(|(name, m)| {
                m.consumer
                    .lag()
                    .into_iter()
                    .map(move |(p, lag)| (format!("pipeline=\"{name}\",partition=\"{p}\""), lag))
            }),
        );
        self.histograms(&mut out);
        if let Some(reloader) = &self.reloader {
            let (swapped, refused) = reloader.counts();
            family(
                &mut out,
                "ordo_plugin_reloads_total",
                "Plugin reloads (file change, SIGHUP, admin endpoint), by outcome.",
                [("swapped", swapped), ("refused", refused)]
                    .into_iter()
                    .map(|(outcome, n)| (format!("outcome=\"{outcome}\""), n)),
            );
            typed_family(
                &mut out,
                "ordo_plugin_info",
                "The plugin in force for each pipeline (sha256 of its file).",
                "gauge",
                reloader
                    .status()
                    .into_iter()
                    .map(|(name, id)| (format!("pipeline=\"{name}\",plugin=\"{id}\""), 1)),
            );
        }
        out
    }
}

impl Registry {
    /// The latency and fuel histograms of every pipeline.
    fn histograms(&self, out: &mut String) {
        let header = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        };
        let name = "ordo_produce_seconds";
        header(
            out,
            name,
            "Time from produce to the broker's acknowledgement, at ingest.",
        );
        for (pipeline, m) in &self.pipelines {
            m.ingest
                .produce
                .render(out, name, &format!("pipeline=\"{pipeline}\""));
        }
        let name = "ordo_dynamodb_write_seconds";
        header(out, name, "Time of one conditional PutItem, won or lost.");
        for (pipeline, m) in &self.pipelines {
            m.writes
                .render(out, name, &format!("pipeline=\"{pipeline}\""));
        }
        for (name, help, pick) in [
            (
                "ordo_plugin_call_seconds",
                "Time of one plugin call, by export.",
                0,
            ),
            (
                "ordo_plugin_fuel",
                "Fuel one plugin call burnt, by export.",
                1,
            ),
        ] {
            header(out, name, help);
            for (pipeline, m) in &self.pipelines {
                for (call, seconds, fuel) in &m.plugin.calls {
                    let h = if pick == 0 { seconds } else { fuel };
                    h.render(
                        out,
                        name,
                        &format!("pipeline=\"{pipeline}\",call=\"{call}\""),
                    );
                }
            }
        }
    }
}

/// Writes one counter family: its HELP and TYPE lines, then one sample per label set.
fn family(out: &mut String, name: &str, help: &str, samples: impl Iterator<Item = (String, u64)>) {
    typed_family(out, name, help, "counter", samples);
}

/// Writes one family of the given Prometheus type.
fn typed_family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    samples: impl Iterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_pipeline_labels() {
        let m = PipelineMetrics::default();
        m.ingest.record(202);
        m.ingest.record(202);
        m.ingest.record(422);
        Stats::add(&m.consumer.skipped, 3);
        m.ingest.produce.observe(0.003);
        m.plugin.record("merge", Duration::from_micros(7), 20_000);
        m.consumer.set_lag([(0, 5), (2, 0)]);
        let mut registry = Registry::default();
        registry.add("p", m);
        let text = registry.render();
        assert!(
            text.contains("ordo_ingest_requests_total{pipeline=\"p\",status=\"202\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ordo_ingest_requests_total{pipeline=\"p\",status=\"422\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ordo_events_total{pipeline=\"p\",outcome=\"skipped_stale\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ordo_dynamodb_writes_total{pipeline=\"p\"} 0"),
            "{text}"
        );
        for sample in [
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"0.001\"} 0",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"0.005\"} 1",
            "ordo_produce_seconds_bucket{pipeline=\"p\",le=\"+Inf\"} 1",
            "ordo_produce_seconds_count{pipeline=\"p\"} 1",
            "ordo_plugin_call_seconds_bucket{pipeline=\"p\",call=\"merge\",le=\"0.00001\"} 1",
            "ordo_plugin_fuel_bucket{pipeline=\"p\",call=\"merge\",le=\"10000\"} 0",
            "ordo_plugin_fuel_bucket{pipeline=\"p\",call=\"merge\",le=\"100000\"} 1",
            "ordo_plugin_fuel_count{pipeline=\"p\",call=\"validate\"} 0",
            "ordo_consumer_lag{pipeline=\"p\",partition=\"0\"} 5",
            "ordo_dynamodb_write_seconds_count{pipeline=\"p\"} 0",
        ] {
            assert!(text.contains(sample), "{sample} missing from:\n{text}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.5, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 1\nx_bucket{a=\"b\",le=\"2\"} 3\nx_bucket{a=\"b\",le=\"+Inf\"} 4\nx_sum{a=\"b\"} 12.5\nx_count{a=\"b\"} 4\n"
        );
        assert_eq!(h.count(), 4);
    }
}
