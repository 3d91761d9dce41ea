//! The per-pipeline handles a component updates: each holds its own metrics of the shared
//! families, already labelled with its pipeline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::Metrics;

/// Answers of one pipeline's ingest route and its produce latency.
#[derive(Clone)]
pub struct IngestMetrics {
    /// The label value.
    pub(super) pipeline: String,
    /// Answers by pipeline and status.
    pub(super) requests: IntCounterVec,
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
    /// Changed records published to the change feed.
    pub changes: IntCounter,
    /// Retried attempts, by cause (one of [`super::RETRY_CAUSES`]).
    pub(super) retries: Vec<(&'static str, IntCounter)>,
    /// Keys waiting for a transient failure to pass.
    pub waiting: IntGauge,
    /// Keys that may be applied at once now.
    pub concurrency: IntGauge,
    /// Workers that panicked.
    pub panics: IntCounter,
    /// The last dead letters, for the operator page.
    pub recent: super::RecentDeadLetters,
    /// Uncommitted messages per assigned partition.
    pub lag: Lag,
}

impl ConsumerMetrics {
    /// Counts one retried attempt with `cause` (one of [`super::RETRY_CAUSES`]).
    pub fn retried(&self, cause: &str) {
        if let Some((_, counter)) = self.retries.iter().find(|(c, _)| *c == cause) {
            counter.inc();
        }
    }

    /// Attempts retried with `cause` so far.
    pub fn retries(&self, cause: &str) -> u64 {
        self.retries
            .iter()
            .find(|(c, _)| *c == cause)
            .map_or(0, |(_, counter)| counter.get())
    }

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
    pub(super) pipeline: String,
    /// The family.
    pub(super) gauges: IntGaugeVec,
    /// Partitions with a gauge now, so a partition no longer reported loses its gauge.
    pub(super) partitions: Arc<Mutex<BTreeSet<i32>>>,
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
    pub(super) calls: Arc<Vec<(&'static str, Histogram, Histogram)>>,
    /// The plugin in force and the reload counters.
    pub(super) in_force: Arc<InForce>,
}

/// `ordo_plugin_info` of one pipeline and the reload outcomes.
pub(super) struct InForce {
    /// The label value.
    pub(super) pipeline: String,
    /// The family.
    pub(super) gauges: IntGaugeVec,
    /// The id shown now.
    pub(super) id: Mutex<Option<String>>,
    /// Reloads that put a new plugin in force.
    pub(super) swapped: IntCounter,
    /// Reloads refused.
    pub(super) refused: IntCounter,
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
