//! Per-field last-writer-wins merge of an entity's events, configured by the pipeline's
//! `plugin_config` (see [`ordo_plugin_sdk::entity`]: key, version and its form, required
//! fields, strings only), plus `field_versions`, the record attribute this plugin keeps each
//! field's version in (default `FieldUpdatedAt`). [`patient_profile`] is the patient
//! profile's configuration.
//!
//! An event carries the key, the version and any subset of the other fields. Each field of the
//! record keeps the version of the event that last set it, in the record's `field_versions`
//! map (this plugin owns that attribute). An event sets a field when it is newer than that
//! field's own version, so two near-simultaneous updates that touch different fields both
//! survive, and a late event still wins the fields for which it is the newest. The record's
//! version is the newest any event brought.
//!
//! Ties: when an event's version equals a field's, the greater value (by byte order) wins, so
//! every replica converges whatever order the events arrive in.
//!
//! A record written by the whole-record plugin (no `field_versions`) is read as if each of its
//! fields carried the record's version: swapping plugins needs no migration.

use ordo_plugin_sdk::entity::{Entity, VersionForm};
use ordo_plugin_sdk::{json, Decision, Invalid, Map, Plugin, Record, Value};

/// The record attribute holding each field's version when the configuration does not say.
pub const FIELD_VERSIONS: &str = "FieldUpdatedAt";

/// The schema's description when the configuration gives none.
const DESCRIPTION: &str = "An update of one record, partial or whole: only the fields present change, each kept by its own last writer.";

/// The plugin's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The entity: key, version, required fields, schema help.
    pub entity: Entity,
    /// The record attribute holding each field's version.
    pub field_versions: String,
}

/// Per-field last-writer-wins on the configured version.
pub struct FieldMerge;

impl Plugin for FieldMerge {
    type Config = Config;

    /// No configuration at all (no `plugin_config` table) is the patient profile's, as this
    /// plugin was before it took one: a pipelines file written for it keeps working.
    fn configure(config: &Record) -> Result<Config, String> {
        let patient;
        let config = if config.is_empty() {
            patient = patient_profile_config();
            &patient
        } else {
            config
        };
        let entity = Entity::parse(config, &["field_versions"])?;
        let field_versions = match config.get("field_versions") {
            None => FIELD_VERSIONS.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err("`field_versions` must be a non-empty string".into()),
        };
        if field_versions == entity.key_field || field_versions == entity.version_field {
            return Err("`field_versions` must differ from key_field and version_field".into());
        }
        Ok(Config {
            entity,
            field_versions,
        })
    }

    fn schema(config: &Config) -> String {
        config.entity.schema(DESCRIPTION).to_string()
    }

    fn validate(config: &Config, event: &Record) -> Result<(), Invalid> {
        config.entity.check(event).map(|_| ())
    }

    fn merge(config: &Config, incoming: Record, stored: Option<Record>) -> Decision {
        let entity = &config.entity;
        let (key_field, version_field) = (entity.key_field.as_str(), entity.version_field.as_str());
        let field_versions = config.field_versions.as_str();
        let form = entity.version_form;
        let at = match entity.version(&incoming) {
            Ok(at) => at,
            Err(e) => return Decision::Reject(e.to_string()),
        };
        let at_text = incoming.get(version_field).cloned().unwrap_or_default();
        let mut record = match stored {
            Some(s) if s.get(key_field) != incoming.get(key_field) => {
                return Decision::Reject(format!("{key_field} differs from the stored record's"))
            }
            Some(s) => s,
            None => {
                let mut fresh = Record::new();
                fresh.insert(
                    key_field.into(),
                    incoming.get(key_field).cloned().unwrap_or_default(),
                );
                fresh
            }
        };
        let record_at = entity.version(&record).ok();
        let mut versions = match record.remove(field_versions) {
            Some(Value::Object(v)) => v,
            _ => Map::new(),
        };
        // A field without a version of its own (the record was written by the whole-record
        // plugin, or before the field was kept) holds the record's version as it is now,
        // fixed before this event moves it: otherwise a field's standing would change with
        // every other field's update, and the order of arrival would decide the result.
        let inherit = !mistakes::instant();
        let inheritable =
            |v: &Value| v.is_string() || (form != VersionForm::Rfc3339 && v.is_number());
        if let (true, Some(record_at_text)) = (
            inherit,
            record.get(version_field).filter(|v| inheritable(v)),
        ) {
            let record_at_text = record_at_text.clone();
            for field in record.keys() {
                if field != version_field && field != key_field && !versions.contains_key(field) {
                    versions.insert(field.clone(), record_at_text.clone());
                }
            }
        }
        let mut changed = false;
        for (field, value) in incoming {
            if field == version_field || field == key_field {
                continue;
            }
            let held_at = versions
                .get(&field)
                .and_then(|v| form.parse(v))
                // The mistake: a field without its own version takes the record's, as it moves.
                .or(record_at
                    .clone()
                    .filter(|_| !inherit && record.contains_key(&field)));
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
            record.insert(version_field.into(), at_text);
            changed = true;
        }
        if !changed {
            return Decision::Skip(
                "stale: every field it carries is newer in the stored record".into(),
            );
        }
        record.insert(field_versions.into(), Value::Object(versions));
        Decision::Write(record)
    }
}

