//! Applying one event to the replica: parse → validate → read → merge → conditional write.
//!
//! The write is conditioned on the revision of the record the plugin merged against (see
//! [`crate::store::META_ATTRIBUTE`]). When another writer got there first, the record is read
//! again and merged again, so two engines or a replay racing live traffic never regress a
//! record, whatever the plugin's merge rule.

use std::borrow::Cow;

use serde_json::Value;
use tracing::debug;

use super::absence::Absence;
use super::admission::Admission;
pub use super::admission::Event;
use super::reason::{Code, Reason};
use crate::config::KeySource;
use crate::plugin::{Decision, PluginError, Policy, PolicyHandle};
use crate::store::cache::RecordCache;
use crate::store::{split_meta, with_meta, Precondition, PutOutcome, Record, Store, StoreError};

/// Conditional-write conflicts tolerated for one event before the attempt counts as failed.
const MAX_CONFLICTS: usize = 16;

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record now reflects the event.
    Written,
    /// The stored record is newer; the event changed nothing.
    Skipped(Reason),
    /// The event cannot be applied, for this reason; it belongs in the dead-letter topic.
    Rejected(Reason),
}

/// A record a batch changed (or found changed by one of its events, redelivered), for the
/// change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entity id.
    pub key: String,
    /// The record's new state, without the engine's attribute.
    pub record: Record,
    /// Its revision.
    pub revision: u64,
    /// The plugin that wrote it.
    pub plugin: String,
    /// The indices (in the batch) of the events folded into it.
    pub events: Vec<usize>,
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One outcome per event, in the batch's order.
    pub outcomes: Vec<Outcome>,
    /// Conditional writes that went through (one per key at most).
    pub writes: usize,
    /// Conditional writes lost to another writer, each followed by a re-read and re-merge.
    pub conflicts: usize,
    /// The id of the plugin that decided every outcome (the one in force when the batch
    /// started, even if another was swapped in meanwhile).
    pub plugin: String,
    /// The records changed, when the applier keeps a change feed (see
    /// [`Applier::with_change_feed`]).
    pub changes: Vec<Change>,
    /// Store requests made (reads and writes).
    pub store_requests: u32,
}

/// The store requests of one batch.
#[derive(Debug, Default)]
struct Tally {
    /// Requests made.
    requests: u32,
}

impl Tally {
    /// Runs one store request, counting it.
    async fn count<T>(&mut self, request: impl std::future::Future<Output = T>) -> T {
        self.requests += 1;
        request.await
    }
}

/// What became of one key's events.
struct Folded {
    /// (index in the batch, outcome) per event.
    results: Vec<(usize, Outcome)>,
    /// Whether a write went through.
    wrote: bool,
    /// Conditional writes lost before that.
    conflicts: usize,
    /// The change to publish, with a change feed.
    change: Option<Change>,
}

/// Why an event could not be applied yet; worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other writers kept winning the conditional write.
    #[error("key {key}: {MAX_CONFLICTS} conditional-write conflicts in a row")]
    Contended {
        /// The key fought over, as logs may show it ([`crate::redact::key`]).
        key: String,
    },
    /// The plugin could not take the call for a reason of the host's, not the event's.
    #[error(transparent)]
    Plugin(PluginError),
}

/// What a failed attempt means for the events, as the worker treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No retry can help: the events are dead-lettered with the reason.
    Permanent,
    /// The host's or a dependency's state, not the events': wait and retry. The cause, as
    /// `ordo_apply_retries_total` labels it (one of [`crate::metrics::RETRY_CAUSES`]).
    Transient(&'static str),
    /// DynamoDB asked to slow down: write less at once, and retry.
    Throttled,
}

impl ApplyError {
    /// Whether to dead-letter, wait or slow down.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Store(StoreError::Throttled { .. }) => Failure::Throttled,
            Self::Store(e) if e.is_permanent() => Failure::Permanent,
            Self::Store(_) => Failure::Transient("unavailable"),
            Self::Contended { .. } => Failure::Transient("contended"),
            Self::Plugin(_) => Failure::Transient("plugin_busy"),
        }
    }
}

/// Applies events of one pipeline to its store through its policy.
pub struct Applier<S> {
    /// Where records live.
    store: S,
    /// The pipeline's plugin, as currently in force.
    policy: PolicyHandle,
    /// The JSON field that is the key.
    key_field: String,
    /// The records written last, merged against without a read.
    cache: RecordCache,
    /// What an event must be to be merged.
    admission: Admission,
    /// Whether writes record their source position and batches report their changes.
    change_feed: bool,
    /// Whether a key missing from the cache is likely missing from the table too.
    absence: Absence,
}

