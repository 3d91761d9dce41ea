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