/// The patient profile's configuration, read: for native users of the rule (the engine's
/// simulation, the benchmarks) and the tests.
pub fn patient_profile() -> Config {
    FieldMerge::configure(&patient_profile_config())
        .unwrap_or_else(|e| panic!("the patient profile's configuration reads: {e}"))
}

/// The patient profile's configuration as written: what an empty one stands for.
fn patient_profile_config() -> Record {
    let config = json!({
        "key_field": "PatientId",
        "version_field": "UpdatedAt",
        "version_form": "rfc3339",
        "strings_only": true,
        "description": "A patient profile update, partial or whole: only the fields present change, each kept by its own last writer. Every field is a string.",
        "fields": {
            "PatientId": {"description": "The patient's id; the Kafka key and the table's partition key.", "example": "1"},
            "FirstName": {"example": "John"},
            "LastName": {"example": "Doe"},
            "IsPregnant": {"example": "False"},
            "Sex": {"example": "Female"},
            "UpdatedAt": {"description": "When these fields changed (RFC 3339, any offset). Stamped with the time of receipt when absent.", "example": "2006-01-02T15:00:00.5+10:00"}
        }
    });
    match config {
        Value::Object(config) => config,
        _ => Record::new(),
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
            &patient_profile(),
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
            &patient_profile(),
            r#"{"PatientId":"1","IsPregnant":true,"UpdatedAt":"2006-01-02T15:00:00Z"}"#,
        )
        .expect_err("not a string");
        assert_eq!(err.field, "IsPregnant");
        let err = run::validate::<FieldMerge>(&patient_profile(), r#"{"PatientId":"1"}"#)
            .expect_err("no time");
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
    fn the_patient_profiles_schema_names_the_key_and_the_examples() {
        let schema: Value = serde_json::from_str(&run::schema::<FieldMerge>(&patient_profile()))
            .expect("schema parses");
        assert_eq!(schema["required"], json!(["PatientId"]));
        assert_eq!(
            schema["properties"]["FirstName"],
            json!({"type": "string", "example": "John"})
        );
        assert_eq!(schema["properties"]["UpdatedAt"]["format"], "date-time");
    }

    #[test]
    fn another_entity_keeps_each_fields_sequence_number() {
        let config = serde_json::from_value::<Record>(json!({
            "key_field": "Id", "version_field": "Rev", "version_form": "sequence",
            "field_versions": "FieldRevs"
        }))
        .expect("fixture");
        let c = FieldMerge::configure(&config).expect("configures");
        let apply = |incoming: Value, stored: Option<&Value>| {
            run::merge::<FieldMerge>(
                &c,
                &incoming.to_string(),
                stored.map(|s| s.to_string()).as_deref(),
            )
        };
        let first = match apply(
            json!({"Id": "7", "Name": "Ann", "Ward": "A", "Rev": 9}),
            None,
        ) {
            Wire::Write(r) => serde_json::from_str::<Value>(&r).expect("JSON"),
            other => panic!("{other:?}"),
        };
        assert_eq!(first["FieldRevs"], json!({"Name": 9, "Ward": 9}));
        // Revision 10 (as text) renames; a late revision 8 moves nothing.
        let second = match apply(json!({"Id": "7", "Name": "Bea", "Rev": "10"}), Some(&first)) {
            Wire::Write(r) => serde_json::from_str::<Value>(&r).expect("JSON"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (second["Name"].clone(), second["Ward"].clone()),
            (json!("Bea"), json!("A"))
        );
        assert!(matches!(
            apply(json!({"Id": "7", "Name": "Cy", "Rev": 8}), Some(&second)),
            Wire::Skip(_)
        ));
        let err = FieldMerge::configure(
            &serde_json::from_value::<Record>(
                json!({"key_field": "Id", "version_field": "Rev", "field_versions": 3}),
            )
            .expect("fixture"),
        )
        .expect_err("not text");
        assert!(err.contains("`field_versions`"), "{err}");
    }
}
