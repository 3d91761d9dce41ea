//! `pipelines.toml` → typed, checked pipeline definitions.
//!
//! A pipeline says *what* flows: its HTTP route, Kafka topic, key and version fields,
//! DynamoDB table and policy plugin. *How* the process runs (listen address, brokers,
//! AWS endpoint) comes from flags and the environment, not from this file.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::plugin::reload::PluginSpec;
use crate::plugin::sandbox::{self, Capabilities, Limits};

/// Partitions a topic gets when the pipeline does not say.
pub const DEFAULT_PARTITIONS: i32 = 6;
/// Replicas a topic gets when the pipeline does not say: one, for a single local broker.
pub const DEFAULT_REPLICATION_FACTOR: i32 = 1;
/// Keys a consumer applies at once when the pipeline does not say.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Attempts before a failing event is dead-lettered when the pipeline does not say: with
/// backoff capped at 5 s, about a minute and a half of outage.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

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
    /// The TOML does not parse or has unknown keys; the message names the line and the key.
    #[error("{path}: {message}")]
    Parse {
        /// The file named, or `<string>`.
        path: PathBuf,
        /// toml's message, with line, column and the offending key.
        message: String,
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
    /// The file declares no pipeline.
    #[error("{0}: no pipeline is declared (add a [pipelines.<name>] table)")]
    Empty(PathBuf),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Pipelines by name, in the order of the file (start-up order, and a clash is named on
    /// the pipeline written later).
    #[serde(default)]
    pipelines: IndexMap<String, PipelineFile>,
}

/// One `[pipelines.<name>]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    /// HTTP route that ingests events, e.g. `/patientprofile`.
    route: String,
    /// Kafka topic the events travel on.
    topic: String,
    /// Top-level JSON field whose value is the Kafka key and the table's partition key.
    key_field: String,
    /// Top-level JSON field that orders updates; stamped at ingest when absent.
    version_field: String,
    /// DynamoDB table holding the replica.
    table: String,
    /// Policy plugin (a WebAssembly component), relative to this file's folder.
    plugin: PathBuf,
    /// Partitions of the topic when Ordo creates it.
    #[serde(default = "default_partitions")]
    partitions: i32,
    /// Replication factor of the topic when Ordo creates it.
    #[serde(default = "default_replication_factor")]
    replication_factor: i32,
    /// Consumer group; defaults to `ordo.<pipeline name>`.
    consumer_group: Option<String>,
    /// Dead-letter topic; defaults to `<topic>.dlq`.
    dead_letter_topic: Option<String>,
    /// Keys applied at once by one engine.
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// Attempts before an event that keeps failing is dead-lettered; 0 retries forever.
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    /// Records written last kept in memory, so the next write of a key skips its read; 0: none.
    #[serde(default = "default_cache_records")]
    cache_records: usize,
    /// Fuel one plugin call may burn.
    #[serde(default = "default_plugin_fuel")]
    plugin_fuel: u64,
    /// Milliseconds one plugin call may take.
    #[serde(default = "default_plugin_timeout_ms")]
    plugin_timeout_ms: u64,
    /// MiB of linear memory one plugin instance may hold.
    #[serde(default = "default_plugin_memory_mib")]
    plugin_memory_mib: usize,
    /// WASI capabilities granted to the plugin: `clocks`, `random`.
    #[serde(default)]
    plugin_capabilities: Vec<String>,
    /// JSON Lines of sample events a plugin must pass before it is put in force.
    plugin_self_test: Option<PathBuf>,
}

fn default_plugin_fuel() -> u64 {
    sandbox::DEFAULT_FUEL
}

fn default_plugin_timeout_ms() -> u64 {
    sandbox::DEFAULT_TIMEOUT.as_millis() as u64
}

fn default_plugin_memory_mib() -> usize {
    sandbox::DEFAULT_MEMORY_BYTES >> 20
}

fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}

fn default_cache_records() -> usize {
    crate::store::cache::DEFAULT_CAPACITY
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

fn default_partitions() -> i32 {
    DEFAULT_PARTITIONS
}

fn default_replication_factor() -> i32 {
    DEFAULT_REPLICATION_FACTOR
}

/// A checked pipeline, ready to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The pipeline's name, used in logs, metrics and default names.
    pub name: String,
    /// HTTP route that ingests events; starts with `/`.
    pub route: String,
    /// Kafka topic of the events.
    pub topic: String,
    /// JSON field carrying the key.
    pub key_field: String,
    /// JSON field carrying the version.
    pub version_field: String,
    /// DynamoDB table of the replica.
    pub table: String,
    /// Absolute (or config-relative resolved) path of the plugin file.
    pub plugin: PathBuf,
    /// Partitions of the topic when created.
    pub partitions: i32,
    /// Replication factor of the topic when created.
    pub replication_factor: i32,
    /// Consumer group id.
    pub consumer_group: String,
    /// Dead-letter topic for events that cannot be applied.
    pub dead_letter_topic: String,
    /// Keys applied at once by one engine.
    pub concurrency: usize,
    /// Attempts before a failing event is dead-lettered; 0 retries forever.
    pub max_attempts: u32,
    /// Records written last kept in memory per pipeline; 0: none.
    pub cache_records: usize,
    /// Limits of every plugin call.
    pub plugin_limits: Limits,
    /// WASI capabilities granted to the plugin.
    pub plugin_capabilities: Capabilities,
    /// Self-test file (resolved like `plugin`) a new plugin must pass.
    pub plugin_self_test: Option<PathBuf>,
}

