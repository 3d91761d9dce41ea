//! Per-field last-writer-wins merge of patient profile events.
//!
//! An event carries `PatientId`, `UpdatedAt` and any subset of the other fields (all strings).
//! Each field of the record keeps the `UpdatedAt` of the event that last set it, in the
//! record's `FieldUpdatedAt` map (this plugin owns that attribute). An event sets a field when
//! it is newer than that field's own timestamp, so two near-simultaneous updates that touch
//! different fields both survive, and a late event still wins the fields for which it is the
//! newest. The record's `UpdatedAt` is the newest instant any event brought.
//!
//! Ties: when an event's instant equals a field's timestamp, the greater value (by byte order)
//! wins, so every replica converges whatever order the events arrive in.
//!
//! A record written by the whole-record plugin (no `FieldUpdatedAt`) is read as if each of its
//! fields carried the record's `UpdatedAt`: swapping plugins needs no migration.

use ordo_plugin_sdk::{
    flat_update, parse_timestamp, timestamp, Decision, Invalid, Map, Plugin, Record, Value,
};

/// The field that identifies a patient.
pub const KEY_FIELD: &str = "PatientId";
/// The field whose instant orders updates.
pub const VERSION_FIELD: &str = "UpdatedAt";
/// The record attribute holding each field's timestamp.
pub const FIELD_VERSIONS: &str = "FieldUpdatedAt";

/// The JSON Schema of an event body.
pub const SCHEMA: &str = r#"{
  "type": "object",
  "description": "A patient profile update, partial or whole: only the fields present change, each kept by its own last writer. Every field is a string.",
  "required": ["PatientId"],
  "properties": {
    "PatientId": {"type": "string", "minLength": 1, "description": "The patient's id; the Kafka key and the table's partition key.", "example": "1"},
    "FirstName": {"type": "string", "example": "John"},
    "LastName": {"type": "string", "example": "Doe"},
    "IsPregnant": {"type": "string", "example": "False"},
    "Sex": {"type": "string", "example": "Female"},
    "UpdatedAt": {"type": "string", "format": "date-time", "description": "When these fields changed (RFC 3339, any offset). Stamped with the time of receipt when absent.", "example": "2006-01-02T15:00:00.5+10:00"}
  },
  "additionalProperties": {"type": "string"}
}"#;

/// Per-field last-writer-wins on the instant of `UpdatedAt`.
pub struct FieldMerge;

impl Plugin for FieldMerge {
    const SCHEMA: &'static str = SCHEMA;

    fn validate(event: &Record) -> Result<(), Invalid> {
        flat_update(event, KEY_FIELD, VERSION_FIELD).map(|_| ())
    }

    fn merge(incoming: Record, stored: Option<Record>) -> Decision {
        let at = match timestamp(&incoming, VERSION_FIELD) {
            Ok(at) => at,
            Err(e) => return Decision::Reject(e.to_string()),
        };
        let at_text = incoming.get(VERSION_FIELD).cloned().unwrap_or_default();
        let mut record = match stored {
            Some(s) if s.get(KEY_FIELD) != incoming.get(KEY_FIELD) => {
                return Decision::Reject(format!("{KEY_FIELD} differs from the stored record's"))
            }
            Some(s) => s,
            None => {
                let mut fresh = Record::new();
                fresh.insert(
                    KEY_FIELD.into(),
                    incoming.get(KEY_FIELD).cloned().unwrap_or_default(),
                );
                fresh
            }
        };
        let record_at = timestamp(&record, VERSION_FIELD).ok();
        let mut versions = match record.remove(FIELD_VERSIONS) {
            Some(Value::Object(v)) => v,
            _ => Map::new(),
        };
        // A field without a timestamp of its own (the record was written by the whole-record
        // plugin, or before the field was kept) holds the record's instant as it is now,
        // fixed before this event moves it: otherwise a field's standing would change with
        // every other field's update, and the order of arrival would decide the result.
        let inherit = !mistakes::instant();
        if let (true, Some(Value::String(record_at_text))) = (inherit, record.get(VERSION_FIELD)) {
            let record_at_text = record_at_text.clone();
            for field in record.keys() {
                if field != VERSION_FIELD && field != KEY_FIELD && !versions.contains_key(field) {
                    versions.insert(field.clone(), Value::String(record_at_text.clone()));
                }
            }
        }
        let mut changed = false;
        for (field, value) in incoming {
            if field == VERSION_FIELD || field == KEY_FIELD {
                continue;
            }
            let held_at = versions
                .get(&field)
                .and_then(Value::as_str)
                .and_then(|t| parse_timestamp(t).ok())
                // The mistake: a field without its own instant takes the record's, as it moves.
                .or(record_at.filter(|_| !inherit && record.contains_key(&field)));
            let wins = match (held_at, record.get(&field)) {
                (Some(held), Some(held_value)) => {
                    at > held || (at == held && value_key(&value) > value_key(held_value))
                }
                _ => true,
            };
            let stamp_moves = versions.get(&field) != Some(&at_text);
            if wins && (record.get(&field) != Some(&value) || stamp_moves) {
                versions.insert(field.clone(), at_text.clone());
                record.insert(field, value);
                changed = true;
            }
        }
        if record_at.is_none_or(|r| at > r) {
            record.insert(VERSION_FIELD.into(), at_text);
            changed = true;
        }
        if !changed {
            return Decision::Skip(
                "stale: every field it carries is newer in the stored record".into(),
            );
        }
        record.insert(FIELD_VERSIONS.into(), Value::Object(versions));
        Decision::Write(record)
    }
}

