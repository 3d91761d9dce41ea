//! `ordo validate`: every problem of a pipelines file, its plugins and, unless told not to,
//! its environment, each naming the pipeline and the key at fault.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::bus::kafka::KafkaConfig;
use crate::config::{self, Pipeline};
use crate::plugin::reload::load_checked;
use crate::plugin::Policy;
use crate::store::dynamo::{self, DynamoStore};

/// How long the broker and DynamoDB get to answer.
const ENVIRONMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to check besides the file itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// Also check that the broker answers and each table has the right key schema.
    pub environment: bool,
    /// How to reach the brokers (the file's `[kafka]` properties are added to it).
    pub kafka: KafkaConfig,
    /// Accept secrets written in `[kafka]` as they are.
    pub allow_literal_secrets: bool,
}

/// The outcome: the pipelines that are right as written, and every problem.
#[derive(Debug, Default)]
pub struct Report {
    /// Names of the pipelines that are right as written (their plugins and tables were checked).
    pub pipelines: Vec<String>,
    /// One line per problem.
    pub problems: Vec<String>,
    /// One line per thing worth knowing that is not a problem (e.g. a table to be created).
    pub notes: Vec<String>,
}

/// Checks `path` as [`Options`] say.
pub async fn validate(path: &Path, options: &Options) -> Report {
    let checked = config::check_file(path);
    let mut report = Report {
        pipelines: checked.pipelines.iter().map(|p| p.name.clone()).collect(),
        problems: checked.problems.iter().map(ToString::to_string).collect(),
        notes: Vec::new(),
    };
    if !options.allow_literal_secrets {
        for name in checked.kafka.literal_secrets() {
            report.problems.push(format!(
                "kafka.\"{name}\": a secret written as it is; refer to it (\"${{env:NAME}}\" or \"${{file:PATH}}\"), or pass --allow-literal-secrets"
            ));
        }
    }
    // Every pipeline that could be built gets its plugin checked, problems or not.
    for p in &checked.pipelines {
        check_plugin(p, &mut report);
    }
    if options.environment {
        // Only pipelines right as written: a table name DynamoDB refuses is already named.
        let right: Vec<Pipeline> = checked
            .pipelines
            .iter()
            .filter(|p| {
                !checked
                    .problems
                    .iter()
                    .any(|e| e.pipeline() == Some(&p.name))
            })
            .cloned()
            .collect();
        let kafka = options.kafka.clone().with_properties(&checked.kafka);
        check_environment(&right, &kafka, &mut report).await;
    }
    report
}

/// The plugin loads, implements the contract, passes its self-test, and its schema has the
/// key and version fields.
fn check_plugin(p: &Pipeline, report: &mut Report) {
    let mut spec = p.plugin_spec();
    // A self-test file that cannot be read is its own key's problem; the plugin is still
    // checked, without it.
    if let Some(test) = &spec.self_test {
        if let Err(e) = std::fs::File::open(test) {
            report.problems.push(format!(
                "pipeline `{}`: `plugin_self_test` cannot read {}: {e}",
                p.name,
                test.display()
            ));
            spec.self_test = None;
        }
    }
    let policy = match load_checked(&spec) {
        Ok(policy) => policy,
        Err(e) => {
            // A configuration the plugin refuses is the `plugin_config` table's problem.
            let key = match e {
                crate::plugin::PluginError::Config { .. } => "plugin_config",
                _ => "plugin",
            };
            report
                .problems
                .push(format!("pipeline `{}`: `{key}` {e}", p.name));
            return;
        }
    };
    let schema: Value = policy
        .schema()
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    for (key, field) in [
        ("key_field", &p.key_field),
        ("version_field", &p.version_field),
    ] {
        if schema["properties"].get(field).is_none() {
            report.problems.push(format!(
                "pipeline `{}`: `{key}` {field:?} is not a property of the plugin's schema",
                p.name
            ));
        }
    }
}

/// A warning for a pipeline whose topics would have one replica on a cluster of `brokers`.
fn replication_note(p: &Pipeline, brokers: usize) -> Option<String> {
    (p.replication_factor == 1 && brokers > 1).then(|| {
        format!(
            "pipeline `{}`: `replication_factor` is 1 on a cluster of {brokers} brokers: losing one broker loses its partitions' events; 3 is usual (with min.insync.replicas = 2)",
            p.name
        )
    })
}

async fn check_environment(pipelines: &[Pipeline], kafka: &KafkaConfig, report: &mut Report) {
    let broker = match kafka.producer(ENVIRONMENT_TIMEOUT) {
        Ok(publisher) => match publisher.broker_count(ENVIRONMENT_TIMEOUT).await {
            Ok(brokers) => {
                report.notes.extend(
                    pipelines
                        .iter()
                        .filter_map(|p| replication_note(p, brokers)),
                );
                None
            }
            Err(e) => Some(e),
        },
        Err(e) => Some(e),
    };
    if let Some(e) = broker {
        for p in pipelines {
            report.problems.push(format!(
                "pipeline `{}`: `topic` {:?} cannot be reached: the brokers at {} do not answer ({e})",
                p.name,
                p.topic,
                kafka.brokers()
            ));
        }
    }
    let client = dynamo::client().await;
    // Each pipeline's table, then the Idempotency-Key table they share.
    let mut tables: Vec<(String, &str, &str, bool)> = pipelines
        .iter()
        .map(|p| {
            let label = format!("pipeline `{}`: `table`", p.name);
            (
                label,
                p.table.as_str(),
                p.key_field.as_str(),
                p.create_tables,
            )
        })
        .collect();
    if let Some(first) = pipelines.first() {
        let create = pipelines.iter().all(|p| p.create_tables);
        let label = "`[idempotency] table`".to_string();
        tables.push((label, first.idempotency.table.as_str(), "id", create));
    }
    for (label, table, key, create) in tables {
        let store = DynamoStore::new(client.clone(), table, key);
        match tokio::time::timeout(ENVIRONMENT_TIMEOUT, store.inspect()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) if !create => report.problems.push(format!(
                "{label} {table:?} does not exist, and `create_tables = false`: create it (partition key {key:?}, string)"
            )),
            Ok(Ok(false)) => report.notes.push(format!(
                "{label} {table:?} does not exist yet; `ordo run` creates it"
            )),
            Ok(Err(e)) => report.problems.push(format!(
                "{label} {} (is AWS_ENDPOINT_URL right? the local stack's is http://127.0.0.1:4566)",
                shorten(&e.to_string())
            )),
            Err(_) => report.problems.push(format!(
                "{label} {table:?}: DynamoDB did not answer within {} s (check AWS_ENDPOINT_URL and AWS_REGION)",
                ENVIRONMENT_TIMEOUT.as_secs()
            )),
        }
    }
}

/// The first 200 characters of an SDK error, which can run to kilobytes.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_replica_on_several_brokers_is_warned_about() {
        let mut p = crate::testing::pipeline("p");
        assert!(replication_note(&p, 1).is_none());
        let note = replication_note(&p, 3).expect("a warning");
        assert!(note.contains("cluster of 3 brokers"), "{note}");
        p.replication_factor = 3;
        assert!(replication_note(&p, 3).is_none());
    }
}
