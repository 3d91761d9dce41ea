//! A group member that holds no partitions while the group's work stands still rejoins.
//!
//! After a crash, the dead member keeps its partitions until its session lapses; then the
//! group should rebalance. Apache Kafka does. tansu 0.6 may not: a member restarted at once
//! can be left with an empty assignment while the dead member's partitions stay orphaned,
//! their committed offsets frozen below the end of the log. So a member checks, every
//! [`CHECK_EVERY`]: when it has held no partition for [`IDLE_BEFORE_CHECKING`] and some
//! partition of its topic has events beyond its committed offset that did not move since the
//! previous check, nobody is applying them: it leaves the group and joins again, which makes
//! the coordinator assign every partition anew. On a healthy group this never fires (an idle
//! member sees its peers' offsets move); each firing doubles the wait before the next one
//! (up to [`LONGEST_WAIT`]), so a group whose every member is stuck (DynamoDB away) is not
//! rebalanced over and over, while a member the broker keeps idle still tries again.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

/// How often membership is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(3);
/// How long a member holds no partition before it looks at the group's progress: past the
/// session timeout (10 s), when a dead member's partitions should have moved.
pub const IDLE_BEFORE_CHECKING: Duration = Duration::from_secs(12);
/// The longest wait between two rejoins: a group whose every member is stuck (DynamoDB away)
/// is rebalanced at most this often, and a member the broker keeps leaving idle tries again
/// at least this often.
pub const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// How long one broker request of a check may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches `consumer` (until it is dropped) on a thread of its own.
pub(super) fn watch<C: ConsumerContext + 'static>(
    consumer: Weak<StreamConsumer<C>>,
    pipeline: String,
    topic: String,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("ordo-watchdog-{pipeline}"))
        .spawn(move || Watchdog::new(pipeline, topic).run(&consumer));
    if let Err(e) = spawned {
        warn!(error = %e, "Group watchdog not started; a member left without partitions after a crash will wait for the broker.");
    }
}

struct Watchdog {
    pipeline: String,
    topic: String,
    /// Since when the member has held no partition.
    idle_since: Option<Instant>,
    /// Committed offsets at the previous check, per partition.
    last: HashMap<i32, i64>,
    /// How long to hold no partition before rejoining.
    wait: Duration,
}

impl Watchdog {
    fn new(pipeline: String, topic: String) -> Self {
        Self {
            pipeline,
            topic,
            idle_since: None,
            last: HashMap::new(),
            wait: IDLE_BEFORE_CHECKING,
        }
    }

