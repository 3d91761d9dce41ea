//! `ordo plugin test`, and a pipeline's self-test refusing a plugin at start-up.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/samples")
        .join(name)
}

fn ordo(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ordo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn plugin_test_prints_each_decision_and_the_final_records() {
    let (ok, out) = ordo(&[
        "plugin",
        "test",
        "--config-file",
        &path(&common::patient_config_file()),
        &path(&common::field_merge_plugin()),
        &path(&sample("partial-updates.jsonl")),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("3 events, 0 failed expectations"), "{out}");
    // The late IsPregnant update wins its field; LastName keeps the newer Roe.
    let record = out
        .lines()
        .find(|l| l.trim_start().starts_with("1: {"))
        .unwrap_or_else(|| panic!("no final record in:\n{out}"));
    assert!(
        record.contains(r#""IsPregnant":"True""#) && record.contains(r#""LastName":"Roe""#),
        "{record}"
    );
}

#[test]
fn plugin_test_fails_on_an_unmet_expectation() {
    let (ok, out) = ordo(&[
        "plugin",
        "test",
        "--key-field",
        "PatientId",
        &path(&common::hostile_plugin()),
        &path(&sample("patient-profile.selftest.jsonl")),
    ]);
    assert!(!ok, "the hostile plugin validates nothing: {out}");
    assert!(out.contains("FAIL line 6"), "{out}");
    assert!(out.contains("expected invalid, got write"), "{out}");
}

#[test]
fn the_shipped_plugins_pass_the_shipped_self_test() {
    for plugin in [common::lww_plugin(), common::field_merge_plugin()] {
        let (ok, out) = ordo(&[
            "plugin",
            "test",
            "--config-file",
            &path(&common::patient_config_file()),
            &path(&plugin),
            &path(&sample("patient-profile.selftest.jsonl")),
        ]);
        assert!(ok, "{}: {out}", plugin.display());
    }
}

#[test]
fn an_engine_refuses_to_start_with_a_plugin_failing_its_self_test() {
    let dir = tempfile::tempdir().expect("temp dir");
    let self_test = sample("patient-profile.selftest.jsonl");
    let config = common::pipelines_file(
        dir.path(),
        &common::hostile_plugin(),
        &format!("plugin_self_test = \"{}\"", self_test.display()),
    );
    let (ok, out) = ordo(&["--config", &path(&config), "--listen", "127.0.0.1:0"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("pipeline `patient-profile`") && out.contains("fails its self-test"),
        "{out}"
    );
}

#[test]
fn a_plugin_importing_what_the_engine_does_not_provide_is_refused_naming_the_import() {
    let backdoor = common::built_plugin("backdoor");
    let (ok, out) = ordo(&[
        "plugin",
        "test",
        &path(&backdoor),
        &path(&sample("patient-profile.selftest.jsonl")),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("imports `ordo-test:backdoor/door"), "{out}");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::pipelines_file(dir.path(), &backdoor, "");
    let (ok, out) = ordo(&["validate", &path(&config), "--no-environment"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("pipeline `patient-profile`")
            && out.contains("imports `ordo-test:backdoor/door"),
        "{out}"
    );
}

#[test]
fn plugin_test_reports_the_costliest_call_and_keeps_the_compiled_plugin() {
    let cache = tempfile::tempdir().expect("temp dir");
    let dir = cache.path().join("compiled");
    let run = || {
        ordo(&[
            "plugin",
            "test",
            "--plugin-cache",
            &path(&dir),
            "--config-file",
            &path(&common::patient_config_file()),
            &path(&common::lww_plugin()),
            &path(&sample("patient-profile.selftest.jsonl")),
        ])
    };
    let (ok, out) = run();
    assert!(ok, "{out}");
    // "costliest call: N fuel of 10000000 (Kx headroom), M MiB of memory of 16 MiB"
    let line = out
        .lines()
        .find(|l| l.starts_with("costliest call: "))
        .unwrap_or_else(|| panic!("no cost line in:\n{out}"));
    let fuel: u64 = line["costliest call: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(fuel > 0 && fuel < 10_000_000, "{line}");
    assert!(line.contains("of 16 MiB"), "{line}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the cache directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(mode(&entries[0]), 0o600);
    // Again: read from the cache, same answer, no second entry.
    let (ok, again) = run();
    assert!(ok, "{again}");
    assert!(again.contains("0 failed expectations"), "{again}");
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);
}

#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (ok, out) = ordo(&[
        "plugin",
        "test",
        "--plugin-cache",
        &path(cache.path()),
        "--config-file",
        &path(&common::patient_config_file()),
        &path(&common::lww_plugin()),
        &path(&sample("patient-profile.selftest.jsonl")),
    ]);
    assert!(ok, "the plugin is compiled instead: {out}");
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("dir").count(),
        0,
        "nothing kept"
    );
}

#[test]
fn plugin_test_configures_the_plugin_and_names_a_refused_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("practitioners.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"event": {"PractitionerId": "7", "Name": "Bea", "Revision": "10"}, "expect": "write"}"#,
            "\n",
            r#"{"event": {"PractitionerId": "7", "Name": "Ann", "Revision": 9}, "expect": "skip"}"#,
            "\n",
            r#"{"event": {"PractitionerId": "7", "Revision": 11}, "expect": "invalid"}"#,
            "\n",
        ),
    )
    .expect("write events");
    let practitioner = r#"{"key_field": "PractitionerId", "version_field": "Revision", "version_form": "sequence", "required_fields": ["Name"]}"#;
    let (ok, out) = ordo(&[
        "plugin",
        "test",
        "--config",
        practitioner,
        &path(&common::lww_plugin()),
        &path(&events),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("3 events, 0 failed expectations"), "{out}");

    let (ok, out) = ordo(&[
        "plugin",
        "test",
        "--config",
        r#"{"key_field": "PractitionerId", "version_field": "Revision", "version_form": "julian"}"#,
        &path(&common::lww_plugin()),
        &path(&events),
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("refuses its plugin_config: `version_form` must be one of"),
        "{out}"
    );
    // A configuration without its key field is refused, naming it.
    let (ok, out) = ordo(&[
        "plugin",
        "test",
        "--config",
        r#"{"version_field": "UpdatedAt"}"#,
        &path(&common::lww_plugin()),
        &path(&events),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("`key_field` is required"), "{out}");
}
