//! A key-ordered parallel consumer: the KEY ordering mode of Confluent's Parallel Consumer,
//! in Rust. Messages are read ahead into a queue per key; a key's next event starts only when
//! its previous one has finished, and up to `concurrency` keys run at once (Ordo's own
//! setting, so the two have the same maximum concurrency). What it does not do is what Ordo
//! adds: a key's queued events are not folded into one write, and no record is cached, so
//! every event is read, merged through the plugin and conditionally written on its own (an
//! [`Applier`] without a cache, one event per call). An offset is stored for commit only when
//! it and every earlier offset of its partition are done (auto-commit on, automatic offset
//! store off, as rust-rdkafka's `at_least_once` example has it).
//!
//! The read-ahead is bounded at [`BUFFER_PER_SLOT`] × `concurrency` queued events, as the
//! Parallel Consumer bounds its own buffer. A failed apply is retried after a pause, as the
//! Parallel Consumer retries a failed record; an event the plugin rejects fails the benchmark
//! (every benchmark event is valid).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ordo::pipeline::{Applier, Outcome};
use ordo::store::Store;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinSet;

/// Events read ahead per unit of concurrency.
pub const BUFFER_PER_SLOT: usize = 4;
/// Tries of one event before the benchmark gives up on it.
const ATTEMPTS: usize = 20;
/// The pause between two tries of one event.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What one run of the consumer did.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// Events per second from the first settled event to the last.
    pub rate: f64,
    /// Events whose write went through (the applier's word; the benchmark counts the store's
    /// side too).
    pub written: usize,
}

/// Which events may start: one per key at a time, each key's in the order received.
#[derive(Debug)]
pub struct Scheduler<M> {
    /// Events received and not started, per key, in order.
    queues: HashMap<Vec<u8>, VecDeque<M>>,
    /// Keys with an event running.
    busy: HashSet<Vec<u8>>,
    /// Keys not busy with an event queued, in the order they became so: the next to start.
    ready: VecDeque<Vec<u8>>,
    /// Events queued, over every key.
    queued: usize,
}

impl<M> Default for Scheduler<M> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            busy: HashSet::new(),
            ready: VecDeque::new(),
            queued: 0,
        }
    }
}

impl<M> Scheduler<M> {
    /// Queues `event` behind the earlier events of `key`.
    pub fn push(&mut self, key: Vec<u8>, event: M) {
        let queue = self.queues.entry(key.clone()).or_default();
        let was_empty = queue.is_empty();
        queue.push_back(event);
        self.queued += 1;
        if was_empty && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
    }

    /// The next event that may start, and its key, now marked busy.
    pub fn start_next(&mut self) -> Option<(Vec<u8>, M)> {
        let key = self.ready.pop_front()?;
        let queue = self.queues.get_mut(&key)?;
        let event = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&key);
        }
        self.queued -= 1;
        self.busy.insert(key.clone());
        Some((key, event))
    }

    /// `key`'s running event is done: its next one, if any, may start.
    pub fn done(&mut self, key: &[u8]) {
        self.busy.remove(key);
        if self.queues.contains_key(key) {
            self.ready.push_back(key.to_vec());
        }
    }

    /// Events received and not started.
    pub fn queued(&self) -> usize {
        self.queued
    }
}

/// The offsets of one partition received and not yet done.
#[derive(Debug, Default)]
struct Pending {
    offsets: BTreeSet<i64>,
    highest: Option<i64>,
}

impl Pending {
    fn start(&mut self, offset: i64) {
        self.offsets.insert(offset);
        self.highest = Some(self.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Marks `offset` done; the next offset a restarted consumer must read.
    fn finish(&mut self, offset: i64) -> Option<i64> {
        self.offsets.remove(&offset);
        self.offsets
            .first()
            .copied()
            .or_else(|| self.highest.map(|h| h + 1))
    }
}

/// Applies `message` on its own, retrying a failure after a pause.
async fn apply<S: Store>(applier: &Applier<S>, message: &OwnedMessage) -> anyhow::Result<Outcome> {
    let mut attempt = 1;
    loop {
        match applier
            .apply(message.key(), message.payload().unwrap_or_default())
            .await
        {
            Ok(outcome) => return Ok(outcome),
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "The key-ordered peer retries an event.");
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "partition {} offset {}: {ATTEMPTS} tries",
                        message.partition(),
                        message.offset()
                    )
                })
            }
        }
    }
}

