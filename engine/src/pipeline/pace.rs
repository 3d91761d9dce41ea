//! How many keys a pipeline applies at once: up to its `concurrency`, as many as do not
//! lower the consumer's throughput ([`super::climb`]), and fewer while DynamoDB throttles.
//!
//! Two signals move one limit. **Throughput**: each key applied counts, and the climb tries a
//! little more and a little less, keeping more unless it costs and fewer only when it pays
//! (see [`super::climb`]); a pipeline starts at its `concurrency`. **Throttling** is DynamoDB
//! saying "slow down", so the answer is to write less at once, not to fail the events: each
//! throttled attempt halves the limit (at most once per [`CUT_INTERVAL`], as many workers see
//! the same throttling together; never below 1), and for [`THROTTLE_MEMORY`] after a cut the
//! limit grows back by at most one key at a time (additive increase, multiplicative decrease,
//! as TCP does). A lowered limit takes effect as workers finish: a permit returned while the
//! limit is below the permits out is retired instead. With `adaptive_concurrency = false` only
//! throttling moves the limit.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock, so that a simulation on a paused clock sees the same pace for the same seed.
use tokio::time::Instant;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::climb::{Climb, Verdict};

/// The shortest time between two cuts of the limit.
pub const CUT_INTERVAL: Duration = Duration::from_secs(1);
/// How long after a throttling cut the limit grows by at most one key a window.
pub const THROTTLE_MEMORY: Duration = Duration::from_secs(30);

/// A pipeline's adaptive limit on keys applied at once.
pub struct Pace {
    /// Permits out or available: the limit plus what is still to retire.
    permits: Arc<Semaphore>,
    /// The configured concurrency: the most the limit grows back to.
    max: usize,
    /// Whether the consumer's throughput moves the limit (else it starts at `max` and only
    /// throttling lowers it).
    adaptive: bool,
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
    /// Turns out now.
    out: usize,
    /// Attempts through since the limit last rose, when it does not follow the latency.
    through: usize,
    /// The throughput climb.
    climb: Climb,
    /// When the limit was last cut for throttling.
    cut: Option<Instant>,
}

/// The right to apply one key now; returned (or retired) on drop.
pub struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    pace: Arc<Pace>,
}

impl Pace {
    /// A limit starting at, and never above, `max` (at least 1), shown in `gauge`; following
    /// the throughput when `adaptive`.
    pub fn new(max: usize, adaptive: bool, gauge: IntGauge) -> Arc<Self> {
        let max = max.max(1);
        let limit = max;
        gauge.set(limit as i64);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(limit)),
            max,
            adaptive,
            state: Mutex::new(State {
                limit,
                debt: 0,
                out: 0,
                through: 0,
                climb: Climb::new(max),
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
        self.state().out += 1;
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
        state.cut = Some(Instant::now());
        state.through = 0;
        state.climb.restart();
        self.set(&mut state, lower);
    }

    /// An attempt went through: a key applied.
    pub fn went_through(&self) {
        let mut state = self.state();
        let (out, limit) = (state.out, state.limit);
        if !self.adaptive {
            // Every `limit` attempts through raise a lowered limit by one.
            if limit < self.max {
                state.through += 1;
                if state.through >= limit {
                    state.through = 0;
                    self.set(&mut state, limit + 1);
                }
            }
            return;
        }
        let Verdict::Set(mut next) = state.climb.completed(out, limit) else {
            return;
        };
        if state.cut.is_some_and(|at| at.elapsed() < THROTTLE_MEMORY) {
            // The store throttled lately: grow back gently.
            next = next.min(limit + 1);
        }
        self.set(&mut state, next);
    }

    /// Moves the limit to `next` (between 1 and `max`): new permits, or permits retired as
    /// they come back.
    fn set(&self, state: &mut State, next: usize) {
        let next = next.clamp(1, self.max);
        if next < state.limit {
            let cut = state.limit - next;
            state.debt += cut - self.permits.forget_permits(cut);
        } else if next > state.limit {
            let mut grow = next - state.limit;
            let repaid = grow.min(state.debt);
            state.debt -= repaid;
            grow -= repaid;
            self.permits.add_permits(grow);
        }
        tracing::debug!(
            from = state.limit,
            to = next,
            "Keys applied at once changed."
        );
        state.limit = next;
        self.gauge.set(next as i64);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.pace.state();
        state.out = state.out.saturating_sub(1);
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
        Pace::new(max, true, IntGauge::new("g", "g").expect("gauge"))
    }

    /// For `time`, a millisecond at a time, keeps every turn the limit allows taken and
    /// completes keys at `rate(limit)` a second.
    async fn run(pace: &Arc<Pace>, rate: impl Fn(usize) -> f64, time: Duration) {
        let mut owed = 0.0;
        for _ in 0..time.as_millis() {
            let limit = pace.limit();
            let mut turns = Vec::new();
            for _ in 0..limit {
                turns.push(pace.turn().await.expect("turn"));
            }
            tokio::time::advance(Duration::from_millis(1)).await;
            owed += rate(limit) / 1000.0;
            while owed >= 1.0 {
                owed -= 1.0;
                pace.went_through();
            }
            drop(turns);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipeline_starts_at_its_concurrency_and_keeps_it_while_throughput_follows() {
        let pace = pace(64);
        assert_eq!(pace.limit(), 64);
        run(&pace, |l| l as f64 / 0.004, Duration::from_secs(20)).await;
        assert!(
            pace.limit() >= 51,
            "near the configured concurrency: {}",
            pace.limit()
        );
        assert!(pace.limit() <= 64, "never above it");
        assert_eq!(pace.permits.available_permits(), pace.limit());
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_turns_and_they_grow_back_one_at_a_time() {
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
        // Throughput grows with every key, but the store throttled lately: one key a window
        // (three windows of 100 ms, the first two steady).
        run(&pace, |l| l as f64 / 0.004, Duration::from_millis(350)).await;
        let limit = pace.limit();
        assert!((4..=6).contains(&limit), "one key at a time: {limit}");
        assert_eq!(pace.permits.available_permits(), limit);
        tokio::time::advance(THROTTLE_MEMORY).await;
        run(&pace, |l| l as f64 / 0.004, Duration::from_secs(5)).await;
        assert_eq!(pace.limit(), 8, "back at the ceiling");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_thrashes_keeps_the_limit_near_where_throughput_peaks() {
        let pace = pace(64);
        run(
            &pace,
            super::super::climb::tests::thrashing,
            Duration::from_secs(120),
        )
        .await;
        assert!((7..=13).contains(&pace.limit()), "{}", pace.limit());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limit_starts_at_the_ceiling_and_only_throttling_moves_it() {
        let pace = Pace::new(8, false, IntGauge::new("g", "g").expect("gauge"));
        assert_eq!(pace.limit(), 8);
        run(&pace, |l| (l.min(2) as f64) * 50.0, Duration::from_secs(10)).await;
        assert_eq!(pace.limit(), 8, "throughput does not move it");
        pace.throttled();
        assert_eq!(pace.limit(), 4);
        for _ in 0..4 {
            pace.went_through();
        }
        assert_eq!(pace.limit(), 5, "one more for every limit's worth through");
    }

    #[tokio::test]
    async fn the_limit_never_falls_below_one() {
        let pace = pace(1);
        pace.throttled();
        assert_eq!(pace.limit(), 1);
        assert!(pace.turn().await.is_some());
    }
}
