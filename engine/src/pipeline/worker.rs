//! A worker applies every queued event of one key, retrying transient failures with backoff
//! for as long as they last, and dead-letters what cannot be applied.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use tracing::{debug, error, warn, Instrument as _};

use super::applier::Change;
use super::pace::Pace;
use super::waits::{Wait, Waits};
use super::{Applier, Code, Event, Failure, Outcome, Reason};
use crate::audit::{self, Action};
use crate::bus::{BusError, Fence, Lease, Message, Publisher};
use crate::config::Pipeline;
use crate::metrics::{ConsumerMetrics, DeadLetterNote};
use crate::plugin::{bounded, MAX_FIELD, MAX_REASON};
use crate::redact;
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
/// How long a panicked worker's events wait before they are retried.
const AFTER_PANIC: Duration = Duration::from_secs(1);

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
    /// Bounds how many keys are applied at once, lowered while the store throttles.
    pub pace: Arc<Pace>,
    /// Keys waiting out a transient failure.
    pub waits: Waits,
    /// Leases on partitions, lost when the group revokes them.
    pub fence: Fence,
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
            pace: Arc::clone(&self.pace),
            waits: self.waits.clone(),
            fence: self.fence.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// A worker's report to the dispatcher.
pub struct Done {
    /// The key worked on.
    pub key: KeyId,
    /// The partition's generation the events came in (see [`Fence`]).
    pub generation: u64,
    /// The offsets taken.
    pub offsets: Vec<i64>,
    /// Whether every one of them is durable (false: abandoned at shutdown or revocation;
    /// they replay).
    pub finished: bool,
    /// The events, handed back to be applied again: the worker panicked.
    pub retry: Option<Vec<Message>>,
}

impl<S: Store, P: Publisher> Shared<S, P> {
    /// Applies `messages` (one key, offset order, of `generation`) on a task of its own, so a
    /// panic is reported (its events handed back for a retry) instead of stalling the key.
    pub async fn run(self, key: KeyId, generation: u64, messages: Vec<Message>) -> Done {
        let messages = Arc::new(messages);
        let worker = {
            let (work, key, messages) = (self.clone(), key.clone(), Arc::clone(&messages));
            tokio::spawn(async move { work.apply(key, generation, &messages).await })
        };
        match worker.await {
            Ok(done) => done,
            Err(panicked) => {
                self.metrics.panics.inc();
                let first = messages.first();
                error!(pipeline = %self.pipeline.name, partition = first.map(|m| m.partition), offset = first.map(|m| m.offset), events = messages.len(), cancelled = panicked.is_cancelled(), retry_in = ?AFTER_PANIC, "A worker panicked; its events will be applied again.");
                self.sleep(AFTER_PANIC, None).await;
                let messages = Arc::try_unwrap(messages).unwrap_or_else(|shared| (*shared).clone());
                Done {
                    key,
                    generation,
                    offsets: messages.iter().map(|m| m.offset).collect(),
                    finished: false,
                    retry: Some(messages),
                }
            }
        }
    }

