//! How many keys a pipeline applies at once: its `concurrency`, lowered while DynamoDB
//! throttles.
//!
//! Throttling is DynamoDB saying "slow down", so the answer is to write less at once, not to
//! fail the events: each throttled attempt halves the limit (at most once per
//! [`CUT_INTERVAL`], as many workers see the same throttling together; never below 1), and
//! every `limit` attempts that went through raise it by one again, up to the configured
//! concurrency (additive increase, multiplicative decrease, as TCP does). A lowered limit
//! takes effect as workers finish: a permit returned while the limit is below the permits
//! out is retired instead.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock, so that a simulation on a paused clock sees the same pace for the same seed.
use tokio::time::Instant;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shortest time between two cuts of the limit.
pub const CUT_INTERVAL: Duration = Duration::from_secs(1);

/// A pipeline's adaptive limit on keys applied at once.
pub struct Pace {
    /// Permits out or available: the limit plus what is still to retire.
    permits: Arc<Semaphore>,
    /// The configured concurrency: the most the limit grows back to.
    max: usize,
    /// The limit and its bookkeeping.
    state: Mutex<State>,
    /// The limit, for `/metrics`.
    gauge: IntGauge,
}

struct State {
    /// Keys that may be applied at once now.
    limit: usize,
    /// Permits out beyond the limit, to retire when returned.
    debt: usize,
    /// Attempts through since the limit last rose.
    through: usize,
    /// When the limit was last cut.
    cut: Option<Instant>,
}

/// The right to apply one key now; returned (or retired) on drop.
pub struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    pace: Arc<Pace>,
}

impl Pace {
    /// A limit starting at, and never above, `max` (at least 1), shown in `gauge`.
    pub fn new(max: usize, gauge: IntGauge) -> Arc<Self> {
        let max = max.max(1);
        gauge.set(max as i64);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            state: Mutex::new(State {
                limit: max,
                debt: 0,
                through: 0,
                cut: None,
            }),
            gauge,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a turn; `None` only if the pace was closed.
    pub async fn turn(self: &Arc<Self>) -> Option<Turn> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        Some(Turn {
            permit: Some(permit),
            pace: Arc::clone(self),
        })
    }

    /// The limit now.
    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.state().limit
    }

    /// An attempt was throttled: halve the limit, unless it was cut less than
    /// [`CUT_INTERVAL`] ago.
    pub fn throttled(&self) {
        let mut state = self.state();
        if state.cut.is_some_and(|at| at.elapsed() < CUT_INTERVAL) {
            return;
        }
        let lower = (state.limit / 2).max(1);
        let cut = state.limit - lower;
        state.limit = lower;
        state.through = 0;
        state.cut = Some(Instant::now());
        state.debt += cut - self.permits.forget_permits(cut);
        self.gauge.set(lower as i64);
    }

    /// An attempt went through: every `limit` of them raise the limit by one, up to `max`.
    pub fn went_through(&self) {
        let mut state = self.state();
        if state.limit >= self.max {
            return;
        }
        state.through += 1;
        if state.through < state.limit {
            return;
        }
        state.through = 0;
        state.limit += 1;
        if state.debt > 0 {
            state.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
        self.gauge.set(state.limit as i64);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.pace.state();
        if let Some(permit) = self.permit.take() {
            if state.debt > 0 {
                state.debt -= 1;
                permit.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(max: usize) -> Arc<Pace> {
        Pace::new(max, IntGauge::new("g", "g").expect("gauge"))
    }

    #[tokio::test]
    async fn throttling_halves_the_turns_and_going_through_grows_them_back() {
        let pace = pace(8);
        let mut turns = Vec::new();
        for _ in 0..8 {
            turns.push(pace.turn().await.expect("turn"));
        }
        pace.throttled();
        assert_eq!(pace.limit(), 4);
        pace.throttled();
        assert_eq!(pace.limit(), 4, "one cut per interval");
        // Eight turns are out; the four above the limit retire as they come back.
        turns.truncate(3);
        assert_eq!(pace.permits.available_permits(), 1, "{}", pace.limit());
        drop(turns);
        assert_eq!(pace.permits.available_permits(), 4);
        for _ in 0..4 {
            pace.went_through();
        }
        assert_eq!(pace.limit(), 5);
        assert_eq!(pace.permits.available_permits(), 5);
        for _ in 0..100 {
            pace.went_through();
        }
        assert_eq!(pace.limit(), 8, "never above the configured concurrency");
        assert_eq!(pace.permits.available_permits(), 8);
    }

    #[tokio::test]
    async fn the_limit_never_falls_below_one() {
        let pace = pace(1);
        pace.throttled();
        assert_eq!(pace.limit(), 1);
        assert!(pace.turn().await.is_some());
    }
}
