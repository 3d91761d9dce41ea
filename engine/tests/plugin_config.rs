//! A pipeline's `plugin_config`: handed to the plugin once per instance, refused with the
//! plugin's reason, and what makes one plugin file serve entities of different shapes (the
//! commented example of `pipelines.toml`). A plugin built against `ordo:plugin@0.1.0` still
//! runs, without configuration.

mod common;

use std::path::Path;

use ordo::plugin::reload::load_checked;
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::{WasmPolicy, EMPTY_CONFIG};
use ordo::plugin::{Decision, PluginError, Policy};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `pipelines.toml` with its commented example of a second pipeline uncommented: every line
/// from `# [pipelines.practitioner]` on loses its leading `# ` (or `#`).
fn pipelines_uncommented() -> String {
    let text = std::fs::read_to_string(repo().join("pipelines.toml")).expect("pipelines.toml");
    let start = text
        .find("# [pipelines.practitioner]")
        .expect("pipelines.toml has a commented practitioner pipeline");
    let (head, example) = text.split_at(start);
    let uncommented: Vec<&str> = example
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix('#'))
                .unwrap_or(l)
        })
        .collect();
    format!("{head}{}\n", uncommented.join("\n"))
}

fn loaded(spec: &ordo::plugin::reload::PluginSpec) -> WasmPolicy {
    load_checked(spec).unwrap_or_else(|e| panic!("{} loads: {e}", spec.path.display()))
}

