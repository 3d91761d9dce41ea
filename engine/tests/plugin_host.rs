//! The wasmtime host against the real patient-profile plugin component.

mod common;

use ordo::plugin::wasm::{Limits, WasmPolicy};
use ordo::plugin::{Decision, PluginError, Policy};

const OLD: &str =
    r#"{"PatientId":"1","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const NEW: &str = r#"{"PatientId":"1","IsPregnant":"True","UpdatedAt":"2006-01-02T05:00:00.5Z"}"#;

fn plugin() -> WasmPolicy {
    WasmPolicy::load(&common::lww_plugin(), Limits::default()).expect("the built plugin loads")
}

#[test]
fn merge_crosses_the_border_as_json() {
    let p = plugin();
    assert!(
        matches!(p.merge(NEW, Some(OLD)).expect("call"), Decision::Write(r) if r.contains("\"True\""))
    );
    assert!(matches!(
        p.merge(OLD, Some(NEW)).expect("call"),
        Decision::Skip(_)
    ));
    assert!(matches!(
        p.merge("[]", None).expect("call"),
        Decision::Reject(_)
    ));
}

#[test]
fn validate_reports_the_field() {
    let err = plugin()
        .validate(r#"{"PatientId":""}"#)
        .expect("call")
        .expect_err("empty id");
    assert_eq!(err.field, "PatientId");
    assert_eq!(plugin().validate(OLD).expect("call"), Ok(()));
}

#[test]
fn schema_is_a_json_object_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&plugin().schema().expect("call")).expect("JSON");
    assert_eq!(schema["type"], "object");
}

#[test]
fn a_tiny_fuel_budget_fails_the_call_not_the_host() {
    // Loading runs `schema` once, so a budget too small for any call is refused at load...
    let err = WasmPolicy::load(
        &common::lww_plugin(),
        Limits {
            fuel: 10,
            ..Limits::default()
        },
    )
    .err()
    .expect("10 units of fuel cannot run the plugin");
    assert!(err.to_string().contains("fuel"), "{err}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.wasm");
    std::fs::write(&path, b"not wasm").expect("write");
    let err = WasmPolicy::load(&path, Limits::default())
        .err()
        .expect("refused");
    assert!(matches!(err, PluginError::Load { .. }), "{err}");
    assert!(err.to_string().contains("broken.wasm"), "{err}");
}
