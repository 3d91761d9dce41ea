//! `pipelines.toml` → typed, checked pipeline definitions.
//!
//! A pipeline says *what* flows: its HTTP route, Kafka topic, key and version fields,
//! DynamoDB table and policy plugin. *How* the process runs (listen address, brokers,
//! AWS endpoint) comes from flags and the environment, not from this file.
//!
//! Reading goes in two passes so that one run names every problem together: [`document`]
//! reads the TOML (syntax, unknown keys, value types, each with its line), then [`rules`]
//! checks each pipeline's values and the clashes between pipelines.

use std::path::{Path, PathBuf};

pub mod auth;
mod document;
mod file;
pub mod kafka;
mod plugin_config;
pub mod reference;
pub mod rules;

pub use file::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_PARTITIONS, DEFAULT_REPLICATION_FACTOR,
};

use crate::plugin::reload::PluginSpec;
use crate::plugin::sandbox::{Capabilities, Limits};

/// The audit topic when `[audit]` does not name one.
pub const DEFAULT_AUDIT_TOPIC: &str = "ordo.audit";

/// The paths the engine serves itself: no pipeline route may be one of them or lie under one.
pub const ENGINE_PATHS: [&str; 6] = ["/docs", "/metrics", "/healthz", "/readyz", "/admin", "/ui"];