impl<S: Store> Applier<S> {
    /// An applier writing to `store` under the policy `policy` holds at each batch.
    pub fn new(store: S, policy: PolicyHandle, key_field: &str) -> Self {
        Self {
            store,
            policy,
            key_field: key_field.to_string(),
            cache: RecordCache::default(),
            admission: Admission::new(key_field),
            change_feed: false,
            absence: Absence::new(true),
        }
    }

    /// Reports each batch's changed records ([`Applied::changes`]) for a change feed, and
    /// stamps each write with the position of the last event folded into it.
    pub fn with_change_feed(mut self, on: bool) -> Self {
        self.change_feed = on;
        self
    }

    /// Takes each event's entity id from `source` (default: the body's key field).
    pub fn with_key_source(mut self, source: KeySource) -> Self {
        self.admission.key_source = source;
        self
    }

    /// Refuses an event whose `version_field` is more than `skew` ahead of its message's
    /// timestamp (see [`crate::version`]).
    pub fn with_version_skew(mut self, version_field: &str, skew: std::time::Duration) -> Self {
        self.admission.versions = Some((version_field.to_string(), skew));
        self
    }

    /// Keeps up to `records` written records in memory (0: none) instead of the default.
    /// With none, every key is also read before its write: no write goes out on the guess
    /// that a key is new (see [`super::absence`]).
    pub fn with_cache(mut self, records: usize) -> Self {
        self.cache = RecordCache::new(records);
        self.absence = Absence::new(records > 0);
        self
    }

    /// The id of the plugin in force (`sha256:` of its file).
    pub fn plugin(&self) -> String {
        self.policy.current().id().to_string()
    }

    /// Applies one event. `message_key` is the Kafka key, when the message has one.
    pub async fn apply(
        &self,
        message_key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Outcome, ApplyError> {
        let event = Event {
            key: message_key,
            payload,
            timestamp: None,
            position: None,
        };
        let mut applied = self.apply_batch(&[event]).await?;
        Ok(applied.outcomes.pop().unwrap_or(Outcome::Written))
    }

    /// Applies events in order, as if one by one, but reads and writes each key once: the
    /// events of a key are folded through the plugin and only the result is written. The whole
    /// batch runs on the plugin in force when it starts, even if a new one is swapped in.
    pub async fn apply_batch(&self, events: &[Event<'_>]) -> Result<Applied, ApplyError> {
        let policy = self.policy.current();
        let policy = policy.as_ref();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        // Admitted events grouped by key, in arrival order within each key.
        let mut groups: Vec<(String, Group<'_>)> = Vec::new();
        let mut changes = Vec::new();
        for (i, event) in events.iter().enumerate() {
            match self
                .admission
                .admit(policy, event)
                .map_err(ApplyError::Plugin)?
            {
                Ok((text, key)) => match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, group)) => group.push((i, text)),
                    None => groups.push((key, vec![(i, text)])),
                },
                Err(reason) => outcomes[i] = Some(Outcome::Rejected(reason)),
            }
        }
        let (mut writes, mut conflicts) = (0, 0);
        let mut tally = Tally::default();
        for (key, group) in &groups {
            let Folded {
                results,
                wrote,
                conflicts: lost,
                change,
            } = self
                .fold_key(policy, key, group, events, &mut tally)
                .await?;
            changes.extend(change);
            writes += usize::from(wrote);
            conflicts += lost;
            for (i, outcome) in results {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(Applied {
            outcomes: outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or_else(|| Outcome::Rejected(Reason::new(Code::GaveUp, "not applied")))
                })
                .collect(),
            writes,
            conflicts,
            plugin: policy.id().to_string(),
            changes,
            store_requests: tally.requests,
        })
    }

