//! The latency half of a pipeline's pace: how many keys to apply at once so that the store
//! is kept busy without a queue in front of it.
//!
//! A store answers in about the same time however many requests it has, until it has more
//! than it can work on at once; past that point every extra request only waits, and its
//! latency grows with the queue while throughput stays flat. The limit is estimated the way
//! TCP Vegas and Netflix's `VegasLimit` do: the **base** latency is the average of the
//! quietest window of requests, and a window whose average is `avg` at limit `L` has about
//! `L × (1 − base / avg)` requests queued. Few queued: the limit grows (fast while almost none
//! are); many: it falls by the excess. So on a latency-bound store (real DynamoDB, any number
//! of requests at once) the limit stays at the configured `concurrency`, and on a
//! throughput-bound one (a local emulator, a hot partition) it settles a few requests past the
//! point where throughput stops rising.
//!
//! The base is measured again every [`PROBE_INTERVAL`]: the limit is halved for a window and
//! that window's average becomes the base, so a base that drifted (the store got slower for
//! good, or a queue crept into the estimate) is replaced by a fresh one.
//!
//! Only windows where the limit was used count (at least half of it out at once): a limit the
//! consumer does not reach tells nothing about the store.

use std::time::Duration;

// tokio's clock, so that a simulation on a paused clock sees the same limits for a seed.
use tokio::time::Instant;

/// The limit a pipeline starts at (or its `concurrency`, if lower): low enough that the first
/// windows measure the store nearly unloaded, which is the base every later window is read
/// against. Without a queue the limit then grows by several keys a window, so a store that
/// takes any number at once reaches the ceiling within a few dozen requests.
pub const START: usize = 8;
/// How often the base latency is measured again.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Store requests in a window at the least: fewer give an average that is mostly noise.
const MIN_WINDOW: u32 = 16;

/// What a window of store requests says about the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to change (the window is not over, or the limit is right).
    Keep,
    /// The limit should be this.
    Set(usize),
}

/// The latency-based estimate of a limit between 1 and a ceiling.
#[derive(Debug)]
pub struct Vegas {
    /// The most the limit may be: the pipeline's `concurrency`.
    max: usize,
    /// The average latency of the quietest window since the last probe.
    base: Option<Duration>,
    /// When the base was last measured by a probe.
    probed: Option<Instant>,
    /// A probe is under way: the limit it halved from, and whether the window at the halved
    /// limit has started (the first window after the cut still holds requests sent before).
    probe: Option<Probe>,
    /// Requests in the current window.
    requests: u32,
    /// Their total latency.
    total: Duration,
    /// The most keys out at once during the window.
    peak: usize,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The window after the cut still holds requests sent before it.
    draining: bool,
}

impl Vegas {
    /// An estimate for a limit of at most `max` (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            base: None,
            probed: None,
            probe: None,
            requests: 0,
            total: Duration::ZERO,
            peak: 0,
        }
    }

    /// The base latency now, when one was measured.
    #[cfg(test)]
    pub fn base(&self) -> Option<Duration> {
        self.base
    }

    /// Starts the window again (after the limit was cut for throttling: what came before
    /// says nothing about the new limit).
    pub fn restart(&mut self) {
        self.requests = 0;
        self.total = Duration::ZERO;
        self.peak = 0;
    }

    /// `requests` store requests took `time` in all, with `out` keys out at once and the
    /// limit at `limit`. At the end of a window, what the limit should be.
    pub fn sample(&mut self, requests: u32, time: Duration, out: usize, limit: usize) -> Verdict {
        if requests == 0 {
            return Verdict::Keep;
        }
        self.requests += requests;
        self.total += time;
        self.peak = self.peak.max(out);
        // About one round of the limit's requests: the store saw the limit for a while.
        let window = (limit as u32).max(MIN_WINDOW);
        if self.requests < window {
            return Verdict::Keep;
        }
        let avg = self.total / self.requests;
        let peak = self.peak;
        self.restart();
        let now = Instant::now();
        if let Some(probe) = self.probe {
            if probe.draining {
                self.probe = Some(Probe { draining: false });
                return Verdict::Keep;
            }
            // The window at the halved limit: the store as unloaded as it gets.
            self.probe = None;
            self.base = Some(avg);
            self.probed = Some(now);
            return Verdict::Keep;
        }
        let base = *self.base.get_or_insert(avg);
        let base = base.min(avg);
        self.base = Some(base);
        let first_probe = *self.probed.get_or_insert(now);
        if now.duration_since(first_probe) >= PROBE_INTERVAL && limit > 1 {
            self.probe = Some(Probe { draining: true });
            return Verdict::Set((limit / 2).max(1));
        }
        if peak * 2 < limit {
            // The consumer did not use the limit: no evidence either way.
            return Verdict::Keep;
        }
        let next = next_limit(limit, base, avg, self.max);
        if next == limit {
            Verdict::Keep
        } else {
            Verdict::Set(next)
        }
    }
}

