//! A worker applies every queued event of one key, retrying failures with backoff, and
//! dead-letters what cannot be applied.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tracing::{debug, error, warn, Instrument as _};

use super::{Applier, Event, Outcome};
use crate::audit::{self, Action};
use crate::bus::{BusError, Message, Publisher};
use crate::config::Pipeline;
use crate::metrics::ConsumerMetrics;
use crate::plugin::{bounded, MAX_FIELD, MAX_REASON};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Header of a dead letter sent without its event, saying why the event was left out (it is
/// still in its topic, at `ordo-original-partition` and `ordo-original-offset`).
pub const EVENT_LEFT_OUT_HEADER: &str = "ordo-event-left-out";

/// What a dead letter carries.
enum Letter {
    /// The event, as it was read.
    Whole,
    /// Only the headers: the event was refused in a letter, for this reason.
    WithoutEvent(String),
}

/// First retry delay after a failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// (partition, message key): the unit of ordering.
pub type KeyId = (i32, Vec<u8>);

/// What every worker of a consumer shares.
pub struct Shared<S, P> {
    /// The pipeline: its name, dead-letter topic and retry policy.
    pub pipeline: Arc<Pipeline>,
    /// Applies events to the store through the plugin.
    pub applier: Arc<Applier<S>>,
    /// Where rejected events go.
    pub dead_letters: Arc<P>,
    /// Counters.
    pub metrics: ConsumerMetrics,
    /// Bounds how many keys are applied at once.
    pub permits: Arc<Semaphore>,
    /// Stops retries at shutdown.
    pub shutdown: Shutdown,
}

impl<S, P> Clone for Shared<S, P> {
    fn clone(&self) -> Self {
        Self {
            pipeline: Arc::clone(&self.pipeline),
            applier: Arc::clone(&self.applier),
            dead_letters: Arc::clone(&self.dead_letters),
            metrics: self.metrics.clone(),
            permits: Arc::clone(&self.permits),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// A worker's report to the dispatcher.
pub struct Done {
    /// The key worked on.
    pub key: KeyId,
    /// The partition assignment the events came from.
    pub epoch: u64,
    /// The offsets taken.
    pub offsets: Vec<i64>,
    /// Whether every one of them is durable (false: abandoned at shutdown; they replay).
    pub finished: bool,
}

impl<S: Store, P: Publisher> Shared<S, P> {
    /// Applies `messages` (one key, offset order) until done or shutdown.
    pub async fn apply(&self, key: KeyId, epoch: u64, messages: Vec<Message>) -> Done {
        let offsets = messages.iter().map(|m| m.offset).collect();
        let finished = match self.permits.acquire().await {
            Ok(_permit) => {
                self.settle(&messages)
                    .instrument(self.span_of(&messages))
                    .await
            }
            Err(_) => false,
        };
        Done {
            key,
            epoch,
            offsets,
            finished,
        }
    }

    /// The span of applying `messages` (one key's, in offset order): a consumer span whose
    /// parent is the newest message's producer (its `traceparent` header). The batch's other
    /// messages were produced under traces of their own; the span counts them.
    fn span_of(&self, messages: &[Message]) -> tracing::Span {
        let span = tracing::info_span!(
            "apply",
            otel.kind = "consumer",
            pipeline = %self.pipeline.name,
            partition = messages.first().map(|m| m.partition),
            events = messages.len(),
        );
        if let Some(newest) = messages.last() {
            let headers = newest.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            crate::telemetry::continue_from(&span, headers);
        }
        span
    }

    /// Applies, retrying with backoff; dead-letters rejected events, and all of them after
    /// `max_attempts` failures. `false` if shutdown interrupted.
    async fn settle(&self, messages: &[Message]) -> bool {
        let events: Vec<Event<'_>> = messages
            .iter()
            .map(|m| Event {
                key: m.key.as_deref(),
                payload: m.payload.as_deref().unwrap_or_default(),
                timestamp: m.timestamp,
            })
            .collect();
        let mut delay = BACKOFF_START;
        let mut attempts = 0u32;
        let outcomes = loop {
            attempts += 1;
            let error = match self.applier.apply_batch(&events).await {
                Ok(applied) => {
                    self.metrics.writes.inc_by(applied.writes as u64);
                    self.metrics.conflicts.inc_by(applied.conflicts as u64);
                    break applied.outcomes;
                }
                Err(e) => e.to_string(),
            };
            let max = self.pipeline.max_attempts;
            if max > 0 && attempts >= max {
                let reason = format!("not applied after {attempts} attempts: {error}");
                break vec![Outcome::Rejected(reason); messages.len()];
            }
            warn!(pipeline = %self.pipeline.name, partition = messages[0].partition, offset = messages[0].offset, attempts, error = %bounded(&error, MAX_REASON), retry_in = ?delay, "Events not applied yet; retrying.");
            if !self.pause(delay).await {
                return false;
            }
            delay = (delay * 2).min(BACKOFF_CAP);
        };
        let plugin = self.applier.plugin();
        for (message, outcome) in messages.iter().zip(outcomes) {
            let (action, done) = match outcome {
                Outcome::Written => {
                    self.metrics.applied.inc();
                    (Action::Apply, "written")
                }
                Outcome::Skipped(why) => {
                    debug!(pipeline = %self.pipeline.name, offset = message.offset, reason = %why, "Stale event skipped.");
                    self.metrics.skipped.inc();
                    (Action::Skip, "skipped")
                }
                Outcome::Rejected(reason) => {
                    if !self.dead_letter(message, &reason).await {
                        return false;
                    }
                    self.metrics.dead_lettered.inc();
                    (Action::DeadLetter, "dead-lettered")
                }
            };
            if !self.audit(message, action, done, &plugin).await {
                return false;
            }
        }
        true
    }

    /// Records what became of `message` in the audit trail, retrying until it is written or
    /// shutdown (the commit point does not move past an event whose record is missing).
    async fn audit(&self, message: &Message, action: Action, outcome: &str, plugin: &str) -> bool {
        let Some(topic) = self.pipeline.audit_topic.as_deref() else {
            return true;
        };
        let key = message.key.as_deref().map(String::from_utf8_lossy);
        let mut record = audit::Record::new(action, &self.pipeline.name, outcome);
        record.key = key.as_deref();
        record.plugin = Some(plugin);
        record.principal = message.header(audit::PRINCIPAL_KAFKA_HEADER);
        record.request_id = message.header(audit::REQUEST_ID_KAFKA_HEADER);
        let mut delay = BACKOFF_START;
        loop {
            match audit::write(self.dead_letters.as_ref(), topic, &record).await {
                Ok(()) => return true,
                Err(e) => {
                    warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, error = %e, retry_in = ?delay, "Audit record not written; retrying before the event counts as done.");
                }
            }
            if !self.pause(delay).await {
                return false;
            }
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    }

    /// Sends `message` to the dead-letter topic, retrying until acknowledged or shutdown. A
    /// letter the broker will never take as it is (too large, invalid) is sent again without
    /// the event, naming where the event lives; if even that is refused, the event is left
    /// where it is and logged, so the partition's commit point still moves past it. Only
    /// errors that can heal (the broker away, a timeout) are retried.
    async fn dead_letter(&self, message: &Message, reason: &str) -> bool {
        let reason = bounded(reason, MAX_REASON);
        let mut letter = Letter::Whole;
        let mut delay = BACKOFF_START;
        loop {
            match self.publish_dead_letter(message, &reason, &letter).await {
                Ok(()) => return true,
                Err(BusError::Refused { reason: why, .. }) => match letter {
                    Letter::Whole => {
                        warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, error = %why, "Dead letter refused with the event in it; sending it without.");
                        letter = Letter::WithoutEvent(bounded(&why, MAX_REASON));
                        continue;
                    }
                    Letter::WithoutEvent(_) => {
                        error!(pipeline = %self.pipeline.name, topic = %message.topic, partition = message.partition, offset = message.offset, reason = %reason, error = %why, "Dead letter refused even without the event; the event stays only in its topic, at this offset.");
                        return true;
                    }
                },
                Err(e) => {
                    warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, reason = %reason, error = %e, retry_in = ?delay, "Dead-letter write failed; retrying.");
                }
            }
            if !self.pause(delay).await {
                return false;
            }
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    }

    async fn publish_dead_letter(
        &self,
        message: &Message,
        reason: &str,
        letter: &Letter,
    ) -> Result<(), BusError> {
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let mut headers = vec![
            ("ordo-reason", reason),
            ("ordo-pipeline", self.pipeline.name.as_str()),
            ("ordo-original-topic", message.topic.as_str()),
            ("ordo-original-partition", partition.as_str()),
            ("ordo-original-offset", offset.as_str()),
        ];
        let payload = match letter {
            Letter::Whole => message.payload.as_deref().unwrap_or_default(),
            Letter::WithoutEvent(why) => {
                headers.push((EVENT_LEFT_OUT_HEADER, why.as_str()));
                &[]
            }
        };
        let mut key =
            String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned();
        if matches!(letter, Letter::WithoutEvent(_)) {
            // The key may be what made the letter too large.
            key = bounded(&key, MAX_FIELD);
        }
        self.dead_letters
            .publish(&self.pipeline.dead_letter_topic, &key, payload, &headers)
            .await?;
        warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, reason, topic = %self.pipeline.dead_letter_topic, "Event dead-lettered.");
        Ok(())
    }

    /// Sleeps about `delay`; `false` if shutdown came first.
    async fn pause(&self, delay: Duration) -> bool {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = shutdown.wait() => false,
            _ = tokio::time::sleep(jittered(delay)) => true,
        }
    }
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