    /// Merges `group` (events of `key`, in order) into the stored record and writes the
    /// result once, conditioned on the version read. Returns each event's outcome and whether
    /// a write happened, after how many lost races.
    async fn fold_key(
        &self,
        policy: &dyn Policy,
        key: &str,
        group: &Group<'_>,
        events: &[Event<'_>],
        tally: &mut Tally,
    ) -> Result<Folded, ApplyError> {
        // The record this engine wrote last is merged against without a read; see
        // [`RecordCache`] for why that is safe. A key it does not hold is written as new
        // without a read while most such keys were (see [`Absence`]): safe for the same
        // reason.
        let mut guessed = false;
        let mut cached = match self.cache.get(key) {
            Some((r, p)) => Some((Some(r), p, None)),
            None if self.absence.likely() => {
                guessed = true;
                Some((None, Precondition::Absent, None))
            }
            None => None,
        };
        let mut read: Option<Stored> = None;
        let mut looked_up = guessed;
        let mut conflicts = 0;
        while conflicts < MAX_CONFLICTS {
            let from_cache = cached.is_some();
            let (stored, precondition, source) = match cached.take().or_else(|| read.take()) {
                Some(state) => state,
                None => {
                    let stored = self.read(key, tally).await?;
                    if !looked_up {
                        looked_up = true;
                        self.absence.saw(stored.0.is_none());
                    }
                    stored
                }
            };
            let mut state = stored.map(|r| Value::Object(r).to_string());
            let mut merged: Option<Record> = None;
            let mut folded = Vec::new();
            let mut results = Vec::with_capacity(group.len());
            for (i, text) in group {
                let (i, text) = (*i, text.as_ref());
                let merged_by_plugin = merge_call(policy, text, state.as_deref());
                let outcome = match merged_by_plugin {
                    Ok(Decision::Write(record)) => {
                        match self.checked_record(&record, key).and_then(|checked| {
                            match self.store.refuses(&checked) {
                                Some(why) => Err(Reason::new(Code::TooLarge, why)),
                                None => Ok(checked),
                            }
                        }) {
                            Ok(checked) => {
                                state = Some(record);
                                merged = Some(checked);
                                folded.push(i);
                                Outcome::Written
                            }
                            Err(reason) => Outcome::Rejected(reason),
                        }
                    }
                    Ok(Decision::Skip(why)) => Outcome::Skipped(Reason::new(Code::Skipped, why)),
                    Ok(Decision::Reject(why)) => Outcome::Rejected(Reason::new(
                        Code::Rejected,
                        format!("plugin rejected the event: {why}"),
                    )),
                    Err(e) if e.is_transient() => return Err(ApplyError::Plugin(e)),
                    Err(e) => Outcome::Rejected(Reason::new(Code::PluginFailed, e.to_string())),
                };
                results.push((i, outcome));
            }
            let Some(record) = merged else {
                let mut source = source;
                if from_cache {
                    // Nothing to write: a verdict the table must confirm, not the cache. The
                    // same revision is the same record, and so the same verdict.
                    let table = self.read(key, tally).await?;
                    if guessed {
                        guessed = false;
                        self.absence.saw(table.1 == Precondition::Absent);
                    }
                    if table.1 != precondition {
                        self.cache.forget(key);
                        read = Some(table);
                        continue;
                    }
                    source = table.2;
                }
                // The stored record was written by one of these events, delivered before:
                // that write's change may never have been published.
                let change = match (self.change_feed, source, precondition, &state) {
                    (true, Some(at), Precondition::Revision(revision), Some(text)) => group
                        .iter()
                        .find(|(i, _)| events[*i].position == Some(at))
                        .and_then(|(i, _)| {
                            let record = serde_json::from_str::<Record>(text).ok()?;
                            Some(Change {
                                key: key.to_string(),
                                record,
                                revision,
                                plugin: policy.id().to_string(),
                                events: vec![*i],
                            })
                        }),
                    _ => None,
                };
                return Ok(Folded {
                    results,
                    wrote: false,
                    conflicts,
                    change,
                });
            };
            let last = folded.last().and_then(|&i| events[i].position);
            let mut record = with_meta(record, policy.id(), precondition);
            if let (true, Some(at)) = (self.change_feed, last) {
                stamp_source(&mut record, at);
            }
            match tally.count(self.store.put(&record, &precondition)).await? {
                PutOutcome::Written => {
                    if guessed {
                        self.absence.saw(true);
                    }
                    let (plain, written) = split_meta(record);
                    let change = match (self.change_feed, written) {
                        (true, Precondition::Revision(revision)) => Some(Change {
                            key: key.to_string(),
                            record: plain.clone(),
                            revision,
                            plugin: policy.id().to_string(),
                            events: folded,
                        }),
                        _ => None,
                    };
                    self.cache.put(key, plain, written);
                    return Ok(Folded {
                        results,
                        wrote: true,
                        conflicts,
                        change,
                    });
                }
                PutOutcome::Conflict if guessed => {
                    // The key was not new: read it and merge again. Not a race lost to
                    // another writer, so not counted as one.
                    guessed = false;
                    self.absence.saw(false);
                }
                PutOutcome::Conflict => {
                    self.cache.forget(key);
                    conflicts += 1;
                    debug!(key = %crate::redact::key(key), from_cache, "Conditional write lost a race; merging again.")
                }
            }
        }
        Err(ApplyError::Contended {
            key: crate::redact::key(key).to_string(),
        })
    }

    /// The stored record of `key` as the plugin sees it, and what a write merged against it
    /// must be conditioned on.
    async fn read(&self, key: &str, tally: &mut Tally) -> Result<Stored, ApplyError> {
        Ok(match tally.count(self.store.get(key)).await? {
            Some(record) => {
                let source = source_of(&record);
                let (record, precondition) = split_meta(record);
                (Some(record), precondition, source)
            }
            None => (None, Precondition::Absent, None),
        })
    }

    /// The plugin's record, which must be a JSON object that keeps the key.
    fn checked_record(&self, record: &str, key: &str) -> Result<Record, Reason> {
        match serde_json::from_str::<Value>(record) {
            Ok(Value::Object(r)) if r.get(&self.key_field).and_then(Value::as_str) == Some(key) => {
                Ok(r)
            }
            Ok(Value::Object(_)) => Err(Reason::new(
                Code::BadRecord,
                format!(
                    "plugin returned a record whose `{}` is not {key:?}",
                    self.key_field
                ),
            )
            .at(&self.key_field)),
            _ => Err(Reason::new(
                Code::BadRecord,
                "plugin returned a record that is not a JSON object",
            )),
        }
    }
}

/// One key's admitted events of a batch: (index in the batch, text as the plugin sees it).
type Group<'a> = Vec<(usize, Cow<'a, str>)>;

