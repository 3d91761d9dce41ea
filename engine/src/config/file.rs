//! One `[pipelines.<name>]` table as written, with the defaults of the keys left out.
//!
//! Every key is optional here, so that a pipeline missing several required keys gets each
//! one named ([`super::rules`] says which are required), and a key with a value of the wrong
//! type is dropped and named on its own without hiding the others ([`super::document`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineFile {
    /// HTTP route that ingests events (`POST`), e.g. `/patientprofile`; `GET {route}/{id}`
    /// reads a record back. `/` and segments of letters, digits, `.`, `_`, `~`, `-` (nothing a
    /// router reads as a parameter or wildcard), up to 200 characters; not one of the engine's
    /// own paths (`/docs`, `/metrics`, `/healthz`, `/readyz`, `/admin`, `/ui`) or under one.
    /// Without a route the pipeline only consumes `topic`, which other services produce: Ordo
    /// then never creates or reconfigures that topic, and reads its partitions from the broker.
    pub route: Option<String>,
    /// Kafka topic the events travel on; 1 to 249 of letters, digits, `.`, `_`, `-`
    /// (required). With a route, Ordo owns it: creates it when missing and keys each event by
    /// the key field.
    pub topic: Option<String>,
    /// Where an event's entity id comes from: `"body"` (the body's `key_field`; the message
    /// key is not looked at, so unkeyed and differently keyed producers are fine) or
    /// `"message"` (the Kafka message key; a body whose `key_field` differs is dead-lettered,
    /// one without it gets it from the key). Either way the merge and the conditional write
    /// decide, so correctness never depends on which partition an event took. Default:
    /// `"body"`.
    pub key_source: Option<String>,
    /// Opt-in change feed: after each write that changed a record, the record's new state is
    /// published here, keyed by entity id, before the source offset may commit (at least
    /// once; the `ordo-revision` header lets a consumer drop repeats). Skips publish nothing.
    /// Created by Ordo when missing, with the source topic's partitions.
    pub changes_topic: Option<String>,
    /// Top-level JSON field (a non-empty string): the Kafka key and the table's partition key
    /// (required).
    pub key_field: Option<String>,
    /// Top-level JSON field that orders updates; ingest stamps it with the receipt time
    /// (RFC 3339, UTC) when absent; must differ from `key_field` (required).
    pub version_field: Option<String>,
    /// DynamoDB table of the replica (3 to 255 of letters, digits, `.`, `_`, `-`); created
    /// (on-demand, `key_field` as string partition key) when missing (required).
    pub table: Option<String>,
    /// The policy plugin, a WebAssembly component, relative to this file's folder (see
    /// plugins/README.md); watched and swapped in when it changes (required).
    pub plugin: Option<PathBuf>,
    /// Partitions of the topic when Ordo creates it (1 to 10,000; default 6). Only with a
    /// route: a route-less pipeline's topic is not Ordo's to create.
    #[schemars(default = "default_partitions")]
    pub partitions: Option<i32>,
    /// Replicas of the topic when Ordo creates it (1 to 16; use 3 on a real cluster).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Kafka consumer group, shared by every engine instance of the pipeline. Default:
    /// `ordo.<name>`.
    pub consumer_group: Option<String>,
    /// Where events that cannot be applied go, with the reason in the `ordo-reason` header.
    /// Default: `<topic>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// The most keys one engine applies at once (1 to 4096): the ceiling. The engine starts
    /// here and applies fewer only while fewer give more throughput, or DynamoDB throttles
    /// (`ordo_apply_concurrency` shows the limit in force).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Whether the keys applied at once follow the throughput (up to `concurrency`);
    /// `false` applies `concurrency` keys at once from the start, lowered only while DynamoDB
    /// throttles.
    #[serde(default = "default_true")]
    pub adaptive_concurrency: bool,
    /// Transient failures (DynamoDB or the broker away, the plugin busy or starved of CPU) of
    /// an event before it is dead-lettered instead of waiting; `0` waits as long as the
    /// failure lasts (up to 1,000,000). Permanent failures dead-letter at once and throttling
    /// only slows writes, whatever this says.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Records this engine wrote last, kept in memory so the next write of a key merges
    /// without reading the table first; safe because writes are conditional on the revision
    /// (a stale copy loses its write and the key is read again), and a verdict that writes
    /// nothing is always confirmed against the table; `0` turns it off (up to 1,000,000, about
    /// 1 GiB of profiles).
    #[serde(default = "default_cache_records")]
    pub cache_records: usize,
    /// Fuel one plugin call may burn (about 5 ms of guest work; 1 to 1,000,000,000,000: set it
    /// high to let `plugin_timeout_ms` alone bound a call).
    #[serde(default = "default_plugin_fuel")]
    pub plugin_fuel: u64,
    /// CPU time one plugin call may use, in milliseconds, counted on its own thread so a busy
    /// host does not count; a call also stops after 20× this on the wall clock (1 to 10,000).
    #[serde(default = "default_plugin_timeout_ms")]
    pub plugin_timeout_ms: u64,
    /// Memory one plugin instance may hold, in MiB (1 to 4096).
    #[serde(default = "default_plugin_memory_mib")]
    pub plugin_memory_mib: usize,
    /// WASI capabilities granted to the plugin: `"clocks"`, `"random"`; files, network and
    /// environment cannot be granted.
    #[serde(default)]
    pub plugin_capabilities: Vec<String>,
    /// JSON Lines of sample events (with expectations) a plugin must pass before it is put in
    /// force.
    pub plugin_self_test: Option<PathBuf>,
    /// How far an RFC 3339 version may be ahead of the event's receipt (the clock at ingest,
    /// the Kafka timestamp from the topic): seconds, or text as `humantime` reads it (`"90s"`,
    /// `"5m"`, `"2h"`, `"1d"`, `"1h 30m"`), from 1 s to 30 days. Further ahead is `422` at
    /// ingest and dead-lettered from the topic. It allows for clock differences between
    /// services; a version that is not an instant is left to the plugin. Default: `300` (5
    /// minutes).
    pub max_version_skew: Option<DurationText>,
    /// Whether Ordo creates the pipeline's table when it is missing; `false` only checks it
    /// exists with the key schema (`DescribeTable`), so the engine's role needs no
    /// `CreateTable`, and a missing table stops the start naming the key it needs.
    #[serde(default = "default_true")]
    pub create_tables: bool,
    /// Topic configuration (`min.insync.replicas`, `retention.ms`, …) set when Ordo creates
    /// the pipeline's topic; when the topic exists, each difference is a warning at start and
    /// the topic is not changed. `cleanup.policy` cannot be set.
    #[serde(default)]
    pub topic_config: BTreeMap<String, Scalar>,
    /// The policy plugin's own configuration, `[pipelines.<name>.plugin_config]` (or inline
    /// `plugin_config = { ... }`): any TOML values, handed to the plugin as a JSON object
    /// (datetimes as RFC 3339 strings) once per instance before its first call, at start-up,
    /// on every reload and by `ordo validate`. The plugin checks it: one that refuses it is
    /// not loaded, with its reason. Its keys are the plugin's (plugins/README.md lists those
    /// of the plugins shipped). A plugin built against `ordo:plugin@0.1.0` takes none.
    /// Default: `{}`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub plugin_config: toml::Table,
    /// How Ordo creates the table: the sub-table `[pipelines.<name>.table_options]` below.
    /// Applied only to a table Ordo creates (docs/deploy.md lists the IAM actions each needs).
    #[serde(default)]
    pub table_options: TableOptionsFile,
}

