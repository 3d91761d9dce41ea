//! A version as a pipeline writes it, in one of the forms a generic entity policy knows
//! (RFC 3339, Unix time in seconds to nanoseconds, a sequence number), and how two compare.

use std::cmp::Ordering;

use crate::{parse_timestamp, string, Instant, Invalid, Record, Value};

/// The largest whole number a version may be as a JSON number: beyond it a double (which
/// JavaScript parses every number into) loses units, so larger versions are written as
/// strings of digits.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// How a version is written, and so how two are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionForm {
    /// RFC 3339 text with any offset, compared by the instant it denotes.
    Rfc3339,
    /// Unix time in seconds.
    EpochSeconds,
    /// Unix time in milliseconds.
    EpochMillis,
    /// Unix time in microseconds.
    EpochMicros,
    /// Unix time in nanoseconds.
    EpochNanos,
    /// A number that grows with every update.
    Sequence,
}

impl VersionForm {
    /// Every form, by its name in the configuration.
    pub const ALL: [(&'static str, VersionForm); 6] = [
        ("rfc3339", Self::Rfc3339),
        ("epoch_seconds", Self::EpochSeconds),
        ("epoch_millis", Self::EpochMillis),
        ("epoch_micros", Self::EpochMicros),
        ("epoch_nanos", Self::EpochNanos),
        ("sequence", Self::Sequence),
    ];

    /// The form named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// What a version of this form is, for messages and the schema.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Self::Rfc3339 => "an RFC 3339 timestamp",
            Self::EpochSeconds => "Unix time in seconds",
            Self::EpochMillis => "Unix time in milliseconds",
            Self::EpochMicros => "Unix time in microseconds",
            Self::EpochNanos => "Unix time in nanoseconds",
            Self::Sequence => "a sequence number",
        }
    }

    /// The version `value` holds, or `None` when it is not one of this form.
    pub fn parse(self, value: &Value) -> Option<Version> {
        match (self, value) {
            (Self::Rfc3339, Value::String(s)) => parse_timestamp(s).ok().map(Version::Instant),
            (Self::Rfc3339, _) => None,
            (_, Value::String(s)) => {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let digits = s.trim_start_matches('0');
                Some(Version::Number(
                    if digits.is_empty() { "0" } else { digits }.to_string(),
                ))
            }
            (_, Value::Number(n)) => {
                let whole = match (n.as_u64(), n.as_f64()) {
                    (Some(u), _) => Some(u),
                    (None, Some(f))
                        if f >= 0.0 && f.fract() == 0.0 && f <= MAX_SAFE_INTEGER as f64 =>
                    {
                        Some(f as u64)
                    }
                    _ => None,
                }?;
                (whole <= MAX_SAFE_INTEGER).then(|| Version::Number(whole.to_string()))
            }
            _ => None,
        }
    }

    /// The version `field` of `record` holds; an error names the field.
    pub fn read(self, record: &Record, field: &str) -> Result<Version, Invalid> {
        if self == Self::Rfc3339 {
            let text = string(record, field)?;
            return parse_timestamp(text).map(Version::Instant).map_err(|e| {
                Invalid::field(
                    field,
                    format!(
                        "must be an RFC 3339 timestamp such as 2006-01-02T15:00:00.5+10:00 ({e})"
                    ),
                )
            });
        }
        let value = record
            .get(field)
            .ok_or_else(|| Invalid::field(field, "is required"))?;
        self.parse(value).ok_or_else(|| {
            Invalid::field(
                field,
                format!(
                    "must be {}: a whole number, as a JSON number up to {MAX_SAFE_INTEGER} or a string of digits",
                    self.what()
                ),
            )
        })
    }

    /// The JSON Schema of a version of this form.
    pub(crate) fn schema(self) -> Value {
        match self {
            Self::Rfc3339 => serde_json::json!({"type": "string", "format": "date-time"}),
            _ => serde_json::json!({"oneOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER},
                {"type": "string", "pattern": "^[0-9]+$"}
            ]}),
        }
    }
}

/// A version, read in its pipeline's form: versions of one form compare as their form says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// An instant (the RFC 3339 form).
    Instant(Instant),
    /// A whole number, as its digits without leading zeros (the epoch and sequence forms).
    Number(String),
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Instant(a), Self::Instant(b)) => a.cmp(b),
            (Self::Number(a), Self::Number(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Self::Instant(_), Self::Number(_)) => Ordering::Less,
            (Self::Number(_), Self::Instant(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(value: Value) -> Record {
        match value {
            Value::Object(m) => m,
            _ => panic!("fixture is an object"),
        }
    }

    #[test]
    fn numeric_versions_compare_as_numbers_whatever_their_writing() {
        let form = VersionForm::Sequence;
        let v = |value: Value| form.parse(&value);
        assert!(v(json!(10)) > v(json!(9)));
        assert!(v(json!("10")) > v(json!(9)));
        assert_eq!(v(json!("0009")), v(json!(9)));
        assert_eq!(v(json!(9.0)), v(json!(9)));
        assert!(v(json!("123456789012345678901234567890")) > v(json!(MAX_SAFE_INTEGER)));
        for bad in [
            json!(-1),
            json!(1.5),
            json!(MAX_SAFE_INTEGER + 1),
            json!(""),
            json!("1e3"),
            json!("-1"),
            json!(true),
        ] {
            assert_eq!(v(bad.clone()), None, "{bad}");
        }
        let err = VersionForm::EpochMillis
            .read(&record(json!({"At": "soon"})), "At")
            .expect_err("not a number");
        assert_eq!(err.field, "At");
        assert!(
            err.message.starts_with("must be Unix time in milliseconds"),
            "{err}"
        );
    }
    #[test]
    fn rfc3339_versions_compare_by_instant() {
        let form = VersionForm::Rfc3339;
        assert!(
            form.parse(&json!("2006-01-02T05:00:00.6Z"))
                > form.parse(&json!("2006-01-02T15:00:00.5+10:00"))
        );
        assert_eq!(form.parse(&json!(5)), None);
    }
}
