//! The engine's metrics as numbers, not text: each pipeline's counters and gauges at one
//! reading ([`Snapshot`]), and the rates between two readings ([`rows`]). The operator page
//! takes its snapshots from the registry's gathered families ([`super::Metrics::snapshot`]);
//! `ordo top` from a running engine's `/metrics` (`ops::top::sample`).

use std::collections::BTreeMap;

use prometheus::proto::{MetricFamily, MetricType};

/// One sample: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (a histogram's `_sum` and `_count` included).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "".
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of gathered families: counters and gauges as they are, a histogram as its
/// `_sum` and `_count` (its buckets are not read).
pub fn samples(families: &[MetricFamily]) -> Vec<Sample> {
    let mut out = Vec::new();
    for family in families {
        for metric in family.get_metric() {
            let labels: BTreeMap<String, String> = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            let mut push = |name: String, value: f64| {
                out.push(Sample {
                    name,
                    labels: labels.clone(),
                    value,
                })
            };
            match family.get_field_type() {
                MetricType::COUNTER => {
                    push(family.name().to_string(), metric.get_counter().get_value())
                }
                MetricType::GAUGE => {
                    push(family.name().to_string(), metric.get_gauge().get_value())
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    push(format!("{}_sum", family.name()), h.get_sample_sum());
                    push(
                        format!("{}_count", family.name()),
                        h.get_sample_count() as f64,
                    );
                }
                _ => {}
            }
        }
    }
    out
}

/// One pipeline's counters and gauges at one reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// POST answers 2xx, 4xx, 5xx (totals).
    pub ingest_ok: f64,
    /// 4xx answers.
    pub ingest_refused: f64,
    /// 5xx answers.
    pub ingest_failed: f64,
    /// Events written.
    pub applied: f64,
    /// Events skipped as stale.
    pub skipped: f64,
    /// Events dead-lettered.
    pub dead_lettered: f64,
    /// Messages not yet committed, by partition.
    pub lag: BTreeMap<i64, f64>,
    /// The plugin in force (sha256 of its file).
    pub plugin: Option<String>,
    /// Seconds and count of `merge` calls (totals).
    pub merge_seconds: f64,
    /// Number of `merge` calls.
    pub merges: f64,
    /// Keys waiting on a transient failure.
    pub waiting: f64,
    /// Failed applies retried (all causes).
    pub retries: f64,
    /// Keys the consumer may apply at once now (`ordo_apply_concurrency`), when it consumes.
    pub concurrency: Option<f64>,
}

/// Every pipeline at one reading, and the engine-wide reload counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// By pipeline name.
    pub pipelines: BTreeMap<String, Reading>,
    /// Reloads that put a new plugin in force.
    pub swapped: f64,
    /// Reloads refused.
    pub refused: f64,
    /// Each readiness check and whether it passed when last checked (`ordo_ready`).
    pub checks: BTreeMap<String, bool>,
}

impl Snapshot {
    /// The snapshot `/metrics`' samples describe.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut out = Snapshot::default();
        for s in samples {
            if s.name == "ordo_ready" {
                out.checks
                    .insert(s.label("check").to_string(), s.value >= 1.0);
                continue;
            }
            if s.name == "ordo_plugin_reloads_total" {
                match s.label("outcome") {
                    "swapped" => out.swapped = s.value,
                    "refused" => out.refused = s.value,
                    _ => {}
                }
                continue;
            }
            let pipeline = s.label("pipeline");
            if pipeline.is_empty() || !s.name.starts_with("ordo_") {
                continue;
            }
            let r = out.pipelines.entry(pipeline.to_string()).or_default();
            match (s.name.as_str(), s.label("outcome"), s.label("call")) {
                ("ordo_ingest_requests_total", _, _) => match s.label("status").chars().next() {
                    Some('2') => r.ingest_ok += s.value,
                    Some('4') => r.ingest_refused += s.value,
                    Some('5') => r.ingest_failed += s.value,
                    _ => {}
                },
                ("ordo_events_total", "applied", _) => r.applied = s.value,
                ("ordo_events_total", "skipped_stale", _) => r.skipped = s.value,
                ("ordo_events_total", "dead_lettered", _) => r.dead_lettered = s.value,
                ("ordo_consumer_lag", _, _) => {
                    if let Ok(p) = s.label("partition").parse() {
                        r.lag.insert(p, s.value);
                    }
                }
                ("ordo_plugin_info", _, _) if s.value >= 1.0 => {
                    r.plugin = Some(s.label("plugin").to_string());
                }
                ("ordo_plugin_call_seconds_sum", _, "merge") => r.merge_seconds = s.value,
                ("ordo_plugin_call_seconds_count", _, "merge") => r.merges = s.value,
                ("ordo_keys_waiting", _, _) => r.waiting = s.value,
                ("ordo_apply_retries_total", _, _) => r.retries += s.value,
                ("ordo_apply_concurrency", _, _) => r.concurrency = Some(s.value),
                _ => {}
            }
        }
        out
    }
}

