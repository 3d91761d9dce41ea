//! What a pipeline's values must be: required keys, names Kafka and DynamoDB accept, routes
//! the HTTP server can serve beside its own, limits within sane bounds, and no two pipelines
//! sharing a route, topic or table.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use super::file::{self, PipelineFile};
use super::{ConfigError, KeySource, Pipeline};
use crate::plugin::sandbox::{Capabilities, Limits};

/// Partitions a topic may be created with.
pub const PARTITIONS: RangeInclusive<i32> = 1..=10_000;
/// Replicas a topic may be created with.
pub const REPLICATION_FACTOR: RangeInclusive<i32> = 1..=16;
/// Keys one engine may apply at once per pipeline.
pub const CONCURRENCY: RangeInclusive<usize> = 1..=4096;
/// Attempts before dead-lettering (0: retry forever).
pub const MAX_ATTEMPTS: RangeInclusive<u32> = 0..=1_000_000;
/// Records kept per pipeline: at about 1 KiB a profile, up to about 1 GiB.
pub const CACHE_RECORDS: RangeInclusive<usize> = 0..=1_000_000;
/// Fuel per plugin call: up to about 500 s of guest work, so that a pipeline can leave the CPU
/// time limit to bound its calls (fuel only catches a typo here).
pub const PLUGIN_FUEL: RangeInclusive<u64> = 1..=1_000_000_000_000;
/// CPU milliseconds per plugin call.
pub const PLUGIN_TIMEOUT_MS: RangeInclusive<u64> = 1..=10_000;
/// MiB of memory per plugin instance.
pub const PLUGIN_MEMORY_MIB: RangeInclusive<usize> = 1..=4096;
/// Version skew allowed: a second to thirty days.
pub const MAX_VERSION_SKEW: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);
/// Longest route accepted, in bytes.
const ROUTE_MAX: usize = 200;

/// Collects the problems of one pipeline's values.
struct Problems<'a> {
    /// The pipeline.
    pipeline: &'a str,
    /// What was found.
    found: Vec<ConfigError>,
}

