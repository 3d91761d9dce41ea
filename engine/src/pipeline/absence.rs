//! Whether a key the record cache does not hold is likely new to the table, so its first
//! write can go out without a read.
//!
//! A replica catching up on entities it has never seen (a first load, a new topic) would read
//! each key only to learn it is absent: half its store requests wasted. The applier instead
//! writes such a key at once, conditioned on its absence; the condition keeps that safe, as it
//! keeps the record cache safe: when the key does exist the write fails, the key is read and
//! merged again, as after any lost race. A wrong guess costs one failed conditional write
//! (which DynamoDB bills as a write), so the applier guesses only while most keys it had to
//! look up turned out absent: each lookup's answer moves a score, an absent key up by one and
//! a present key down by two, so guessing pays off (more than two in three absent) before the
//! score stays above zero. It starts below zero: a new engine reads first, as it would on a
//! table that is already full.

use std::sync::atomic::{AtomicI32, Ordering};

/// Where the score starts: this many absent keys (net) before the first guess.
const START: i32 = -8;
/// The score's bounds, so a long run of one answer is forgotten within a few dozen keys.
const BOUND: i32 = 32;

/// The running score of lookups that found no record.
#[derive(Debug)]
pub struct Absence {
    /// Above zero: guess absent.
    score: AtomicI32,
    /// Whether guessing is on at all.
    on: bool,
}

impl Absence {
    /// A tracker that guesses (`on`) or never does.
    pub fn new(on: bool) -> Self {
        Self {
            score: AtomicI32::new(START),
            on,
        }
    }

    /// Whether to write a key the cache does not hold without reading it first.
    pub fn likely(&self) -> bool {
        self.on && self.score.load(Ordering::Relaxed) > 0
    }

    /// A lookup (a read, or a guessed write) found the key `absent` or not.
    pub fn saw(&self, absent: bool) {
        let step = if absent { 1 } else { -2 };
        // A lost update between two workers only blurs a running estimate.
        let _ = self
            .score
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((s + step).clamp(-BOUND, BOUND))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_engine_reads_until_most_keys_turn_out_absent() {
        let absence = Absence::new(true);
        assert!(!absence.likely());
        for _ in 0..8 {
            absence.saw(true);
        }
        assert!(
            !absence.likely(),
            "eight net absent keys before the first guess"
        );
        absence.saw(true);
        assert!(absence.likely());
    }

    #[test]
    fn keys_that_exist_stop_the_guessing() {
        let absence = Absence::new(true);
        for _ in 0..100 {
            absence.saw(true);
        }
        // Half of the keys present: the guesses cost more than they save.
        for _ in 0..40 {
            absence.saw(true);
            absence.saw(true);
            absence.saw(false);
            absence.saw(false);
        }
        assert!(!absence.likely());
    }

    #[test]
    fn off_never_guesses() {
        let absence = Absence::new(false);
        for _ in 0..100 {
            absence.saw(true);
        }
        assert!(!absence.likely());
    }
}
