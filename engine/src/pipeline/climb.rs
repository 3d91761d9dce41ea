//! How many keys to apply at once: as many as do not lower the consumer's throughput, found
//! by trying a little more and a little less and keeping what does not cost.
//!
//! A store that takes any number of requests at once (DynamoDB) gives more throughput for
//! every key added, so the limit climbs to the pipeline's `concurrency`. A store that thrashes
//! under too many requests at once (timeouts, retries, a server that slows as its queue
//! grows) gives less past some point, so the limit comes back to where throughput peaks.
//!
//! Measured first (issue 34's note): a latency estimate (TCP Vegas) settled at 11 keys on the
//! local emulator, moto, with a quarter of a fixed 64's events/s, since moto's latency grows
//! with every request while its throughput still grows too; and a climb that stopped where
//! throughput stopped rising by more than the noise settled at 8 keys, 12 % short of a fixed
//! 64 on a store whose gains past 8 are each smaller than the noise. So the limit here goes
//! up unless going up costs, and down only when going down pays:
//!
//! - Throughput is measured over windows of at least [`WINDOW`] and `8 × limit` completed
//!   keys (at least 64), so a window's figure is not one burst.
//! - The limit starts at the ceiling: on the stores most pipelines write to, that is where it
//!   stays, and a climb up from a few keys would cost every start its first second.
//! - From a steady window the limit **probes**: up by a quarter (at least one key), or down by
//!   a fifth, taking turns. A probe up is kept unless throughput fell by more than [`GAIN`];
//!   a probe down is kept only if throughput rose by more than [`GAIN`]; a kept probe goes on
//!   in its direction, a lost one goes back.
//! - Between probes the limit holds for [`HOLD`] windows, twice as many after each lost probe
//!   (up to [`MAX_HOLD`]), so a limit that is right costs a probe now and then, not every
//!   other window.
//! - Windows where the consumer held less than half the limit at its busiest say nothing
//!   about the store and are dropped.

use std::time::Duration;

// tokio's clock, so that a simulation on a paused clock sees the same limits for a seed.
use tokio::time::Instant;

/// The shortest window of completions.
pub const WINDOW: Duration = Duration::from_millis(100);
/// The fewest completions in a window, and per key of the limit.
const MIN_DONE: usize = 64;
/// Completions per key of the limit in a window.
const DONE_PER_KEY: usize = 8;
/// The change in throughput that counts: more than noise between two windows.
const GAIN: f64 = 0.08;
/// Steady windows between probes, at first.
const HOLD: u32 = 2;
/// Steady windows before the first probe after a start.
const START_HOLD: u32 = 5;
/// The most steady windows between probes.
const MAX_HOLD: u32 = 16;

/// What a window says about the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to change.
    Keep,
    /// The limit should be this.
    Set(usize),
}

/// Where the climb is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Measuring the limit in force; `left` steady windows before the next probe.
    Steady { left: u32 },
    /// Trying a limit other than `from`, whose throughput was `rate`.
    Probe { from: usize, rate: f64, up: bool },
}

/// The throughput climb for a limit between 1 and a ceiling.
#[derive(Debug)]
pub struct Climb {
    /// The most the limit may be: the pipeline's `concurrency`.
    max: usize,
    /// Where the climb is.
    phase: Phase,
    /// Steady windows between probes now.
    hold: u32,
    /// The direction of the next probe.
    next_up: bool,
    /// The throughput of the last steady window.
    steady: Option<f64>,
    /// When the current window started (None: at its first completion).
    started: Option<Instant>,
    /// Keys completed in the window.
    done: u32,
    /// The most keys out at once during the window.
    peak: usize,
}