impl Problems<'_> {
    fn add(&mut self, field: &'static str, problem: impl Into<String>) {
        self.found.push(ConfigError::Invalid {
            pipeline: self.pipeline.to_string(),
            field,
            problem: problem.into(),
        });
    }

    /// `value` if it is in `range`, else the problem is noted and `default` stands in.
    fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        field: &'static str,
        value: T,
        range: RangeInclusive<T>,
        default: T,
    ) -> T {
        if range.contains(&value) {
            value
        } else {
            self.add(
                field,
                format!(
                    "must be between {} and {} (it is {value})",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }

    /// The required `value`, or the problem noted.
    fn required<T>(&mut self, field: &'static str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(field, "is required");
        }
        value
    }
}

/// Checks one pipeline. The pipeline is built whenever its required keys are there, with
/// defaults standing in for values out of bounds, so its plugin can still be checked; the
/// problems say what is wrong.
pub(super) fn build(
    name: &str,
    p: PipelineFile,
    base: &Path,
    engine_paths: &[&str],
) -> (Option<Pipeline>, Vec<ConfigError>) {
    let mut problems = Problems {
        pipeline: name,
        found: Vec::new(),
    };
    let route = p.route;
    let topic = problems.required("topic", p.topic);
    let key_field = problems.required("key_field", p.key_field);
    let version_field = problems.required("version_field", p.version_field);
    let table = problems.required("table", p.table);
    let plugin = problems.required("plugin", p.plugin);
    if let Some(problem) = route
        .as_deref()
        .and_then(|r| route_problem(r, engine_paths))
    {
        problems.add("route", problem);
    }
    for (field, value) in [
        ("topic", &topic),
        ("key_field", &key_field),
        ("version_field", &version_field),
        ("table", &table),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            problems.add(field, "must not be empty");
        }
    }
    if let Some(problem) = topic.as_deref().and_then(kafka_name_problem) {
        problems.add("topic", problem);
    }
    if let Some(problem) = p.dead_letter_topic.as_deref().and_then(kafka_name_problem) {
        problems.add("dead_letter_topic", problem);
    }
    if p.dead_letter_topic.is_some() && p.dead_letter_topic == topic {
        problems.add("dead_letter_topic", "must differ from topic");
    }
    if let Some(problem) = table.as_deref().and_then(table_name_problem) {
        problems.add("table", problem);
    }
    if key_field.as_deref().is_some_and(|k| !k.trim().is_empty()) && key_field == version_field {
        problems.add("version_field", "must differ from key_field");
    }
    if route.is_none() {
        for (field, written) in [
            ("partitions", p.partitions.is_some()),
            ("topic_config", !p.topic_config.is_empty()),
        ] {
            if written {
                problems.add(
                    field,
                    "applies only to a topic Ordo creates; a pipeline without a `route` consumes a topic other services own, and reads its partitions from the broker",
                );
            }
        }
    }
    let key_source = match p.key_source.as_deref() {
        None | Some("body") => KeySource::Body,
        Some("message") => KeySource::Message,
        Some(other) => {
            problems.add(
                "key_source",
                format!("{other:?} must be \"body\" or \"message\""),
            );
            KeySource::Body
        }
    };
    if let Some(problem) = p.changes_topic.as_deref().and_then(kafka_name_problem) {
        problems.add("changes_topic", problem);
    }
    if p.changes_topic.is_some()
        && (p.changes_topic == topic
            || p.changes_topic.as_deref()
                == dead_letter_topic(&p.dead_letter_topic, &topic).as_deref())
    {
        problems.add(
            "changes_topic",
            "must differ from topic and dead_letter_topic",
        );
    }
    let partitions = problems.bounded(
        "partitions",
        p.partitions.unwrap_or(file::DEFAULT_PARTITIONS),
        PARTITIONS,
        file::DEFAULT_PARTITIONS,
    );
    let replication_factor = problems.bounded(
        "replication_factor",
        p.replication_factor,
        REPLICATION_FACTOR,
        file::DEFAULT_REPLICATION_FACTOR,
    );
    let concurrency = problems.bounded(
        "concurrency",
        p.concurrency,
        CONCURRENCY,
        file::DEFAULT_CONCURRENCY,
    );
    let max_attempts = problems.bounded(
        "max_attempts",
        p.max_attempts,
        MAX_ATTEMPTS,
        file::DEFAULT_MAX_ATTEMPTS,
    );
    let cache_records = problems.bounded(
        "cache_records",
        p.cache_records,
        CACHE_RECORDS,
        file::default_cache_records(),
    );
    let defaults = Limits::default();
    let fuel = problems.bounded("plugin_fuel", p.plugin_fuel, PLUGIN_FUEL, defaults.fuel);
    let timeout_ms = problems.bounded(
        "plugin_timeout_ms",
        p.plugin_timeout_ms,
        PLUGIN_TIMEOUT_MS,
        file::default_plugin_timeout_ms(),
    );
    let memory_mib = problems.bounded(
        "plugin_memory_mib",
        p.plugin_memory_mib,
        PLUGIN_MEMORY_MIB,
        file::default_plugin_memory_mib(),
    );
    let plugin_capabilities = Capabilities::parse(p.plugin_capabilities.iter().map(String::as_str))
        .unwrap_or_else(|e| {
            problems.add("plugin_capabilities", e);
            Capabilities::default()
        });
    let max_version_skew = match p.max_version_skew {
        None => crate::version::DEFAULT_MAX_SKEW,
        Some(written) => {
            let parsed = match &written {
                file::DurationText::Seconds(s) => Some(Duration::from_secs(*s)),
                file::DurationText::Text(t) => crate::version::parse_duration(t),
            };
            match parsed {
                Some(d) if MAX_VERSION_SKEW.contains(&d) => d,
                _ => {
                    problems.add(
                        "max_version_skew",
                        "must be a duration between 1 s and 30 days: seconds (300) or text with a unit (\"5m\", \"2h\")",
                    );
                    crate::version::DEFAULT_MAX_SKEW
                }
            }
        }
    };
    let topic_config = topic_config(&p.topic_config, &mut problems);
    let table_options = table_options(&p.table_options, &mut problems);
    let plugin_config = super::plugin_config::to_json(&p.plugin_config).unwrap_or_else(|e| {
        problems.add("plugin_config", e);
        Default::default()
    });
    // A generic plugin is told the key and version fields again in its configuration: they
    // must be the pipeline's, or the plugin would key and order records by other fields than
    // the engine's table and checks.
    for (name, pipeline_value) in [("key_field", &key_field), ("version_field", &version_field)] {
        if let (Some(serde_json::Value::String(told)), Some(own)) =
            (plugin_config.get(name), pipeline_value)
        {
            if told != own {
                problems.add(
                    "plugin_config",
                    format!("`{name}` is {told:?} but the pipeline's `{name}` is {own:?}; they must be the same field"),
                );
            }
        }
    }
    let found = problems.found;
    let dead_letter_topic = dead_letter_topic(&p.dead_letter_topic, &topic);
    let (
        Some(topic),
        Some(key_field),
        Some(version_field),
        Some(table),
        Some(plugin),
        Some(dead_letter_topic),
    ) = (
        topic,
        key_field,
        version_field,
        table,
        plugin,
        dead_letter_topic,
    )
    else {
        return (None, found);
    };
    let pipeline = Pipeline {
        consumer_group: p.consumer_group.unwrap_or_else(|| format!("ordo.{name}")),
        dead_letter_topic,
        plugin: base.join(plugin),
        name: name.to_string(),
        route,
        topic,
        key_source,
        changes_topic: p.changes_topic,
        key_field,
        version_field,
        table,
        partitions,
        replication_factor,
        concurrency,
        adaptive_concurrency: p.adaptive_concurrency,
        max_attempts,
        cache_records,
        plugin_limits: Limits {
            fuel,
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: memory_mib << 20,
        },
        plugin_capabilities,
        plugin_self_test: p.plugin_self_test.map(|t| base.join(t)),
        max_version_skew,
        audit_topic: None,
        idempotency: Default::default(),
        create_tables: p.create_tables,
        topic_config,
        table_options,
        plugin_config,
    };
    (Some(pipeline), found)
}

