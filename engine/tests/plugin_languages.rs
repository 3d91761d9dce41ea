//! One contract, several languages: the last-writer-wins policy written in Python
//! (`plugins/patient-profile-lww-py`, built by componentize-py) and in JavaScript
//! (`plugins/patient-profile-lww-js`, built by componentize-js) must each decide exactly as
//! the Rust one over every kind of event, under the same sandbox with no extra capability,
//! and pass the same self-test file.

mod common;

use std::time::Instant;

use common::{ordo_command, Rng};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::wasm::WasmPolicy;
use ordo::plugin::{Decision, Policy};

/// Events compared per run (each validated and merged against a generated stored record).
const CASES: usize = 3_000;

fn load(name: &str) -> WasmPolicy {
    let started = Instant::now();
    let policy = WasmPolicy::load_configured(
        &common::built_plugin(name),
        Limits::default(),
        Capabilities::default(),
        &common::patient_config(),
    )
    .unwrap_or_else(|e| panic!("{name} loads under the default sandbox: {e}"));
    println!("{name}: loaded in {:?}", started.elapsed());
    policy
}

/// Timestamps of every kind: offsets, fractions, separators.
const TIMES: &[&str] = &[
    "2006-01-02T15:00:00+10:00",
    "2006-01-02T05:00:00Z",
    "2006-01-02T05:00:00.5Z",
    "2006-01-02T15:00:00.5+10:00",
    "2006-01-02T05:00:00.500000000Z",
    "2006-01-01T23:00:00.5-06:00",
    "2006-01-02T05:00:00.000000001z",
    "2006-01-02t05:00:00Z",
    "2006-01-02T05:00:00+00:00",
    "2006-01-02T05:00:00-00:00",
    "2006-01-02T05:30:00+00:30",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999999Z",
    "9999-12-31T23:59:59Z",
    "2024-02-29T00:00:00Z",
    "2006-01-02 05:00:00Z",
    "2006-01-02T05:00:00.1234567891Z",
    "0000-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2017-01-01T09:59:60+10:00",
    "2006-01-02T05:00:00+23:59",
    // chrono's rules (the Rust SDK's since it moved from `time`): a leap second at the end
    // of any minute, U+2212 as the offset's minus sign.
    "2016-12-30T23:59:60Z",
    "2006-01-02T05:30:60.25+10:00",
    "2006-01-02T05:00:00\u{2212}10:00",
];

/// Text that is almost RFC 3339: refused by both.
const NOT_TIMES: &[&str] = &[
    "2023-02-29T00:00:00Z",
    "2006-01-02",
    "2006-01-02T05:00:00",
    "2006-01-02é05:00:00Z",
    "2016-12-30T23:59:61Z",
    "2006-01-02x05:00:00Z",
    "2006-01-02_05:00:00Z",
    "٢٠٠٦-01-02T05:00:00Z",
    "2006-01-02T05:00:00+05:60",
    "2006-01-02T24:00:00Z",
    "2006-01-02T05:60:00Z",
    "2006-01-02T05:00:00.Z",
    "2006-01-02T05:00:00+1000",
    "yesterday",
    "",
];

/// Field values, some of which need escaping or are not ASCII.
const TEXTS: &[&str] = &[
    "John",
    "Doe",
    "",
    "é",
    "Zoë",
    "\"quoted\"",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "\u{1}",
    "日本",
    "😀",
    "</script>",
];

/// JSON values one parser might take and another refuse.
const PARSER_EDGES: &[&str] = &[
    "NaN",
    "-Infinity",
    r#""\ud800""#,
    r#""\udc00x""#,
    r#""\ud83d\ude00""#,
    "1e400",
    "-0",
    "12345678901234567890123",
    r#""\u0000""#,
    "[1,]",
    "tru",
];

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

