//! Runs a policy offline over a stream of events, from an empty store.
//!
//! The input is JSON Lines. A line is either an event (a JSON object) or a case with an
//! expectation: `{"event": {...}, "expect": "write" | "skip" | "reject" | "invalid"}`,
//! optionally with `"record": {...}`, the record the key must hold after this event. Blank
//! lines and lines starting with `#` are ignored. `ordo plugin test` prints the report; a
//! pipeline's `plugin_self_test` file must pass before a plugin is put in force.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::{Decision, Policy};

/// What the policy did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `validate` refused it.
    Invalid,
    /// `merge` wrote a record.
    Write,
    /// `merge` kept the stored record.
    Skip,
    /// `merge` rejected it.
    Reject,
    /// The plugin failed (trap, fuel, time, memory) or broke the contract.
    Error,
}

impl Verdict {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "invalid" => Self::Invalid,
            "write" => Self::Write,
            "skip" => Self::Skip,
            "reject" => Self::Reject,
            "error" => Self::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Invalid => "invalid",
            Self::Write => "write",
            Self::Skip => "skip",
            Self::Reject => "reject",
            Self::Error => "error",
        })
    }
}

/// One event's result.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line of the input.
    pub line: usize,
    /// The event's key, or empty when it has none.
    pub key: String,
    /// What the policy did.
    pub verdict: Verdict,
    /// The plugin's reason, or the written record.
    pub detail: String,
    /// Why the step fails its expectation, when it does.
    pub failure: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One per event, in input order.
    pub steps: Vec<Step>,
    /// The records at the end, by key.
    pub records: BTreeMap<String, Value>,
}

impl Report {
    /// Steps that failed their expectation.
    pub fn failures(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.failure.is_some())
    }

    /// One line per failure, for a refusal message.
    pub fn failure_summary(&self) -> Option<String> {
        let lines: Vec<String> = self
            .failures()
            .map(|s| format!("line {}: {}", s.line, s.failure.as_deref().unwrap_or("")))
            .collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let mark = if s.failure.is_some() { "FAIL" } else { "ok" };
            writeln!(
                f,
                "{mark:<4} line {:<4} key {:<12} {:<7} {}",
                s.line, s.key, s.verdict, s.detail
            )?;
            if let Some(why) = &s.failure {
                writeln!(f, "          {why}")?;
            }
        }
        writeln!(f, "records:")?;
        for (key, record) in &self.records {
            writeln!(f, "  {key}: {record}")?;
        }
        let failed = self.failures().count();
        write!(
            f,
            "{} events, {} failed expectations",
            self.steps.len(),
            failed
        )
    }
}

/// A line of input: the event and what is expected of it.
struct Case {
    event: String,
    expect: Option<Verdict>,
    record: Option<Value>,
}

fn parse_line(text: &str) -> Result<Case, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let is_case = value.get("expect").is_some() && value.get("event").is_some();
    if !is_case {
        return Ok(Case {
            event: value.to_string(),
            expect: None,
            record: None,
        });
    }
    let expect = value["expect"]
        .as_str()
        .and_then(Verdict::parse)
        .ok_or("`expect` must be one of write, skip, reject, invalid, error")?;
    Ok(Case {
        event: value["event"].to_string(),
        expect: Some(expect),
        record: value.get("record").cloned(),
    })
}

/// Runs `policy` over `input` (JSON Lines), keying records by `key_field`. An input line that
/// is not JSON is an error naming the line.
pub fn run(policy: &dyn Policy, key_field: &str, input: &str) -> Result<Report, String> {
    let mut report = Report::default();
    for (i, text) in input.lines().enumerate() {
        let line = i + 1;
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let case = parse_line(text).map_err(|e| format!("line {line}: {e}"))?;
        let key = serde_json::from_str::<Value>(&case.event)
            .ok()
            .and_then(|v| v.get(key_field).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        let (verdict, detail) = decide(policy, &key, &case.event, &mut report.records);
        let mut failure = match case.expect {
            Some(expected) if expected != verdict => {
                Some(format!("expected {expected}, got {verdict}: {detail}"))
            }
            _ => None,
        };
        if failure.is_none() {
            if let Some(expected) = &case.record {
                let held = report.records.get(&key);
                if held != Some(expected) {
                    failure = Some(format!(
                        "expected the record {expected}, the key holds {}",
                        held.map_or("nothing".to_string(), Value::to_string)
                    ));
                }
            }
        }
        report.steps.push(Step {
            line,
            key,
            verdict,
            detail,
            failure,
        });
    }
    Ok(report)
}

fn decide(
    policy: &dyn Policy,
    key: &str,
    event: &str,
    records: &mut BTreeMap<String, Value>,
) -> (Verdict, String) {
    match policy.validate(event) {
        Err(e) => return (Verdict::Error, e.to_string()),
        Ok(Err(e)) if e.field.is_empty() => return (Verdict::Invalid, e.message),
        Ok(Err(e)) => return (Verdict::Invalid, format!("`{}` {}", e.field, e.message)),
        Ok(Ok(())) => {}
    }
    let stored = records.get(key).map(Value::to_string);
    match policy.merge(event, stored.as_deref()) {
        Ok(Decision::Write(record)) => match serde_json::from_str::<Value>(&record) {
            Ok(value @ Value::Object(_)) => {
                records.insert(key.to_string(), value);
                (Verdict::Write, record)
            }
            _ => (
                Verdict::Error,
                format!("the plugin wrote a record that is not a JSON object: {record}"),
            ),
        },
        Ok(Decision::Skip(why)) => (Verdict::Skip, why),
        Ok(Decision::Reject(why)) => (Verdict::Reject, why),
        Err(e) => (Verdict::Error, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MaxV;

    #[test]
    fn events_and_cases_are_run_in_order_from_an_empty_store() {
        let input = r#"
# a comment
{"k":"a","v":2}
{"event":{"k":"a","v":1},"expect":"skip"}
{"event":{"k":"a","v":3},"expect":"write","record":{"k":"a","v":3}}
{"event":{"k":"b","v":"x"},"expect":"invalid"}
"#;
        let report = run(&MaxV, "k", input).expect("runs");
        assert_eq!(report.steps.len(), 4);
        assert_eq!(report.failures().count(), 0, "{report}");
        assert_eq!(report.records["a"], serde_json::json!({"k":"a","v":3}));
        assert!(!report.records.contains_key("b"));
    }

    #[test]
    fn an_unmet_expectation_is_a_failure_naming_the_line() {
        let input =
            "{\"k\":\"a\",\"v\":2}\n{\"event\":{\"k\":\"a\",\"v\":1},\"expect\":\"write\"}\n";
        let report = run(&MaxV, "k", input).expect("runs");
        let summary = report.failure_summary().expect("one failure");
        assert!(
            summary.starts_with("line 2: expected write, got skip"),
            "{summary}"
        );
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error() {
        let err = run(&MaxV, "k", "{\"k\":\"a\",\"v\":1}\nnope\n").expect_err("bad line");
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
