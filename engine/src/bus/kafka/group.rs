//! A pipeline's member of its Kafka consumer group: cooperative-sticky assignment, offsets
//! stored by the apply loop only when durable and committed by librdkafka in the background,
//! revocations fenced and reported to the apply loop, each partition's lag kept for
//! `/metrics`, and a [`super::watchdog`] that rejoins when the group leaves this member idle
//! while work stands still.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::context::OrdoContext;
use tracing::{info, warn};

use crate::bus::{BusError, Consumer, Message, Revocations, Revoker};
use crate::metrics::Lag;

/// Longest a fetch waits for data, by default (`--fetch-wait-ms`). Apache Kafka answers a
/// fetch as soon as data is there, so this only sets how often an idle consumer asks. tansu
/// holds a fetch for the whole wait even when data arrives meanwhile, so there it is also
/// latency: measured here (`make bench`), POST → visible p50/p99 was 35/55 ms at 25 ms and
/// 22/33 ms at 10 ms (5 ms gained nothing more), for 23% → 43% of a core in an idle tansu.
/// librdkafka's 500 ms default read a third as fast from tansu as 25 ms.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(10);

/// How long a revocation waits for the revoked partitions' workers to finish the write they
/// are in: longer than one DynamoDB request may take with the SDK's retries
/// ([`crate::store::dynamo::timeouts`]), well under librdkafka's `max.poll.interval.ms`.
pub const REVOKE_WAIT: Duration = Duration::from_secs(20);

/// What a group member reads.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// The pipeline, for logs.
    pub pipeline: String,
    /// Consumer group id.
    pub group: String,
    /// The topic to read.
    pub topic: String,
    /// Longest a fetch waits for data ([`DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
}

/// Logs assignments (one line per change), reports revocations, keeps the lag.
pub(super) struct GroupContext {
    /// What every client of the engine runs with (the MSK IAM signer).
    base: OrdoContext,
    /// The pipeline, for the log lines.
    pipeline: String,
    /// Fences revoked partitions and tells the apply loop.
    revoker: Revoker,
    /// The topic, whose partitions' lag is reported.
    topic: String,
    /// Where the lag goes.
    lag: Lag,
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.base.oauth_token()
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.base.report(&error, reason);
    }

    /// librdkafka's periodic statistics: keeps each assigned partition's consumer lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            self.lag.set(topic.partitions.values().filter_map(|p| {
                let lag = u64::try_from(p.consumer_lag).ok();
                (p.partition >= 0).then_some(p.partition).zip(lag)
            }));
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(pipeline = %self.pipeline, partitions = %describe(tpl), "Partitions revoked; abandoning their queued events (the next owner replays them) once their workers stop.");
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            self.revoker.revoke(&partitions, REVOKE_WAIT);
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(pipeline = %self.pipeline, partitions = %describe(tpl), "Partitions assigned.")
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                warn!(pipeline = %self.pipeline, error = %e, "Rebalance failed.")
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| e.partition().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A joined member of a pipeline's consumer group.
pub struct KafkaGroup {
    /// rdkafka's consumer, subscribed to the topic (shared with its watchdog).
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// The topic, for offsets.
    topic: String,
}

impl KafkaGroup {
    /// Joins `settings.group` on `settings.topic` with `config`; revocations arrive on the
    /// returned receiver, lag goes to `lag`.
    pub(super) fn subscribe(
        mut config: ClientConfig,
        base: OrdoContext,
        settings: &GroupSettings,
        lag: Lag,
    ) -> Result<(Self, Revocations), BusError> {
        let (revoker, revocations) = crate::bus::revocations();
        let consumer: StreamConsumer<GroupContext> = config
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // A crashed member's partitions move after 10 s rather than librdkafka's 45 s.
            .set("session.timeout.ms", "10000")
            .set(
                "fetch.wait.max.ms",
                settings.fetch_wait.as_millis().max(1).to_string(),
            )
            .set("heartbeat.interval.ms", "3000")
            .set("statistics.interval.ms", "5000")
            .create_with_context(GroupContext {
                base,
                pipeline: settings.pipeline.clone(),
                revoker,
                topic: settings.topic.clone(),
                lag,
            })
            .map_err(|e| BusError::Client(e.to_string()))?;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(|e| BusError::Client(format!("subscribe to `{}`: {e}", settings.topic)))?;
        info!(pipeline = %settings.pipeline, topic = %settings.topic, group = %settings.group, "Joined the consumer group.");
        let consumer = Arc::new(consumer);
        super::watchdog::watch(
            Arc::downgrade(&consumer),
            settings.pipeline.clone(),
            settings.topic.clone(),
        );
        Ok((
            Self {
                consumer,
                topic: settings.topic.clone(),
            },
            revocations,
        ))
    }
}

impl Consumer for KafkaGroup {
    async fn recv(&self) -> Result<Message, BusError> {
        let message = self.consumer.recv().await.map_err(|e| BusError::Read {
            topic: self.topic.clone(),
            reason: e.to_string(),
        })?;
        Ok(super::message_of(&message))
    }

    fn store_offset(&self, partition: i32, offset: i64) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .map_err(|e| BusError::Client(e.to_string()))?;
        self.consumer
            .store_offsets(&tpl)
            .map_err(|e| BusError::Client(e.to_string()))
    }

    fn commit(&self) -> Result<(), BusError> {
        self.consumer
            .commit_consumer_state(CommitMode::Sync)
            .map_err(|e| BusError::Client(e.to_string()))
    }
}