/// Errors reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file named.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The text is not well-formed TOML here.
    #[error("{path}: line {line}: {message}")]
    Syntax {
        /// The file named, or `<string>`.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("{}`{key}` (line {line}) {problem}", match pipeline { Some(p) => format!("pipeline `{p}`: "), None => format!("{}: ", path.display()) })]
    Key {
        /// The file named, or `<string>`.
        path: PathBuf,
        /// The pipeline whose table holds the key, if one does.
        pipeline: Option<String>,
        /// The key.
        key: String,
        /// 1-based line of the key.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A value is wrong; names the pipeline and the field.
    #[error("pipeline `{pipeline}`: `{field}` {problem}")]
    Invalid {
        /// The pipeline at fault.
        pipeline: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A value of a top-level table (`[auth]`, `[audit]`, `[kafka]`) is wrong.
    #[error("`{key}` {problem}")]
    Setting {
        /// The key at fault: `auth` or a key under it.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The file declares no pipeline.
    #[error("{0}: no pipeline is declared (add a [pipelines.<name>] table)")]
    Empty(PathBuf),
}

impl ConfigError {
    /// The pipeline the problem is about, when it is about one.
    pub fn pipeline(&self) -> Option<&str> {
        match self {
            Self::Key { pipeline, .. } => pipeline.as_deref(),
            Self::Invalid { pipeline, .. } => Some(pipeline),
            _ => None,
        }
    }

    /// The same problem, naming `path` instead of `<string>`.
    fn in_file(self, path: &Path) -> Self {
        let path = path.to_path_buf();
        match self {
            Self::Syntax { line, message, .. } => Self::Syntax {
                path,
                line,
                message,
            },
            Self::Key {
                pipeline,
                key,
                line,
                problem,
                ..
            } => Self::Key {
                path,
                pipeline,
                key,
                line,
                problem,
            },
            Self::Empty(_) => Self::Empty(path),
            other => other,
        }
    }
}

/// Every problem of a pipelines file (never none), shown one per line.
#[derive(Debug)]
pub struct Problems(pub Vec<ConfigError>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems:", all.len())?;
                for problem in all {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Problems {}

/// `[idempotency]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The DynamoDB table.
    pub table: String,
    /// How long a key is remembered.
    pub window: std::time::Duration,
}

impl Default for Idempotency {
    fn default() -> Self {
        Self {
            table: crate::store::keys::DEFAULT_TABLE.into(),
            window: crate::store::keys::DEFAULT_WINDOW,
        }
    }
}

/// A checked pipeline, ready to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The pipeline's name, used in logs, metrics and default names.
    pub name: String,
    /// HTTP route that ingests events; starts with `/`. `None`: the pipeline only consumes
    /// a topic other services produce, and does not own it.
    pub route: Option<String>,
    /// Kafka topic of the events.
    pub topic: String,
    /// Where an event's entity id comes from.
    pub key_source: KeySource,
    /// Where the record's new state is published after each write that changed it.
    pub changes_topic: Option<String>,
    /// JSON field carrying the key.
    pub key_field: String,
    /// JSON field carrying the version.
    pub version_field: String,
    /// DynamoDB table of the replica.
    pub table: String,
    /// Absolute (or config-relative resolved) path of the plugin file.
    pub plugin: PathBuf,
    /// Partitions of the topic when Ordo creates it (only with a route).
    pub partitions: i32,
    /// Replication factor of the topic when created.
    pub replication_factor: i32,
    /// Consumer group id.
    pub consumer_group: String,
    /// Dead-letter topic for events that cannot be applied.
    pub dead_letter_topic: String,
    /// The most keys applied at once by one engine.
    pub concurrency: usize,
    /// Whether the keys applied at once follow the throughput, up to `concurrency`.
    pub adaptive_concurrency: bool,
    /// Attempts before an event failing transiently is dead-lettered; 0 retries as long as
    /// the failure lasts.
    pub max_attempts: u32,
    /// Records written last kept in memory per pipeline; 0: none.
    pub cache_records: usize,
    /// Limits of every plugin call.
    pub plugin_limits: Limits,
    /// WASI capabilities granted to the plugin.
    pub plugin_capabilities: Capabilities,
    /// Self-test file (resolved like `plugin`) a new plugin must pass.
    pub plugin_self_test: Option<PathBuf>,
    /// How far ahead of its receipt an event's version may be (see [`crate::version`]).
    pub max_version_skew: std::time::Duration,
    /// The audit trail's topic (`[audit]`, engine-wide); `None` when auditing is off.
    pub audit_topic: Option<String>,
    /// Where and how long `Idempotency-Key`s are remembered (`[idempotency]`, shared by
    /// every pipeline).
    pub idempotency: Idempotency,
    /// Whether Ordo creates the table when missing; `false` needs only `DescribeTable`,
    /// `GetItem` and `PutItem` on it.
    pub create_tables: bool,
    /// Topic configuration set when Ordo creates the topic, checked when it exists.
    pub topic_config: Vec<(String, String)>,
    /// How Ordo creates the table.
    pub table_options: crate::store::TableOptions,
    /// The plugin's own configuration (`plugin_config`), as JSON; empty when not given.
    pub plugin_config: serde_json::Map<String, serde_json::Value>,
}

/// Where an event's entity id comes from (`key_source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeySource {
    /// The body's key field; the message key is not looked at.
    #[default]
    Body,
    /// The Kafka message key; the body's key field must match it, or is set from it.
    Message,
}

impl Pipeline {
    /// Whether Ordo owns the topic: creates it, produces to it. Only a pipeline with a route
    /// does; a route-less one consumes a topic other services own.
    pub fn owns_topic(&self) -> bool {
        self.route.is_some()
    }

    /// What loading this pipeline's plugin needs.
    pub fn plugin_spec(&self) -> PluginSpec {
        PluginSpec {
            path: self.plugin.clone(),
            limits: self.plugin_limits,
            capabilities: self.plugin_capabilities,
            self_test: self.plugin_self_test.clone(),
            key_field: self.key_field.clone(),
            config: serde_json::Value::Object(self.plugin_config.clone()).to_string(),
        }
    }
}

/// A file read and checked: the pipelines that could be built (with or without problems of
/// their own, so their plugins can still be checked) and every problem, in file order.
#[derive(Debug, Default)]
pub struct Checked {
    /// Every pipeline whose required keys are there, in file order.
    pub pipelines: Vec<Pipeline>,
    /// Who may call the engine; `None` without an `[auth]` table.
    pub auth: Option<auth::AuthConfig>,
    /// librdkafka properties of `[kafka]`, secrets resolved.
    pub kafka: kafka::KafkaProperties,
    /// Every problem of the file; empty when the file is right.
    pub problems: Vec<ConfigError>,
}

impl Checked {
    /// The pipelines when there is no problem, else every problem.
    pub fn into_result(self) -> Result<Vec<Pipeline>, Problems> {
        self.into_config().map(|c| c.pipelines)
    }

    /// The whole file when there is no problem, else every problem.
    pub fn into_config(self) -> Result<Config, Problems> {
        if self.problems.is_empty() {
            Ok(Config {
                pipelines: self.pipelines,
                auth: self.auth,
                kafka: self.kafka,
            })
        } else {
            Err(Problems(self.problems))
        }
    }
}

/// A pipelines file, checked: what runs and who may call it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pipelines, in file order.
    pub pipelines: Vec<Pipeline>,
    /// Who may call the engine; `None` without an `[auth]` table (loopback only).
    pub auth: Option<auth::AuthConfig>,
    /// librdkafka properties every Kafka client gets (`[kafka]`).
    pub kafka: kafka::KafkaProperties,
}

/// Reads and checks `path`, with its `[auth]` table.
pub fn load(path: &Path) -> Result<Config, Problems> {
    check_file(path).into_config()
}

/// Parses and checks TOML text; relative plugin paths are joined to `base`.
pub fn from_str(text: &str, base: &Path) -> Result<Vec<Pipeline>, Problems> {
    check_str(text, base).into_result()
}

/// Reads and checks `path`, naming every problem; problems of the text name the file.
pub fn check_file(path: &Path) -> Checked {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            return Checked {
                pipelines: Vec::new(),
                auth: None,
                kafka: Default::default(),
                problems: vec![ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }],
            }
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut checked = check_str(&text, base);
    checked.problems = checked
        .problems
        .into_iter()
        .map(|e| e.in_file(path))
        .collect();
    checked
}