/// The dead-letter topic: as written, else `<topic>.dlq`.
fn dead_letter_topic(written: &Option<String>, topic: &Option<String>) -> Option<String> {
    written
        .clone()
        .or_else(|| topic.as_ref().map(|t| format!("{t}.dlq")))
}

/// Properties Ordo sets on a topic itself, and why.
const TOPIC_OWNED: [(&str, &str); 2] = [
    (
        "cleanup.policy",
        "must stay `delete`: a compacted topic loses the updates a merge needs",
    ),
    ("num.partitions", "is the pipeline's `partitions`"),
];

/// `topic_config`: names shaped like Kafka's (`min.insync.replicas`), values non-empty.
fn topic_config(
    written: &std::collections::BTreeMap<String, file::Scalar>,
    problems: &mut Problems<'_>,
) -> Vec<(String, String)> {
    let mut config = Vec::new();
    for (name, value) in written {
        let value = value.to_string();
        if let Some((_, why)) = TOPIC_OWNED.iter().find(|(owned, _)| owned == name) {
            problems.add(
                "topic_config",
                format!("`{name}` cannot be set here: it {why}"),
            );
        } else if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
        {
            problems.add(
                "topic_config",
                format!("`{name}` is not a topic configuration name (e.g. `retention.ms`)"),
            );
        } else if value.trim().is_empty() {
            problems.add("topic_config", format!("`{name}` must not be empty"));
        } else {
            config.push((name.clone(), value));
        }
    }
    config
}

