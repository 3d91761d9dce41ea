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

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::group::GroupContext;

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
pub(super) fn watch(consumer: Weak<StreamConsumer<GroupContext>>, pipeline: String, topic: String) {
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

    fn run(mut self, consumer: &Weak<StreamConsumer<GroupContext>>) {
        loop {
            std::thread::sleep(CHECK_EVERY);
            let Some(consumer) = consumer.upgrade() else {
                return;
            };
            self.check(&consumer);
        }
    }

    fn check(&mut self, consumer: &StreamConsumer<GroupContext>) {
        let idle = consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(false);
        if !idle {
            self.idle_since = None;
            self.last.clear();
            self.wait = IDLE_BEFORE_CHECKING;
            return;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        let progress = match self.progress(consumer) {
            Ok(progress) => progress,
            Err(e) => {
                debug!(pipeline = %self.pipeline, error = %e, "Group watchdog could not read the group's offsets.");
                return;
            }
        };
        let stalled: Vec<i32> = progress
            .iter()
            .filter(|(p, (committed, end))| committed < end && self.last.get(p) == Some(committed))
            .map(|(p, _)| *p)
            .collect();
        self.last = progress.into_iter().map(|(p, (c, _))| (p, c)).collect();
        if since.elapsed() < self.wait || stalled.is_empty() {
            return;
        }
        warn!(pipeline = %self.pipeline, partitions = ?stalled, idle_for = ?Duration::from_secs(since.elapsed().as_secs()), "This member holds no partition while others' events wait with no progress; rejoining the group so it assigns them anew.");
        consumer.unsubscribe();
        if let Err(e) = consumer.subscribe(&[&self.topic]) {
            warn!(pipeline = %self.pipeline, error = %e, "Rejoining the group failed; trying again at the next check.");
        }
        self.idle_since = None;
        self.last.clear();
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
    }

    /// Per partition of the topic: (committed offset of the group, end of the log).
    fn progress(
        &self,
        consumer: &StreamConsumer<GroupContext>,
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
