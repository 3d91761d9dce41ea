//! The store seam: where a pipeline's replica lives.
//!
//! [`Store`] reads a record by key and writes one conditionally, so a writer that merged
//! against an out-of-date record never overwrites a newer one. [`dynamo::DynamoStore`] is the
//! DynamoDB implementation; [`item`] converts JSON records to DynamoDB items and back.

use std::future::Future;

use serde_json::{Map, Value};

pub mod dynamo;
pub mod item;

/// A record: a JSON object.
pub type Record = Map<String, Value>;

/// What must hold in the table for a write to go through.
#[derive(Debug, Clone, PartialEq)]
pub enum Precondition {
    /// No record exists for the key.
    Absent,
    /// The stored record's version field has this value (`None`: the field is missing).
    VersionIs(Option<Value>),
}

/// The result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record is durably stored.
    Written,
    /// The precondition failed: someone else wrote first. Re-read and merge again.
    Conflict,
}

/// Errors talking to the store. All are worth retrying unless the table is misconfigured.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request failed (network, throttling, service error).
    #[error("{operation} on table `{table}` failed: {reason}")]
    Request {
        /// The API operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The SDK's explanation, with its causes.
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
}
