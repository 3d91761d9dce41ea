//! The store seam: where a pipeline's replica lives.
//!
//! [`Store`] reads a record by key and writes one conditionally, so a writer that merged
//! against an out-of-date record never overwrites a newer one. [`dynamo::DynamoStore`] is the
//! DynamoDB implementation; [`item`] converts JSON records to DynamoDB items and back;
//! [`cache`] keeps the records written last so the next write of a key can skip its read;
//! [`keys`] remembers ingest's Idempotency-Keys, behind a seam of its own.
//! The `testing` module has an in-memory store, for tests.

use std::future::Future;

use serde_json::{Map, Value};

pub mod cache;
pub mod dynamo;
pub mod item;
pub mod keys;
mod table;

pub use table::{Billing, TableOptions};

/// A record: a JSON object.
pub type Record = Map<String, Value>;

/// The attribute the engine owns on every record it writes: a map with `plugin` (the id of
/// the plugin that wrote the record, `sha256:<hex>` of its file) and `revision` (1 for the
/// first write of a key, then +1 per write). Writes are conditioned on the revision read, so a
/// write merged against an out-of-date record never lands, whatever the plugin's rule is.
pub const META_ATTRIBUTE: &str = "Ordo";
/// The plugin id inside [`META_ATTRIBUTE`].
pub const META_PLUGIN: &str = "plugin";
/// The revision inside [`META_ATTRIBUTE`].
pub const META_REVISION: &str = "revision";

/// What must hold in the table for a write to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No record exists for the key.
    Absent,
    /// A record exists, written before the engine kept revisions (no [`META_ATTRIBUTE`]).
    Unrevised,
    /// The stored record's revision is this.
    Revision(u64),
}

/// Splits a stored record into what the plugin sees (without [`META_ATTRIBUTE`]) and the
/// precondition a write merged against it needs.
pub fn split_meta(mut record: Record) -> (Record, Precondition) {
    let revision = record
        .remove(META_ATTRIBUTE)
        .and_then(|m| m.get(META_REVISION).and_then(Value::as_u64));
    let precondition = match revision {
        Some(n) => Precondition::Revision(n),
        None => Precondition::Unrevised,
    };
    (record, precondition)
}

/// Adds [`META_ATTRIBUTE`] to a record about to be written under `precondition`.
pub fn with_meta(mut record: Record, plugin: &str, precondition: Precondition) -> Record {
    let revision = match precondition {
        Precondition::Revision(n) => n + 1,
        Precondition::Absent | Precondition::Unrevised => 1,
    };
    record.insert(
        META_ATTRIBUTE.into(),
        serde_json::json!({ META_PLUGIN: plugin, META_REVISION: revision }),
    );
    record
}

/// The result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record is durably stored.
    Written,
    /// The precondition failed: someone else wrote first. Re-read and merge again.
    Conflict,
}

/// The error codes with which DynamoDB says "slow down" rather than "failed".
pub const THROTTLING_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// Errors talking to the store. All are worth retrying except [`StoreError::Shape`] (see
/// [`StoreError::is_permanent`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request failed (network, timeout, service error).
    #[error("{operation} on table `{table}` failed: {reason}")]
    Request {
        /// The API operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The SDK's explanation, with its causes.
        reason: String,
    },
    /// DynamoDB throttled the request (one of [`THROTTLING_CODES`]), after the SDK's own
    /// retries: a signal to write more slowly, not a failure of the event.
    #[error("{operation} on table `{table}` throttled: {reason}")]
    Throttled {
        /// The API operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The SDK's explanation.
        reason: String,
    },
    /// A stored item cannot be represented as JSON, or a record as an item.
    #[error("table `{table}`: {reason}")]
    Shape {
        /// The table.
        table: String,
        /// What does not convert.
        reason: String,
    },
    /// The table is missing and the pipeline may not create it.
    #[error("table `{table}` does not exist, and the pipeline has `create_tables = false`: create it (partition key `{key}`, string) or let Ordo create it")]
    Missing {
        /// The table.
        table: String,
        /// The pipeline's key field.
        key: String,
    },
    /// The table exists with a key schema other than the pipeline's.
    #[error("table `{table}` has key schema {found}, but the pipeline needs `{expected}` (string) as its only key")]
    KeySchema {
        /// The table.
        table: String,
        /// The key the pipeline declares.
        expected: String,
        /// What the table has.
        found: String,
    },
}

impl StoreError {
    /// Whether retrying cannot help the event: a stored item or a record that does not
    /// convert. Everything else (the store away, slow, throttling, the table missing or
    /// misshapen until an operator fixes it) passes, so it is waited out.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Shape { .. })
    }
}

/// Reads records by key and writes them conditionally.
pub trait Store: Send + Sync + 'static {
    /// The record stored under `key`, read consistently, or `None`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Writes `record` if `precondition` holds.
    fn put(
        &self,
        record: &Record,
        precondition: &Precondition,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// Proof that the store answers and holds the pipeline's table (for `/readyz`).
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Why the store could never hold `record` (as the plugin made it, before the engine adds
    /// [`META_ATTRIBUTE`]), or `None`. Such a record is refused before the write: the event
    /// that made it is dead-lettered, not retried.
    fn refuses(&self, record: &Record) -> Option<String> {
        item::too_large(record)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn meta_is_hidden_from_the_plugin_and_bumped_on_write() {
        let stored = record(json!({"k": "a", "Ordo": {"plugin": "p1", "revision": 4}}));
        let (plain, pre) = split_meta(stored);
        assert_eq!(plain, record(json!({"k": "a"})));
        assert_eq!(pre, Precondition::Revision(4));
        let written = with_meta(plain, "p2", pre);
        assert_eq!(written["Ordo"], json!({"plugin": "p2", "revision": 5}));
    }

    #[test]
    fn a_record_without_meta_is_unrevised_and_starts_at_one() {
        let (plain, pre) = split_meta(record(json!({"k": "a"})));
        assert_eq!(pre, Precondition::Unrevised);
        assert_eq!(with_meta(plain, "p", pre)["Ordo"]["revision"], 1);
        assert_eq!(
            with_meta(Record::new(), "p", Precondition::Absent)["Ordo"]["revision"],
            1
        );
    }
}
