//! `/metrics` in the Prometheus text format: what each pipeline's ingest and consumer did.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::bus::consumer::Stats;
use crate::plugin::reload::Reloader;

/// HTTP answers of one pipeline's ingest route, by status code.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Count per status; a mutex is cheap next to a broker round trip.
    by_status: Mutex<BTreeMap<u16, u64>>,
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

/// Every pipeline's counters.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    /// (pipeline name, ingest counters, consumer counters).
    pipelines: Vec<(String, Arc<IngestStats>, Arc<Stats>)>,
    /// The plugins in force and their reload counts.
    reloader: Option<Arc<Reloader>>,
}

impl Registry {
    /// Adds a pipeline's counters.
    pub fn add(&mut self, pipeline: &str, ingest: Arc<IngestStats>, consumer: Arc<Stats>) {
        self.pipelines
            .push((pipeline.to_string(), ingest, consumer));
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
            self.pipelines.iter().flat_map(|(name, ingest, _)| {
                ingest
                    .snapshot()
                    .into_iter()
                    .map(move |(status, n)| (format!("pipeline=\"{name}\",status=\"{status}\""), n))
            }),
        );
        family(
            &mut out,
            "ordo_events_total",
            "Events the consumer settled, by outcome.",
            self.pipelines.iter().flat_map(|(name, _, s)| {
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
            self.pipelines
                .iter()
                .map(move |(name, _, s)| (format!("pipeline=\"{name}\""), Stats::get(counter(s))))
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
        let ingest = Arc::new(IngestStats::default());
        ingest.record(202);
        ingest.record(202);
        ingest.record(422);
        let consumer = Arc::new(Stats::default());
        Stats::add(&consumer.skipped, 3);
        let mut registry = Registry::default();
        registry.add("p", ingest, consumer);
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
    }
}
