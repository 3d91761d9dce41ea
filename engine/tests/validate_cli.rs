//! `ordo validate`: a broken file with every mistake named (a snapshot of the messages), a
//! right one against the local stack, and an unreachable broker.

mod common;

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/validate")
}

/// Runs `ordo validate` with `args`; (success, stdout with the fixture folder as `<fixtures>`).
fn validate(args: &[&str]) -> (bool, String) {
    let out = common::ordo_command()
        .arg("validate")
        .args(args)
        .output()
        .expect("run ordo validate");
    let stdout = String::from_utf8_lossy(&out.stdout)
        .replace(&fixtures().display().to_string(), "<fixtures>");
    (out.status.success(), stdout)
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

#[test]
fn a_broken_file_gets_every_mistake_named_with_its_pipeline_and_key() {
    let (ok, out) = validate(&[&fixture("broken.toml"), "--no-environment"]);
    assert!(!ok, "{out}");
    let expected = std::fs::read_to_string(fixtures().join("broken.expected")).expect("snapshot");
    assert_eq!(
        out, expected,
        "the messages changed; update broken.expected if on purpose"
    );
}

#[test]
fn an_unknown_key_and_a_missing_plugin_file_are_named_in_one_run() {
    let (ok, out) = validate(&[&fixture("unknown-and-missing.toml"), "--no-environment"]);
    assert!(!ok, "{out}");
    for expected in [
        "pipeline `patient-profile`: `partitons` (line 9) is not a known key; did you mean `partitions`?",
        "pipeline `patient-profile`: `plugin` cannot read plugin <fixtures>/no-such-plugin.wasm",
        "pipeline `metrics`: `route` `/metrics` is taken by the engine's own `/metrics`",
        "pipeline `metrics`: `concurrency` must be between 1 and 4096",
    ] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }
}

#[test]
fn the_engine_refuses_to_start_on_the_same_problems_and_names_them_all() {
    let out = common::ordo_command()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(fixture("unknown-and-missing.toml"))
        .output()
        .expect("run ordo");
    let err = String::from_utf8_lossy(&out.stderr)
        .replace(&fixtures().display().to_string(), "<fixtures>");
    assert!(!out.status.success(), "{err}");
    for expected in [
        "`partitons` (line 9) is not a known key",
        "pipeline `metrics`: `route` `/metrics` is taken by the engine's own `/metrics`",
        "pipeline `metrics`: `concurrency` must be between 1 and 4096",
    ] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }
}

#[test]
fn a_right_file_passes_against_the_local_stack() {
    let (ok, out) = validate(&[&fixture("good.toml"), "--brokers", &common::brokers()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok (file, plugins, broker and tables; pipelines: patient-profile)"),
        "{out}"
    );
}

#[test]
fn an_unreachable_broker_is_a_problem_naming_the_pipeline() {
    let (ok, out) = validate(&[&fixture("good.toml"), "--brokers", "127.0.0.1:1"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("pipeline `patient-profile`: `topic` \"validate.fixture\" cannot be reached: the brokers at 127.0.0.1:1 do not answer"),
        "{out}"
    );
}

#[test]
fn a_missing_table_is_a_problem_when_the_engine_may_not_create_it() {
    let names = common::Names::unique("validate-no-create");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::pipelines_file_of(
        dir.path(),
        &names.topic,
        &names.table,
        &common::lww_plugin(),
        "create_tables = false",
    );
    let (ok, out) = validate(&[
        &config.display().to_string(),
        "--brokers",
        &common::brokers(),
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "pipeline `patient-profile`: `table` {:?} does not exist, and `create_tables = false`",
            names.table
        )),
        "{out}"
    );
    assert!(
        !out.contains("replication_factor"),
        "one broker here: {out}"
    );
}
