//! Each benchmark run once at a small scale, to prove it still works: no timing claims. They
//! need the local stack and the plugins, and load the machine, so they are ignored by a plain
//! `cargo test`; `make test` runs them after the end-to-end tests, one at a time:
//! `cargo test --workspace --test smoke -- --ignored --test-threads=1`.

use std::process::Command;

/// Runs benchmark `name` with `settings` and returns its report; fails on a non-zero exit.
fn run(bin: &str, settings: &[(&str, &str)]) -> String {
    let out = Command::new(bin)
        .envs(settings.iter().copied())
        .output()
        .expect("start the benchmark");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// The report is a Markdown table with at least one row of figures.
fn assert_table(report: &str) {
    assert!(
        report.lines().filter(|l| l.starts_with('|')).count() >= 3,
        "no table of figures in:\n{report}"
    );
}

#[test]
#[ignore = "needs the local stack; make test runs it"]
fn plugin_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_plugin_bench"),
        &[("ORDO_BENCH_RUNS", "1"), ("ORDO_BENCH_CALLS", "200")],
    );
    assert_table(&report);
}

#[test]
#[ignore = "needs the local stack; make test runs it"]
fn consume_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_consume_bench"),
        &[
            ("ORDO_BENCH_SCALE", "1"),
            ("ORDO_BENCH_RUNS", "1"),
            ("ORDO_BENCH_STORES", "moto,model,changes"),
        ],
    );
    assert_table(&report);
    assert!(
        report.contains("| Ordo with `changes_topic` |")
            && report.contains("cost per applied event"),
        "{report}"
    );
    assert_peers(&report);
}

/// The cells of the consume table's row for `store`, `shape` and the design whose name starts
/// with `design`: [store, workload, events, design, events/s, writes/event, requests/event,
/// stale records, vs baseline, vs ceiling].
fn row<'r>(report: &'r str, store: &str, shape: &str, design: &str) -> Vec<&'r str> {
    report
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|c| {
            c.len() > 10 && c[1].starts_with(store) && c[2] == shape && c[4].starts_with(design)
        })
        .map(|c| c[1..c.len() - 1].to_vec())
        .unwrap_or_else(|| panic!("no {store} {shape} row of {design} in:\n{report}"))
}

/// A cell's median: the number before its range.
fn median(cell: &str) -> f64 {
    cell.split_whitespace()
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {cell:?}"))
}

/// Every design has a row on every shape, none left a stale record where it was audited, and
/// the counts taken outside the designs tell a failed condition from a write.
fn assert_peers(report: &str) {
    let designs = [
        "sequential baseline",
        "Ordo (",
        "key-ordered parallel consumer",
        "Quix Streams app",
    ];
    for shape in ["uniform", "bursty", "shuffled"] {
        for design in designs {
            let moto = row(report, "moto", shape, design);
            assert!(median(moto[4]) > 0.0, "{moto:?}");
            assert_eq!(moto[7], "0 (0–0)", "stale records: {moto:?}");
            let model = row(report, "model", shape, design);
            assert!(median(model[4]) > 0.0, "{model:?}");
            // The baseline reads only the first events of the model's workload: not audited.
            if !design.starts_with("sequential") {
                assert_eq!(model[7], "0 (0–0)", "stale records: {model:?}");
            }
        }
    }
    // Out of order, most events lose their condition: the Quix job tries one write per event
    // (no read), and fewer go through.
    for store in ["moto", "model"] {
        let quix = row(report, store, "shuffled", "Quix Streams app");
        assert_eq!(median(quix[6]), 1.0, "requests/event: {quix:?}");
        assert!(median(quix[5]) < 0.9, "writes/event: {quix:?}");
    }
    // Without folding or a cache, the key-ordered peer reads before every write.
    let keyed = row(report, "moto", "bursty", "key-ordered parallel consumer");
    assert_eq!(median(keyed[6]), 2.0, "requests/event: {keyed:?}");
}

#[test]
#[ignore = "needs the local stack and the ordo binary beside it; make test runs it"]
fn ingest_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_ingest_bench"),
        &[
            ("ORDO_BENCH_RUNS", "1"),
            ("ORDO_BENCH_SECONDS", "1"),
            ("ORDO_BENCH_EVENTS", "2000"),
        ],
    );
    assert_table(&report);
}

#[test]
#[ignore = "needs the local stack and the ordo binary beside it; make test runs it"]
fn system_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_system_bench"),
        &[
            ("ORDO_BENCH_SCALE", "1"),
            ("ORDO_BENCH_RUNS", "1"),
            ("ORDO_BENCH_SECONDS", "1"),
        ],
    );
    assert_table(&report);
}