fn written(d: Decision) -> Value {
    match d {
        Decision::Write(r) => serde_json::from_str(&r).expect("a record is JSON"),
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn one_lww_plugin_file_serves_the_patient_profile_and_the_commented_practitioner_pipeline() {
    let pipelines = ordo::config::from_str(&pipelines_uncommented(), repo())
        .unwrap_or_else(|e| panic!("the uncommented example is a right file: {e}"));
    let [patient, practitioner] = pipelines.as_slice() else {
        panic!("two pipelines, got {}", pipelines.len());
    };
    assert_eq!(
        (patient.name.as_str(), practitioner.name.as_str()),
        ("patient-profile", "practitioner")
    );
    assert_eq!(patient.plugin, practitioner.plugin, "the same plugin file");
    assert!(patient
        .plugin
        .ends_with("plugins/build/patient_profile_lww.wasm"));
    assert!(patient.plugin.exists(), "run `make plugins`");

    // Each loads as the engine loads it (the patient profile with its self-test).
    let patients = loaded(&patient.plugin_spec());
    let practitioners = loaded(&practitioner.plugin_spec());
    assert_eq!(patients.id(), practitioners.id(), "one file, one id");

    // Patients: by the instant of UpdatedAt.
    let old = r#"{"PatientId":"1","Sex":"Female","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
    let new = r#"{"PatientId":"1","Sex":"Male","UpdatedAt":"2006-01-02T05:00:00.5Z"}"#;
    assert_eq!(
        written(patients.merge(new, Some(old)).expect("call"))["Sex"],
        "Male"
    );
    assert!(matches!(
        patients.merge(old, Some(new)).expect("call"),
        Decision::Skip(_)
    ));

    // Practitioners: by the number of Revision (10 after 9, whatever the text says), Name
    // required, a patient's event refused naming the key the pipeline configured.
    let r9 = r#"{"PractitionerId":"p-1","Name":"Ann","Revision":9}"#;
    let r10 = r#"{"PractitionerId":"p-1","Name":"Bea","Revision":"10"}"#;
    assert_eq!(
        written(practitioners.merge(r10, Some(r9)).expect("call"))["Name"],
        "Bea"
    );
    assert!(matches!(
        practitioners.merge(r9, Some(r10)).expect("call"),
        Decision::Skip(_)
    ));
    let field =
        |p: &WasmPolicy, event: &str| p.validate(event).expect("call").err().map(|e| e.field);
    assert_eq!(
        field(&practitioners, r#"{"PractitionerId":"p-1","Revision":1}"#),
        Some("Name".into())
    );
    assert_eq!(field(&practitioners, new), Some("PractitionerId".into()));
    assert_eq!(
        field(&patients, r9),
        Some("Revision".into()),
        "every patient field is a string"
    );

    // Each schema is its entity's: /docs shows each route its own example.
    let schema =
        |p: &WasmPolicy| serde_json::from_str::<Value>(&p.schema().expect("schema")).expect("JSON");
    assert_eq!(
        schema(&patients)["properties"]["FirstName"]["example"],
        "John"
    );
    let practitioner_schema = schema(&practitioners);
    assert_eq!(
        practitioner_schema["required"],
        serde_json::json!(["PractitionerId", "Revision", "Name"])
    );
    assert_eq!(practitioner_schema["properties"]["Revision"]["example"], 1);
}

#[test]
fn the_patient_profiles_plugin_config_is_the_sample_the_tests_and_the_rust_code_use() {
    let pipelines = ordo::config::from_str(
        &std::fs::read_to_string(repo().join("pipelines.toml")).expect("pipelines.toml"),
        repo(),
    )
    .expect("pipelines.toml is right");
    let sample: Value =
        serde_json::from_str(&common::patient_config()).expect("the sample is JSON");
    assert_eq!(Value::Object(pipelines[0].plugin_config.clone()), sample);
    assert_eq!(
        Value::Object(patient_profile_lww::policy::patient_profile()),
        sample
    );
}

#[test]
fn a_plugin_built_against_0_1_0_loads_and_runs_without_configuration() {
    let legacy = common::built_plugin("legacy_lww");
    let policy = WasmPolicy::load(&legacy, Limits::default(), Capabilities::default())
        .unwrap_or_else(|e| panic!("a 0.1.0 component loads: {e}"));
    assert_eq!(policy.contract().name(), "ordo:plugin@0.1.0");
    let old = r#"{"PatientId":"1","UpdatedAt":"2006-01-02T05:00:00Z"}"#;
    let new = r#"{"PatientId":"1","UpdatedAt":"2006-01-02T06:00:00Z"}"#;
    assert_eq!(policy.validate(new).expect("call"), Ok(()));
    assert_eq!(
        policy
            .validate(r#"{"PatientId":""}"#)
            .expect("call")
            .expect_err("invalid")
            .field,
        "PatientId"
    );
    assert!(matches!(
        policy.merge(new, Some(old)).expect("call"),
        Decision::Write(_)
    ));
    assert!(matches!(
        policy.merge(old, Some(new)).expect("call"),
        Decision::Skip(_)
    ));

    let err = WasmPolicy::load_configured(
        &legacy,
        Limits::default(),
        Capabilities::default(),
        r#"{"key_field":"PatientId"}"#,
    )
    .err()
    .expect("a configuration it cannot take is refused");
    assert!(matches!(err, PluginError::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("implements ordo:plugin@0.1.0, which takes no configuration; remove plugin_config or rebuild it against ordo:plugin@0.2.0"),
        "{err}"
    );
    let current = WasmPolicy::load_configured(
        &common::lww_plugin(),
        Limits::default(),
        Capabilities::default(),
        &common::patient_config(),
    )
    .expect("loads");
    assert_eq!(current.contract().name(), "ordo:plugin@0.2.0");
}

#[test]
fn a_configuration_the_plugin_refuses_refuses_the_load_with_its_reason() {
    let refused = |plugin: &Path, config: &str| {
        WasmPolicy::load_configured(plugin, Limits::default(), Capabilities::default(), config)
            .err()
            .unwrap_or_else(|| panic!("{config} is refused"))
    };
    let err = refused(
        &common::lww_plugin(),
        r#"{"key_field":"PatientId","version_field":"UpdatedAt","colour":"red"}"#,
    );
    assert!(matches!(err, PluginError::Config { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`colour` is not a key this plugin knows"),
        "{err}"
    );
    let err = refused(&common::lww_plugin(), r#"{"version_field":"UpdatedAt"}"#);
    assert!(err.to_string().contains("`key_field` is required"), "{err}");
    // No configuration at all is the patient profile's, as the plugin was before it took one:
    // a pipelines file written for it then keeps working, /docs example included.
    let none = WasmPolicy::load_configured(
        &common::lww_plugin(),
        Limits::default(),
        Capabilities::default(),
        EMPTY_CONFIG,
    )
    .expect("no configuration is the patient profile's");
    let configured = WasmPolicy::load_configured(
        &common::lww_plugin(),
        Limits::default(),
        Capabilities::default(),
        &common::patient_config(),
    )
    .expect("the patient profile's configuration");
    assert_eq!(none.schema().ok(), configured.schema().ok());
    let err = refused(&common::lww_plugin(), "[1]");
    assert!(err.to_string().contains("not a JSON object"), "{err}");
    // The hostile plugin refuses with what its attack reported: its text, bounded.
    let err = refused(&common::hostile_plugin(), r#"{"attack":"env"}"#);
    assert!(matches!(err, PluginError::Config { .. }), "{err}");
    assert!(err.to_string().contains("env vars: 0, args: 0"), "{err}");
    let err = refused(
        &common::hostile_plugin(),
        r#"{"attack":"huge-field-error"}"#,
    );
    assert!(err.to_string().len() < 4096, "the reason is cut");
    // A configure that never ends is stopped by the call limits, and the load refused.
    let err = refused(&common::hostile_plugin(), r#"{"attack":"loop"}"#);
    assert!(matches!(err, PluginError::Load { .. }), "{err}");
    assert!(err.to_string().contains("ran out of fuel"), "{err}");
}

#[test]
fn every_instance_is_configured_even_one_made_after_a_trap() {
    let policy = WasmPolicy::load_configured(
        &common::hostile_plugin(),
        Limits::default(),
        Capabilities::default(),
        r#"{"marker":"m-17"}"#,
    )
    .expect("loads");
    let report = |p: &WasmPolicy| match p.validate(r#"{"attack":"config"}"#) {
        Ok(Err(e)) if e.field == "attack" => e.message,
        other => panic!("expected a report, got {other:?}"),
    };
    assert_eq!(report(&policy), r#"configured with {"marker":"m-17"}"#);
    // The trap drops the instance; the next call gets a new one, configured as the first.
    assert!(policy.validate(r#"{"attack":"trap"}"#).is_err());
    assert_eq!(policy.live_instances(), 0, "the trapped instance is gone");
    assert_eq!(report(&policy), r#"configured with {"marker":"m-17"}"#);
}