impl Climb {
    /// A climb for a limit of at most `max` (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            // A start's first windows run while the consumer warms up: several steady windows
            // before the first probe, each probe compared with the best of them.
            phase: Phase::Steady { left: START_HOLD },
            hold: HOLD,
            next_up: true,
            steady: None,
            started: None,
            done: 0,
            peak: 0,
        }
    }

    /// Starts the window again (the limit was cut for throttling: what came before says
    /// nothing about the new limit), holding before the next probe.
    pub fn restart(&mut self) {
        self.started = None;
        self.done = 0;
        self.peak = 0;
        self.phase = Phase::Steady { left: self.hold };
        self.steady = None;
    }

    /// A key was completed, with `out` keys out at once and the limit at `limit`. At the end
    /// of a window, what the limit should be.
    pub fn completed(&mut self, out: usize, limit: usize) -> Verdict {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        self.done += 1;
        self.peak = self.peak.max(out);
        let elapsed = now.duration_since(started);
        if elapsed < WINDOW || (self.done as usize) < (DONE_PER_KEY * limit).max(MIN_DONE) {
            return Verdict::Keep;
        }
        let rate = f64::from(self.done) / elapsed.as_secs_f64();
        let used = self.peak * 2 >= limit;
        self.started = Some(now);
        self.done = 0;
        self.peak = 0;
        if !used {
            // The consumer did not use the limit: no evidence either way.
            return Verdict::Keep;
        }
        match self.phase {
            Phase::Steady { left } if left > 0 => {
                // The best window at this limit: a slow one (a start, a pause of the host)
                // does not make a probe down look like a gain.
                self.steady = Some(self.steady.map_or(rate, |best| best.max(rate)));
                self.phase = Phase::Steady { left: left - 1 };
                Verdict::Keep
            }
            Phase::Steady { .. } => {
                let base = self.steady.map_or(rate, |best| best.max(rate));
                self.probe(limit, base, self.next_up)
            }
            Phase::Probe {
                from,
                rate: before,
                up,
            } => {
                let kept = if up {
                    rate >= before * (1.0 - GAIN)
                } else {
                    rate > before * (1.0 + GAIN)
                };
                if kept {
                    self.hold = HOLD;
                    self.steady = None;
                    self.probe(limit, rate, up)
                } else {
                    self.hold = (self.hold * 2).min(MAX_HOLD);
                    self.next_up = !up;
                    self.phase = Phase::Steady { left: self.hold };
                    self.steady = Some(before);
                    Verdict::Set(from)
                }
            }
        }
    }

    /// Tries the next limit from `limit` (whose throughput is `rate`) in direction `up`; at a
    /// bound, holds and turns.
    fn probe(&mut self, limit: usize, rate: f64, up: bool) -> Verdict {
        let next = if up {
            (limit + (limit / 4).max(1)).min(self.max)
        } else {
            limit.saturating_sub((limit / 5).max(1)).max(1)
        };
        if next == limit {
            self.next_up = !up;
            self.phase = Phase::Steady { left: self.hold };
            self.steady = Some(self.steady.map_or(rate, |best| best.max(rate)));
            return Verdict::Keep;
        }
        self.next_up = !up;
        self.phase = Phase::Probe {
            from: limit,
            rate,
            up,
        };
        Verdict::Set(next)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Runs the climb for `seconds` against a store that completes `rate(limit)` keys a
    /// second with every key out, a millisecond at a time; the limits it went through.
    async fn run(max: usize, rate: impl Fn(usize) -> f64, seconds: u64) -> Vec<usize> {
        let mut climb = Climb::new(max);
        let mut limit = max;
        let mut limits = Vec::new();
        let mut owed = 0.0;
        for _ in 0..seconds * 1000 {
            tokio::time::advance(Duration::from_millis(1)).await;
            owed += rate(limit) / 1000.0;
            while owed >= 1.0 {
                owed -= 1.0;
                if let Verdict::Set(next) = climb.completed(limit, limit) {
                    limit = next;
                    limits.push(limit);
                }
            }
        }
        limits.push(limit);
        limits
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_takes_any_number_at_once_is_given_the_ceiling() {
        // 4 ms a request, any number at once: throughput grows with every key.
        let limits = run(64, |l| l as f64 / 0.004, 30).await;
        // The last key up adds less than the noise a probe must beat, so the limit may settle
        // one below; probes down never stick.
        let late = &limits[limits.len() / 2..];
        assert!(late.iter().all(|&l| l >= 51), "{limits:?}");
        assert!(limits.last().is_some_and(|&l| l >= 63), "{limits:?}");
    }

    /// A store that peaks at 10 at once, and past that thrashes: its throughput falls as
    /// more keys wait on it.
    pub(crate) fn thrashing(l: usize) -> f64 {
        if l <= 10 {
            l as f64 * 50.0
        } else {
            5000.0 / l as f64
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_thrashes_past_ten_at_once_is_given_about_ten() {
        // A thrashing store completes few keys a second: windows are long.
        let limits = run(64, thrashing, 600).await;
        let late = &limits[limits.len() / 2..];
        assert!(late.iter().all(|&l| (7..=13).contains(&l)), "{limits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_whose_gains_are_smaller_than_the_noise_keeps_the_ceiling() {
        // Half the throughput at 8 keys, then a little more for each doubling.
        let limits = run(64, |l| 400.0 + (l as f64).log2() * 30.0, 30).await;
        let late = &limits[limits.len() / 2..];
        assert!(late.iter().all(|&l| l >= 51), "{limits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_started_too_high_comes_down_to_where_throughput_peaks() {
        let mut climb = Climb::new(64);
        let mut limit = 64;
        for _ in 0..40_000 {
            tokio::time::advance(Duration::from_secs_f64(1.0 / thrashing(limit))).await;
            if let Verdict::Set(next) = climb.completed(limit, limit) {
                limit = next;
            }
        }
        assert!((7..=13).contains(&limit), "{limit}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_the_consumer_does_not_use_is_left_alone() {
        let mut climb = Climb::new(64);
        for _ in 0..2_000 {
            tokio::time::advance(Duration::from_millis(1)).await;
            // Two keys out of a limit of 32: the store is not what limits the rate.
            assert_eq!(climb.completed(2, 32), Verdict::Keep);
        }
    }
}