#[test]
#[ignore = "needs the local stack, the plugins and the ordo binary beside it; make test runs it"]
fn latency_bench_runs() {
    let dir = tempfile::tempdir().expect("a folder");
    let plot = dir.path().join("latency.svg");
    let report = run(
        env!("CARGO_BIN_EXE_latency_bench"),
        &[
            ("ORDO_BENCH_SECONDS", "2"),
            ("ORDO_BENCH_RATES", "50,100"),
            ("ORDO_BENCH_PLOT", plot.to_str().expect("a UTF-8 path")),
        ],
    );
    assert_table(&report);
    // Every rate is reported (two rates cannot stop the sweep early), and every accepted
    // request became visible: the model saw each write the engine made.
    for (rate, sent) in [(50, 100), (100, 200)] {
        let row = format!("| {rate} | {sent} of {sent} |");
        assert!(report.contains(&row), "no {row:?} in:\n{report}");
    }
    assert!(report.contains("**Knee**"), "{report}");
    let svg = std::fs::read_to_string(&plot).expect("the plot was drawn");
    assert!(svg.starts_with("<svg") && svg.contains("p999"), "{svg}");
}

#[test]
#[ignore = "needs the local stack, the plugins and the ordo binary beside it; make test runs it"]
fn scaling_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_scaling_bench"),
        &[("ORDO_BENCH_EVENTS", "2000"), ("ORDO_BENCH_RUNS", "1")],
    );
    assert_table(&report);
    for engines in 1..=3 {
        assert!(
            report.contains(&format!("\n| {engines} | ")),
            "no row for {engines} engines in:\n{report}"
        );
    }
    assert!(
        report.contains("What two cores can and cannot show") && report.contains("on paper"),
        "{report}"
    );
}

/// A boto3 peer against the wire model: a conditional put that only a newer version passes,
/// a read and a scan, as a Python service sharing the engine's table would make them.
#[test]
#[ignore = "needs the local stack's Python (boto3); make test runs it"]
fn model_dynamo_serves_a_python_peer() {
    let cache = std::env::var("ORDO_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/ordo", std::env::var("HOME").unwrap_or_default()));
    let mut model = Command::new(env!("CARGO_BIN_EXE_model_dynamo"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the model");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(model.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the model's address");
    let url = line
        .trim()
        .strip_prefix("model_dynamo listening on ")
        .expect("the model's first line")
        .to_string();
    let peer = Command::new(format!("{cache}/venv/bin/python"))
        .arg("-c")
        .arg(PYTHON_PEER)
        .env("MODEL_URL", &url)
        .output()
        .expect("run the Python peer");
    let _ = model.kill();
    let _ = model.wait();
    let said = String::from_utf8_lossy(&peer.stdout);
    assert!(
        peer.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&peer.stderr)
    );
    assert_eq!(
        said.trim(),
        "older refused; newer written; read 2006-01-03; scanned 2"
    );
}

const PYTHON_PEER: &str = r##"
import os, boto3
from botocore.config import Config
d = boto3.client("dynamodb", endpoint_url=os.environ["MODEL_URL"], region_name="us-east-1",
                 aws_access_key_id="peer", aws_secret_access_key="peer",
                 config=Config(user_agent_appid="peer"))
d.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
               KeySchema=[{"AttributeName": "PatientId", "KeyType": "HASH"}],
               AttributeDefinitions=[{"AttributeName": "PatientId", "AttributeType": "S"}])
def put(key, at):
    d.put_item(TableName="t", Item={"PatientId": {"S": key}, "UpdatedAt": {"S": at}},
               ConditionExpression="attribute_not_exists(PatientId) OR #u < :u",
               ExpressionAttributeNames={"#u": "UpdatedAt"},
               ExpressionAttributeValues={":u": {"S": at}})
put("p1", "2006-01-02"); put("p2", "2006-01-02")
out = []
try:
    put("p1", "2006-01-01")
    out.append("older written")
except d.exceptions.ConditionalCheckFailedException:
    out.append("older refused")
put("p1", "2006-01-03"); out.append("newer written")
out.append("read " + d.get_item(TableName="t", Key={"PatientId": {"S": "p1"}})["Item"]["UpdatedAt"]["S"])
pages = d.get_paginator("scan").paginate(TableName="t", PaginationConfig={"PageSize": 1})
out.append("scanned %d" % sum(len(p["Items"]) for p in pages))
print("; ".join(out))
"##;

#[test]
#[ignore = "needs the plugins; make test runs it"]
fn languages_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_languages_bench"),
        &[
            ("ORDO_BENCH_RUNS", "1"),
            ("ORDO_BENCH_CALLS", "50"),
            ("ORDO_BENCH_LOADS", "1"),
        ],
    );
    assert_table(&report);
    for language in ["native Rust", "| Rust", "Python", "JavaScript"] {
        assert!(report.contains(language), "no {language} row in:\n{report}");
    }
}

#[test]
#[ignore = "needs the local stack; make test runs it"]
fn catchup_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_catchup_bench"),
        &[("ORDO_BENCH_SCALE", "1"), ("ORDO_BENCH_RUNS", "1")],
    );
    assert_table(&report);
    assert!(
        report.contains("| **ceiling** (best of the sweep, each run) |")
            && report.contains("`adaptive_concurrency = false`")
            && report.contains("Goals: on moto"),
        "{report}"
    );
}
