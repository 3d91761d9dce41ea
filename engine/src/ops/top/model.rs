//! What `ordo top` shows, computed from two readings of `/metrics` (and `/readyz`).

use std::collections::{BTreeMap, VecDeque};

use super::sample::Sample;

/// Rates kept per pipeline for its sparkline.
pub const HISTORY: usize = 120;

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
                plugin: a.plugin.clone().unwrap_or_else(|| "—".into()),
            }
        })
        .collect()
}

/// The last [`HISTORY`] apply rates of each pipeline, oldest first.
#[derive(Debug, Default)]
pub struct History {
    rates: BTreeMap<String, VecDeque<u64>>,
}

impl History {
    /// Adds each row's apply rate.
    pub fn push(&mut self, rows: &[Row]) {
        for row in rows {
            let rates = self.rates.entry(row.name.clone()).or_default();
            if rates.len() == HISTORY {
                rates.pop_front();
            }
            rates.push_back((row.applied + row.skipped).round() as u64);
        }
    }

    /// `pipeline`'s rates, oldest first.
    pub fn of(&self, pipeline: &str) -> Vec<u64> {
        self.rates
            .get(pipeline)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::parse;
    use super::*;

    const BEFORE: &str = r#"ordo_ingest_requests_total{pipeline="p",status="202"} 10
ordo_ingest_requests_total{pipeline="p",status="422"} 1
ordo_events_total{pipeline="p",outcome="applied"} 5
ordo_events_total{pipeline="p",outcome="skipped_stale"} 1
ordo_events_total{pipeline="p",outcome="dead_lettered"} 0
ordo_consumer_lag{pipeline="p",partition="0"} 4
ordo_plugin_info{pipeline="p",plugin="sha256:ab"} 1
ordo_plugin_call_seconds_sum{pipeline="p",call="merge"} 0.001
ordo_plugin_call_seconds_count{pipeline="p",call="merge"} 10
ordo_plugin_reloads_total{outcome="swapped"} 0
"#;

    const AFTER: &str = r#"ordo_ingest_requests_total{pipeline="p",status="202"} 30
ordo_ingest_requests_total{pipeline="p",status="422"} 3
ordo_events_total{pipeline="p",outcome="applied"} 25
ordo_events_total{pipeline="p",outcome="skipped_stale"} 5
ordo_events_total{pipeline="p",outcome="dead_lettered"} 2
ordo_consumer_lag{pipeline="p",partition="0"} 1
ordo_consumer_lag{pipeline="p",partition="1"} 2
ordo_plugin_info{pipeline="p",plugin="sha256:cd"} 1
ordo_plugin_call_seconds_sum{pipeline="p",call="merge"} 0.003
ordo_plugin_call_seconds_count{pipeline="p",call="merge"} 30
ordo_plugin_reloads_total{outcome="swapped"} 1
"#;

    #[test]
    fn rates_come_from_two_readings() {
        let before = Snapshot::from_samples(&parse(BEFORE));
        let after = Snapshot::from_samples(&parse(AFTER));
        assert_eq!(after.swapped, 1.0);
        let rows = rows(&before, &after, 2.0);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.ingest, r.refused, r.applied, r.skipped),
            (10.0, 1.0, 10.0, 2.0)
        );
        assert_eq!(r.dead_letters, (2.0, 2.0));
        assert_eq!(r.applied_total, 25.0);
        assert_eq!(r.lag.0, 3.0);
        assert_eq!(r.plugin, "sha256:cd");
        let micros = r.merge_micros.expect("merges happened");
        assert!((micros - 100.0).abs() < 1e-6, "{micros}");
    }

    #[test]
    fn a_restarted_engine_shows_no_negative_rate() {
        let before = Snapshot::from_samples(&parse(AFTER));
        let after = Snapshot::from_samples(&parse(BEFORE));
        let r = &rows(&before, &after, 1.0)[0];
        assert_eq!((r.ingest, r.applied), (0.0, 0.0));
    }
}