/// The mistake this policy once made, which only a native build with the `mistakes` feature
/// can put back: fields of a whole record took the record's instant as it moved with every
/// update, so the order of arrival decided the result.
#[cfg(feature = "mistakes")]
pub mod mistakes {
    use std::cell::Cell;

    thread_local! {
        static INSTANT: Cell<bool> = const { Cell::new(false) };
    }

    /// Whether the instant mistake is made on this thread.
    pub fn instant() -> bool {
        INSTANT.with(Cell::get)
    }

    /// Makes the instant mistake (or not) on this thread from now on.
    pub fn make_instant(on: bool) {
        INSTANT.with(|m| m.set(on));
    }
}

#[cfg(not(feature = "mistakes"))]
mod mistakes {
    /// Never, without the `mistakes` feature.
    pub const fn instant() -> bool {
        false
    }
}

/// The text a tie is settled on.
fn value_key(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use ordo_plugin_sdk::run::{self, Wire};
    use ordo_plugin_sdk::{json, serde_json};

    use super::*;

    const T1: &str = "2006-01-02T15:00:00.000+10:00";
    const T2: &str = "2006-01-02T15:00:00.500+10:00";
    const T3: &str = "2006-01-02T05:00:01Z";

    fn merge(incoming: Value, stored: Option<&Value>) -> Wire {
        run::merge::<FieldMerge>(
            &incoming.to_string(),
            stored.map(|s| s.to_string()).as_deref(),
        )
    }

    fn written(wire: Wire) -> Value {
        match wire {
            Wire::Write(r) => serde_json::from_str(&r).expect("record is JSON"),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    /// Applies events in the given order from an empty store.
    fn fold(events: &[Value]) -> Value {
        let mut record: Option<Value> = None;
        for e in events {
            if let Wire::Write(r) = merge(e.clone(), record.as_ref()) {
                record = Some(serde_json::from_str(&r).expect("JSON"));
            }
        }
        record.expect("something was written")
    }

    #[test]
    fn first_event_sets_every_field_with_its_timestamp() {
        let r = written(merge(
            json!({"PatientId": "1", "FirstName": "John", "UpdatedAt": T1}),
            None,
        ));
        assert_eq!(r["FirstName"], "John");
        assert_eq!(r["UpdatedAt"], T1);
        assert_eq!(r[FIELD_VERSIONS], json!({"FirstName": T1}));
        assert_eq!(r["PatientId"], "1");
    }

    #[test]
    fn updates_to_different_fields_both_survive_in_either_order() {
        let base =
            json!({"PatientId": "1", "FirstName": "John", "IsPregnant": "False", "UpdatedAt": T1});
        let pregnant = json!({"PatientId": "1", "IsPregnant": "True", "UpdatedAt": T3});
        let renamed = json!({"PatientId": "1", "FirstName": "Jon", "UpdatedAt": T2});
        let one = fold(&[base.clone(), pregnant.clone(), renamed.clone()]);
        let two = fold(&[base, renamed, pregnant]);
        assert_eq!(one, two);
        assert_eq!(one["IsPregnant"], "True");
        assert_eq!(one["FirstName"], "Jon");
        assert_eq!(one["UpdatedAt"], T3, "the newest instant any event brought");
    }

    #[test]
    fn partial_updates_over_a_whole_record_converge_in_any_order() {
        // As the whole-record plugin stores it: no per-field timestamps.
        let whole =
            json!({"PatientId": "1", "FirstName": "John", "Sex": "Female", "UpdatedAt": T1});
        let renamed = json!({"PatientId": "1", "FirstName": "Jon", "UpdatedAt": T2});
        let later = json!({"PatientId": "1", "Sex": "Male", "UpdatedAt": T3});
        let over_whole = |events: &[&Value]| {
            let mut record = whole.clone();
            for e in events {
                if let Wire::Write(r) = merge((*e).clone(), Some(&record)) {
                    record = serde_json::from_str(&r).expect("JSON");
                }
            }
            record
        };
        let one = over_whole(&[&renamed, &later]);
        let two = over_whole(&[&later, &renamed]);
        assert_eq!(one, two);
        assert_eq!(
            one["FirstName"], "Jon",
            "newer than the whole record's instant"
        );
        assert_eq!(one["Sex"], "Male");
    }

    #[test]
    fn a_late_event_wins_only_the_fields_where_it_is_newest() {
        let stored = fold(&[
            json!({"PatientId": "1", "FirstName": "John", "LastName": "Doe", "UpdatedAt": T1}),
            json!({"PatientId": "1", "LastName": "Roe", "UpdatedAt": T3}),
        ]);
        // Older than LastName's T3 but newer than FirstName's T1.
        let late =
            json!({"PatientId": "1", "FirstName": "Jon", "LastName": "Poe", "UpdatedAt": T2});
        let r = written(merge(late, Some(&stored)));
        assert_eq!(r["FirstName"], "Jon");
        assert_eq!(r["LastName"], "Roe");
        assert_eq!(r["UpdatedAt"], T3);
    }

    #[test]
    fn an_event_older_than_every_field_is_skipped() {
        let stored = fold(&[json!({"PatientId": "1", "FirstName": "John", "UpdatedAt": T2})]);
        let old = json!({"PatientId": "1", "FirstName": "X", "UpdatedAt": T1});
        assert!(matches!(merge(old, Some(&stored)), Wire::Skip(_)));
    }

    #[test]
    fn equal_timestamps_are_settled_by_the_greater_value_in_any_order() {
        let a = json!({"PatientId": "1", "Sex": "Female", "UpdatedAt": T1});
        let b = json!({"PatientId": "1", "Sex": "Male", "UpdatedAt": T1});
        let one = fold(&[a.clone(), b.clone()]);
        let two = fold(&[b, a]);
        assert_eq!(one, two);
        assert_eq!(one["Sex"], "Male");
    }

    #[test]
    fn a_whole_record_lww_record_is_read_with_its_updated_at_per_field() {
        let legacy =
            json!({"PatientId": "1", "FirstName": "John", "IsPregnant": "False", "UpdatedAt": T2});
        let older = json!({"PatientId": "1", "IsPregnant": "True", "UpdatedAt": T1});
        assert!(matches!(merge(older, Some(&legacy)), Wire::Skip(_)));
        let newer = json!({"PatientId": "1", "IsPregnant": "True", "UpdatedAt": T3});
        let r = written(merge(newer, Some(&legacy)));
        assert_eq!(r["FirstName"], "John", "untouched fields are kept");
        assert_eq!(r["IsPregnant"], "True");
        assert_eq!(r[FIELD_VERSIONS]["IsPregnant"], T3);
    }

    #[test]
    fn invalid_events_are_refused_naming_the_field() {
        let err = run::validate::<FieldMerge>(
            r#"{"PatientId":"1","IsPregnant":true,"UpdatedAt":"2006-01-02T15:00:00Z"}"#,
        )
        .expect_err("not a string");
        assert_eq!(err.field, "IsPregnant");
        let err = run::validate::<FieldMerge>(r#"{"PatientId":"1"}"#).expect_err("no time");
        assert_eq!(err.field, "UpdatedAt");
        assert!(matches!(
            merge(
                json!({"PatientId": "2", "UpdatedAt": T1}),
                Some(&json!({"PatientId": "1", "UpdatedAt": T1}))
            ),
            Wire::Reject(_)
        ));
    }

    #[test]
    fn schema_is_json() {
        let schema: Value = serde_json::from_str(SCHEMA).expect("schema parses");
        assert_eq!(schema["required"], json!(["PatientId"]));
    }
}