/// Per second between two readings `seconds` apart (0 for a counter that went back: a
/// restarted engine).
fn per_second(before: f64, after: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 || after < before {
        0.0
    } else {
        (after - before) / seconds
    }
}

/// One pipeline's row: rates between the last two readings, and its current state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Pipeline name.
    pub name: String,
    /// Accepted POSTs per second.
    pub ingest: f64,
    /// Refused (4xx) and failed (5xx) POSTs per second.
    pub refused: f64,
    /// Events written per second.
    pub applied: f64,
    /// Events written since the engine started.
    pub applied_total: f64,
    /// Stale events skipped per second.
    pub skipped: f64,
    /// Dead letters since the engine started, and since the last reading.
    pub dead_letters: (f64, f64),
    /// Total lag, and by partition.
    pub lag: (f64, BTreeMap<i64, f64>),
    /// Mean `merge` time over the interval, in µs (None without calls).
    pub merge_micros: Option<f64>,
    /// Keys waiting; retries per second.
    pub waiting: f64,
    /// Retries per second.
    pub retries: f64,
    /// Keys the consumer may apply at once now, when it consumes.
    pub concurrency: Option<f64>,
    /// The plugin in force.
    pub plugin: String,
}

/// Rows from two snapshots `seconds` apart.
pub fn rows(before: &Snapshot, after: &Snapshot, seconds: f64) -> Vec<Row> {
    after
        .pipelines
        .iter()
        .map(|(name, a)| {
            let b = before.pipelines.get(name).cloned().unwrap_or_default();
            let merges = a.merges - b.merges;
            Row {
                name: name.clone(),
                ingest: per_second(b.ingest_ok, a.ingest_ok, seconds),
                refused: per_second(
                    b.ingest_refused + b.ingest_failed,
                    a.ingest_refused + a.ingest_failed,
                    seconds,
                ),
                applied: per_second(b.applied, a.applied, seconds),
                applied_total: a.applied,
                skipped: per_second(b.skipped, a.skipped, seconds),
                dead_letters: (
                    a.dead_lettered,
                    (a.dead_lettered - b.dead_lettered).max(0.0),
                ),
                lag: (a.lag.values().fold(0.0, |sum, n| sum + n), a.lag.clone()),
                merge_micros: (merges > 0.0)
                    .then(|| (a.merge_seconds - b.merge_seconds) / merges * 1e6),
                waiting: a.waiting,
                retries: per_second(b.retries, a.retries, seconds),
                concurrency: a.concurrency,
                plugin: a.plugin.clone().unwrap_or_else(|| "—".into()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn a_snapshot_reads_the_registry_and_rows_are_rates() {
        let metrics = Metrics::new();
        let consumer = metrics.consumer("p");
        let ingest = metrics.ingest("p");
        let before = metrics.snapshot();
        for _ in 0..4 {
            consumer.applied.inc();
            ingest.answered(202);
        }
        consumer.skipped.inc();
        ingest.answered(422);
        consumer.concurrency.set(12);
        let after = metrics.snapshot();
        let r = &rows(&before, &after, 2.0)[0];
        assert_eq!(r.concurrency, Some(12.0), "the keys applied at once now");
        assert_eq!(r.name, "p");
        assert_eq!(
            (r.ingest, r.refused, r.applied, r.skipped),
            (2.0, 0.5, 2.0, 0.5)
        );
        assert_eq!(r.applied_total, 4.0);
        let back = &rows(&after, &before, 1.0)[0];
        assert_eq!(
            (back.ingest, back.applied),
            (0.0, 0.0),
            "a restarted engine shows no negative rate"
        );
    }
}
