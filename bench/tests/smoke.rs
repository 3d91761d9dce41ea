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
        // Not the scaling part: at a small scale the group is still rebalancing when a lone
        // member has settled everything, and the unoptimised build takes minutes over it.
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
            if design.starts_with("Quix") {
                assert!(model[4].starts_with("not measured"), "{model:?}");
            } else {
                assert!(median(model[4]) > 0.0, "{model:?}");
            }
            // The baseline reads only the first events of the model's workload: not audited.
            if design.starts_with("Ordo") || design.starts_with("key-ordered") {
                assert_eq!(model[7], "0 (0–0)", "stale records: {model:?}");
            }
        }
    }
    // Out of order, most events lose their condition: the Quix job tries one write per event
    // (no read), and fewer go through.
    let quix = row(report, "moto", "shuffled", "Quix Streams app");
    assert_eq!(median(quix[6]), 1.0, "requests/event: {quix:?}");
    assert!(median(quix[5]) < 0.9, "writes/event: {quix:?}");
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
#[ignore = "needs the local stack; make test runs it"]
fn latency_bench_runs() {
    let report = run(
        env!("CARGO_BIN_EXE_latency_bench"),
        &[("ORDO_BENCH_RUNS", "1"), ("ORDO_BENCH_SAMPLES", "300")],
    );
    assert_table(&report);
}

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
