//! The Grafana dashboard (`deploy/grafana/ordo.json`) and the alert rules
//! (`deploy/prometheus/alerts.yml`, with its unit tests) use only metric names, labels and
//! label values the engine exports: a renamed metric or label fails here, not in somebody's
//! dashboard. (That their queries are valid PromQL and the alerts fire when they should is
//! `deploy/check_observability.sh`, with promtool.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo::metrics::Metrics;
use regex::Regex;

/// Labels whose values the engine fixes (so a selector on another value never matches).
const FIXED_VALUES: [&str; 3] = ["outcome", "cause", "call"];
/// Labels Prometheus adds to every scraped series, and a histogram's bucket bound.
const ADDED_BY_PROMETHEUS: [&str; 3] = ["job", "instance", "le"];

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// What `/metrics` shows when every family has a sample: sample name → label → values.
fn exported() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let metrics = Metrics::new();
    let ingest = metrics.ingest("p");
    ingest.answered(202);
    ingest.produce.observe(0.003);
    let consumer = metrics.consumer("p");
    consumer.lag.set([(0, 5)]);
    let plugin = metrics.plugin("p");
    plugin.record("merge", Duration::from_micros(7), 20_000);
    plugin.in_force("sha256:ab");
    metrics.store("p").writes.observe(0.002);
    metrics.checked(&BTreeMap::from([("kafka".to_string(), true)]));
    // Read from the exposition text as Prometheus scrapes it, each line a sample (a
    // histogram's `_bucket`, `_sum` and `_count` among them).
    let sample = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s").expect("regex");
    let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).expect("regex");
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in metrics.render().lines().filter(|l| !l.starts_with('#')) {
        let Some(found) = sample.captures(line) else {
            continue;
        };
        let labels = out.entry(found[1].to_string()).or_default();
        for l in label.captures_iter(found.get(2).map_or("", |m| m.as_str())) {
            labels
                .entry(l[1].to_string())
                .or_default()
                .insert(l[2].to_string());
        }
    }
    out
}

/// Every problem with the Ordo metrics `text` refers to, each naming `source`.
fn problems(
    source: &str,
    text: &str,
    exported: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Vec<String> {
    let reference = Regex::new(r"\bordo_[a-z0-9_]+(\{[^}]*\})?").expect("regex");
    let matcher = Regex::new(r#"([a-z_][a-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)""#).expect("regex");
    let grouping = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").expect("regex");
    let all_labels: BTreeSet<&str> = exported
        .values()
        .flat_map(|labels| labels.keys().map(String::as_str))
        .chain(ADDED_BY_PROMETHEUS)
        .collect();
    let mut found = Vec::new();
    for r in reference.captures_iter(text) {
        let name = r[0].split('{').next().unwrap_or_default();
        // A recording rule's own name (`ordo_dashboard:…`) is not a metric.
        if text[r.get(0).map_or(0, |m| m.end())..].starts_with(':') {
            continue;
        }
        let Some(labels) = exported.get(name) else {
            found.push(format!(
                "{source}: `{name}` is not a metric the engine exports"
            ));
            continue;
        };
        for m in matcher.captures_iter(r.get(1).map_or("", |m| m.as_str())) {
            let (label, op, value) = (&m[1], &m[2], &m[3]);
            if ADDED_BY_PROMETHEUS.contains(&label) {
                continue;
            }
            let Some(values) = labels.get(label) else {
                found.push(format!("{source}: `{name}` has no label `{label}`"));
                continue;
            };
            if op == "=" && FIXED_VALUES.contains(&label) && !values.contains(value) {
                found.push(format!(
                    "{source}: `{name}{{{label}=\"{value}\"}}` never exists; the engine's values are {values:?}"
                ));
            }
        }
    }
    for g in grouping.captures_iter(text) {
        for label in g[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            if !all_labels.contains(label) {
                found.push(format!(
                    "{source}: grouping by `{label}`, a label no Ordo metric has"
                ));
            }
        }
    }
    found
}

/// Every string in a JSON document (the dashboard's queries are strings in it).
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_and_the_alerts_use_only_what_the_engine_exports() {
    let exported = exported();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/ordo.json")).expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut texts = Vec::new();
    strings(&dashboard, &mut texts);
    let mut found = Vec::new();
    for text in &texts {
        found.extend(problems("deploy/grafana/ordo.json", text, &exported));
    }
    for file in ["prometheus/alerts.yml", "prometheus/alerts.test.yml"] {
        let text = std::fs::read_to_string(deploy(file)).expect(file);
        found.extend(problems(&format!("deploy/{file}"), &text, &exported));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    // And they cover what an operator asks first.
    let all = format!(
        "{}\n{}",
        texts.join("\n"),
        std::fs::read_to_string(deploy("prometheus/alerts.yml")).expect("alerts")
    );
    for family in [
        "ordo_consumer_lag",
        "ordo_events_total",
        "ordo_plugin_info",
        "ordo_plugin_reloads_total",
        "ordo_apply_retries_total",
        "ordo_ingest_requests_total",
        "ordo_plugin_call_seconds_bucket",
    ] {
        assert!(all.contains(family), "neither uses {family}");
    }
}

#[test]
fn a_name_label_or_value_the_engine_does_not_export_is_reported() {
    let exported = exported();
    let bad = r#"
        rate(ordo_events_gone_total[5m])
        ordo_events_total{pipeline="p", reason="x"}
        ordo_events_total{outcome="lost"}
        sum by (pipeline, shard) (ordo_consumer_lag)
    "#;
    let found = problems("test", bad, &exported);
    assert_eq!(found.len(), 4, "{found:#?}");
    for needle in ["ordo_events_gone_total", "`reason`", "\"lost\"", "`shard`"] {
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{needle} not reported: {found:#?}"
        );
    }
    let good = r#"sum by (pipeline, outcome) (rate(ordo_events_total{pipeline=~".*", outcome="dead_lettered"}[5m]))"#;
    assert!(problems("test", good, &exported).is_empty());
}
