//! Keys waiting out a transient failure, for `/readyz`, `/metrics` and the log.
//!
//! A store outage makes every worker of a pipeline fail at once and retry for as long as it
//! lasts; a WARN line per attempt would flood the log. So the first failure is logged at
//! once, then one line per [`LOG_EVERY`] with how many attempts failed meanwhile and the last
//! reason, and one line when no key waits any more, saying for how long they did.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::metrics::ConsumerMetrics;
use crate::plugin::{bounded, MAX_REASON};

/// How often a continuing wait is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// One pipeline's waiting keys; cloning shares them.
#[derive(Clone)]
pub struct Waits {
    pipeline: Arc<str>,
    metrics: ConsumerMetrics,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Keys whose worker is waiting now.
    keys: usize,
    /// Since when some key has been waiting.
    since: Option<Instant>,
    /// The last failure: its cause and reason.
    last: Option<(&'static str, String)>,
    /// When a wait was last logged, and attempts failed since.
    logged: Option<Instant>,
    failed: u64,
}

/// A key's wait; ends on drop.
pub struct Wait {
    waits: Waits,
}

impl Default for Waits {
    /// Waits of an unnamed pipeline, counted on a registry of their own (for tests).
    fn default() -> Self {
        Self::new("", ConsumerMetrics::default())
    }
}

impl Waits {
    /// No key waiting yet in `pipeline`.
    pub fn new(pipeline: &str, metrics: ConsumerMetrics) -> Self {
        Self {
            pipeline: pipeline.into(),
            metrics,
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A key starts waiting (after its first transient failure).
    pub fn start(&self) -> Wait {
        let mut state = self.state();
        state.keys += 1;
        state.since.get_or_insert_with(Instant::now);
        self.metrics.waiting.set(state.keys as i64);
        Wait {
            waits: self.clone(),
        }
    }

    /// A waiting key's attempt failed with `cause` (one of [`crate::metrics::RETRY_CAUSES`])
    /// for `reason`; counted, and logged at most once per [`LOG_EVERY`].
    pub fn failed(&self, cause: &'static str, reason: &str) {
        self.metrics.retried(cause);
        let reason = bounded(reason, MAX_REASON);
        let mut state = self.state();
        state.failed += 1;
        let due = state.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            let waiting = state.since.map(|s| s.elapsed()).unwrap_or_default();
            warn!(
                pipeline = %self.pipeline,
                cause,
                keys_waiting = state.keys,
                failed_attempts = state.failed,
                waiting_for = ?Duration::from_secs(waiting.as_secs()),
                error = %reason,
                "Events wait for a transient failure to pass; retrying without limit (logged once a minute)."
            );
            state.logged = Some(Instant::now());
            state.failed = 0;
        }
        state.last = Some((cause, reason));
    }

    /// Why the pipeline is degraded: keys waiting, for how long, and the last failure.
    pub fn degraded(&self) -> Option<String> {
        let state = self.state();
        if state.keys == 0 {
            return None;
        }
        let since = state.since.map(|s| s.elapsed().as_secs()).unwrap_or(0);
        let (cause, reason) = state
            .last
            .as_ref()
            .map_or(("unknown", ""), |(c, r)| (*c, r.as_str()));
        Some(format!(
            "{} key(s) waiting {since} s on a transient failure ({cause}): {reason}",
            state.keys
        ))
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut state = self.waits.state();
        state.keys = state.keys.saturating_sub(1);
        self.waits.metrics.waiting.set(state.keys as i64);
        if state.keys == 0 {
            if let Some(since) = state.since.take() {
                if state.logged.is_some() {
                    info!(pipeline = %self.waits.pipeline, waited = ?Duration::from_millis(since.elapsed().as_millis() as u64), "No events wait any more; the transient failure passed.");
                }
            }
            state.last = None;
            state.logged = None;
            state.failed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_degrades_the_pipeline_until_its_last_key_is_through() {
        let metrics = ConsumerMetrics::default();
        let waits = Waits::new("p", metrics.clone());
        assert_eq!(waits.degraded(), None);
        let a = waits.start();
        let b = waits.start();
        waits.failed("throttled", "PutItem throttled");
        waits.failed("unavailable", "connection refused");
        assert_eq!(metrics.waiting.get(), 2);
        assert_eq!(metrics.retries("throttled"), 1);
        assert_eq!(metrics.retries("unavailable"), 1);
        let why = waits.degraded().expect("degraded");
        assert!(
            why.contains("2 key(s)") && why.contains("unavailable"),
            "{why}"
        );
        drop(a);
        assert!(waits.degraded().is_some());
        drop(b);
        assert_eq!(waits.degraded(), None);
        assert_eq!(metrics.waiting.get(), 0);
    }
}
