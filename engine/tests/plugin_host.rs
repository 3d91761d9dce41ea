//! The wasmtime host against real plugin components: the two patient-profile policies, and a
//! hostile guest that attacks its sandbox.

mod common;

use std::time::{Duration, Instant};

use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::{Decision, PluginError, Policy};

const OLD: &str =
    r#"{"PatientId":"1","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
const NEW: &str = r#"{"PatientId":"1","IsPregnant":"True","UpdatedAt":"2006-01-02T05:00:00.5Z"}"#;

/// The built plugin at `path`, configured for the patient profile (the hostile plugin takes
/// any configuration).
fn load(path: &std::path::Path, limits: Limits, caps: Capabilities) -> WasmPolicy {
    WasmPolicy::load_configured(path, limits, caps, &common::patient_config())
        .expect("the built plugin loads")
}

fn plugin() -> WasmPolicy {
    load(
        &common::lww_plugin(),
        Limits::default(),
        Capabilities::default(),
    )
}

fn hostile(limits: Limits, caps: Capabilities) -> WasmPolicy {
    load(&common::hostile_plugin(), limits, caps)
}

fn attack_body(name: &str) -> String {
    format!(r#"{{"attack":"{name}"}}"#)
}

/// The call's failure reason; panics when the call succeeded.
fn failure(result: Result<Result<(), ordo::plugin::FieldError>, PluginError>) -> String {
    match result {
        Err(e @ PluginError::Call { .. }) => e.to_string(),
        other => panic!("expected the call to be cut off, got {other:?}"),
    }
}

/// What a probing attack reported back (as a validation error on `attack`).
fn report(p: &WasmPolicy, name: &str) -> String {
    match p.validate(&attack_body(name)) {
        Ok(Err(e)) if e.field == "attack" => e.message,
        other => panic!("{name}: expected a report, got {other:?}"),
    }
}

/// The host still serves a plain event after whatever happened before.
fn still_serves(p: &WasmPolicy) {
    assert_eq!(p.validate(r#"{"PatientId":"2"}"#).expect("call"), Ok(()));
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
fn the_field_merge_plugin_keeps_fields_a_partial_update_does_not_touch() {
    let p = load(
        &common::field_merge_plugin(),
        Limits::default(),
        Capabilities::default(),
    );
    let partial =
        r#"{"PatientId":"1","IsPregnant":"True","UpdatedAt":"2006-01-02T16:00:00+10:00"}"#;
    let stored = r#"{"PatientId":"1","FirstName":"John","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00+10:00"}"#;
    let Decision::Write(record) = p.merge(partial, Some(stored)).expect("call") else {
        panic!("a newer partial update writes");
    };
    let record: serde_json::Value = serde_json::from_str(&record).expect("JSON");
    assert_eq!(record["FirstName"], "John");
    assert_eq!(record["IsPregnant"], "True");
    assert_eq!(
        record["FieldUpdatedAt"]["IsPregnant"],
        "2006-01-02T16:00:00+10:00"
    );
    // The whole-record plugin, given the same inputs, drops FirstName.
    let Decision::Write(lww) = plugin().merge(partial, Some(stored)).expect("call") else {
        panic!("a newer event writes");
    };
    assert!(!lww.contains("FirstName"), "{lww}");
}

#[test]
fn instances_are_reused_and_a_failed_one_is_discarded() {
    let p = hostile(Limits::default(), Capabilities::default());
    // Loading called `schema` once; that instance is idle now.
    for _ in 0..3 {
        still_serves(&p);
    }
    assert_eq!(p.idle_instances(), 1, "sequential calls share one instance");
    failure(p.validate(&attack_body("trap")));
    assert_eq!(p.idle_instances(), 0, "the trapped instance is not reused");
    still_serves(&p);
    assert_eq!(p.idle_instances(), 1);
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let p = hostile(Limits::default(), Capabilities::default());
    let reason = failure(p.validate(&attack_body("loop")));
    assert!(reason.contains("ran out of fuel"), "{reason}");
    still_serves(&p);
}

#[test]
fn with_fuel_to_spare_a_loop_is_cut_off_by_the_time_limit() {
    let limits = Limits {
        fuel: 1 << 60,
        timeout: Duration::from_millis(30),
        ..Limits::default()
    };
    let p = hostile(limits, Capabilities::default());
    let started = Instant::now();
    let reason = failure(p.validate(&attack_body("loop")));
    assert!(reason.contains("time limit (30 ms"), "{reason}");
    // Generous: the point is that it stops, not how fast a loaded machine stops it.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    still_serves(&p);
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let limits = Limits {
        memory_bytes: 8 << 20,
        fuel: 1 << 40,
        timeout: Duration::from_secs(10),
    };
    let p = hostile(limits, Capabilities::default());
    let reason = failure(p.validate(&attack_body("alloc")));
    assert!(reason.contains("memory limit (8 MiB"), "{reason}");
    still_serves(&p);
}

#[test]
fn a_panic_is_a_trap_with_its_reason() {
    let p = hostile(Limits::default(), Capabilities::default());
    let reason = failure(p.validate(&attack_body("trap")));
    assert!(reason.contains("trapped"), "{reason}");
    still_serves(&p);
}

#[test]
fn what_the_sandbox_does_not_provide_traps_at_once_naming_the_import() {
    let limits = Limits {
        // Fuel and time to spare: what stops these is the stub, at once.
        fuel: 1 << 40,
        timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let p = hostile(limits, Capabilities::default());
    for (attack, import) in [
        ("file", "wasi:filesystem/"),
        ("network", "wasi:sockets/"),
        ("stdout", "wasi:cli/stdout"),
        ("sleep", "wasi:clocks/monotonic-clock"),
        ("poll", "#subscribe-duration"),
    ] {
        let started = Instant::now();
        let reason = failure(p.validate(&attack_body(attack)));
        assert!(
            reason.contains("the policy sandbox does not provide") && reason.contains(import),
            "{attack}: {reason}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{attack} held the call for {:?}",
            started.elapsed()
        );
        still_serves(&p);
    }
    assert_eq!(report(&p, "env"), "env vars: 0, args: 0");
    assert_eq!(report(&p, "clock"), "clock secs: 0");
}

#[test]
fn floods_recursion_and_huge_texts_are_stopped_or_cut() {
    let p = hostile(Limits::default(), Capabilities::default());
    let random = failure(p.validate(&attack_body("random")));
    assert!(random.contains("at most 1048576"), "{random}");
    let recursion = failure(p.validate(&attack_body("recurse")));
    assert!(recursion.contains("trapped"), "{recursion}");
    let error = p
        .validate(&attack_body("huge-field-error"))
        .expect("call")
        .expect_err("invalid");
    assert!(
        error.message.len() < 2 * ordo::plugin::MAX_TEXT
            && error.message.contains("[cut from 2097152 bytes]"),
        "{} bytes",
        error.message.len()
    );
    match p.merge(&attack_body("huge-reason"), None).expect("call") {
        Decision::Reject(why) => assert!(
            why.len() < 2 * ordo::plugin::MAX_TEXT && why.ends_with("[cut from 2097152 bytes]"),
            "{} bytes",
            why.len()
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
    still_serves(&p);
}

#[test]
fn a_component_importing_outside_wasi_is_refused_naming_the_import() {
    let err = WasmPolicy::load(
        &common::built_plugin("backdoor"),
        Limits::default(),
        Capabilities::default(),
    )
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("imports `ordo-test:backdoor/door") && text.contains("does not provide"),
        "{text}"
    );
}

#[test]
fn live_instances_stay_under_the_cap() {
    let limits = Limits {
        memory_bytes: 256 << 20,
        fuel: 1 << 40,
        ..Limits::default()
    };
    let p = std::sync::Arc::new(hostile(limits, Capabilities::default()));
    let cap = ordo::plugin::wasm::live_cap(256 << 20);
    assert_eq!(p.live_cap(), cap);
    // Sixteen threads each make calls that spin to the time limit (50 ms of CPU), so calls
    // overlap.
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let p = std::sync::Arc::clone(&p);
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| match p.validate(&attack_body("loop")) {
                        Err(PluginError::Call { reason, .. }) => {
                            assert!(reason.contains("time limit"), "{reason}");
                            false
                        }
                        Err(busy @ PluginError::Busy { .. }) => {
                            assert!(busy.is_transient());
                            true
                        }
                        other => panic!("expected the loop to be cut off, got {other:?}"),
                    })
                    .filter(|busy| *busy)
                    .count()
            })
        })
        .collect();
    // Watches the count while the calls run.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (p, watching) = (std::sync::Arc::clone(&p), std::sync::Arc::clone(&watching));
        std::thread::spawn(move || {
            let mut most = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(p.live_instances());
                std::thread::yield_now();
            }
            most
        })
    };
    let busy: usize = calls
        .into_iter()
        .map(|call| call.join().expect("no call panicked"))
        .sum();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().expect("watcher");
    assert!(most <= cap, "{most} live at once, cap {cap}");
    assert!(most >= 2, "the calls did overlap: {most}");
    assert!(busy < 48, "some calls ran: {busy} of 48 were turned away");
    assert_eq!(p.live_instances(), 0, "every failed instance was dropped");
    still_serves(&p);
}