/// `table_options`: a known billing mode with capacities only when provisioned, a KMS key
/// that is not blank, tags within DynamoDB's limits.
fn table_options(
    written: &file::TableOptionsFile,
    problems: &mut Problems<'_>,
) -> crate::store::TableOptions {
    use crate::store::Billing;
    let capacity = |value: Option<i64>| value.filter(|v| (1..=40_000).contains(v));
    let billing = match written.billing_mode.as_deref() {
        None | Some("PAY_PER_REQUEST") => {
            if written.read_capacity.is_some() || written.write_capacity.is_some() {
                problems.add(
                    "table_options",
                    "`read_capacity` and `write_capacity` go with `billing_mode = \"PROVISIONED\"`",
                );
            }
            Billing::OnDemand
        }
        Some("PROVISIONED") => {
            match (
                capacity(written.read_capacity),
                capacity(written.write_capacity),
            ) {
                (Some(read), Some(write)) => Billing::Provisioned { read, write },
                _ => {
                    problems.add(
                        "table_options",
                        "`billing_mode = \"PROVISIONED\"` needs `read_capacity` and `write_capacity`, each 1 to 40000",
                    );
                    Billing::OnDemand
                }
            }
        }
        Some(other) => {
            problems.add(
                "table_options",
                format!("`billing_mode` {other:?} must be \"PAY_PER_REQUEST\" or \"PROVISIONED\""),
            );
            Billing::OnDemand
        }
    };
    if written
        .kms_key_id
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        problems.add(
            "table_options",
            "`kms_key_id` must not be empty (leave it out for an AWS-owned key)",
        );
    }
    let mut tags = Vec::new();
    for (key, value) in &written.tags {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            problems.add(
                "table_options",
                format!("tag `{key}`: keys are 1 to 128 characters, values at most 256"),
            );
        } else if key.starts_with("aws:") {
            problems.add(
                "table_options",
                format!("tag `{key}`: the `aws:` prefix is reserved"),
            );
        } else {
            tags.push((key.clone(), value.clone()));
        }
    }
    if tags.len() > 50 {
        problems.add("table_options", "at most 50 tags");
    }
    crate::store::TableOptions {
        billing,
        point_in_time_recovery: written.point_in_time_recovery,
        kms_key_id: written.kms_key_id.clone().filter(|k| !k.trim().is_empty()),
        deletion_protection: written.deletion_protection,
        tags,
    }
}

