//! A checked pipeline for tests, shaped like the seed's.

use std::path::PathBuf;

use crate::config::{self, Pipeline};
use crate::plugin::sandbox::{Capabilities, Limits};

/// Pipeline `name`: route `/<name>`, topic `<name>.events`, keyed by `PatientId`, versioned by
/// `UpdatedAt`, table `<name>-table`, with every default.
pub fn pipeline(name: &str) -> Pipeline {
    Pipeline {
        name: name.to_string(),
        route: Some(format!("/{name}")),
        key_source: Default::default(),
        changes_topic: None,
        topic: format!("{name}.events"),
        key_field: "PatientId".into(),
        version_field: "UpdatedAt".into(),
        table: format!("{name}-table"),
        plugin: PathBuf::from("unused.wasm"),
        partitions: config::DEFAULT_PARTITIONS,
        replication_factor: config::DEFAULT_REPLICATION_FACTOR,
        consumer_group: format!("ordo.{name}"),
        dead_letter_topic: format!("{name}.events.dlq"),
        concurrency: config::DEFAULT_CONCURRENCY,
        adaptive_concurrency: true,
        max_attempts: config::DEFAULT_MAX_ATTEMPTS,
        cache_records: crate::store::cache::DEFAULT_CAPACITY,
        plugin_limits: Limits::default(),
        plugin_capabilities: Capabilities::default(),
        plugin_self_test: None,
        max_version_skew: crate::version::DEFAULT_MAX_SKEW,
        audit_topic: None,
        idempotency: Default::default(),
        create_tables: true,
        topic_config: Vec::new(),
        table_options: Default::default(),
        plugin_config: Default::default(),
    }
}