/// Consumes `n` events of `topic` from `consumer` (subscribed, automatic offset store off),
/// applying each on its own through `applier` (built without a record cache), up to
/// `concurrency` keys at once.
pub async fn run<S: Store>(
    consumer: &StreamConsumer,
    topic: &str,
    applier: Arc<Applier<S>>,
    concurrency: usize,
    n: usize,
) -> anyhow::Result<Settled> {
    let concurrency = concurrency.max(1);
    let mut scheduler = Scheduler::default();
    let mut pending: HashMap<i32, Pending> = HashMap::new();
    let mut running = JoinSet::new();
    let (mut settled, mut written, mut start) = (0, 0, None);
    while settled < n {
        while running.len() < concurrency {
            let Some((key, message)) = scheduler.start_next() else {
                break;
            };
            let applier = Arc::clone(&applier);
            running.spawn(async move {
                let outcome = apply(&applier, &message).await;
                (key, message.partition(), message.offset(), outcome)
            });
        }
        tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let (key, partition, offset, outcome) = joined.context("an event's task")?;
                match outcome? {
                    Outcome::Written => written += 1,
                    Outcome::Skipped(_) => {}
                    Outcome::Rejected(reason) => anyhow::bail!(
                        "the key-ordered peer rejected a valid event (partition {partition}, offset {offset}): {reason:?}"
                    ),
                }
                settled += 1;
                start.get_or_insert_with(Instant::now);
                scheduler.done(&key);
                if let Some(point) = pending.entry(partition).or_default().finish(offset) {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(topic, partition, Offset::Offset(point))?;
                    consumer.store_offsets(&tpl)?;
                }
            }
            received = consumer.recv(), if scheduler.queued() < BUFFER_PER_SLOT * concurrency => {
                let message = received?.detach();
                pending.entry(message.partition()).or_default().start(message.offset());
                scheduler.push(message.key().unwrap_or_default().to_vec(), message);
            }
            else => anyhow::bail!("the key-ordered peer has nothing running and may read nothing"),
        }
    }
    // From the first settled event on, so joining the group is not counted.
    let rate = start.map_or(f64::NAN, |s: Instant| {
        (n - 1) as f64 / s.elapsed().as_secs_f64()
    });
    Ok(Settled { rate, written })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One seed, one schedule: events of 8 keys arrive in a random order, and random running
    /// events finish, with at most 3 running at once. The oracle: never two events of one key
    /// at once, each key's events start in the order received, and every event starts.
    #[test]
    fn one_event_per_key_at_a_time_in_order_many_keys_at_once() {
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut s = Scheduler::default();
            let mut next_seq = [0usize; 8];
            let mut started_seq = [0usize; 8];
            let mut running: Vec<(Vec<u8>, (usize, usize))> = Vec::new();
            let (mut started, mut most_at_once) = (0, 0);
            let total = 80;
            let mut sent = 0;
            while started < total || !running.is_empty() {
                if sent < total && rng.bool() {
                    let k = rng.usize(..8);
                    s.push(vec![k as u8], (k, next_seq[k]));
                    next_seq[k] += 1;
                    sent += 1;
                }
                while running.len() < 3 {
                    let Some((key, (k, seq))) = s.start_next() else {
                        break;
                    };
                    assert!(
                        running.iter().all(|(r, _)| *r != key),
                        "seed {seed}: key {k} twice at once"
                    );
                    assert_eq!(seq, started_seq[k], "seed {seed}: key {k} out of order");
                    started_seq[k] += 1;
                    started += 1;
                    running.push((key, (k, seq)));
                }
                most_at_once = most_at_once.max(running.len());
                if !running.is_empty() && (rng.bool() || sent == total) {
                    let (key, _) = running.swap_remove(rng.usize(..running.len()));
                    s.done(&key);
                }
            }
            assert_eq!(s.queued(), 0, "seed {seed}");
            assert_eq!(most_at_once, 3, "seed {seed}: keys ran one at a time");
        }
    }

    #[test]
    fn the_commit_point_waits_for_the_lowest_offset_not_done() {
        let mut p = Pending::default();
        for o in 10..13 {
            p.start(o);
        }
        assert_eq!(p.finish(11), Some(10));
        assert_eq!(p.finish(10), Some(12));
        assert_eq!(p.finish(12), Some(13));
    }
}