/// A stored record as the plugin sees it, what a write merged against it is conditioned on,
/// and the position of the event that wrote it (with a change feed).
type Stored = (Option<Record>, Precondition, Option<(i32, i64)>);

/// The name, inside [`crate::store::META_ATTRIBUTE`], of the position (`[partition, offset]`)
/// of the last event folded into the write; only with a change feed.
pub const META_SOURCE: &str = "source";

/// Records `at` as the write's source position in the engine's attribute.
fn stamp_source(record: &mut Record, (partition, offset): (i32, i64)) {
    if let Some(Value::Object(meta)) = record.get_mut(crate::store::META_ATTRIBUTE) {
        meta.insert(META_SOURCE.into(), serde_json::json!([partition, offset]));
    }
}

/// The source position a stored record's attribute holds, if any.
fn source_of(record: &Record) -> Option<(i32, i64)> {
    let source = record.get(crate::store::META_ATTRIBUTE)?.get(META_SOURCE)?;
    let partition = i32::try_from(source.get(0)?.as_i64()?).ok()?;
    Some((partition, source.get(1)?.as_i64()?))
}

/// One `merge` call as the applier makes it: in its tracing span, through the policy in force.
/// Public so that the plugin benchmark measures this path and no other.
pub fn merge_call(
    policy: &dyn Policy,
    incoming: &str,
    stored: Option<&str>,
) -> Result<Decision, PluginError> {
    let _call = tracing::info_span!("plugin.merge", plugin = %policy.id()).entered();
    policy.merge(incoming, stored)
}

#[cfg(test)]
mod tests {
    //! The applier's own logic, with an in-memory store and a native policy. What DynamoDB
    //! does with the conditions is tested against the real API in `tests/store_dynamo.rs`.
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::testing::{MaxV, MemoryStore};