#[test]
fn a_pipeline_can_grant_the_clock() {
    let caps = Capabilities {
        clocks: true,
        random: false,
    };
    let p = hostile(Limits::default(), caps);
    let secs: u64 = report(&p, "clock")
        .trim_start_matches("clock secs: ")
        .parse()
        .expect("a number");
    assert!(secs > 1_700_000_000, "the real clock: {secs}");
    // Files stay out of reach whatever is granted.
    let file = failure(p.validate(&attack_body("file")));
    assert!(
        file.contains("does not provide `wasi:filesystem/"),
        "{file}"
    );
}

#[test]
fn a_tiny_fuel_budget_is_refused_at_load() {
    // Loading runs `schema` once, so a budget too small for any call is refused there.
    let err = WasmPolicy::load(
        &common::lww_plugin(),
        Limits {
            fuel: 10,
            ..Limits::default()
        },
        Capabilities::default(),
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
    let err = WasmPolicy::load(&path, Limits::default(), Capabilities::default())
        .err()
        .expect("refused");
    assert!(matches!(err, PluginError::Load { .. }), "{err}");
    assert!(err.to_string().contains("broken.wasm"), "{err}");
}

#[test]
fn records_carry_the_plugin_file_hash() {
    let path = common::lww_plugin();
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(
        plugin().id(),
        ordo::plugin::wasm::content_id(&bytes),
        "the id is the sha256 of the file"
    );
    assert!(plugin().id().starts_with("sha256:"));
}