/// The limit after a window at `limit` averaged `avg` against a base of `base`, between 1
/// and `max`.
fn next_limit(limit: usize, base: Duration, avg: Duration, max: usize) -> usize {
    let l = limit as f64;
    let queued = if avg.is_zero() {
        0.0
    } else {
        l * (1.0 - base.as_secs_f64() / avg.as_secs_f64())
    };
    // Vegas's thresholds grow slowly with the limit, so a large limit tolerates a few more
    // requests in line before it counts as a queue.
    let step = l.log10().max(1.0);
    let (alpha, beta) = (3.0 * step, 6.0 * step);
    let next = if queued <= step {
        l + beta
    } else if queued < alpha {
        l + step
    } else if queued > beta {
        // Down by half the excess: fast from far above, gently near the point.
        l - step.max((queued - beta) / 2.0)
    } else {
        l
    };
    (next.round() as usize).clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The latency of a store that works on `parallel` requests at once, each in `service`:
    /// `limit` at once wait for the ones ahead of them.
    fn latency(limit: usize, parallel: usize, service: Duration) -> Duration {
        let rounds = limit.div_ceil(parallel).max(1) as u32;
        // On average a request waits for half the rounds ahead of it.
        service * (rounds + 1) / 2
    }

    /// Runs the estimate against a store for `windows` windows, every key out; the limits
    /// it went through.
    fn settle(max: usize, store: impl Fn(usize) -> Duration, windows: usize) -> Vec<usize> {
        let mut vegas = Vegas::new(max);
        let mut limit = START.min(max);
        let mut limits = Vec::new();
        for _ in 0..windows {
            let window = (limit as u32).max(MIN_WINDOW);
            let each = store(limit);
            if let Verdict::Set(next) = vegas.sample(window, each * window, limit, limit) {
                limit = next;
            }
            limits.push(limit);
        }
        limits
    }

    #[test]
    fn a_store_that_takes_any_number_at_once_keeps_the_ceiling() {
        let limits = settle(64, |_| 4 * MS, 50);
        assert!(limits[10..].iter().all(|&l| l == 64), "{limits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_works_on_four_at_once_settles_a_few_past_four() {
        let limits = settle(64, |l| latency(l, 4, 2 * MS), 200);
        let last = &limits[150..];
        assert!(
            last.iter().all(|&l| (4..=16).contains(&l)),
            "settled at {last:?} (from {limits:?})"
        );
    }

    #[test]
    fn a_lower_limit_that_shows_no_queue_grows_back_to_the_ceiling() {
        let mut vegas = Vegas::new(64);
        let window = |l: usize| (l as u32).max(MIN_WINDOW);
        // A base from a full window, then a limit cut to 8 by throttling.
        vegas.sample(window(64), 4 * MS * window(64), 64, 64);
        let mut limit = 8;
        for _ in 0..20 {
            if let Verdict::Set(next) =
                vegas.sample(window(limit), 4 * MS * window(limit), limit, limit)
            {
                limit = next;
            }
        }
        assert_eq!(limit, 64);
    }

    #[test]
    fn a_limit_the_consumer_does_not_use_is_left_alone() {
        let mut vegas = Vegas::new(64);
        vegas.sample(64, 4 * MS * 64, 64, 64);
        // Twice the base, but only 3 keys out of 64: not the store's queue.
        assert_eq!(vegas.sample(64, 8 * MS * 64, 3, 64), Verdict::Keep);
    }

    #[tokio::test(start_paused = true)]
    async fn the_base_is_measured_again_by_a_probe_at_half_the_limit() {
        let mut vegas = Vegas::new(64);
        vegas.sample(16, 2 * MS * 16, 16, 16);
        assert_eq!(vegas.base(), Some(2 * MS));
        tokio::time::advance(PROBE_INTERVAL).await;
        // The store got slower for good: the probe halves the limit, lets one window drain,
        // and takes the next as the base.
        assert_eq!(vegas.sample(16, 5 * MS * 16, 16, 16), Verdict::Set(8));
        assert_eq!(vegas.sample(16, 5 * MS * 16, 12, 8), Verdict::Keep);
        assert_eq!(vegas.sample(16, 5 * MS * 16, 8, 8), Verdict::Keep);
        assert_eq!(vegas.base(), Some(5 * MS));
        // At the new base, no queue: the limit grows again.
        assert!(matches!(vegas.sample(16, 5 * MS * 16, 8, 8), Verdict::Set(l) if l > 8));
    }
}
