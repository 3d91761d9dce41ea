//! How many keys a pipeline applies at once: up to its `concurrency`, as many as the store
//! works on without a queue ([`super::latency`]), and fewer while DynamoDB throttles.
//!
//! Two signals move one limit. **Latency**: each attempt that went through reports its store
//! requests and how long they took, and the latency estimate raises the limit while the store
//! shows no queue and lowers it by the queue's excess (see [`super::latency`]); a pipeline
//! starts at [`START`] keys and grows from there. **Throttling** is DynamoDB saying "slow
//! down", so the answer is to write less at once, not to fail the events: each throttled
//! attempt halves the limit (at most once per [`CUT_INTERVAL`], as many workers see the same
//! throttling together; never below 1), and for [`THROTTLE_MEMORY`] after a cut the limit
//! grows back by at most one key a window (additive increase, multiplicative decrease, as TCP
//! does). A lowered limit takes effect as workers finish: a permit returned while the limit is
//! below the permits out is retired instead.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock, so that a simulation on a paused clock sees the same pace for the same seed.
use tokio::time::Instant;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use super::latency::START;
use super::latency::{Vegas, Verdict};

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
    /// Whether the store's latency moves the limit (else it starts at `max` and only
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
    /// The latency estimate.
    vegas: Vegas,
    /// When the limit was last cut for throttling.
    cut: Option<Instant>,
}

/// The right to apply one key now; returned (or retired) on drop.
pub struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    pace: Arc<Pace>,
}

impl Pace {
    /// A limit never above `max` (at least 1), shown in `gauge`: `adaptive`, starting at
    /// [`START`] (or `max`, if lower) and following the store's latency; else at `max`.
    pub fn new(max: usize, adaptive: bool, gauge: IntGauge) -> Arc<Self> {
        let max = max.max(1);
        let limit = if adaptive { START.min(max) } else { max };
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
                vegas: Vegas::new(max),
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
        state.vegas.restart();
        self.set(&mut state, lower);
    }

    /// An attempt went through after `requests` store requests that took `time` in all.
    pub fn went_through(&self, requests: u32, time: Duration) {
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
        let Verdict::Set(mut next) = state.vegas.sample(requests, time, out, limit) else {
            return;
        };
        if state.cut.is_some_and(|at| at.elapsed() < THROTTLE_MEMORY) {
            // The store throttled lately: its latency does not show what it can take.
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

    const MS: Duration = Duration::from_millis(1);

    fn pace(max: usize) -> Arc<Pace> {
        Pace::new(max, true, IntGauge::new("g", "g").expect("gauge"))
    }

    /// Takes every turn the limit allows and reports a window of requests at `each`.
    async fn window(pace: &Arc<Pace>, each: Duration) {
        let limit = pace.limit();
        let mut turns = Vec::new();
        for _ in 0..limit {
            turns.push(pace.turn().await.expect("turn"));
        }
        for _ in 0..limit.max(16) {
            pace.went_through(1, each);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipeline_starts_low_and_grows_to_its_concurrency_on_a_store_without_a_queue() {
        let pace = pace(64);
        assert_eq!(pace.limit(), START);
        for _ in 0..20 {
            window(&pace, 4 * MS).await;
        }
        assert_eq!(pace.limit(), 64, "never above the configured concurrency");
        assert_eq!(pace.permits.available_permits(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_turns_and_they_grow_back_one_a_window() {
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
        // No queue, but the store throttled lately: one key a window.
        window(&pace, 4 * MS).await;
        assert_eq!(pace.limit(), 5);
        assert_eq!(pace.permits.available_permits(), 5);
        tokio::time::advance(THROTTLE_MEMORY).await;
        // A probe of the base first (half the limit for two windows), then growth at the
        // latency's pace.
        for _ in 0..4 {
            window(&pace, 4 * MS).await;
        }
        assert_eq!(pace.limit(), 8, "grows at the latency's pace again");
        assert_eq!(pace.permits.available_permits(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_at_the_store_lowers_the_limit() {
        let pace = pace(64);
        window(&pace, 4 * MS).await;
        let before = pace.limit();
        // Every request now waits five times as long: a queue of most of the limit.
        window(&pace, 20 * MS).await;
        assert!(pace.limit() < before, "{} then {}", before, pace.limit());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limit_starts_at_the_ceiling_and_only_throttling_moves_it() {
        let pace = Pace::new(8, false, IntGauge::new("g", "g").expect("gauge"));
        assert_eq!(pace.limit(), 8);
        window(&pace, 20 * MS).await;
        assert_eq!(pace.limit(), 8, "latency does not move it");
        pace.throttled();
        assert_eq!(pace.limit(), 4);
        for _ in 0..4 {
            pace.went_through(1, MS);
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
