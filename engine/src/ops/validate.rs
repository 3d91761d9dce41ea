//! `ordo validate`: every problem of a pipelines file, its plugins and, unless told not to,
//! its environment, each naming the pipeline and the key at fault.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::bus::kafka::KafkaConfig;
use crate::config::{self, Pipeline};
use crate::plugin::reload::load_checked;
use crate::plugin::wasm::WasmPolicy;
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
    let mut policies = std::collections::HashMap::new();
    for p in &checked.pipelines {
        if let Some(policy) = check_plugin(p, &mut report) {
            policies.insert(p.name.clone(), Arc::new(policy));
        }
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
        for p in &right {
            check_topic(p, &kafka, policies.get(&p.name), &mut report).await;
        }
    }
    report
}

/// The plugin loads, implements the contract, passes its self-test, and its schema has the
/// key and version fields.
fn check_plugin(p: &Pipeline, report: &mut Report) -> Option<WasmPolicy> {
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
            return None;
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
    Some(policy)
}

/// The pipeline's topic on the brokers: whether it exists and with how many partitions, and
/// for a route-less pipeline (whose topic other services produce, and must exist) the last
/// few messages of each partition checked as the engine would admit them: entity id from
/// where `key_source` says, then the plugin's `validate`. Only counts and reason codes are
/// reported, never a message's values.
async fn check_topic(
    p: &Pipeline,
    kafka: &KafkaConfig,
    policy: Option<&Arc<WasmPolicy>>,
    report: &mut Report,
) {
    let partitions = match tokio::time::timeout(
        ENVIRONMENT_TIMEOUT * 2,
        crate::bus::kafka::partition_count(kafka, &p.topic),
    )
    .await
    {
        Ok(Ok(found)) => found,
        // The brokers not answering is already named.
        Ok(Err(_)) | Err(_) => return,
    };
    let Some(partitions) = partitions else {
        if p.owns_topic() {
            report.notes.push(format!(
                "pipeline `{}`: `topic` {:?} does not exist yet; `ordo run` creates it with {} partitions",
                p.name, p.topic, p.partitions
            ));
        } else {
            report.problems.push(format!(
                "pipeline `{}`: `topic` {:?} does not exist; a pipeline without a `route` consumes a topic other services produce, and Ordo does not create it",
                p.name, p.topic
            ));
        }
        return;
    };
    let owner = if p.owns_topic() {
        "Ordo's, as the pipeline has a route"
    } else {
        "not Ordo's: it is only read"
    };
    report.notes.push(format!(
        "pipeline `{}`: `topic` {:?} exists with {partitions} partition(s), {owner}",
        p.name, p.topic
    ));
    if p.owns_topic() {
        return;
    }
    let Some(policy) = policy else { return };
    match sample(p, kafka, policy).await {
        Ok(sampled) => report.notes.push(sampled.line(p)),
        Err(e) => report.problems.push(format!(
            "pipeline `{}`: `topic` {:?} could not be sampled: {e}",
            p.name, p.topic
        )),
    }
}

/// Messages read per partition by [`sample`].
pub const SAMPLE_PER_PARTITION: i64 = 20;

/// What a sample of a topic showed.
#[derive(Debug, Default)]
struct Sampled {
    /// Messages read.
    read: usize,
    /// Of those, admitted.
    admitted: usize,
    /// Reason code → messages refused for it.
    refused: std::collections::BTreeMap<&'static str, usize>,
}

impl Sampled {
    fn line(&self, p: &Pipeline) -> String {
        let mut line = format!(
            "pipeline `{}`: sampled the last {} message(s) of `topic` {:?} (up to {SAMPLE_PER_PARTITION} a partition): {} would apply",
            p.name, self.read, p.topic, self.admitted
        );
        if !self.refused.is_empty() {
            let refused: Vec<String> = self
                .refused
                .iter()
                .map(|(code, n)| format!("{n} {code}"))
                .collect();
            line.push_str(&format!(
                ", {} would be dead-lettered ({})",
                self.read - self.admitted,
                refused.join(", ")
            ));
        }
        line
    }
}

/// Reads the last messages of `p`'s topic and checks each as the engine would admit it.
async fn sample(
    p: &Pipeline,
    kafka: &KafkaConfig,
    policy: &Arc<WasmPolicy>,
) -> Result<Sampled, crate::Error> {
    use crate::bus::kafka::From;
    use crate::pipeline::admission::{Admission, Event};
    let reader = kafka
        .reader(&format!("ordo.validate.{}", p.name))
        .map_err(|e| crate::Error::bus(&p.name, kafka, e))?;
    let mut read = reader
        .to_end(&p.topic, From::Last(SAMPLE_PER_PARTITION))
        .map_err(|e| crate::Error::bus(&p.name, kafka, e))?;
    let admission = Admission {
        key_source: p.key_source,
        ..Admission::new(&p.key_field)
    };
    let mut sampled = Sampled::default();
    while let Some(message) = read
        .next()
        .await
        .map_err(|e| crate::Error::bus(&p.name, kafka, e))?
    {
        sampled.read += 1;
        let event = Event {
            key: message.key.as_deref(),
            payload: message.payload.as_deref().unwrap_or_default(),
            timestamp: None,
            position: None,
        };
        match admission.admit(policy.as_ref(), &event) {
            Ok(Ok(_)) => sampled.admitted += 1,
            Ok(Err(reason)) => *sampled.refused.entry(reason.code().as_str()).or_default() += 1,
            Err(_) => *sampled.refused.entry("plugin-busy").or_default() += 1,
        }
    }
    Ok(sampled)
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