    fn record(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    /// What a rival writer stored: v=5 at revision 9.
    fn rival() -> Record {
        record(json!({"k": "a", "v": 5, "Ordo": {"plugin": "rival", "revision": 9}}))
    }

    fn applier(store: &MemoryStore) -> Applier<MemoryStore> {
        Applier::new(store.clone(), PolicyHandle::new(Arc::new(MaxV)), "k")
    }

    fn v(store: &MemoryStore, key: &str) -> Value {
        store.record(key).map_or(Value::Null, |r| r["v"].clone())
    }

    #[tokio::test]
    async fn a_version_far_ahead_of_its_message_timestamp_is_refused() {
        let store = MemoryStore::new("k");
        let a = applier(&store).with_version_skew("at", std::time::Duration::from_secs(300));
        let sent = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let events = [
            Event {
                key: None,
                payload: br#"{"k":"a","v":1,"at":"9999-12-31T23:59:59Z"}"#,
                timestamp: Some(sent),
                position: None,
            },
            Event {
                key: None,
                payload: br#"{"k":"b","v":1,"at":"2026-01-01T00:04:00Z"}"#,
                timestamp: Some(sent),
                position: None,
            },
        ];
        let applied = a.apply_batch(&events).await.expect("applied");
        match &applied.outcomes[0] {
            Outcome::Rejected(why) => assert!(
                why.code() == Code::VersionAhead
                    && why.text().contains("`at` is")
                    && why.text().contains("max_version_skew"),
                "{why}"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(applied.outcomes[1], Outcome::Written);
        assert_eq!(v(&store, "a"), Value::Null);
    }

    #[tokio::test]
    async fn a_lost_race_is_merged_again_against_the_winner() {
        let store = MemoryStore::new("k");
        store.rival(1, rival());
        let a = applier(&store);
        // The rival's v=5 wins the race; merging again makes v=3 stale instead of overwriting it.
        let outcome = a
            .apply(Some(b"a"), br#"{"k":"a","v":3}"#)
            .await
            .expect("applied");
        assert!(matches!(outcome, Outcome::Skipped(_)), "{outcome:?}");
        assert_eq!(v(&store, "a"), 5);
        let events = [Event {
            key: None,
            payload: br#"{"k":"a","v":6}"#,
            timestamp: None,
            position: None,
        }];
        store.rival(1, rival());
        let applied = a.apply_batch(&events).await.expect("applied");
        assert_eq!(
            (applied.writes, applied.conflicts),
            (1, 1),
            "one lost race, then the write"
        );
        // A newer event still wins after a lost race.
        store.rival(1, rival());
        assert_eq!(
            a.apply(None, br#"{"k":"a","v":9}"#).await.expect("applied"),
            Outcome::Written
        );
        let stored = store.record("a").unwrap_or_default();
        assert_eq!(stored["v"], 9);
        // Each lost race left the rival's revision 9; the write after it is revision 10.
        assert_eq!(
            stored["Ordo"],
            json!({"plugin": "native:maxv", "revision": 10})
        );
    }

    #[tokio::test]
    async fn a_batch_writes_each_key_once_with_the_folded_result() {
        let store = MemoryStore::new("k");
        let payloads: [&[u8]; 5] = [
            br#"{"k":"a","v":2}"#,
            br#"{"k":"b","v":1}"#,
            br#"{"k":"a","v":7}"#,
            br#"{"k":"a","v":4}"#,
            b"poison",
        ];
        let events: Vec<Event<'_>> = payloads
            .iter()
            .map(|p| Event {
                key: None,
                payload: p,
                timestamp: None,
                position: None,
            })
            .collect();
        let applied = applier(&store).apply_batch(&events).await.expect("applied");
        assert_eq!(applied.writes, 2, "one write for a, one for b");
        assert!(
            matches!(applied.outcomes[3], Outcome::Skipped(_)),
            "v=4 after v=7 is stale"
        );
        assert!(matches!(applied.outcomes[4], Outcome::Rejected(_)));
        assert_eq!(v(&store, "a"), 7);
        assert_eq!(v(&store, "b"), 1);
    }

    #[tokio::test]
    async fn the_record_written_last_is_merged_against_without_a_read() {
        let store = MemoryStore::new("k");
        let a = applier(&store);
        a.apply(None, br#"{"k":"a","v":1}"#).await.expect("applied");
        assert_eq!(store.reads(), 1, "a new key is read once");
        assert_eq!(
            a.apply(None, br#"{"k":"a","v":2}"#).await.expect("applied"),
            Outcome::Written
        );
        assert_eq!(
            store.reads(),
            1,
            "the next write merges against the cached record"
        );

        // Someone else moved the record on: the write merged against the cache loses, and the
        // key is read and merged again.
        store.insert(record(
            json!({"k": "a", "v": 8, "Ordo": {"plugin": "rival", "revision": 7}}),
        ));
        let applied = a
            .apply_batch(&[Event {
                key: None,
                payload: br#"{"k":"a","v":5}"#,
                timestamp: None,
                position: None,
            }])
            .await
            .expect("applied");
        assert!(
            matches!(applied.outcomes[0], Outcome::Skipped(_)),
            "{applied:?}"
        );
        assert_eq!(store.reads(), 2);
        assert_eq!(v(&store, "a"), 8);

        // A verdict that writes nothing is confirmed against the table, not the cache.
        a.apply(None, br#"{"k":"a","v":9}"#).await.expect("applied");
        let before = store.reads();
        let stale = a.apply(None, br#"{"k":"a","v":3}"#).await.expect("applied");
        assert!(matches!(stale, Outcome::Skipped(_)), "{stale:?}");
        assert_eq!(
            store.reads(),
            before + 1,
            "the skip was checked against the table"
        );
    }

    fn one(payload: &[u8]) -> [Event<'_>; 1] {
        [Event {
            key: None,
            payload,
            timestamp: None,
            position: None,
        }]
    }

    #[tokio::test]
    async fn keys_new_to_the_table_are_written_without_a_read_while_most_turn_out_absent() {
        let store = MemoryStore::new("k");
        let a = applier(&store);
        let mut requests = Vec::new();
        for k in 0..20 {
            let body = format!(r#"{{"k":"n{k}","v":1}}"#);
            let applied = a.apply_batch(&one(body.as_bytes())).await.expect("applied");
            assert_eq!(applied.outcomes, vec![Outcome::Written]);
            requests.push(applied.store_requests);
        }
        assert_eq!(
            store.reads(),
            9,
            "read until nine net keys turned out absent"
        );
        assert_eq!(requests[..9], [2; 9], "a read and a write each");
        assert_eq!(requests[9..], [1; 11], "a write alone each");
        assert!((0..20).all(|k| v(&store, &format!("n{k}")) == 1));

        // Keys that do exist: each guessed write fails, the key is read and merged against
        // the record found (v=5 stays), and the lost guess is not counted as a lost race.
        for k in 0..10 {
            store.insert(record(
                json!({"k": format!("e{k}"), "v": 5, "Ordo": {"plugin": "rival", "revision": 3}}),
            ));
        }
        let before = store.reads();
        let mut guessed = 0;
        for k in 0..10 {
            let body = format!(r#"{{"k":"e{k}","v":2}}"#);
            let applied = a.apply_batch(&one(body.as_bytes())).await.expect("applied");
            assert!(
                matches!(applied.outcomes[0], Outcome::Skipped(_)),
                "{applied:?}"
            );
            assert_eq!(applied.conflicts, 0);
            // A guess: the failed write and the read; no guess: the read alone (nothing to write).
            guessed += usize::from(applied.store_requests == 2);
            assert_eq!(v(&store, &format!("e{k}")), 5);
        }
        assert_eq!(store.reads(), before + 10, "every existing key was read");
        assert!(
            (1..10).contains(&guessed),
            "guessing stopped once keys turned out present: {guessed} guessed"
        );
    }

    #[tokio::test]
    async fn without_a_record_cache_every_key_is_read_before_its_write() {
        let store = MemoryStore::new("k");
        let a = applier(&store).with_cache(0);
        for k in 0..20 {
            let body = format!(r#"{{"k":"n{k}","v":1}}"#);
            a.apply(None, body.as_bytes()).await.expect("applied");
        }
        assert_eq!(store.reads(), 20);
    }

    #[tokio::test]
    async fn endless_conflicts_are_an_error_to_retry_not_a_drop() {
        let store = MemoryStore::new("k");
        store.rival(usize::MAX, rival());
        let err = applier(&store)
            .apply(None, br#"{"k":"a","v":9}"#)
            .await
            .expect_err("contended");
        assert!(matches!(err, ApplyError::Contended { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_entity_id_comes_from_where_key_source_says() {
        let store = MemoryStore::new("k");
        // From the body: unkeyed and differently keyed messages apply to the body's key.
        let by_body = applier(&store);
        for (key, payload) in [
            (None, br#"{"k":"a","v":1}"#),
            (Some(&b"elsewhere"[..]), br#"{"k":"a","v":2}"#),
        ] {
            let outcome = by_body.apply(key, payload).await.expect("applied");
            assert_eq!(outcome, Outcome::Written);
        }
        assert_eq!(v(&store, "a"), json!(2));
        // From the message: a body without the key field gets it from the message key.
        let by_message = applier(&store).with_key_source(KeySource::Message);
        let outcome = by_message
            .apply(Some(b"b"), br#"{"v":5}"#)
            .await
            .expect("applied");
        assert_eq!(outcome, Outcome::Written);
        let stored = store.record("b").map(|r| (r["k"].clone(), r["v"].clone()));
        assert_eq!(stored, Some((json!("b"), json!(5))));
    }

    #[tokio::test]
    async fn a_change_feed_reports_each_write_and_again_the_redelivered_event_that_made_it() {
        let store = MemoryStore::new("k");
        let a = applier(&store).with_change_feed(true).with_cache(0);
        let at = |v: i64, offset: i64| (format!(r#"{{"k":"a","v":{v}}}"#), Some((2, offset)));
        let batch = [at(3, 10), at(1, 11), at(7, 12)];
        let events: Vec<Event<'_>> = batch
            .iter()
            .map(|(body, position)| Event {
                key: None,
                payload: body.as_bytes(),
                timestamp: None,
                position: *position,
            })
            .collect();
        let applied = a.apply_batch(&events).await.expect("applied");
        let [change] = applied.changes.as_slice() else {
            panic!("one write, one change: {:?}", applied.changes);
        };
        assert_eq!((change.key.as_str(), change.revision), ("a", 1));
        assert_eq!(change.record["v"], json!(7));
        assert_eq!(
            change.events,
            vec![0, 2],
            "the events folded into the write"
        );
        assert_eq!(
            store.record("a").map(|r| r["Ordo"]["source"].clone()),
            Some(json!([2, 12])),
            "the write names its last event"
        );
        // Delivered again (the first publish may not have happened): nothing is written, the
        // stored record is reported again under the same revision.
        let again = a.apply_batch(&events[2..]).await.expect("applied");
        assert_eq!(again.writes, 0);
        assert_eq!(
            again
                .changes
                .iter()
                .map(|c| (c.revision, c.events.clone()))
                .collect::<Vec<_>>(),
            vec![(1, vec![0])]
        );
        // A stale event that did not make the record publishes nothing.
        let stale = a.apply_batch(&events[1..2]).await.expect("applied");
        assert!(stale.changes.is_empty(), "{:?}", stale.changes);
        // Without a change feed, nothing is reported and no position is stamped.
        let plain = MemoryStore::new("k");
        let applied = applier(&plain).apply_batch(&events).await.expect("applied");
        assert!(applied.changes.is_empty());
        assert_eq!(
            plain.record("a").map(|r| r["Ordo"].get("source").is_none()),
            Some(true)
        );
    }

    /// A message key, a payload, and a word the rejection must contain.
    type Case<'a> = (Option<&'a [u8]>, &'a [u8], Code, &'a str);

    #[tokio::test]
    async fn poison_events_are_rejected_with_a_reason() {
        let store = MemoryStore::new("k");
        let by_body = applier(&store);
        let by_message = applier(&store).with_key_source(KeySource::Message);
        let cases: [(&Applier<MemoryStore>, Case<'_>); 8] = [
            (&by_body, (None, b"\xff", Code::NotUtf8, "UTF-8")),
            (&by_body, (None, b"not json", Code::NotJson, "not JSON")),
            (&by_body, (None, br#"{"v":1}"#, Code::NoKey, "`k`")),
            (
                &by_body,
                (Some(b"a"), br#"{"k":7,"v":1}"#, Code::NoKey, "`k`"),
            ),
            (
                &by_message,
                (
                    Some(b"b"),
                    br#"{"k":"a","v":1}"#,
                    Code::KeyMismatch,
                    "message key",
                ),
            ),
            (
                &by_message,
                (None, br#"{"k":"a","v":1}"#, Code::NoKey, "no key"),
            ),
            (&by_message, (Some(b"a"), br#"[1]"#, Code::NoKey, "`k`")),
            (
                &by_body,
                (
                    None,
                    br#"{"k":"a","v":"x"}"#,
                    Code::Invalid,
                    "`v` must be a number",
                ),
            ),
        ];
        for (a, (key, payload, code, reason)) in cases {
            match a.apply(key, payload).await.expect("no store error") {
                Outcome::Rejected(r) => assert!(
                    r.code() == code && r.text().contains(reason),
                    "{r} ({}) should be {code:?} and mention {reason}",
                    r.text()
                ),
                other => panic!("{payload:?}: {other:?}"),
            }
        }
        assert!(store.records_by_key().is_empty());
    }
}
