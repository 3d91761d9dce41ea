//! A pipeline's consumer group: applies each event, then stores its offset.
//!
//! Offsets are stored only after the event's effect is durable in the table (or the event is
//! in the dead-letter topic); librdkafka commits stored offsets in the background and once
//! more at shutdown. A crash therefore replays events, never skips them, and replays are
//! harmless because writes are conditional and merges are idempotent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use tracing::{debug, info, warn};

use super::{BusError, Publisher};
use crate::pipeline::{Applier, Outcome};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// First retry delay after a failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What a consumer reads and where it sends what it cannot apply.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The pipeline, for logs and dead-letter headers.
    pub pipeline: String,
    /// Bootstrap brokers.
    pub brokers: String,
    /// Consumer group id.
    pub group: String,
    /// The topic to read.
    pub topic: String,
    /// Where rejected events go.
    pub dead_letter_topic: String,
}

/// Logs partition assignments: one line per change, never per event.
struct LoggingContext {
    /// The pipeline, for the log lines.
    pipeline: String,
}

impl ClientContext for LoggingContext {}

impl ConsumerContext for LoggingContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(pipeline = %self.pipeline, partitions = %describe(tpl), "Partitions assigned.")
            }
            Rebalance::Revoke(tpl) => {
                info!(pipeline = %self.pipeline, partitions = %describe(tpl), "Partitions revoked.")
            }
            Rebalance::Error(e) => {
                warn!(pipeline = %self.pipeline, error = %e, "Rebalance failed.")
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Consumes until `shutdown`, applying each event with `applier`.
pub async fn run<S: Store, P: Publisher>(
    settings: ConsumerSettings,
    applier: Arc<Applier<S>>,
    dead_letters: Arc<P>,
    mut shutdown: Shutdown,
) -> Result<(), BusError> {
    let consumer: StreamConsumer<LoggingContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group)
        .set("client.id", "ordo")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(LoggingContext {
            pipeline: settings.pipeline.clone(),
        })
        .map_err(|e| BusError::Client(e.to_string()))?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(|e| BusError::Client(format!("subscribe to `{}`: {e}", settings.topic)))?;
    info!(pipeline = %settings.pipeline, topic = %settings.topic, group = %settings.group, "Consumer started.");

    loop {
        let message = tokio::select! {
            _ = shutdown.wait() => break,
            received = consumer.recv() => match received {
                Ok(message) => message,
                Err(e) => {
                    warn!(pipeline = %settings.pipeline, error = %e, "Kafka consumer error.");
                    continue;
                }
            },
        };
        let handled = handle(&settings, &applier, &*dead_letters, &message, &mut shutdown).await;
        if !handled {
            break; // shutdown interrupted the retries; the offset stays unstored and replays.
        }
        if let Err(e) = consumer.store_offset_from_message(&message) {
            warn!(pipeline = %settings.pipeline, error = %e, "Storing an offset failed; the event may be applied again.");
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is also reported as an error; harmless.
        debug!(pipeline = %settings.pipeline, error = %e, "Final commit.");
    }
    info!(pipeline = %settings.pipeline, "Consumer stopped.");
    Ok(())
}

/// Applies one message, retrying failures until done; `false` if shutdown came first.
async fn handle<S: Store, P: Publisher>(
    settings: &ConsumerSettings,
    applier: &Applier<S>,
    dead_letters: &P,
    message: &rdkafka::message::BorrowedMessage<'_>,
    shutdown: &mut Shutdown,
) -> bool {
    let payload = message.payload().unwrap_or_default();
    let mut delay = BACKOFF_START;
    loop {
        let error = match applier.apply(message.key(), payload).await {
            Ok(Outcome::Written) => return true,
            Ok(Outcome::Skipped(why)) => {
                debug!(pipeline = %settings.pipeline, offset = message.offset(), reason = %why, "Stale event skipped.");
                return true;
            }
            Ok(Outcome::Rejected(reason)) => {
                match dead_letter(settings, dead_letters, message, &reason).await {
                    Ok(()) => return true,
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        warn!(pipeline = %settings.pipeline, partition = message.partition(), offset = message.offset(), error = %error, retry_in = ?delay, "Event not applied yet; retrying.");
        tokio::select! {
            _ = shutdown.wait() => return false,
            _ = tokio::time::sleep(jittered(delay)) => {}
        }
        delay = (delay * 2).min(BACKOFF_CAP);
    }
}

/// Sends the original message to the dead-letter topic with headers saying why and whence.
async fn dead_letter<P: Publisher>(
    settings: &ConsumerSettings,
    dead_letters: &P,
    message: &rdkafka::message::BorrowedMessage<'_>,
    reason: &str,
) -> Result<(), BusError> {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let headers = [
        ("ordo-reason", reason),
        ("ordo-pipeline", settings.pipeline.as_str()),
        ("ordo-original-topic", message.topic()),
        ("ordo-original-partition", partition.as_str()),
        ("ordo-original-offset", offset.as_str()),
    ];
    let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
    let payload = message.payload().unwrap_or_default();
    dead_letters
        .publish(&settings.dead_letter_topic, &key, payload, &headers)
        .await?;
    warn!(pipeline = %settings.pipeline, partition = message.partition(), offset = message.offset(), reason, topic = %settings.dead_letter_topic, "Event dead-lettered.");
    Ok(())
}

/// `delay` plus up to half of it again, so retrying consumers do not stampede together.
fn jittered(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = delay.as_nanos() as u64 / 2;
    delay
        + Duration::from_nanos(if spread == 0 {
            0
        } else {
            u64::from(nanos) % spread
        })
}
