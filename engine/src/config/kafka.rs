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

/// The sub-table that turns on Amazon MSK's IAM access control.
const MSK_IAM: &str = "aws_msk_iam";

/// librdkafka properties, with secrets resolved. Its debug form shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties {
    /// Each property and its value.
    values: BTreeMap<String, String>,
    /// The AWS region whose MSK IAM tokens the clients sign, when `[kafka.aws_msk_iam]` is set.
    msk_iam_region: Option<String>,
    /// Secret properties written in the file as they are, not as a `${env:…}` or
    /// `${file:…}` reference.
    literal_secrets: Vec<String>,
}

impl KafkaProperties {
    /// Each property and its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.msk_iam_region.is_none()
    }

    /// The region of `[kafka.aws_msk_iam]`, when clients authenticate with MSK IAM.
    pub fn msk_iam_region(&self) -> Option<&str> {
        self.msk_iam_region.as_deref()
    }

    /// Secret properties (passwords, client secrets, private keys) written in the file as
    /// they are: a file that is read by many and copied into repositories and images. The
    /// engine and `ordo validate` refuse them unless told `--allow-literal-secrets`.
    pub fn literal_secrets(&self) -> &[String] {
        &self.literal_secrets
    }
}

/// Whether property `name` holds a secret.
fn is_secret(name: &str) -> bool {
    name.contains("password")
        || name.contains("secret")
        || matches!(name, "ssl.key.pem" | "sasl.oauthbearer.config")
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProperties")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("msk_iam_region", &self.msk_iam_region)
            .finish()
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
    let mut msk_iam_region = None;
    let mut literal_secrets = Vec::new();
    for (name, value) in table {
        if name == MSK_IAM {
            match msk_iam(value) {
                Ok(region) => msk_iam_region = Some(region),
                Err(why) => problem(name, why),
            }
            continue;
        }
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
        if is_secret(name) && !written.starts_with("${") {
            literal_secrets.push(name.clone());
        }
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
    if let Some((name, why)) = oauth_problem(&mut properties, msk_iam_region.is_some()) {
        problem(name, why);
    }
    let properties = KafkaProperties {
        values: properties,
        msk_iam_region,
        literal_secrets,
    };
    (properties, problems)
}

/// The region of a `[kafka.aws_msk_iam]` table: its `region`, else `AWS_REGION` or
/// `AWS_DEFAULT_REGION`.
fn msk_iam(value: &Value) -> Result<String, String> {
    let Value::Table(table) = value else {
        return Err("must be a table: `[kafka.aws_msk_iam]`".into());
    };
    if let Some(other) = table.keys().find(|k| k.as_str() != "region") {
        return Err(format!("has no setting `{other}` (only `region`)"));
    }
    match table.get("region") {
        Some(Value::String(region)) if !region.trim().is_empty() => Ok(region.clone()),
        Some(_) => Err("`region` must be an AWS region name, e.g. \"eu-west-1\"".into()),
        None => ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|r| !r.is_empty()))
            .ok_or_else(|| "needs `region` (or AWS_REGION in the environment)".into()),
    }
}

/// With MSK IAM, SASL/OAUTHBEARER over TLS is what the clients speak: set when absent, a
/// problem when set otherwise. OAUTHBEARER without it is a problem too: the only token source
/// built in is MSK IAM's (librdkafka's OIDC needs libcurl, which is not).
fn oauth_problem(
    properties: &mut BTreeMap<String, String>,
    msk_iam: bool,
) -> Option<(&'static str, String)> {
    let mechanism = properties.get("sasl.mechanisms").map(String::as_str);
    let oauth = mechanism.is_some_and(|m| m.eq_ignore_ascii_case("OAUTHBEARER"));
    if !msk_iam {
        return oauth.then(|| {
            let why = "is OAUTHBEARER, whose tokens Ordo signs only for Amazon MSK IAM: add \
             `[kafka.aws_msk_iam]` (OIDC token endpoints are not built in)";
            ("sasl.mechanisms", why.to_string())
        });
    }
    if mechanism.is_some() && !oauth {
        let why = "must be OAUTHBEARER (or left out) with `[kafka.aws_msk_iam]`";
        return Some(("sasl.mechanisms", why.into()));
    }
    properties.insert("sasl.mechanisms".into(), "OAUTHBEARER".into());
    let protocol = properties
        .entry("security.protocol".into())
        .or_insert_with(|| "SASL_SSL".into());
    let why = "must be SASL_SSL (or left out) with `[kafka.aws_msk_iam]`";
    (!protocol.eq_ignore_ascii_case("SASL_SSL")).then(|| ("security.protocol", why.into()))
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
    fn a_secret_written_as_it_is_is_noted_and_a_reference_is_not() {
        let (properties, problems) = check(
            &table(
                r#"
"sasl.username" = "ordo"
"sasl.password" = "hunter2"
"ssl.key.password" = "${env:HOME}"
"security.protocol" = "SASL_SSL"
"#,
            ),
            Path::new("."),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(properties.literal_secrets(), ["sasl.password".to_string()]);
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

    #[test]
    fn msk_iam_sets_oauthbearer_over_tls_and_refuses_what_contradicts_it() {
        let (props, problems) = check(
            &table("[aws_msk_iam]\nregion = \"eu-west-1\"\n"),
            Path::new("."),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(props.msk_iam_region(), Some("eu-west-1"));
        let values: BTreeMap<&str, &str> = props.iter().collect();
        assert_eq!(values.get("sasl.mechanisms"), Some(&"OAUTHBEARER"));
        assert_eq!(values.get("security.protocol"), Some(&"SASL_SSL"));

        let named = |text: &str| -> Vec<String> {
            let (_, problems) = check(&table(text), Path::new("."));
            problems.iter().map(ToString::to_string).collect()
        };
        let scram = named(
            "\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n[aws_msk_iam]\nregion = \"eu-west-1\"\n",
        );
        assert!(scram[0].starts_with("`kafka.\"sasl.mechanisms\"` must be OAUTHBEARER"));
        let plaintext = named(
            "\"security.protocol\" = \"SASL_PLAINTEXT\"\n[aws_msk_iam]\nregion = \"eu-west-1\"\n",
        );
        assert!(plaintext[0].starts_with("`kafka.\"security.protocol\"` must be SASL_SSL"));
        let bare_oauth = named("\"sasl.mechanisms\" = \"OAUTHBEARER\"\n");
        assert!(
            bare_oauth[0].contains("add `[kafka.aws_msk_iam]`"),
            "{bare_oauth:?}"
        );
        let typo = named("[aws_msk_iam]\nregoin = \"eu-west-1\"\n");
        assert!(typo[0].contains("has no setting `regoin`"), "{typo:?}");
    }

    #[test]
    fn tls_and_sasl_properties_are_built_in() {
        let (_, problems) = check(
            &table(
                r#"
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-256"
"ssl.endpoint.identification.algorithm" = "https"
"#,
            ),
            Path::new("."),
        );
        assert!(problems.is_empty(), "{problems:?}");
    }
}
