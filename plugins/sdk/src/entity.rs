//! The configuration of a generic entity policy, shared by the plugins that take it: which
//! field keys a record, which orders updates and in what form, which must be present, and the
//! schema help `/docs` shows. The Python (`ordo_policy.Entity`) and JavaScript
//! (`Entity`) SDKs read the same keys with the same rules and messages.
//!
//! ```toml
//! [pipelines.patient-profile.plugin_config]
//! key_field = "PatientId"          # required: a non-empty string field
//! version_field = "UpdatedAt"      # required: orders updates
//! version_form = "rfc3339"         # or epoch_seconds, epoch_millis, epoch_micros, epoch_nanos, sequence
//! required_fields = []             # top-level fields every event must carry besides those two
//! strings_only = true              # every field a string (a numeric version excepted)
//! description = "A patient profile update."
//! [pipelines.patient-profile.plugin_config.fields]
//! PatientId = { description = "The patient's id.", example = "1" }
//! ```

use crate::{all_strings_but, non_empty, Invalid, Map, Record, Value};

pub use crate::version::{Version, VersionForm, MAX_SAFE_INTEGER};

/// The keys [`Entity::parse`] reads.
pub const KEYS: [&str; 7] = [
    "key_field",
    "version_field",
    "version_form",
    "required_fields",
    "strings_only",
    "description",
    "fields",
];

/// A generic entity policy's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The field that keys a record: a non-empty string in every event.
    pub key_field: String,
    /// The field that orders updates.
    pub version_field: String,
    /// How the version is written.
    pub version_form: VersionForm,
    /// Top-level fields every event must carry, besides the key and the version.
    pub required_fields: Vec<String>,
    /// Whether every field must be a string (a version of a numeric form excepted).
    pub strings_only: bool,
    /// The schema's description of an event.
    pub description: Option<String>,
    /// Per field, what the schema says of it: `description` and `example`.
    pub fields: Map<String, Value>,
}

/// Why a configuration is refused, naming its key.
fn wrong(key: &str, rule: &str) -> String {
    format!("`{key}` {rule}")
}

