//! Validation and last-writer-wins merge of patient profile events.
//!
//! An event is a JSON object whose fields are all strings; `PatientId` must be non-empty and
//! `UpdatedAt` an RFC 3339 timestamp (any UTC offset, up to nanoseconds). Events are ordered
//! by the instant `UpdatedAt` denotes, never by its text, so `15:00:00.5+10:00` is newer than
//! `05:00:00Z`.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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

/// A validation failure naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault; empty when the body as a whole is wrong.
    pub field: String,
    /// The rule it broke.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// What to do with an incoming event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store this record.
    Write(String),
    /// Keep the stored record, for this reason.
    Skip(String),
    /// Refuse the event, for this reason.
    Reject(String),
}

/// A validated event: its fields and the instant of its `UpdatedAt`.
struct Event {
    fields: Map<String, Value>,
    version: OffsetDateTime,
}

fn parse(text: &str) -> Result<Event, FieldError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| FieldError::new("", format!("not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(FieldError::new("", "must be a JSON object"));
    };
    for (name, value) in &fields {
        if !value.is_string() {
            return Err(FieldError::new(name, "must be a string"));
        }
    }
    match fields.get(KEY_FIELD).and_then(Value::as_str) {
        None => return Err(FieldError::new(KEY_FIELD, "is required")),
        Some("") => return Err(FieldError::new(KEY_FIELD, "must not be empty")),
        Some(_) => {}
    }
    let Some(stamp) = fields.get(VERSION_FIELD).and_then(Value::as_str) else {
        return Err(FieldError::new(VERSION_FIELD, "is required"));
    };
    let version = OffsetDateTime::parse(stamp, &Rfc3339).map_err(|e| {
        FieldError::new(
            VERSION_FIELD,
            format!("must be an RFC 3339 timestamp such as 2006-01-02T15:00:00.5+10:00 ({e})"),
        )
    })?;
    Ok(Event { fields, version })
}

/// Checks that `event` is a well-formed patient profile update.
pub fn validate(event: &str) -> Result<(), FieldError> {
    parse(event).map(|_| ())
}

/// Merges `incoming` into `stored` by last-writer-wins on the instant of `UpdatedAt`.
///
/// Equal instants with different bodies are settled by comparing the serialised records, so
/// every replica converges on the same record whatever order the events arrive in.
pub fn merge(incoming: &str, stored: Option<&str>) -> Decision {
    let event = match parse(incoming) {
        Ok(event) => event,
        Err(e) if e.field.is_empty() => return Decision::Reject(e.message),
        Err(e) => return Decision::Reject(format!("{} {}", e.field, e.message)),
    };
    let record = Value::Object(event.fields.clone()).to_string();
    // A stored record that does not parse has no usable version: the valid event replaces it.
    let Some(current) = stored.and_then(|s| parse(s).ok()) else {
        return Decision::Write(record);
    };
    if event.fields.get(KEY_FIELD) != current.fields.get(KEY_FIELD) {
        return Decision::Reject(format!("{KEY_FIELD} differs from the stored record's"));
    }
    if event.version > current.version {
        return Decision::Write(record);
    }
    if event.version < current.version {
        return Decision::Skip(format!(
            "stale: {VERSION_FIELD} is older than the stored record's"
        ));
    }
    let current_record = Value::Object(current.fields).to_string();
    if record > current_record {
        Decision::Write(record)
    } else {
        Decision::Skip(format!(
            "{VERSION_FIELD} equals the stored record's and the stored record wins the tie"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT1: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"False","UpdatedAt":"2006-01-02T15:00:00.000000000+10:00"}"#;
    const EVENT2: &str = r#"{"PatientId":"1","FirstName":"John","LastName":"Doe","IsPregnant":"True","UpdatedAt":"2006-01-02T15:00:00.500000000+10:00"}"#;

    #[test]
    fn newer_event_replaces_the_record() {
        assert_eq!(
            merge(EVENT2, Some(EVENT1)),
            Decision::Write(canonical(EVENT2))
        );
    }

    #[test]
    fn older_event_is_skipped() {
        assert!(matches!(merge(EVENT1, Some(EVENT2)), Decision::Skip(_)));
    }

    #[test]
    fn first_event_is_written() {
        assert_eq!(merge(EVENT1, None), Decision::Write(canonical(EVENT1)));
    }

    #[test]
    fn order_is_by_instant_not_text() {
        // 05:00:00.6Z is 15:00:00.6+10:00: newer than EVENT2 although its text sorts lower.
        let utc = EVENT1.replace(
            "2006-01-02T15:00:00.000000000+10:00",
            "2006-01-02T05:00:00.6Z",
        );
        assert!(matches!(merge(&utc, Some(EVENT2)), Decision::Write(_)));
        assert!(matches!(merge(EVENT2, Some(&utc)), Decision::Skip(_)));
    }

    #[test]
    fn ties_converge_whatever_the_order() {
        let other = EVENT1.replace("\"Doe\"", "\"Roe\"");
        let one = match merge(EVENT1, Some(&other)) {
            Decision::Write(r) => r,
            _ => canonical(&other),
        };
        let two = match merge(&other, Some(EVENT1)) {
            Decision::Write(r) => r,
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
        assert!(matches!(merge("not json", None), Decision::Reject(_)));
    }

    #[test]
    fn schema_is_json() {
        let schema: Value = serde_json::from_str(SCHEMA).expect("schema parses");
        assert_eq!(schema["type"], "object");
    }

    fn canonical(event: &str) -> String {
        serde_json::from_str::<Value>(event)
            .expect("fixture parses")
            .to_string()
    }
}
