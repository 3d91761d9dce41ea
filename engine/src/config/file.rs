//! One `[pipelines.<name>]` table as written, with the defaults of the keys left out.
//!
//! Every key is optional here, so that a pipeline missing several required keys gets each
//! one named ([`super::rules`] says which are required), and a key with a value of the wrong
//! type is dropped and named on its own without hiding the others ([`super::document`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::plugin::sandbox;

/// Partitions a topic gets when the pipeline does not say.
pub const DEFAULT_PARTITIONS: i32 = 6;
/// Replicas a topic gets when the pipeline does not say: one, for a single local broker.
pub const DEFAULT_REPLICATION_FACTOR: i32 = 1;
/// Keys a consumer applies at once when the pipeline does not say.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Attempts before an event failing transiently (store away, host starved) is dead-lettered
/// when the pipeline does not say: 0, never. A 202 promised the event would be applied, so
/// an outage is waited out; throttling never counts as a failed attempt.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 0;

/// One `[pipelines.<name>]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineFile {
    /// HTTP route that ingests events, e.g. `/patientprofile` (required).
    pub route: Option<String>,
    /// Kafka topic the events travel on (required).
    pub topic: Option<String>,
    /// Top-level JSON field whose value is the Kafka key and the table's partition key
    /// (required).
    pub key_field: Option<String>,
    /// Top-level JSON field that orders updates; stamped at ingest when absent (required).
    pub version_field: Option<String>,
    /// DynamoDB table holding the replica (required).
    pub table: Option<String>,
    /// Policy plugin (a WebAssembly component), relative to the file's folder (required).
    pub plugin: Option<PathBuf>,
    /// Partitions of the topic when Ordo creates it.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topic when Ordo creates it.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Consumer group; defaults to `ordo.<pipeline name>`.
    pub consumer_group: Option<String>,
    /// Dead-letter topic; defaults to `<topic>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// Keys applied at once by one engine.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts before an event failing transiently is dead-lettered; 0 (the default)
    /// waits as long as the failure lasts.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Records written last kept in memory, so the next write of a key skips its read; 0: none.
    #[serde(default = "default_cache_records")]
    pub cache_records: usize,
    /// Fuel one plugin call may burn.
    #[serde(default = "default_plugin_fuel")]
    pub plugin_fuel: u64,
    /// Milliseconds of CPU time one plugin call may take.
    #[serde(default = "default_plugin_timeout_ms")]
    pub plugin_timeout_ms: u64,
    /// MiB of linear memory one plugin instance may hold.
    #[serde(default = "default_plugin_memory_mib")]
    pub plugin_memory_mib: usize,
    /// WASI capabilities granted to the plugin: `clocks`, `random`.
    #[serde(default)]
    pub plugin_capabilities: Vec<String>,
    /// JSON Lines of sample events a plugin must pass before it is put in force.
    pub plugin_self_test: Option<PathBuf>,
    /// How far ahead of its receipt time an event's version may be: seconds, or text with a
    /// unit (`"5m"`).
    pub max_version_skew: Option<DurationText>,
    /// Whether Ordo creates the table when it is missing (else it only checks it exists).
    #[serde(default = "default_true")]
    pub create_tables: bool,
    /// Topic configuration (`min.insync.replicas`, `retention.ms`, …) set when Ordo creates
    /// the topic and checked, never changed, when it exists.
    #[serde(default)]
    pub topic_config: BTreeMap<String, Scalar>,
    /// How Ordo creates the table (billing, recovery, encryption, protection, tags).
    #[serde(default)]
    pub table_options: TableOptionsFile,
}

/// A configuration value as written: text, a whole number or a boolean.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `[pipelines.<name>.table_options]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TableOptionsFile {
    /// `PAY_PER_REQUEST` (the default) or `PROVISIONED`.
    pub billing_mode: Option<String>,
    /// Read capacity units, with `PROVISIONED`.
    pub read_capacity: Option<i64>,
    /// Write capacity units, with `PROVISIONED`.
    pub write_capacity: Option<i64>,
    /// Continuous backups with point-in-time recovery.
    #[serde(default)]
    pub point_in_time_recovery: bool,
    /// Server-side encryption with this KMS key (id, ARN or alias) instead of an AWS-owned key.
    pub kms_key_id: Option<String>,
    /// Refuse DeleteTable until turned off.
    #[serde(default)]
    pub deletion_protection: bool,
    /// Tags of the table.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A duration as written: seconds, or text with a unit (`"90s"`, `"5m"`, `"2h"`, `"1d"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum DurationText {
    /// Seconds.
    Seconds(u64),
    /// Text with a unit.
    Text(String),
}

/// The default of `partitions`.
pub(super) fn default_partitions() -> i32 {
    DEFAULT_PARTITIONS
}

/// The default of `replication_factor`.
pub(super) fn default_replication_factor() -> i32 {
    DEFAULT_REPLICATION_FACTOR
}

/// The default of `concurrency`.
pub(super) fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}

/// The default of `max_attempts`.
pub(super) fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

/// The default of `cache_records`.
pub(super) fn default_cache_records() -> usize {
    crate::store::cache::DEFAULT_CAPACITY
}

/// The default of `plugin_fuel`.
pub(super) fn default_plugin_fuel() -> u64 {
    sandbox::DEFAULT_FUEL
}

/// The default of `plugin_timeout_ms`.
pub(super) fn default_plugin_timeout_ms() -> u64 {
    sandbox::DEFAULT_TIMEOUT.as_millis() as u64
}

/// The default of `plugin_memory_mib`.
pub(super) fn default_plugin_memory_mib() -> usize {
    sandbox::DEFAULT_MEMORY_BYTES >> 20
}

/// `[audit]` as written: where the audit trail goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFile {
    /// Whether actions are recorded (on by default).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The Kafka topic of the records.
    #[serde(default = "default_audit_topic")]
    pub topic: String,
}

impl Default for AuditFile {
    fn default() -> Self {
        Self {
            enabled: true,
            topic: default_audit_topic(),
        }
    }
}

/// `[idempotency]` as written: where `Idempotency-Key`s are remembered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdempotencyFile {
    /// The DynamoDB table (created when missing, unless every pipeline says otherwise).
    #[serde(default = "default_idempotency_table")]
    pub table: String,
    /// How long a key is remembered, in hours.
    #[serde(default = "default_idempotency_hours")]
    pub window_hours: u64,
}

impl Default for IdempotencyFile {
    fn default() -> Self {
        Self {
            table: default_idempotency_table(),
            window_hours: default_idempotency_hours(),
        }
    }
}

fn default_idempotency_table() -> String {
    crate::ingest::idempotency::DEFAULT_TABLE.into()
}

fn default_idempotency_hours() -> u64 {
    crate::ingest::idempotency::DEFAULT_WINDOW.as_secs() / 3600
}

fn default_true() -> bool {
    true
}

fn default_audit_topic() -> String {
    crate::audit::DEFAULT_TOPIC.into()
}