impl Entity {
    /// Reads `config`; `also` names the keys the plugin reads itself (left alone here).
    /// Unknown keys and values of the wrong type are refused, naming the key.
    pub fn parse(config: &Record, also: &[&str]) -> Result<Self, String> {
        if let Some(key) = config
            .keys()
            .find(|k| !KEYS.contains(&k.as_str()) && !also.contains(&k.as_str()))
        {
            let mut known: Vec<&str> = KEYS.to_vec();
            known.extend_from_slice(also);
            return Err(wrong(
                key,
                &format!(
                    "is not a key this plugin knows (it knows {})",
                    known.join(", ")
                ),
            ));
        }
        let text = |key: &str| -> Result<Option<String>, String> {
            match config.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(wrong(key, "must be a string")),
            }
        };
        let field = |key: &str| -> Result<String, String> {
            match text(key)? {
                None => Err(wrong(key, "is required")),
                Some(s) if s.is_empty() => Err(wrong(key, "must not be empty")),
                Some(s) => Ok(s),
            }
        };
        let key_field = field("key_field")?;
        let version_field = field("version_field")?;
        if version_field == key_field {
            return Err(wrong("version_field", "must differ from key_field"));
        }
        let version_form = match text("version_form")? {
            None => VersionForm::Rfc3339,
            Some(name) => VersionForm::named(&name).ok_or_else(|| {
                let names: Vec<&str> = VersionForm::ALL.iter().map(|(n, _)| *n).collect();
                wrong(
                    "version_form",
                    &format!("must be one of {}", names.join(", ")),
                )
            })?,
        };
        let required_fields = match config.get("required_fields") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(wrong("required_fields", "must be a list of field names")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(wrong("required_fields", "must be a list of field names")),
        };
        let strings_only = match config.get("strings_only") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(wrong("strings_only", "must be true or false")),
        };
        let description = text("description")?;
        let fields = match config.get("fields") {
            None => Map::new(),
            Some(Value::Object(fields)) => {
                for (name, doc) in fields {
                    let Value::Object(doc) = doc else {
                        return Err(wrong(
                            &format!("fields.{name}"),
                            "must be a table of `description` and `example`",
                        ));
                    };
                    for (key, value) in doc {
                        match (key.as_str(), value) {
                            ("description", Value::String(_)) | ("example", _) => {}
                            ("description", _) => {
                                return Err(wrong(
                                    &format!("fields.{name}.description"),
                                    "must be a string",
                                ))
                            }
                            _ => return Err(wrong(
                                &format!("fields.{name}.{key}"),
                                "is not a key this plugin knows (it knows description, example)",
                            )),
                        }
                    }
                }
                fields.clone()
            }
            Some(_) => return Err(wrong("fields", "must be a table of fields")),
        };
        Ok(Self {
            key_field,
            version_field,
            version_form,
            required_fields,
            strings_only,
            description,
            fields,
        })
    }

    /// Checks an event's shape and returns its version: every field a string when
    /// `strings_only` (in key order), the key a non-empty string, the version of its form,
    /// each required field present. Errors name the field.
    pub fn check(&self, event: &Record) -> Result<Version, Invalid> {
        if self.strings_only {
            let numeric = self.version_form != VersionForm::Rfc3339;
            all_strings_but(event, numeric.then_some(self.version_field.as_str()))?;
        }
        non_empty(event, &self.key_field)?;
        let version = self.version(event)?;
        for field in &self.required_fields {
            if !event.contains_key(field) {
                return Err(Invalid::field(field, "is required"));
            }
        }
        Ok(version)
    }

    /// The version `record` holds; an error names the field.
    pub fn version(&self, record: &Record) -> Result<Version, Invalid> {
        self.version_form.read(record, &self.version_field)
    }

    /// Writes a numeric version given as a JSON number as the whole number it is (`9.0`,
    /// `1e3` and `-0` become `9`, `1000` and `0`). Each language's parser keeps such a
    /// number its own way (serde_json as `9.0`, JavaScript as `9`), so a tie-break on the
    /// text of records would differ between them; written plainly, it cannot.
    pub fn normalize(&self, record: &mut Record) {
        if self.version_form == VersionForm::Rfc3339 {
            return;
        }
        if let Some(value @ Value::Number(_)) = record.get_mut(&self.version_field) {
            if let Some(Version::Number(digits)) = self.version_form.parse(value) {
                if let Ok(n) = digits.parse::<u64>() {
                    *value = Value::from(n);
                }
            }
        }
    }

    /// The JSON Schema of an event: the key, the version of its form, the required fields,
    /// and the `fields` documented. `description` is the default when the configuration
    /// gives none.
    pub fn schema(&self, description: &str) -> Value {
        let mut properties = Map::new();
        let mut property = |name: &str, mut schema: Map<String, Value>| {
            if let Some(Value::Object(doc)) = self.fields.get(name) {
                for (k, v) in doc {
                    schema.insert(k.clone(), v.clone());
                }
            }
            properties.insert(name.to_string(), Value::Object(schema));
        };
        let string = || {
            let mut m = Map::new();
            m.insert("type".into(), "string".into());
            m
        };
        let mut key = string();
        key.insert("minLength".into(), 1.into());
        property(&self.key_field, key);
        let Value::Object(version) = self.version_form.schema() else {
            unreachable!("a form's schema is an object")
        };
        property(&self.version_field, version);
        let others = self.required_fields.iter().chain(self.fields.keys());
        for name in others {
            if name != &self.key_field && name != &self.version_field {
                property(
                    name,
                    if self.strings_only {
                        string()
                    } else {
                        Map::new()
                    },
                );
            }
        }
        let mut required = vec![Value::String(self.key_field.clone())];
        if self.version_form != VersionForm::Rfc3339 {
            // Ingest stamps an absent version with the time of receipt, as RFC 3339 only.
            required.push(Value::String(self.version_field.clone()));
        }
        for name in &self.required_fields {
            if !required.iter().any(|r| r == name) {
                required.push(Value::String(name.clone()));
            }
        }
        let mut schema = Map::new();
        schema.insert("type".into(), "object".into());
        schema.insert(
            "description".into(),
            self.description.as_deref().unwrap_or(description).into(),
        );
        schema.insert("required".into(), Value::Array(required));
        schema.insert("properties".into(), Value::Object(properties));
        if self.strings_only {
            schema.insert(
                "additionalProperties".into(),
                serde_json::json!({"type": "string"}),
            );
        }
        Value::Object(schema)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> Record {
        match value {
            Value::Object(m) => m,
            _ => panic!("fixture is an object"),
        }
    }

    fn record(value: Value) -> Record {
        config(value)
    }

    fn patient() -> Entity {
        Entity::parse(
            &config(json!({"key_field": "PatientId", "version_field": "UpdatedAt", "strings_only": true})),
            &[],
        )
        .expect("parses")
    }

    #[test]
    fn a_configuration_is_read_with_its_defaults() {
        let e = patient();
        assert_eq!(e.version_form, VersionForm::Rfc3339);
        assert!(e.required_fields.is_empty());
        assert!(e.strings_only);
    }

    #[test]
    fn a_bad_configuration_is_refused_naming_its_key() {
        let cases = [
            (json!({}), "`key_field` is required"),
            (json!({"key_field": "Id"}), "`version_field` is required"),
            (
                json!({"key_field": 1, "version_field": "V"}),
                "`key_field` must be a string",
            ),
            (
                json!({"key_field": "", "version_field": "V"}),
                "`key_field` must not be empty",
            ),
            (
                json!({"key_field": "V", "version_field": "V"}),
                "`version_field` must differ",
            ),
            (
                json!({"key_field": "Id", "version_field": "V", "version_form": "julian"}),
                "`version_form` must be one of rfc3339, epoch_seconds",
            ),
            (
                json!({"key_field": "Id", "version_field": "V", "required_fields": "A"}),
                "`required_fields` must be a list",
            ),
            (
                json!({"key_field": "Id", "version_field": "V", "strings_only": "yes"}),
                "`strings_only` must be true or false",
            ),
            (
                json!({"key_field": "Id", "version_field": "V", "colour": "red"}),
                "`colour` is not a key",
            ),
            (
                json!({"key_field": "Id", "version_field": "V", "fields": {"A": {"exampel": 1}}}),
                "`fields.A.exampel` is not a key",
            ),
        ];
        for (c, expected) in cases {
            let err = Entity::parse(&config(c.clone()), &[]).expect_err(&c.to_string());
            assert!(err.contains(expected), "{c}: {err}");
        }
        assert!(Entity::parse(
            &config(json!({"key_field": "Id", "version_field": "V", "mine": 1})),
            &["mine"]
        )
        .is_ok());
    }

    #[test]
    fn a_numeric_version_written_as_a_json_number_is_normalised() {
        let seq = Entity::parse(
            &config(json!({"key_field": "Id", "version_field": "Rev", "version_form": "sequence"})),
            &[],
        )
        .expect("parses");
        for (written, plain) in [
            (json!(9.0), json!(9)),
            (json!(1e3), json!(1000)),
            (json!(-0.0), json!(0)),
            (json!("0009"), json!("0009")),
            (json!(1.5), json!(1.5)),
        ] {
            let mut r = record(json!({"Id": "1", "Rev": written.clone()}));
            seq.normalize(&mut r);
            assert_eq!(r["Rev"], plain, "{written}");
        }
        let mut r = record(json!({"Id": "1", "Rev": 9.0}));
        patient().normalize(&mut r);
        assert_eq!(
            r["Rev"],
            json!(9.0),
            "an RFC 3339 pipeline's fields are left alone"
        );
    }

    #[test]
    fn check_names_the_field_in_the_order_of_the_old_flat_update() {
        let e = patient();
        let name = |v: Value| e.check(&record(v)).expect_err("invalid").field;
        assert_eq!(
            name(json!({"PatientId": "1", "IsPregnant": false, "UpdatedAt": "x"})),
            "IsPregnant"
        );
        assert_eq!(
            name(json!({"PatientId": "", "UpdatedAt": "2006-01-02T05:00:00Z"})),
            "PatientId"
        );
        assert_eq!(name(json!({"PatientId": "1"})), "UpdatedAt");
        let seq = Entity::parse(
            &config(json!({"key_field": "Id", "version_field": "Rev", "version_form": "sequence", "strings_only": true, "required_fields": ["Name"]})),
            &[],
        )
        .expect("parses");
        assert!(seq
            .check(&record(json!({"Id": "1", "Rev": 3, "Name": "A"})))
            .is_ok());
        assert_eq!(
            seq.check(&record(json!({"Id": "1", "Rev": 3})))
                .expect_err("no name")
                .field,
            "Name"
        );
        assert_eq!(
            seq.check(&record(json!({"Id": "1", "Rev": 3, "Name": 1})))
                .expect_err("not text")
                .field,
            "Name"
        );
    }

    #[test]
    fn the_schema_carries_the_fields_documented() {
        let mut e = patient();
        e.fields = config(json!({"PatientId": {"example": "1"}, "FirstName": {"example": "John"}}));
        let schema = e.schema("An update.");
        assert_eq!(schema["required"], json!(["PatientId"]));
        assert_eq!(
            schema["properties"]["PatientId"],
            json!({"type": "string", "minLength": 1, "example": "1"})
        );
        assert_eq!(
            schema["properties"]["FirstName"],
            json!({"type": "string", "example": "John"})
        );
        assert_eq!(
            schema["properties"]["UpdatedAt"],
            json!({"type": "string", "format": "date-time"})
        );
        assert_eq!(schema["additionalProperties"], json!({"type": "string"}));
    }
}