/// One event as JSON text: usually a well-formed update of patient "1" or "2", sometimes
/// with a field missing, not a string, or the body not an object at all.
fn event(rng: &mut Rng) -> String {
    match rng.below(60) {
        0 => return "[]".into(),
        1 => return "not json".into(),
        2 => return "\"text\"".into(),
        3 => {
            return format!(
                r#"{{"PatientId":"1","X":{}}}"#,
                PARSER_EDGES[rng.below(PARSER_EDGES.len())]
            )
        }
        4 => {
            // Nesting around the Rust parser's limit (128).
            let depth = 125 + rng.below(6);
            return format!(
                r#"{{"PatientId":"1","UpdatedAt":"2006-01-02T05:00:00Z","X":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
        }
        _ => {}
    }
    let mut fields = serde_json::Map::new();
    match rng.below(24) {
        0 => {}
        1 => {
            fields.insert("PatientId".into(), "".into());
        }
        2 => {
            fields.insert("PatientId".into(), 1.into());
        }
        _ => {
            fields.insert("PatientId".into(), ["1", "2"][rng.below(2)].into());
        }
    }
    match rng.below(16) {
        0 => {}
        1 | 2 => {
            fields.insert("UpdatedAt".into(), pick(rng, NOT_TIMES).into());
        }
        _ => {
            fields.insert("UpdatedAt".into(), pick(rng, TIMES).into());
        }
    }
    for name in ["FirstName", "LastName", "IsPregnant", "Sex", "Ünïcode"] {
        match rng.below(40) {
            0 => {}
            1 => {
                fields.insert(name.into(), serde_json::Value::Bool(false));
            }
            _ => {
                fields.insert(name.into(), pick(rng, TEXTS).into());
            }
        }
    }
    serde_json::Value::Object(fields).to_string()
}

/// A refusal's message without the detail its language's parser adds ("not valid JSON: …",
/// "must be an RFC 3339 timestamp … (the 'hour' component …)").
fn stem(message: &str) -> &str {
    let message = message.split(" (").next().unwrap_or(message);
    message.split(": ").next().unwrap_or(message)
}

/// A decision reduced to what both languages must agree on: the kind, the record written,
/// the reason of a skip. A reject's reason may quote a language's own parser.
fn comparable(decision: Decision) -> (String, String) {
    match decision {
        Decision::Write(record) => ("write".into(), record),
        Decision::Skip(reason) => ("skip".into(), reason),
        Decision::Reject(_) => ("reject".into(), String::new()),
    }
}

/// Outcomes seen, for the generator's coverage.
#[derive(Default)]
struct Tally {
    writes: usize,
    skips: usize,
    rejects: usize,
    invalid: usize,
    other_time: std::time::Duration,
    calls: u32,
}

/// Validates and merges one case with both policies; panics where they disagree.
fn compare(
    rust: &WasmPolicy,
    other: &WasmPolicy,
    incoming: &str,
    stored: Option<&str>,
    tally: &mut Tally,
) {
    let context = format!("incoming {incoming}, stored {stored:?}");
    let expected = rust.validate(incoming).expect("the Rust call");
    let started = Instant::now();
    let got = other
        .validate(incoming)
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    tally.other_time += started.elapsed();
    match (&expected, &got) {
        (Ok(()), Ok(())) => {}
        (Err(r), Err(p)) => {
            assert_eq!(r.field, p.field, "{context}: {r:?} vs {p:?}");
            assert_eq!(stem(&r.message), stem(&p.message), "{context}");
            tally.invalid += 1;
        }
        _ => panic!("{context}: Rust {expected:?}, the other {got:?}"),
    }
    let expected = comparable(rust.merge(incoming, stored).expect("call"));
    let started = Instant::now();
    let got = other
        .merge(incoming, stored)
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    tally.other_time += started.elapsed();
    tally.calls += 2;
    assert_eq!(expected, comparable(got), "{context}");
    match expected.0.as_str() {
        "write" => tally.writes += 1,
        "skip" => tally.skips += 1,
        _ => tally.rejects += 1,
    }
}

#[test]
fn the_python_policy_decides_as_the_rust_one_over_every_kind_of_event() {
    decides_as_the_rust_policy("patient_profile_lww_py");
}

#[test]
fn the_javascript_policy_decides_as_the_rust_one_over_every_kind_of_event() {
    decides_as_the_rust_policy("patient_profile_lww_js");
}

/// Every edge once, then generated cases: the built plugin `name` against the Rust LWW.
fn decides_as_the_rust_policy(name: &str) {
    let rust = load("patient_profile_lww");
    let other = load(name);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rust.schema().expect("schema")).ok(),
        serde_json::from_str::<serde_json::Value>(&other.schema().expect("schema")).ok(),
        "the same JSON Schema"
    );
    let mut tally = Tally::default();
    let stored = r#"{"PatientId":"1","UpdatedAt":"2006-01-02T05:00:00Z"}"#;
    for edge in PARSER_EDGES {
        let event = format!(r#"{{"PatientId":"1","UpdatedAt":"2006-01-02T06:00:00Z","X":{edge}}}"#);
        compare(&rust, &other, &event, Some(stored), &mut tally);
        compare(&rust, &other, stored, Some(&event), &mut tally);
    }
    for depth in 125..=131 {
        let event = format!(
            r#"{{"PatientId":"1","UpdatedAt":"2006-01-02T06:00:00Z","X":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        compare(&rust, &other, &event, None, &mut tally);
    }
    for time in TIMES.iter().chain(NOT_TIMES) {
        let event = format!(r#"{{"PatientId":"1","UpdatedAt":"{time}"}}"#);
        compare(&rust, &other, &event, Some(stored), &mut tally);
    }
    let mut rng = Rng::from_env();
    for _ in 0..CASES {
        let incoming = event(&mut rng);
        let stored = (rng.below(4) != 0).then(|| event(&mut rng));
        compare(&rust, &other, &incoming, stored.as_deref(), &mut tally);
    }
    let Tally {
        writes,
        skips,
        rejects,
        invalid,
        ..
    } = tally;
    println!(
        "{CASES} cases and the edges: {writes} writes, {skips} skips, {rejects} rejects, \
         {invalid} invalid; {name} {:?} a call on average",
        tally.other_time / tally.calls
    );
    // The generator reaches every outcome, or the comparison proves little.
    assert!(writes > 100 && skips > 50 && rejects > 100 && invalid > 100);
}

/// Versions of the numeric forms, as JSON text: whole numbers every way they can be written,
/// at the edge of a double's integers, and what is not one.
const NUMBERS: &[&str] = &[
    "0",
    "9",
    "10",
    "\"10\"",
    "\"0009\"",
    "9.0",
    "1e3",
    "-0",
    "-1",
    "1.5",
    "9007199254740991",
    "9007199254740992",
    "\"9007199254740993\"",
    "\"123456789012345678901234567890\"",
    "\"\"",
    "\"1e3\"",
    "\"-1\"",
    "true",
    "null",
    "\"\u{663}\"",
    "[1]",
];

/// The same file configured for another entity (a sequence-numbered practitioner, as in
/// `pipelines.toml`'s commented example): every language decides alike over numeric versions.
#[test]
fn every_language_decides_alike_for_an_entity_with_a_numeric_version() {
    let config = r#"{"key_field": "PractitionerId", "version_field": "Revision", "version_form": "sequence", "required_fields": ["Name"], "strings_only": true}"#;
    let configured = |name: &str| {
        WasmPolicy::load_configured(
            &common::built_plugin(name),
            Limits::default(),
            Capabilities::default(),
            config,
        )
        .unwrap_or_else(|e| panic!("{name} takes the configuration: {e}"))
    };
    let rust = configured("patient_profile_lww");
    let event =
        |revision: &str| format!(r#"{{"PractitionerId":"7","Name":"Ann","Revision":{revision}}}"#);
    for other in ["patient_profile_lww_py", "patient_profile_lww_js"] {
        let other = configured(other);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&rust.schema().expect("schema")).ok(),
            serde_json::from_str::<serde_json::Value>(&other.schema().expect("schema")).ok(),
            "the same JSON Schema"
        );
        let mut tally = Tally::default();
        for incoming in NUMBERS {
            compare(&rust, &other, &event(incoming), None, &mut tally);
            for stored in NUMBERS {
                compare(
                    &rust,
                    &other,
                    &event(incoming),
                    Some(&event(stored)),
                    &mut tally,
                );
            }
        }
        assert!(
            tally.writes > 50 && tally.skips > 50 && tally.rejects > 50,
            "every outcome is reached"
        );
    }
}

#[test]
fn the_python_policy_passes_the_rust_policys_self_test() {
    passes_the_rust_policys_self_test("patient_profile_lww_py");
}

#[test]
fn the_javascript_policy_passes_the_rust_policys_self_test() {
    passes_the_rust_policys_self_test("patient_profile_lww_js");
}

fn passes_the_rust_policys_self_test(name: &str) {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/samples/patient-profile.selftest.jsonl");
    let output = ordo_command()
        .args(["plugin", "test"])
        .arg(common::built_plugin(name))
        .arg(&samples)
        .arg("--config-file")
        .arg(common::patient_config_file())
        .output()
        .expect("ordo plugin test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("0 failed expectations"), "{stdout}");
}
