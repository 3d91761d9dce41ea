//! Validation and whole-record last-writer-wins merge of an entity's events, configured by
//! the pipeline's `plugin_config` (see [`ordo_plugin_sdk::entity`]): which field keys a record,
//! which orders updates and in what form (RFC 3339 with any offset, Unix time in seconds,
//! milliseconds, microseconds or nanoseconds, or a sequence number), which fields an event
//! must carry, and whether every field is a string. Versions are compared as their form says,
//! never as text, so `15:00:00.5+10:00` is newer than `05:00:00Z` and `10` newer than `9`.
//! [`patient_profile`] is the configuration `pipelines.toml` gives the patient profile.

use ordo_plugin_sdk::entity::Entity;
use ordo_plugin_sdk::{Decision, Invalid, Plugin, Record, Value};

/// The schema's description when the configuration gives none.
const DESCRIPTION: &str =
    "An update of one record, which replaces the record when its version is newer.";

/// Whole-record last-writer-wins on the configured version.
pub struct Lww;

impl Plugin for Lww {
    type Config = Entity;

    /// No configuration at all (no `plugin_config` table) is the patient profile's, as this
    /// plugin was before it took one: a pipelines file written for it keeps working.
    fn configure(config: &Record) -> Result<Entity, String> {
        if config.is_empty() {
            return Entity::parse(&patient_profile(), &[]);
        }
        Entity::parse(config, &[])
    }

    fn schema(entity: &Entity) -> String {
        entity.schema(DESCRIPTION).to_string()
    }

    fn validate(entity: &Entity, event: &Record) -> Result<(), Invalid> {
        entity.check(event).map(|_| ())
    }

    /// The newer event replaces the whole record. Equal versions with different bodies are
    /// settled by comparing the serialised records, so every replica converges on the same
    /// record whatever order the events arrive in.
    fn merge(entity: &Entity, mut incoming: Record, stored: Option<Record>) -> Decision {
        let (key_field, version_field) = (&entity.key_field, &entity.version_field);
        entity.normalize(&mut incoming);
        let stored = stored.map(|mut s| {
            entity.normalize(&mut s);
            s
        });
        let version = match entity.version(&incoming) {
            Ok(v) => v,
            Err(e) => return Decision::Reject(e.to_string()),
        };
        // A stored record without a readable version cannot be ordered: the valid event wins.
        let Some((stored, current)) = stored.and_then(|s| entity.version(&s).ok().map(|v| (s, v)))
        else {
            return Decision::Write(incoming);
        };
        if incoming.get(key_field) != stored.get(key_field) {
            return Decision::Reject(format!("{key_field} differs from the stored record's"));
        }
        if version > current {
            return Decision::Write(incoming);
        }
        if version < current {
            return Decision::Skip(format!(
                "stale: {version_field} is older than the stored record's"
            ));
        }
        let text = |r: &Record| ordo_plugin_sdk::serde_json::to_string(r).unwrap_or_default();
        if text(&incoming) > text(&stored) {
            Decision::Write(incoming)
        } else {
            Decision::Skip(format!(
                "{version_field} equals the stored record's and the stored record wins the tie"
            ))
        }
    }
}

/// The patient profile's configuration, `plugins/samples/patient-profile.config.json`: the
/// `plugin_config` `pipelines.toml` writes out (`engine/tests/plugin_config.rs` checks they
/// agree), for native users of the rule (the engine's simulation, the benchmarks) and tests.
pub fn patient_profile() -> Record {
    const TEXT: &str = include_str!("../../samples/patient-profile.config.json");
    match ordo_plugin_sdk::serde_json::from_str::<Value>(TEXT) {
        Ok(Value::Object(config)) => config,
        _ => Record::new(),
    }
}

/// [`patient_profile`], read.
pub fn patient_entity() -> Entity {
    Entity::parse(&patient_profile(), &[])
        .unwrap_or_else(|e| panic!("the patient profile's configuration reads: {e}"))
}

#[cfg(test)]
mod tests {
    use ordo_plugin_sdk::run::{self, Wire};
    use ordo_plugin_sdk::Value;

    use super::*;

    fn merge(incoming: &str, stored: Option<&str>) -> Wire {
        run::merge::<Lww>(&patient_entity(), incoming, stored)
    }

    fn validate(event: &str) -> Result<(), Invalid> {
        run::validate::<Lww>(&patient_entity(), event)
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

    /// The schema the plugin exported before it took a configuration: the patient
    /// profile's must stay the same, so `/docs` shows the same body and example.
    const PATIENT_SCHEMA: &str = r#"{
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

    #[test]
    fn the_patient_profiles_schema_is_the_one_it_always_was() {
        let schema: Value =
            ordo_plugin_sdk::serde_json::from_str(&run::schema::<Lww>(&patient_entity()))
                .expect("schema parses");
        let before: Value = ordo_plugin_sdk::serde_json::from_str(PATIENT_SCHEMA).expect("fixture");
        assert_eq!(schema, before);
    }

    /// A practitioner: another entity, keyed and versioned otherwise, by the same rule.
    fn practitioner() -> Entity {
        let config = ordo_plugin_sdk::serde_json::from_value::<Record>(ordo_plugin_sdk::json!({
            "key_field": "PractitionerId", "version_field": "Revision",
            "version_form": "sequence", "required_fields": ["Name"]
        }))
        .expect("fixture");
        Lww::configure(&config).expect("configures")
    }

    #[test]
    fn another_entity_merges_by_its_own_key_and_version() {
        let p = practitioner();
        let merge = |incoming: &str, stored: Option<&str>| run::merge::<Lww>(&p, incoming, stored);
        let r9 = r#"{"PractitionerId":"7","Name":"Ann","Revision":9}"#;
        let r10 = r#"{"PractitionerId":"7","Name":"Bea","Revision":"10"}"#;
        assert!(
            matches!(merge(r10, Some(r9)), Wire::Write(_)),
            "10 is newer than 9, as numbers"
        );
        assert!(matches!(merge(r9, Some(r10)), Wire::Skip(_)));
        let err = run::validate::<Lww>(&p, r#"{"PractitionerId":"7","Revision":1}"#)
            .expect_err("no name");
        assert_eq!(err.field, "Name");
        let err =
            run::validate::<Lww>(&p, r#"{"PractitionerId":"7","Name":"A","Revision":"soon"}"#)
                .expect_err("not a number");
        assert_eq!(err.field, "Revision");
        assert!(
            run::validate::<Lww>(&p, EVENT1).is_err(),
            "a patient is no practitioner"
        );
    }

    #[test]
    fn a_configuration_without_its_fields_is_refused_naming_them() {
        let err =
            run::configure::<Lww>(r#"{"version_field":"UpdatedAt"}"#).expect_err("no key field");
        assert!(err.contains("`key_field` is required"), "{err}");
    }

    #[test]
    fn no_configuration_is_the_patient_profile_as_before_configuration() {
        let none = run::configure::<Lww>("{}").expect("no configuration is the patient's");
        assert_eq!(none, patient_entity());
        let invalid = r#"{"PatientId":"1","IsPregnant":true}"#;
        assert!(
            run::validate::<Lww>(&none, invalid).is_err(),
            "every field a string"
        );
    }

    fn canonical(event: &str) -> String {
        ordo_plugin_sdk::serde_json::from_str::<Value>(event)
            .expect("fixture parses")
            .to_string()
    }
}
