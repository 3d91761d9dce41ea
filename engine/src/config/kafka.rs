//! The `[kafka]` table: librdkafka properties every Kafka client of the engine and its
//! commands gets (`security.protocol`, `ssl.ca.location`, `sasl.mechanisms`, …). A secret is
//! never written in the file: a value `"${env:NAME}"` is the environment variable `NAME`, and
//! `"${file:/run/secrets/kafka}"` the file's content (without its trailing newline).
//!
//! ```toml
//! [kafka]
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanisms" = "SCRAM-SHA-512"
//! "sasl.username" = "ordo"
//! "sasl.password" = "${env:KAFKA_PASSWORD}"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use toml::Value;

use super::ConfigError;

/// Properties the engine sets itself, and the flag or reason that stands for each.
const OWNED: [(&str, &str); 10] = [
    ("bootstrap.servers", "is set by --brokers or KAFKA_BROKERS"),
    (
        "metadata.broker.list",
        "is set by --brokers or KAFKA_BROKERS",
    ),
    ("client.id", "is set by the engine per client"),
    ("group.id", "is each pipeline's `consumer_group`"),
    (
        "enable.idempotence",
        "is always on: the producer must write each event once",
    ),
    (
        "acks",
        "is always `all`: an event is acknowledged only once replicated",
    ),
    (
        "enable.auto.commit",
        "is off: offsets are committed once effects are durable",
    ),
    (
        "enable.auto.offset.store",
        "is off: offsets are stored once effects are durable",
    ),
    ("auto.offset.reset", "is set by the engine per client"),
    ("partitioner", "is `murmur2_random`, as the Java client's"),
];

/// librdkafka properties, with secrets resolved. Its debug form shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    /// Each property and its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Reads `[kafka]`: each value resolved, each name checked with librdkafka; every problem
/// named (by property, never with a value).
pub(super) fn check(table: &toml::Table, base: &Path) -> (KafkaProperties, Vec<ConfigError>) {
    let mut properties = BTreeMap::new();
    let mut problems = Vec::new();
    let mut problem = |name: &str, text: String| {
        problems.push(ConfigError::Setting {
            key: format!("kafka.\"{name}\""),
            problem: text,
        })
    };
    for (name, value) in table {
        if let Some((_, why)) = OWNED.iter().find(|(owned, _)| owned == name) {
            problem(name, format!("cannot be set here: it {why}"));
            continue;
        }
        let written = match value {
            Value::String(s) => s.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Float(x) => x.to_string(),
            _ => {
                problem(name, "must be a string, number or boolean".into());
                continue;
            }
        };
        let resolved = match resolve(&written, base) {
            Ok(v) => v,
            Err(why) => {
                problem(name, why);
                continue;
            }
        };
        let mut config = rdkafka::ClientConfig::new();
        config.set(name, &resolved);
        if let Err(e) = config.create_native_config() {
            // librdkafka's message names the property and, for a bad value, the value: only
            // the kind of failure is kept, as the value may be a secret.
            let text = e.to_string();
            let why = if text.contains("No such configuration property") {
                "is not a librdkafka property (see librdkafka's CONFIGURATION.md)".to_string()
            } else {
                "has a value librdkafka does not accept for it".to_string()
            };
            problem(name, why);
            continue;
        }
        properties.insert(name.clone(), resolved);
    }
    (KafkaProperties(properties), problems)
}

/// `written` with a `${env:NAME}` or `${file:PATH}` reference replaced by what it names.
fn resolve(written: &str, base: &Path) -> Result<String, String> {
    let Some(inner) = written.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return Ok(written.to_string());
    };
    match inner.split_once(':') {
        Some(("env", name)) => std::env::var(name)
            .map_err(|_| format!("names the environment variable `{name}`, which is not set")),
        Some(("file", path)) => {
            let path = base.join(path);
            std::fs::read_to_string(&path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| {
                    format!(
                        "names the file {}, which cannot be read: {e}",
                        path.display()
                    )
                })
        }
        _ => Err("a reference must be `${env:NAME}` or `${file:PATH}`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("TOML")
    }

    #[test]
    fn properties_resolve_secrets_and_every_problem_is_named_without_values() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("secret"), "s3cret-file\n").expect("write");
        std::env::set_var("ORDO_TEST_KAFKA_SECRET", "s3cret-env");
        let (props, problems) = check(
            &table(
                r#"
"socket.keepalive.enable" = true
"sasl.password" = "${env:ORDO_TEST_KAFKA_SECRET}"
"client.rack" = "${file:secret}"
"message.max.bytes" = 2000000
"bootstrap.servers" = "elsewhere:9092"
"no.such.property" = "x"
"sasl.username" = "${env:ORDO_TEST_KAFKA_UNSET}"
"socket.timeout.ms" = "${vault:x}"
"#,
            ),
            dir.path(),
        );
        let values: BTreeMap<&str, &str> = props.iter().collect();
        assert_eq!(values.get("sasl.password"), Some(&"s3cret-env"));
        assert_eq!(values.get("client.rack"), Some(&"s3cret-file"));
        assert_eq!(values.get("message.max.bytes"), Some(&"2000000"));
        assert_eq!(values.get("socket.keepalive.enable"), Some(&"true"));
        assert!(
            !format!("{props:?}").contains("s3cret"),
            "no value in debug output"
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for expected in [
            "`kafka.\"bootstrap.servers\"` cannot be set here",
            "`kafka.\"no.such.property\"` is not a librdkafka property",
            "`kafka.\"sasl.username\"` names the environment variable `ORDO_TEST_KAFKA_UNSET`",
            "`kafka.\"socket.timeout.ms\"` a reference must be",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(expected)),
                "{expected} missing from {text:#?}"
            );
        }
        assert_eq!(text.len(), 4, "{text:#?}");
    }
}