    fn run<C: ConsumerContext + 'static>(mut self, consumer: &Weak<StreamConsumer<C>>) {
        loop {
            std::thread::sleep(CHECK_EVERY);
            let Some(consumer) = consumer.upgrade() else {
                return;
            };
            self.check(&consumer);
        }
    }

    fn check<C: ConsumerContext + 'static>(&mut self, consumer: &StreamConsumer<C>) {
        let idle = consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(false);
        if !idle {
            self.busy();
            return;
        }
        let now = Instant::now();
        self.idle_since.get_or_insert(now);
        let progress = match self.progress(consumer) {
            Ok(progress) => progress,
            Err(e) => {
                debug!(pipeline = %self.pipeline, error = %e, "Group watchdog could not read the group's offsets.");
                return;
            }
        };
        let idle_for = now.saturating_duration_since(self.idle_since.unwrap_or(now));
        let Some(stalled) = self.stalled(now, progress) else {
            return;
        };
        warn!(pipeline = %self.pipeline, partitions = ?stalled, idle_for = ?Duration::from_secs(idle_for.as_secs()), "This member holds no partition while others' events wait with no progress; rejoining the group so it assigns them anew.");
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[&self.topic]) {
            warn!(pipeline = %self.pipeline, error = %e, "Rejoining the group failed; trying again at the next check.");
        }
    }

    /// The member holds partitions: it is not idle, and the wait starts over.
    fn busy(&mut self) {
        self.idle_since = None;
        self.last.clear();
        self.wait = IDLE_BEFORE_CHECKING;
    }

    /// The member holds no partition at `now` and the group stands at `progress` (per
    /// partition: committed offset, end of the log). The partitions to rejoin for: those with
    /// events waiting whose committed offset has not moved since the previous check, once the
    /// member has been idle for the wait; each rejoin doubles the wait.
    fn stalled(&mut self, now: Instant, progress: HashMap<i32, (i64, i64)>) -> Option<Vec<i32>> {
        let since = *self.idle_since.get_or_insert(now);
        let mut stalled: Vec<i32> = progress
            .iter()
            .filter(|(p, (committed, end))| committed < end && self.last.get(p) == Some(committed))
            .map(|(p, _)| *p)
            .collect();
        stalled.sort_unstable();
        self.last = progress.into_iter().map(|(p, (c, _))| (p, c)).collect();
        if now.saturating_duration_since(since) < self.wait || stalled.is_empty() {
            return None;
        }
        self.idle_since = None;
        self.last.clear();
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
        Some(stalled)
    }

    /// Per partition of the topic: (committed offset of the group, end of the log).
    fn progress<C: ConsumerContext + 'static>(
        &self,
        consumer: &StreamConsumer<C>,
    ) -> Result<HashMap<i32, (i64, i64)>, rdkafka::error::KafkaError> {
        let metadata = consumer.fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, REQUEST_TIMEOUT)?;
        let mut progress = HashMap::new();
        for p in partitions {
            let (low, high) = consumer.fetch_watermarks(&self.topic, p, REQUEST_TIMEOUT)?;
            let at = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => low,
            };
            progress.insert(p, (at, high));
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check of an idle member `at` seconds in, with the group at `progress`.
    fn at(
        dog: &mut Watchdog,
        start: Instant,
        at: u64,
        progress: &[(i32, i64, i64)],
    ) -> Option<Vec<i32>> {
        let progress = progress.iter().map(|(p, c, e)| (*p, (*c, *e))).collect();
        dog.stalled(start + Duration::from_secs(at), progress)
    }

    #[test]
    fn an_idle_member_rejoins_once_others_events_stand_still_past_the_wait() {
        let (mut dog, start) = (Watchdog::new("p".into(), "t".into()), Instant::now());
        // Partition 0 has events beyond its committed offset, which never moves.
        for s in (0..12).step_by(3) {
            assert_eq!(
                at(&mut dog, start, s, &[(0, 5, 9), (1, 4, 4)]),
                None,
                "too early at {s} s"
            );
        }
        assert_eq!(
            at(&mut dog, start, 12, &[(0, 5, 9), (1, 4, 4)]),
            Some(vec![0])
        );
        // Each next rejoin waits twice as long as the one before, and never more than a minute.
        let mut now = 12;
        let mut waits = Vec::new();
        for _ in 0..4 {
            let idle_from = now;
            while at(&mut dog, start, now + 3, &[(0, 5, 9)]).is_none() {
                now += 3;
            }
            now += 3;
            waits.push(now - idle_from);
        }
        // Counted from the first check after a rejoin, one check (3 s) after it.
        assert_eq!(waits, [24 + 3, 48 + 3, 60 + 3, 60 + 3]);
    }

    #[test]
    fn an_idle_member_stays_while_the_group_moves_or_nothing_waits() {
        let (mut dog, start) = (Watchdog::new("p".into(), "t".into()), Instant::now());
        for (i, s) in (0..60).step_by(3).enumerate() {
            // Others apply partition 0 (its offset moves); partition 1 is all applied.
            let moving = (0, i as i64, 100);
            assert_eq!(
                at(&mut dog, start, s, &[moving, (1, 7, 7)]),
                None,
                "at {s} s"
            );
        }
    }

    #[test]
    fn holding_a_partition_starts_the_wait_over() {
        let (mut dog, start) = (Watchdog::new("p".into(), "t".into()), Instant::now());
        assert_eq!(at(&mut dog, start, 0, &[(0, 5, 9)]), None);
        assert_eq!(at(&mut dog, start, 9, &[(0, 5, 9)]), None);
        dog.busy();
        assert_eq!(
            at(&mut dog, start, 12, &[(0, 5, 9)]),
            None,
            "idle for 0 s only"
        );
        assert_eq!(
            at(&mut dog, start, 21, &[(0, 5, 9)]),
            None,
            "idle for 9 s only"
        );
        assert_eq!(at(&mut dog, start, 24, &[(0, 5, 9)]), Some(vec![0]));
    }
}
