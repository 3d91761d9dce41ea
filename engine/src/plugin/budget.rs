//! The time limit of one plugin call, counted in CPU time on the thread that runs it.
//!
//! Wall-clock time depends on the host: on a busy machine the operating system may leave a
//! call's thread waiting for tens of milliseconds, and a wall-clock limit would then reject an
//! event that a plugin handles in microseconds. So the limit counts what the call itself
//! uses. The engine's epoch advances every [`EPOCH_TICK`]; a call starts with a deadline one
//! tick away, and at each tick it reaches, [`CallBudget::check`] adds the CPU time its thread
//! used since the last one. Calls that finish within a tick (nearly all) never pay for a
//! reading of the clock. The stretch before the first tick is counted as a whole tick, at most
//! what it can have used. A call that has waited [`WALL_CAP_FACTOR`] times its limit on the
//! wall clock stops too, so a starved host still sheds work; where no thread clock is
//! available, wall-clock time is all that counts.

use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use wasmtime::UpdateDeadline;

/// How often the epoch advances: the granularity at which a call's time is checked.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);
/// A call stops once it has been running this many times its CPU limit on the wall clock.
pub const WALL_CAP_FACTOR: u32 = 20;

/// Time accounting of the call in progress on one instance.
#[derive(Debug)]
pub(crate) struct CallBudget {
    /// CPU time one call may use.
    limit: Duration,
    /// When the call started.
    started: Instant,
    /// The thread's CPU clock at the previous check (none before the first).
    last: Option<Duration>,
    /// CPU time counted so far.
    used: Duration,
    /// The call was stopped at the wall-clock cap with CPU time left: the host starved it.
    starved: bool,
}

impl CallBudget {
    /// A budget of `limit` CPU time per call.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            started: Instant::now(),
            last: None,
            used: Duration::ZERO,
            starved: false,
        }
    }

    /// Resets the accounting for a new call; its first check comes one tick later.
    pub(crate) fn start(&mut self) {
        self.started = Instant::now();
        self.last = None;
        self.used = Duration::ZERO;
        self.starved = false;
    }

    /// Whether the last call was stopped by the wall-clock cap before it used its CPU limit:
    /// the host's fault, not the event's.
    pub(crate) fn starved(&self) -> bool {
        self.starved
    }

    /// Called on the call's thread when it reaches an epoch deadline: go on for another tick,
    /// or stop the call.
    pub(crate) fn check(&mut self) -> UpdateDeadline {
        let wall = self.started.elapsed();
        let now = ThreadTime::try_now().ok().map(|t| t.as_duration());
        self.used = match (self.last, now) {
            (Some(last), Some(now)) => self.used + now.saturating_sub(last),
            (None, Some(_)) => EPOCH_TICK,
            (_, None) => wall,
        };
        self.last = now;
        if self.used >= self.limit || wall >= self.limit * WALL_CAP_FACTOR {
            self.starved = self.used < self.limit;
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(budget: &mut CallBudget) -> bool {
        matches!(budget.check(), UpdateDeadline::Interrupt)
    }

    /// Burns `cpu` of this thread's CPU time.
    fn spin(cpu: Duration) {
        let start = ThreadTime::now();
        while start.elapsed() < cpu {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn waiting_off_the_cpu_does_not_count_but_running_does() {
        let mut budget = CallBudget::new(Duration::from_millis(20));
        budget.start();
        assert!(!stops(&mut budget), "the first tick counts as one tick");
        // Descheduled (here: asleep) for longer than the limit: no CPU used, the call goes on.
        std::thread::sleep(Duration::from_millis(40));
        assert!(!stops(&mut budget), "{budget:?}");
        spin(Duration::from_millis(25));
        assert!(stops(&mut budget), "{budget:?}");
        assert!(!budget.starved(), "its own CPU use stopped it: {budget:?}");
    }

    #[test]
    fn a_call_stalled_past_the_wall_clock_cap_stops() {
        let mut budget = CallBudget::new(Duration::from_millis(2));
        budget.start();
        assert!(!stops(&mut budget));
        std::thread::sleep(Duration::from_millis(2) * WALL_CAP_FACTOR);
        assert!(stops(&mut budget), "{budget:?}");
        assert!(budget.starved(), "stopped with CPU time left: {budget:?}");
    }

    #[test]
    fn each_call_starts_with_a_full_budget() {
        let mut budget = CallBudget::new(Duration::from_millis(5));
        budget.start();
        budget.check();
        spin(Duration::from_millis(6));
        assert!(stops(&mut budget));
        budget.start();
        assert!(!stops(&mut budget), "{budget:?}");
    }
}