impl Pipeline {
    /// What loading this pipeline's plugin needs.
    pub fn plugin_spec(&self) -> PluginSpec {
        PluginSpec {
            path: self.plugin.clone(),
            limits: self.plugin_limits,
            capabilities: self.plugin_capabilities,
            self_test: self.plugin_self_test.clone(),
            key_field: self.key_field.clone(),
            stats: Default::default(),
        }
    }
}

/// Reads and checks `path`; plugin paths are resolved against its folder.
pub fn from_file(path: &Path) -> Result<Vec<Pipeline>, ConfigError> {
    match check_file(path) {
        (pipelines, problems) if problems.is_empty() => Ok(pipelines),
        (_, mut problems) => Err(problems.remove(0)),
    }
}

/// Parses and checks TOML text; relative plugin paths are joined to `base`. The error is the
/// first problem; [`check_str`] lists them all.
pub fn from_str(text: &str, base: &Path) -> Result<Vec<Pipeline>, ConfigError> {
    check_str(text, base).map_err(|mut problems| problems.remove(0))
}

/// Parses and checks TOML text, listing every problem (never an empty list). A file that does
/// not parse is one problem: the parser stops at the first.
pub fn check_str(text: &str, base: &Path) -> Result<Vec<Pipeline>, Vec<ConfigError>> {
    let (pipelines, problems) = check_all(text, base);
    if problems.is_empty() {
        Ok(pipelines)
    } else {
        Err(problems)
    }
}

/// The pipelines that are right and every problem of the others, so that a caller can go on
/// checking the right ones (their plugins, their tables).
pub fn check_all(text: &str, base: &Path) -> (Vec<Pipeline>, Vec<ConfigError>) {
    let file: File = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            let problem = ConfigError::Parse {
                path: PathBuf::from("<string>"),
                message: e.to_string(),
            };
            return (Vec::new(), vec![problem]);
        }
    };
    if file.pipelines.is_empty() {
        return (
            Vec::new(),
            vec![ConfigError::Empty(PathBuf::from("<string>"))],
        );
    }
    let mut pipelines = Vec::new();
    // Clashes are checked on the values as written, so a pipeline with problems of its own
    // still gets its clashes reported.
    let mut problems = check_unique(&file.pipelines);
    for (name, p) in file.pipelines {
        match build(name, p, base) {
            Ok(pipeline) => pipelines.push(pipeline),
            Err(found) => problems.extend(found),
        }
    }
    (pipelines, problems)
}

/// As [`check_all`], reading `path`; problems name the file.
pub fn check_file(path: &Path) -> (Vec<Pipeline>, Vec<ConfigError>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            let problem = ConfigError::Read {
                path: path.to_path_buf(),
                source,
            };
            return (Vec::new(), vec![problem]);
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let (pipelines, problems) = check_all(&text, base);
    let problems = problems
        .into_iter()
        .map(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Empty(_) => ConfigError::Empty(path.to_path_buf()),
            other => other,
        })
        .collect();
    (pipelines, problems)
}