    /// Applies `messages` (one key, offset order) until done, shutdown or revocation.
    async fn apply(&self, key: KeyId, generation: u64, messages: &[Message]) -> Done {
        let offsets = messages.iter().map(|m| m.offset).collect();
        let finished = match self.pace.turn().await {
            Some(_turn) => match self.fence.lease(key.0, generation) {
                Some(lease) => {
                    self.settle(&lease, messages)
                        .instrument(self.span_of(messages))
                        .await
                }
                None => false,
            },
            None => false,
        };
        Done {
            key,
            generation,
            offsets,
            finished,
            retry: None,
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

    /// Applies, retrying with backoff: a transient failure without limit (unless the
    /// pipeline sets `max_attempts`), throttling without limit and at a lower pace. Events
    /// rejected, or failing permanently, are dead-lettered. `false` if shutdown or a
    /// revocation interrupted.
    async fn settle(&self, lease: &Lease, messages: &[Message]) -> bool {
        let events: Vec<Event<'_>> = messages
            .iter()
            .map(|m| Event {
                key: m.key.as_deref(),
                payload: m.payload.as_deref().unwrap_or_default(),
                timestamp: m.timestamp,
                position: Some((m.partition, m.offset)),
            })
            .collect();
        let mut delays = backoff();
        let mut failures = 0u32;
        let mut waiting: Option<Wait> = None;
        let (outcomes, plugin, changes) = loop {
            if !lease.holds() {
                return false;
            }
            let error = match self.applier.apply_batch(&events).await {
                Ok(applied) => {
                    self.pace.went_through();
                    self.metrics.writes.inc_by(applied.writes as u64);
                    self.metrics.conflicts.inc_by(applied.conflicts as u64);
                    break (applied.outcomes, applied.plugin, applied.changes);
                }
                Err(e) => e,
            };
            let reason = error.to_string();
            let rejected = |reason: Reason| {
                let plugin = self.applier.plugin();
                (
                    vec![Outcome::Rejected(reason); messages.len()],
                    plugin,
                    Vec::new(),
                )
            };
            let cause = match error.failure() {
                Failure::Permanent => break rejected(Reason::new(Code::StoreRefused, reason)),
                Failure::Throttled => {
                    self.pace.throttled();
                    "throttled"
                }
                Failure::Transient(cause) => {
                    failures += 1;
                    let max = self.pipeline.max_attempts;
                    if max > 0 && failures >= max {
                        break rejected(Reason::new(
                            Code::GaveUp,
                            format!("not applied after {failures} attempts: {reason}"),
                        ));
                    }
                    cause
                }
            };
            waiting.get_or_insert_with(|| self.waits.start());
            self.waits.failed(cause, &reason);
            let delay = delays.next().unwrap_or(BACKOFF_CAP);
            debug!(pipeline = %self.pipeline.name, partition = messages[0].partition, offset = messages[0].offset, cause, retry_in = ?delay, "Events not applied yet; retrying.");
            if !self.sleep(delay, Some(lease)).await {
                return false;
            }
        };
        drop(waiting);
        // The change feed before any of these offsets can be stored: at least once.
        for change in &changes {
            if !self.publish_change(lease, change, messages).await {
                return false;
            }
        }
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
                    if !self.dead_letter(lease, message, &reason).await {
                        return false;
                    }
                    self.metrics.dead_lettered.inc();
                    (Action::DeadLetter, "dead-lettered")
                }
            };
            if !self.audit(lease, message, action, done, &plugin).await {
                return false;
            }
        }
        true
    }

    /// Records what became of `message` in the audit trail, retrying until it is written or
    /// shutdown (the commit point does not move past an event whose record is missing).
    async fn audit(
        &self,
        lease: &Lease,
        message: &Message,
        action: Action,
        outcome: &str,
        plugin: &str,
    ) -> bool {
        let Some(topic) = self.pipeline.audit_topic.as_deref() else {
            return true;
        };
        let key = message.key.as_deref().map(String::from_utf8_lossy);
        let mut record = audit::Record::new(action, &self.pipeline.name, outcome);
        record.key = key.as_deref();
        record.plugin = Some(plugin);
        // The principal only when an Ordo that authenticated it signed it; else a claim.
        let header = message.header(audit::PRINCIPAL_KAFKA_HEADER);
        let vouched = header.filter(|principal| {
            crate::vouch::vouched(
                principal,
                message.key.as_deref().unwrap_or_default(),
                message.payload.as_deref().unwrap_or_default(),
                message.header(crate::vouch::MAC_KAFKA_HEADER),
            )
        });
        record.principal = vouched;
        record.claimed = header
            .filter(|_| vouched.is_none())
            .map(crate::vouch::claim);
        record.request_id = message.header(audit::REQUEST_ID_KAFKA_HEADER);
        let mut delays = backoff();
        loop {
            let delay = delays.next().unwrap_or(BACKOFF_CAP);
            match audit::write(self.dead_letters.as_ref(), topic, &record).await {
                Ok(()) => return true,
                Err(e) => {
                    warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, error = %e, retry_in = ?delay, "Audit record not written; retrying before the event counts as done.");
                }
            }
            if !self.sleep(delay, Some(lease)).await {
                return false;
            }
        }
    }

    /// Sends `message` to the dead-letter topic, retrying until acknowledged or shutdown. A
    /// letter the broker will never take as it is (too large, invalid) is sent again without
    /// the event, naming where the event lives; if even that is refused, the event is left
    /// where it is and logged, so the partition's commit point still moves past it. Only
    /// errors that can heal (the broker away, a timeout) are retried. Once settled, the
    /// letter is noted for the operator page.
    async fn dead_letter(&self, lease: &Lease, message: &Message, reason: &Reason) -> bool {
        // The letter carries the reason whole, beside the event; a log line and the operator
        // page, its code and field only.
        let logged = reason.to_string();
        let reason = bounded(reason.text(), MAX_REASON);
        let mut letter = Letter::Whole;
        let mut delays = backoff();
        loop {
            let delay = delays.next().unwrap_or(BACKOFF_CAP);
            match self.publish_dead_letter(message, &reason, &letter).await {
                Ok(()) => {
                    warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, reason = %logged, topic = %self.pipeline.dead_letter_topic, "Event dead-lettered.");
                    self.note_dead_letter(message, logged);
                    return true;
                }
                Err(BusError::Refused { reason: why, .. }) => match letter {
                    Letter::Whole => {
                        warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, error = %why, "Dead letter refused with the event in it; sending it without.");
                        letter = Letter::WithoutEvent(bounded(&why, MAX_REASON));
                        continue;
                    }
                    Letter::WithoutEvent(_) => {
                        error!(pipeline = %self.pipeline.name, topic = %message.topic, partition = message.partition, offset = message.offset, reason = %logged, error = %why, "Dead letter refused even without the event; the event stays only in its topic, at this offset.");
                        self.note_dead_letter(message, logged);
                        return true;
                    }
                },
                Err(e) => {
                    warn!(pipeline = %self.pipeline.name, partition = message.partition, offset = message.offset, reason = %logged, error = %e, retry_in = ?delay, "Dead-letter write failed; retrying.");
                }
            }
            if !self.sleep(delay, Some(lease)).await {
                return false;
            }
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
            .await
            .map(|_| ())
    }

    /// Publishes `change` (a record's new state) to the pipeline's change feed, keyed by the
    /// entity id, with its revision, plugin, pipeline and the request ids of the events
    /// folded into it; retried until the broker acknowledges it, or shutdown or revocation
    /// (`false`: the offsets are not stored, and the next owner publishes it).
    async fn publish_change(&self, lease: &Lease, change: &Change, messages: &[Message]) -> bool {
        let Some(topic) = self.pipeline.changes_topic.as_deref() else {
            return true;
        };
        let request_ids: Vec<&str> = change
            .events
            .iter()
            .filter_map(|&i| messages.get(i)?.header(audit::REQUEST_ID_KAFKA_HEADER))
            .collect();
        let mut delays = backoff();
        loop {
            let delay = delays.next().unwrap_or(BACKOFF_CAP);
            let published = super::changes::publish(
                self.dead_letters.as_ref(),
                topic,
                &self.pipeline.name,
                change,
                &request_ids,
            );
            match published.await {
                Ok(_) => {
                    self.metrics.changes.inc();
                    return true;
                }
                Err(e) => {
                    warn!(pipeline = %self.pipeline.name, key = %redact::key(&change.key), revision = change.revision, error = %e, retry_in = ?delay, "Change not published yet; retrying.");
                }
            }
            if !self.sleep(delay, Some(lease)).await {
                return false;
            }
        }
    }

    /// Keeps `message`'s dead letter, with its reason's code and field, among the last ones shown.
    fn note_dead_letter(&self, message: &Message, reason: String) {
        let key = String::from_utf8_lossy(message.key.as_deref().unwrap_or_default());
        self.metrics.recent.push(DeadLetterNote {
            at: SystemTime::now(),
            partition: message.partition,
            offset: message.offset,
            key: redact::key(&key).to_string(),
            reason,
        });
    }

    /// Sleeps `delay`; `false` if shutdown came first, or `lease` was lost to a
    /// revocation before or meanwhile.
    async fn sleep(&self, delay: Duration, lease: Option<&Lease>) -> bool {
        let mut shutdown = self.shutdown.clone();
        let revoked = self.fence.revocation();
        if lease.is_some_and(|l| !l.holds()) {
            return false;
        }
        tokio::select! {
            // In a fixed order, so that a simulated schedule does not depend on tokio's dice.
            biased;
            _ = shutdown.wait() => false,
            _ = revoked, if lease.is_some() => lease.is_some_and(Lease::holds),
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Retry delays from [`BACKOFF_START`], doubling up to [`BACKOFF_CAP`], each plus up to as much
/// again at random so retrying consumers do not stampede together. The jitter's seed comes from
/// the thread's `fastrand` generator, which a simulation seeds: one seed, one schedule.
fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(BACKOFF_START)
        .with_max_delay(BACKOFF_CAP)
        .with_factor(2.0)
        .with_jitter()
        .with_jitter_seed(fastrand::u64(..))
        .without_max_times()
        .build()
}
