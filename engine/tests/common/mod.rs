//! Harness for end-to-end tests, split by job: [`engine`] runs the `ordo` binary on a free
//! port with a pipelines file of its own (unique topic, table and group), [`workload`] makes
//! shuffled updates and checks the replica, [`kafka`] and [`dynamo`] talk to the local stack's
//! real servers, [`otlp`] receives the spans an engine exports, [`ledger`] keeps a test's own account of what it sent and checks it against
//! the topics and the table, [`stack`] finds the stack's cache and starts private servers to break,
//! [`proxy`] puts faults between the engine and DynamoDB, and [`hostile`] lists the hostile
//! plugin's attacks.
#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

pub mod dynamo;
pub mod engine;
pub mod hostile;
pub mod kafka;
pub mod ledger;
pub mod otlp;
pub mod proxy;
pub mod stack;
pub mod tls;
pub mod workload;

pub use dynamo::{dynamodb, dynamodb_at, get_item, s, wait_item, PrivateDynamo};
pub use engine::{api_keys_table, first_answer, Engine, EngineBuilder, Names, EFFECT_TIMEOUT};
pub use kafka::{
    brokers, create_topic, produce_raw, produce_unkeyed, produce_with_headers, produce_with_id,
    read_all, read_all_json, read_dead_letters, read_json_until, topic_size, Letter, PrivateBroker,
    Read,
};
pub use ledger::{Counts, Exact, Found, Ledger};
pub use otlp::Collector;
pub use proxy::FaultProxy;
pub use stack::{
    built_plugin, cache_dir, field_merge_plugin, free_port, hostile_plugin, lww_plugin,
    ordo_command, patient_config, patient_config_file, patient_plugin_config, pipelines_file,
    pipelines_file_of, send_signal,
};
pub use tls::{pki, Pki};
pub use workload::{assert_newest, ndjson_with_bad_lines, Rng, Workload};
