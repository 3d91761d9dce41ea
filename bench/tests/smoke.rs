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