/// A configuration value as written: text, a whole number or a boolean.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TableOptionsFile {
    /// `"PAY_PER_REQUEST"` (on demand) or `"PROVISIONED"` with `read_capacity` and
    /// `write_capacity`. Default: on demand.
    pub billing_mode: Option<String>,
    /// Read capacity units, with `PROVISIONED` (1 to 40000).
    pub read_capacity: Option<i64>,
    /// Write capacity units, with `PROVISIONED` (1 to 40000).
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
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum DurationText {
    /// Seconds.
    Seconds(u64),
    /// Text with a unit.
    Text(String),
}

/// The default of `partitions`, as the reference shows it.
fn default_partitions() -> Option<i32> {
    Some(DEFAULT_PARTITIONS)
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IdempotencyFile {
    /// The DynamoDB table, shared by every pipeline and engine (partition key `id`, string;
    /// TTL on `expires_at`). Created with its TTL when missing, unless a pipeline has
    /// `create_tables = false`: then it must exist.
    #[serde(default = "default_idempotency_table")]
    pub table: String,
    /// How long a key is remembered, in hours (1 to 720).
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
    crate::store::keys::DEFAULT_TABLE.into()
}

fn default_idempotency_hours() -> u64 {
    crate::store::keys::DEFAULT_WINDOW.as_secs() / 3600
}

fn default_true() -> bool {
    true
}

fn default_audit_topic() -> String {
    super::DEFAULT_AUDIT_TOPIC.into()
}