/// Why `route` cannot be a pipeline's route: it must be `/` and segments of URL-safe
/// characters (`A-Z a-z 0-9 . _ ~ -`, so nothing the router reads as a parameter or a
/// wildcard), and must not be or lie under one of the engine's own paths.
fn route_problem(route: &str, engine_paths: &[&str]) -> Option<String> {
    let shape = "must be a path such as /patientprofile";
    let Some(rest) = route.strip_prefix('/') else {
        return Some(shape.into());
    };
    if rest.is_empty() || route.len() > ROUTE_MAX {
        return Some(format!("{shape} (1 to {ROUTE_MAX} characters)"));
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Some(format!("{shape}, without empty, `.` or `..` segments"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._~-".contains(*c)))
        {
            return Some(format!(
                "{shape}; {c:?} is not allowed (only letters, digits, `.`, `_`, `~`, `-` and `/`)"
            ));
        }
    }
    engine_paths
        .iter()
        .find(|own| nested(route, own) || route == **own)
        .map(|own| format!("`{route}` is taken by the engine's own `{own}`; choose another path"))
}

/// Whether `inner` lies under `outer` (`/a/b` under `/a`).
fn nested(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Why `name` cannot name a pipeline: it becomes a metric label, a consumer group and a path
/// segment of the admin endpoints, so it follows the topic naming rule, up to 100 characters.
pub(super) fn pipeline_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a pipeline name must not be empty".into());
    }
    name_problem(name, "pipeline", 1..=100)
}

/// Why `name` cannot be a Kafka topic (1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`);
/// `None` if it can. Empty names are reported on their own.
/// Longest `[idempotency] window_hours`: 30 days.
pub const IDEMPOTENCY_HOURS: RangeInclusive<u64> = 1..=720;

/// `[idempotency]` checked; its problems go to `problems`.
pub(super) fn idempotency(
    file: &super::file::IdempotencyFile,
    problems: &mut Vec<ConfigError>,
) -> super::Idempotency {
    if let Some(problem) = table_name_problem(&file.table) {
        problems.push(ConfigError::Setting {
            key: "idempotency.table".into(),
            problem,
        });
    }
    if !IDEMPOTENCY_HOURS.contains(&file.window_hours) {
        problems.push(ConfigError::Setting {
            key: "idempotency.window_hours".into(),
            problem: format!(
                "must be from {} to {} (hours), not {}",
                IDEMPOTENCY_HOURS.start(),
                IDEMPOTENCY_HOURS.end(),
                file.window_hours
            ),
        });
    }
    super::Idempotency {
        table: file.table.clone(),
        window: std::time::Duration::from_secs(
            file.window_hours
                .clamp(*IDEMPOTENCY_HOURS.start(), *IDEMPOTENCY_HOURS.end())
                * 3600,
        ),
    }
}

pub(super) fn kafka_name_problem(name: &str) -> Option<String> {
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

/// Why `name` breaks the naming rule Kafka and DynamoDB share (and pipeline names follow): a
/// length in `lengths`, only letters, digits, `.`, `_` and `-`. `None` for an empty name
/// (reported on its own).
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

/// Every route, topic and table two pipelines share, and every route lying under another
/// pipeline's (it would shadow that pipeline's `GET {route}/{id}`), each named on the pipeline
/// written later in the file.
pub(super) fn clashes(pipelines: &[(String, PipelineFile)]) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for (i, (name, a)) in pipelines.iter().enumerate() {
        for (other, b) in &pipelines[..i] {
            for (field, mine, theirs) in [
                ("route", &a.route, &b.route),
                ("topic", &a.topic, &b.topic),
                ("changes_topic", &a.changes_topic, &b.changes_topic),
                ("table", &a.table, &b.table),
            ] {
                let (Some(mine), Some(theirs)) = (mine, theirs) else {
                    continue;
                };
                let problem = if mine == theirs {
                    format!("`{mine}` is already used by pipeline `{other}`")
                } else if field == "route" && (nested(mine, theirs) || nested(theirs, mine)) {
                    format!("`{mine}` and pipeline `{other}`'s `{theirs}` nest; one would shadow the other's read-back route")
                } else {
                    continue;
                };
                problems.push(ConfigError::Invalid {
                    pipeline: name.clone(),
                    field,
                    problem,
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [&str; 3] = ["/docs", "/metrics", "/admin"];

    #[test]
    fn routes_the_router_cannot_serve_or_the_engine_owns_are_refused() {
        for good in ["/patientprofile", "/v1/patients", "/a.b_c~d-e"] {
            assert_eq!(route_problem(good, &OWN), None, "{good}");
        }
        for (bad, says) in [
            ("patientprofile", "must be a path"),
            ("/", "1 to"),
            ("/a//b", "empty"),
            ("/a/", "empty"),
            ("/a/../b", "`..`"),
            ("/p/:id", "':'"),
            ("/p/*rest", "'*'"),
            ("/p/{id}", "'{'"),
            ("/p q", "' '"),
            ("/docs", "engine's own `/docs`"),
            ("/admin/pipelines", "engine's own `/admin`"),
        ] {
            let problem = route_problem(bad, &OWN).unwrap_or_default();
            assert!(problem.contains(says), "{bad}: {problem}");
        }
        assert_eq!(route_problem("/docsy", &OWN), None);
    }
}