/// Checks one pipeline; every problem found, not just the first.
fn build(name: String, p: PipelineFile, base: &Path) -> Result<Pipeline, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let mut invalid = |field, problem: &str| {
        problems.push(ConfigError::Invalid {
            pipeline: name.clone(),
            field,
            problem: problem.to_string(),
        })
    };
    if !p.route.starts_with('/') || p.route.len() < 2 || p.route.contains(['{', '}', ' ']) {
        invalid("route", "must be a path such as /patientprofile");
    }
    for (field, value) in [
        ("topic", &p.topic),
        ("key_field", &p.key_field),
        ("version_field", &p.version_field),
        ("table", &p.table),
    ] {
        if value.trim().is_empty() {
            invalid(field, "must not be empty");
        }
    }
    if let Some(problem) = kafka_name_problem(&p.topic) {
        invalid("topic", &problem);
    }
    if let Some(problem) = p.dead_letter_topic.as_deref().and_then(kafka_name_problem) {
        invalid("dead_letter_topic", &problem);
    }
    if let Some(problem) = table_name_problem(&p.table) {
        invalid("table", &problem);
    }
    if !p.key_field.trim().is_empty() && p.key_field == p.version_field {
        invalid("version_field", "must differ from key_field");
    }
    if p.partitions < 1 {
        invalid("partitions", "must be at least 1");
    }
    if p.concurrency < 1 {
        invalid("concurrency", "must be at least 1");
    }
    if p.replication_factor < 1 {
        invalid("replication_factor", "must be at least 1");
    }
    if p.dead_letter_topic.as_ref() == Some(&p.topic) {
        invalid("dead_letter_topic", "must differ from topic");
    }
    if p.plugin_fuel < 1 {
        invalid("plugin_fuel", "must be at least 1");
    }
    if p.plugin_timeout_ms < 1 {
        invalid("plugin_timeout_ms", "must be at least 1");
    }
    if !(1..=4096).contains(&p.plugin_memory_mib) {
        invalid("plugin_memory_mib", "must be between 1 and 4096");
    }
    let plugin_capabilities =
        match Capabilities::parse(p.plugin_capabilities.iter().map(String::as_str)) {
            Ok(caps) => caps,
            Err(e) => {
                invalid("plugin_capabilities", &e);
                Capabilities::default()
            }
        };
    if !problems.is_empty() {
        return Err(problems);
    }
    let consumer_group = p.consumer_group.unwrap_or_else(|| format!("ordo.{name}"));
    let dead_letter_topic = p
        .dead_letter_topic
        .unwrap_or_else(|| format!("{}.dlq", p.topic));
    Ok(Pipeline {
        plugin: base.join(&p.plugin),
        name,
        route: p.route,
        topic: p.topic,
        key_field: p.key_field,
        version_field: p.version_field,
        table: p.table,
        partitions: p.partitions,
        replication_factor: p.replication_factor,
        consumer_group,
        dead_letter_topic,
        concurrency: p.concurrency,
        max_attempts: p.max_attempts,
        cache_records: p.cache_records,
        plugin_limits: Limits {
            fuel: p.plugin_fuel,
            timeout: std::time::Duration::from_millis(p.plugin_timeout_ms),
            memory_bytes: p.plugin_memory_mib << 20,
        },
        plugin_capabilities,
        plugin_self_test: p.plugin_self_test.map(|t| base.join(t)),
    })
}

/// Why `name` cannot be a Kafka topic (1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`);
/// `None` if it can. Empty names are reported on their own.
fn kafka_name_problem(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a topic name Kafka accepts"));
    }
    name_problem(name, "Kafka topic", 1..=249)
}

/// Why `name` cannot be a DynamoDB table (3 to 255 of `a-z A-Z 0-9 . _ -`); `None` if it can.
/// Empty names are reported on their own.
fn table_name_problem(name: &str) -> Option<String> {
    name_problem(name, "DynamoDB table", 3..=255)
}

/// Why `name` breaks the naming rule Kafka and DynamoDB share: a length in `lengths`, only
/// letters, digits, `.`, `_` and `-`. `None` for an empty name (reported on its own).
fn name_problem(name: &str, what: &str, lengths: RangeInclusive<usize>) -> Option<String> {
    if name.is_empty() {
        None
    } else if !lengths.contains(&name.len()) {
        Some(format!(
            "{name:?} is {} characters long; a {what} name has {} to {}",
            name.len(),
            lengths.start(),
            lengths.end()
        ))
    } else {
        name.chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
            .map(|c| {
                format!(
                    "{name:?} has {c:?}; {what} names use only letters, digits, `.`, `_` and `-`"
                )
            })
    }
}

/// Every route, topic and table two pipelines share, each clash named on the pipeline written
/// later in the file.
fn check_unique(pipelines: &IndexMap<String, PipelineFile>) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let all: Vec<(&String, &PipelineFile)> = pipelines.iter().collect();
    for (i, (name, a)) in all.iter().enumerate() {
        for (other, b) in &all[..i] {
            for (field, mine, theirs) in [
                ("route", &a.route, &b.route),
                ("topic", &a.topic, &b.topic),
                ("table", &a.table, &b.table),
            ] {
                if mine == theirs {
                    problems.push(ConfigError::Invalid {
                        pipeline: (*name).clone(),
                        field,
                        problem: format!("`{mine}` is already used by pipeline `{other}`"),
                    });
                }
            }
        }
    }
    problems
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
    fn unknown_key_is_named_with_its_line() {
        let text = format!("{MINIMAL}partitons = 3\n");
        let err = from_str(&text, Path::new(".")).expect_err("typo must fail");
        let msg = err.to_string();
        assert!(msg.contains("partitons"), "{msg}");
        assert!(msg.contains("line 9"), "{msg}");
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
        assert!(matches!(
            from_str("", Path::new(".")),
            Err(ConfigError::Empty(_))
        ));
    }

    #[test]
    fn repository_pipelines_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines.toml");
        let p = from_file(&path).expect("the shipped pipelines.toml is valid");
        assert_eq!(p[0].route, "/patientprofile");
        assert_eq!(p[0].table, "patient-profile");
    }
}
