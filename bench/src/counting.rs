//! Counting a design's store requests from outside the design: reads, conditional writes
//! tried, and writes that went through. The counting proxy ([`crate::proxy`]) fills a
//! [`Counter`] for whatever talks to moto over HTTP (the Python peer included); the wire model
//! ([`crate::wire`]) counts its own requests, which [`crate::target`] reads as [`Counts`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a design asked of its store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Reads (`GetItem`).
    pub gets: u64,
    /// Conditional writes tried (`PutItem`), answered, whether or not they went through.
    pub puts: u64,
    /// Conditional writes that went through.
    pub written: u64,
    /// The time from the first write answered to the latest: the window over which a design
    /// that reports nothing itself (the Python peer) is timed.
    pub puts_span: Option<Duration>,
}

impl Counts {
    /// Every request that DynamoDB bills: reads, and writes tried (a failed condition costs a
    /// write too).
    pub fn requests(&self) -> u64 {
        self.gets + self.puts
    }
}

/// Counts requests as they are answered; shared by whoever answers them.
#[derive(Debug, Default)]
pub struct Counter {
    gets: AtomicU64,
    puts: AtomicU64,
    written: AtomicU64,
    puts_window: Mutex<Option<(Instant, Instant)>>,
}

impl Counter {
    /// One read answered.
    pub fn get(&self) {
        self.gets.fetch_add(1, Ordering::Relaxed);
    }

    /// One conditional write answered; `written` when it went through.
    pub fn put(&self, written: bool) {
        let now = Instant::now();
        if let Ok(mut window) = self.puts_window.lock() {
            let first = window.map_or(now, |(first, _)| first);
            *window = Some((first, now));
        }
        if written {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        // Last, so a reader that sees the count also sees the window that goes with it.
        self.puts.fetch_add(1, Ordering::Release);
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let puts = self.puts.load(Ordering::Acquire);
        Counts {
            gets: self.gets.load(Ordering::Relaxed),
            puts,
            written: self.written.load(Ordering::Relaxed),
            puts_span: self
                .puts_window
                .lock()
                .ok()
                .and_then(|w| w.map(|(first, last)| last - first)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_lost_conditions_are_counted() {
        let counter = Counter::default();
        assert_eq!(counter.counts().puts_span, None);
        counter.get();
        counter.put(true);
        counter.put(false);
        let counts = counter.counts();
        assert_eq!((counts.gets, counts.puts, counts.written), (1, 2, 1));
        assert_eq!(counts.requests(), 3);
        assert!(counts.puts_span.is_some());
    }
}
