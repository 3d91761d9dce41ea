//! Validation and last-writer-wins merge of patient profile events.
//!
//! An event is a JSON object whose fields are all strings; `PatientId` must be non-empty and
//! `UpdatedAt` an RFC 3339 timestamp (any UTC offset, up to nanoseconds). Events are ordered
//! by the instant `UpdatedAt` denotes, never by its text, so `15:00:00.5+10:00` is newer than
//! `05:00:00Z`.

use ordo_plugin_sdk::{flat_update, timestamp, Decision, Invalid, Plugin, Record};

/// The field that identifies a patient.
pub const KEY_FIELD: &str = "PatientId";
/// The field whose instant orders updates.
pub const VERSION_FIELD: &str = "UpdatedAt";

/// The JSON Schema of an event body.
pub const SCHEMA: &str = r#"{
  "type": "object",
  "description": "A patient profile update. Every field is a string.",
  "required": ["PatientId"],
  "properties": {
    "PatientId": {"type": "string", "minLength": 1, "description": "The patient's id; the Kafka key and the table's partition key.", "example": "1"},
    "FirstName": {"type": "string", "example": "John"},
    "LastName": {"type": "string", "example": "Doe"},
    "IsPregnant": {"type": "string", "example": "False"},
    "Sex": {"type": "string", "example": "Female"},
    "UpdatedAt": {"type": "string", "format": "date-time", "description": "When the profile changed (RFC 3339, any offset). Stamped with the time of receipt when absent.", "example": "2006-01-02T15:00:00.5+10:00"}
  },
  "additionalProperties": {"type": "string"}
}"#;

/// Whole-record last-writer-wins on the instant of `UpdatedAt`.
pub struct Lww;

impl Plugin for Lww {
    const SCHEMA: &'static str = SCHEMA;

    fn validate(event: &Record) -> Result<(), Invalid> {
        flat_update(event, KEY_FIELD, VERSION_FIELD).map(|_| ())
    }

    /// The newer event replaces the whole record. Equal instants with different bodies are
    /// settled by comparing the serialised records, so every replica converges on the same
    /// record whatever order the events arrive in.
    fn merge(incoming: Record, stored: Option<Record>) -> Decision {
        let version = match timestamp(&incoming, VERSION_FIELD) {
            Ok(v) => v,
            Err(e) => return Decision::Reject(e.to_string()),
        };
        // A stored record without a readable version cannot be ordered: the valid event wins.
        let Some((stored, current)) =
            stored.and_then(|s| timestamp(&s, VERSION_FIELD).ok().map(|v| (s, v)))
        else {
            return Decision::Write(incoming);
        };
        if incoming.get(KEY_FIELD) != stored.get(KEY_FIELD) {
            return Decision::Reject(format!("{KEY_FIELD} differs from the stored record's"));
        }
        if version > current {
            return Decision::Write(incoming);
        }
        if version < current {
            return Decision::Skip(format!(
                "stale: {VERSION_FIELD} is older than the stored record's"
            ));
        }
        let text = |r: &Record| ordo_plugin_sdk::serde_json::to_string(r).unwrap_or_default();
        if text(&incoming) > text(&stored) {
            Decision::Write(incoming)
        } else {
            Decision::Skip(format!(
                "{VERSION_FIELD} equals the stored record's and the stored record wins the tie"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use ordo_plugin_sdk::run::{self, Wire};
    use ordo_plugin_sdk::Value;

    use super::*;

    fn merge(incoming: &str, stored: Option<&str>) -> Wire {
        run::merge::<Lww>(incoming, stored)
    }

    fn validate(event: &str) -> Result<(), Invalid> {
        run::validate::<Lww>(event)
    }

    const EVENT1: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}"#;
    const EVENT2: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.500000000+10:00"}"#;

    #[test]
    fn newer_event_replaces_the_record() {
        assert_eq!(merge(EVENT2, Some(EVENT1)), Wire::Write(canonical(EVENT2)));
    }

    #[test]
    fn older_event_is_skipped() {
        assert!(matches!(merge(EVENT1, Some(EVENT2)), Wire::Skip(_)));
    }

    #[test]
    fn first_event_is_written() {
        assert_eq!(merge(EVENT1, None), Wire::Write(canonical(EVENT1)));
    }

    #[test]
    fn order_is_by_instant_not_text() {
        // 05:00:00.6Z is 15:00:00.6+10:00: newer than EVENT2 although its text sorts lower.
        let utc = EVENT1.replace(
            "2006-01-02T15:00:00.000000000+10:00",
            "2006-01-02T05:00:00.6Z",
        );
        assert!(matches!(merge(&utc, Some(EVENT2)), Wire::Write(_)));
        assert!(matches!(merge(EVENT2, Some(&utc)), Wire::Skip(_)));
    }

    #[test]
    fn ties_converge_whatever_the_order() {
        let other = EVENT1.replace("\"Doe\"", "\"Roe\"");
        let one = match merge(EVENT1, Some(&other)) {
            Wire::Write(r) => r,
            _ => canonical(&other),
        };
        let two = match merge(&other, Some(EVENT1)) {
            Wire::Write(r) => r,
            _ => canonical(EVENT1),
        };
        assert_eq!(one, two);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                r#"{"FirstName":"J","UpdatedAt":"2006-01-02T15:00:00Z"}"#,
                "PatientId",
            ),
            (
                r#"{"PatientId":"","UpdatedAt":"2006-01-02T15:00:00Z"}"#,
                "PatientId",
            ),
            (
                r#"{"PatientId":"1","IsPregnant":false,"UpdatedAt":"2006-01-02T15:00:00Z"}"#,
                "IsPregnant",
            ),
            (r#"{"PatientId":"1"}"#, "UpdatedAt"),
            (
                r#"{"PatientId":"1","UpdatedAt":"2006-01-02T15:00:00.000000000Z10:00"}"#,
                "UpdatedAt",
            ),
            (r#"[1]"#, ""),
        ];
        for (body, field) in cases {
            let err = validate(body).expect_err(body);
            assert_eq!(err.field, field, "{body}: {err:?}");
        }
        assert_eq!(validate(EVENT1), Ok(()));
    }

    #[test]
    fn invalid_event_is_rejected_by_merge() {
        assert!(matches!(merge("not json", None), Wire::Reject(_)));
    }

    #[test]
    fn schema_is_json() {
        let schema: Value = ordo_plugin_sdk::serde_json::from_str(SCHEMA).expect("schema parses");
        assert_eq!(schema["type"], "object");
    }

    fn canonical(event: &str) -> String {
        ordo_plugin_sdk::serde_json::from_str::<Value>(event)
            .expect("fixture parses")
            .to_string()
    }
}