/// Parses and checks TOML text, naming every problem: syntax errors, unknown keys and values
/// of the wrong type (with their lines), missing keys, values out of bounds, and clashes
/// between pipelines (named on the pipeline written later).
pub fn check_str(text: &str, base: &Path) -> Checked {
    let document = document::read(text);
    let mut checked = Checked {
        problems: document.problems,
        ..Checked::default()
    };
    if document.pipelines.is_empty() && checked.problems.is_empty() {
        checked.problems.push(ConfigError::Empty("<string>".into()));
        return checked;
    }
    // Clashes are checked on the values as written, so a pipeline with problems of its own
    // still gets its clashes reported.
    checked.problems.extend(rules::clashes(&document.pipelines));
    if let Some(file) = document.auth {
        let names: Vec<String> = document.pipelines.iter().map(|(n, _)| n.clone()).collect();
        let (auth, problems) = auth::check(file, &names, base);
        checked.auth = auth;
        checked.problems.extend(problems);
    }
    if let Some(table) = &document.kafka {
        let (properties, problems) = kafka::check(table, base);
        checked.kafka = properties;
        checked.problems.extend(problems);
    }
    let audit_topic = document.audit.enabled.then(|| document.audit.topic.clone());
    if let Some(problem) = audit_topic.as_deref().and_then(rules::kafka_name_problem) {
        checked.problems.push(ConfigError::Setting {
            key: "audit.topic".into(),
            problem,
        });
    }
    let idempotency = rules::idempotency(&document.idempotency, &mut checked.problems);
    for (name, p) in document.pipelines {
        let (pipeline, problems) = rules::build(&name, p, base, &ENGINE_PATHS);
        checked.problems.extend(problems);
        checked.pipelines.extend(pipeline.map(|mut p| {
            p.audit_topic = audit_topic.clone();
            p.idempotency = idempotency.clone();
            p
        }));
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[pipelines.patient-profile]
route = "/patientprofile"
topic = "patient.profile.updated"
key_field = "PatientId"
version_field = "UpdatedAt"
table = "patient-profile"
plugin = "plugins/build/patient_profile_lww.wasm"
"#;

    #[test]
    fn defaults_are_filled_in() {
        let p = from_str(MINIMAL, Path::new("/etc/ordo")).expect("valid config");
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!(p.name, "patient-profile");
        assert_eq!(p.partitions, DEFAULT_PARTITIONS);
        assert_eq!(p.consumer_group, "ordo.patient-profile");
        assert_eq!(p.dead_letter_topic, "patient.profile.updated.dlq");
        assert_eq!(
            p.plugin,
            PathBuf::from("/etc/ordo/plugins/build/patient_profile_lww.wasm")
        );
    }

    #[test]
    fn a_pipeline_without_a_route_consumes_a_topic_it_does_not_own() {
        let routeless = MINIMAL.replace("route = \"/patientprofile\"\n", "");
        let p = &from_str(&routeless, Path::new(".")).expect("a route is optional")[0];
        assert_eq!(p.route, None);
        assert!(!p.owns_topic());
        assert_eq!(p.key_source, KeySource::Body);
        assert_eq!(p.changes_topic, None);
        let p = &from_str(
            &format!("{routeless}key_source = \"message\"\nchanges_topic = \"patient.changes\"\n"),
            Path::new("."),
        )
        .expect("valid")[0];
        assert_eq!(p.key_source, KeySource::Message);
        assert_eq!(p.changes_topic.as_deref(), Some("patient.changes"));
        for (line, says) in [
            (
                "partitions = 3",
                "`partitions` applies only to a topic Ordo creates",
            ),
            (
                "topic_config = { \"retention.ms\" = 1 }",
                "`topic_config` applies only to a topic Ordo creates",
            ),
            ("key_source = \"header\"", "`key_source` \"header\" must be"),
            ("changes_topic = \"a b\"", "`changes_topic`"),
            (
                "changes_topic = \"patient.profile.updated.dlq\"",
                "`changes_topic` must differ",
            ),
        ] {
            let msg = from_str(&format!("{routeless}{line}\n"), Path::new("."))
                .expect_err(line)
                .to_string();
            assert!(msg.contains(says), "{line}: {msg}");
        }
        // With a route, the topic is Ordo's and `partitions` is read.
        let p = &from_str(&format!("{MINIMAL}partitions = 3\n"), Path::new(".")).expect("valid")[0];
        assert!(p.owns_topic());
        assert_eq!(p.partitions, 3);
    }

    #[test]
    fn the_plugins_key_and_version_fields_must_be_the_pipelines() {
        let ok = format!(
            "{MINIMAL}[pipelines.patient-profile.plugin_config]\nkey_field = \"PatientId\"\nversion_field = \"UpdatedAt\"\n"
        );
        from_str(&ok, Path::new(".")).expect("the same fields");
        for (from, to, says) in [
            (
                "key_field = \"PatientId\"\nv",
                "key_field = \"Id\"\nv",
                "`key_field` is \"Id\" but the pipeline's `key_field` is \"PatientId\"",
            ),
            (
                "version_field = \"UpdatedAt\"\n",
                "version_field = \"Rev\"\n",
                "`version_field` is \"Rev\"",
            ),
        ] {
            let (head, table) = ok.split_at(
                ok.find("[pipelines.patient-profile.plugin_config]")
                    .unwrap_or_default(),
            );
            let text = format!("{head}{}", table.replace(from, to));
            let msg = from_str(&text, Path::new(".")).expect_err(to).to_string();
            assert!(
                msg.contains("`plugin_config`") && msg.contains(says),
                "{msg}"
            );
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = format!("{MINIMAL}partitons = 3\n");
        let err = from_str(&text, Path::new(".")).expect_err("typo must fail");
        let msg = err.to_string();
        assert!(msg.contains("partitons"), "{msg}");
        assert!(msg.contains("line 9"), "{msg}");
    }

    #[test]
    fn one_check_names_unknown_keys_missing_keys_bounds_and_clashes_together() {
        let text = format!(
            "{MINIMAL}partitons = 3\nconcurrency = 100000\n\n[pipelines.second]\nroute = \"/patientprofile\"\ntopic = \"t2\"\n"
        );
        let checked = check_str(&text, Path::new("."));
        let problems: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
        for expected in [
            "pipeline `patient-profile`: `partitons` (line 9) is not a known key",
            "pipeline `patient-profile`: `concurrency` must be between 1 and 4096",
            "pipeline `second`: `route` `/patientprofile` is already used by pipeline `patient-profile`",
            "pipeline `second`: `key_field` is required",
            "pipeline `second`: `plugin` is required",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{expected} missing from {problems:#?}"
            );
        }
        assert_eq!(
            checked.pipelines.len(),
            1,
            "the first pipeline is still built, so its plugin can be checked"
        );
    }

    #[test]
    fn routes_of_the_engine_and_nested_routes_are_refused() {
        for (route, says) in [
            ("/metrics", "engine's own `/metrics`"),
            ("/healthz", "engine's own"),
            ("/readyz", "engine's own"),
            ("/docs/openapi.json", "engine's own `/docs`"),
            ("/admin", "engine's own"),
            ("/ui", "engine's own"),
            ("/ui/app.js", "engine's own `/ui`"),
            ("/patient/:id", "':'"),
        ] {
            let text = MINIMAL.replace("/patientprofile", route);
            let msg = from_str(&text, Path::new("."))
                .expect_err(route)
                .to_string();
            assert!(
                msg.contains("`route`") && msg.contains(says),
                "{route}: {msg}"
            );
        }
        let nested = MINIMAL
            .replace("patient-profile]", "nested]")
            .replace("/patientprofile", "/patientprofile/new")
            .replace("patient.profile.updated", "other")
            .replace("table = \"patient-profile\"", "table = \"other\"");
        let msg = from_str(&format!("{MINIMAL}{nested}"), Path::new("."))
            .expect_err("nested routes")
            .to_string();
        assert!(
            msg.contains("pipeline `nested`") && msg.contains("nest"),
            "{msg}"
        );
    }

    #[test]
    fn topic_config_and_table_options_are_read_and_checked() {
        let text = format!(
            "{MINIMAL}topic_config = {{ \"min.insync.replicas\" = 2, \"retention.ms\" = \"86400000\" }}\n\
             [pipelines.patient-profile.table_options]\n\
             billing_mode = \"PROVISIONED\"\nread_capacity = 5\nwrite_capacity = 5\n\
             point_in_time_recovery = true\nkms_key_id = \"alias/ordo\"\n\
             deletion_protection = true\ntags = {{ owner = \"consultation\" }}\n"
        );
        let p = &from_str(&text, Path::new(".")).expect("valid")[0];
        assert_eq!(
            p.topic_config,
            vec![
                ("min.insync.replicas".to_string(), "2".to_string()),
                ("retention.ms".to_string(), "86400000".to_string())
            ]
        );
        let o = &p.table_options;
        assert_eq!(
            o.billing,
            crate::store::Billing::Provisioned { read: 5, write: 5 }
        );
        assert!(o.point_in_time_recovery && o.deletion_protection);
        assert_eq!(o.kms_key_id.as_deref(), Some("alias/ordo"));
        assert_eq!(o.tags, vec![("owner".into(), "consultation".into())]);

        for (bad, says) in [
            (
                "topic_config = { \"cleanup.policy\" = \"compact\" }",
                "`cleanup.policy` cannot be set",
            ),
            (
                "topic_config = { \"Retention MS\" = 1 }",
                "not a topic configuration name",
            ),
            (
                "[pipelines.patient-profile.table_options]\nbilling_mode = \"PROVISIONED\"",
                "needs `read_capacity`",
            ),
            (
                "[pipelines.patient-profile.table_options]\nread_capacity = 5",
                "go with `billing_mode",
            ),
            (
                "[pipelines.patient-profile.table_options]\nbilling_mode = \"FREE\"",
                "must be \"PAY_PER_REQUEST\"",
            ),
            (
                "[pipelines.patient-profile.table_options]\nkms_key_id = \" \"",
                "`kms_key_id` must not be empty",
            ),
            (
                "[pipelines.patient-profile.table_options]\ntags = { \"aws:x\" = \"y\" }",
                "reserved",
            ),
            (
                "[pipelines.patient-profile.table_options]\npitr = true",
                "pitr",
            ),
        ] {
            let msg = from_str(&format!("{MINIMAL}{bad}\n"), Path::new("."))
                .expect_err(bad)
                .to_string();
            assert!(msg.contains(says), "{bad}: {msg}");
        }
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let text = format!("pipeline = 1\n{MINIMAL}");
        let msg = from_str(&text, Path::new("."))
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("pipeline") && msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn bad_values_name_pipeline_and_field() {
        let cases = [
            (
                "route = \"/patientprofile\"",
                "route = \"patientprofile\"",
                "route",
            ),
            ("table = \"patient-profile\"", "table = \" \"", "table"),
            ("table = \"patient-profile\"", "table = \"pp\"", "table"),
            (
                "topic = \"patient.profile.updated\"",
                "topic = \"bad topic!\"",
                "topic",
            ),
            (
                "version_field = \"UpdatedAt\"",
                "version_field = \"PatientId\"",
                "version_field",
            ),
        ];
        for (from, to, field) in cases {
            let text = MINIMAL.replace(from, to);
            let msg = from_str(&text, Path::new(".")).expect_err(to).to_string();
            assert!(
                msg.contains("`patient-profile`") && msg.contains(&format!("`{field}`")),
                "{msg}"
            );
        }
        for (line, field) in [
            ("partitions = 0", "partitions"),
            ("partitions = 100000", "partitions"),
            ("replication_factor = 99", "replication_factor"),
            ("max_attempts = 2000000", "max_attempts"),
            ("cache_records = 99999999", "cache_records"),
            ("plugin_timeout_ms = 600000", "plugin_timeout_ms"),
            ("plugin_fuel = 0", "plugin_fuel"),
            ("plugin_memory_mib = 0", "plugin_memory_mib"),
            ("plugin_capabilities = [\"network\"]", "plugin_capabilities"),
            ("dead_letter_topic = \"dead letters\"", "dead_letter_topic"),
        ] {
            let text = format!("{MINIMAL}{line}\n");
            let msg = from_str(&text, Path::new(".")).expect_err(line).to_string();
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
        }
    }

    #[test]
    fn plugin_limits_default_and_can_be_set() {
        let p = &from_str(MINIMAL, Path::new(".")).expect("valid")[0];
        assert_eq!(p.plugin_limits, Limits::default());
        assert_eq!(p.plugin_capabilities, Capabilities::default());
        let text = format!(
            "{MINIMAL}plugin_fuel = 5\nplugin_timeout_ms = 7\nplugin_memory_mib = 2\nplugin_capabilities = [\"clocks\"]\nplugin_self_test = \"t.jsonl\"\n"
        );
        let p = &from_str(&text, Path::new("/etc/ordo")).expect("valid")[0];
        assert_eq!(p.plugin_limits.fuel, 5);
        assert_eq!(p.plugin_limits.timeout.as_millis(), 7);
        assert_eq!(p.plugin_limits.memory_bytes, 2 << 20);
        assert!(p.plugin_capabilities.clocks && !p.plugin_capabilities.random);
        assert_eq!(p.plugin_self_test, Some(PathBuf::from("/etc/ordo/t.jsonl")));
    }

    #[test]
    fn shared_topic_is_refused_on_the_pipeline_written_later() {
        // `another` sorts before `patient-profile` but comes after it in the file.
        let second = MINIMAL
            .replace("patient-profile]", "another]")
            .replace("/patientprofile", "/other")
            .replace("table = \"patient-profile\"", "table = \"other\"");
        let msg = from_str(&format!("{MINIMAL}{second}"), Path::new("."))
            .expect_err("shared topic")
            .to_string();
        assert!(
            msg.contains("pipeline `another`")
                && msg.contains("`topic`")
                && msg.contains("patient.profile.updated"),
            "{msg}"
        );
    }

    #[test]
    fn empty_file_is_an_error() {
        let problems = from_str("", Path::new(".")).expect_err("empty");
        assert!(
            matches!(problems.0[..], [ConfigError::Empty(_)]),
            "{problems}"
        );
    }

    #[test]
    fn repository_pipelines_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines.toml");
        let p = load(&path)
            .map(|c| c.pipelines)
            .expect("the shipped pipelines.toml is valid");
        assert_eq!(p[0].route.as_deref(), Some("/patientprofile"));
        assert_eq!(p[0].table, "patient-profile");
    }
}
