//! The Ordo plugin SDK: write a policy plugin as a type implementing [`Plugin`] and export it
//! with [`export_plugin!`].
//!
//! The SDK does the WIT plumbing (`ordo:plugin/policy@0.1.0`), parses events and records into
//! [`Record`]s, runs [`Plugin::validate`] before [`Plugin::merge`] (an invalid event is
//! rejected with the field it names), and serialises the decision. The same code runs
//! natively, so a plugin's rules are unit-tested with `cargo test` and benchmarked against the
//! component; [`run`] holds the text-level entry points the host calls.
//!
//! ```ignore
//! use ordo_plugin_sdk::{export_plugin, timestamp, Decision, Invalid, Plugin, Record};
//!
//! struct Lww;
//!
//! impl Plugin for Lww {
//!     const SCHEMA: &'static str = r#"{"type": "object", "required": ["Id", "UpdatedAt"]}"#;
//!
//!     fn validate(event: &Record) -> Result<(), Invalid> {
//!         ordo_plugin_sdk::non_empty(event, "Id")?;
//!         timestamp(event, "UpdatedAt").map(|_| ())
//!     }
//!
//!     fn merge(incoming: Record, stored: Option<Record>) -> Decision {
//!         let newer = stored.map_or(true, |s| timestamp(&s, "UpdatedAt") < timestamp(&incoming, "UpdatedAt"));
//!         if newer { Decision::Write(incoming) } else { Decision::Skip("stale".into()) }
//!     }
//! }
//!
//! export_plugin!(Lww);
//! ```
#![deny(missing_docs)]

use chrono::Timelike as _;
pub use chrono::{DateTime, FixedOffset};
pub use serde_json::{self, json, Map, Value};

/// An instant with the UTC offset it was written with, to the nanosecond.
pub type Instant = DateTime<FixedOffset>;

/// A record or an event: a JSON object.
pub type Record = Map<String, Value>;

/// Why an event is invalid: the field at fault and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The top-level field at fault; empty when the body as a whole is wrong.
    pub field: String,
    /// The rule, for a human: "is required", "must be a string".
    pub message: String,
}

impl Invalid {
    /// `field` broke a rule.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The body as a whole is wrong.
    pub fn body(message: impl Into<String>) -> Self {
        Self::field("", message)
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}` {}", self.field, self.message)
        }
    }
}

/// What [`Plugin::merge`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store this record (it must keep the pipeline's key field).
    Write(Record),
    /// Keep the stored record; the event is stale. Says why.
    Skip(String),
    /// The event cannot be applied; it goes to the dead-letter topic with this reason.
    Reject(String),
}

/// A policy plugin.
pub trait Plugin {
    /// The JSON Schema of an event body; the engine shows it in its OpenAPI document.
    const SCHEMA: &'static str;

    /// Checks one event. Called at ingest (a failure is a 422 naming the field) and before
    /// every merge (a failure rejects the event).
    fn validate(event: &Record) -> Result<(), Invalid>;

    /// Merges a valid `incoming` event into the `stored` record (`None` for a new key).
    /// Must be deterministic: the same inputs always give the same decision.
    fn merge(incoming: Record, stored: Option<Record>) -> Decision;
}

/// The value of `field` as a string; an error names the field when it is absent or not one.
pub fn string<'a>(record: &'a Record, field: &str) -> Result<&'a str, Invalid> {
    match record.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Invalid::field(field, "must be a string")),
        None => Err(Invalid::field(field, "is required")),
    }
}

/// As [`string`], and not empty.
pub fn non_empty<'a>(record: &'a Record, field: &str) -> Result<&'a str, Invalid> {
    match string(record, field)? {
        "" => Err(Invalid::field(field, "must not be empty")),
        s => Ok(s),
    }
}

/// Every field is a string; the error names the first that is not.
pub fn all_strings(record: &Record) -> Result<(), Invalid> {
    match record.iter().find(|(_, v)| !v.is_string()) {
        Some((name, _)) => Err(Invalid::field(name, "must be a string")),
        None => Ok(()),
    }
}

/// The common shape of an entity update: every field a string, `key_field` not empty, and
/// `version_field` an RFC 3339 timestamp, whose instant is returned. Errors name the field.
pub fn flat_update(
    event: &Record,
    key_field: &str,
    version_field: &str,
) -> Result<Instant, Invalid> {
    all_strings(event)?;
    non_empty(event, key_field)?;
    timestamp(event, version_field)
}

/// Parses an RFC 3339 timestamp (any UTC offset, up to nanoseconds) as `chrono` reads it:
/// `T`, `t` or a space between date and time, `Z` or `z`, an offset's sign `+`, `-` or U+2212,
/// any number of fraction digits (the first nine kept). A leap second (`:60`, at the end of
/// any minute) is read as the last nanosecond of its minute, so instants order as numbers do
/// (the Python and JavaScript SDKs read it so too).
pub fn parse_timestamp(text: &str) -> Result<Instant, chrono::ParseError> {
    let at = DateTime::parse_from_rfc3339(text)?;
    Ok(match at.nanosecond() {
        n if n >= 1_000_000_000 => at.with_nanosecond(999_999_999).unwrap_or(at),
        _ => at,
    })
}

/// The instant `field` holds, as an RFC 3339 timestamp; an error names the field.
pub fn timestamp(record: &Record, field: &str) -> Result<Instant, Invalid> {
    let text = string(record, field)?;
    parse_timestamp(text).map_err(|e| {
        Invalid::field(
            field,
            format!("must be an RFC 3339 timestamp such as 2006-01-02T15:00:00.5+10:00 ({e})"),
        )
    })
}

/// The text-level entry points the host calls, usable natively for tests and benchmarks.
pub mod run {
    use super::{Decision, Invalid, Plugin, Record, Value};

    /// A decision as it crosses the border: records as JSON text.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Wire {
        /// Store this JSON object.
        Write(String),
        /// Keep the stored record.
        Skip(String),
        /// Dead-letter the event.
        Reject(String),
    }

    fn object(text: &str) -> Result<Record, Invalid> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(record)) => Ok(record),
            Ok(_) => Err(Invalid::body("must be a JSON object")),
            Err(e) => Err(Invalid::body(format!("not valid JSON: {e}"))),
        }
    }

    /// Parses `event` and validates it.
    pub fn validate<P: Plugin>(event: &str) -> Result<(), Invalid> {
        P::validate(&object(event)?)
    }

    /// Parses and validates `incoming`, parses `stored`, merges.
    pub fn merge<P: Plugin>(incoming: &str, stored: Option<&str>) -> Wire {
        let incoming = match object(incoming).and_then(|e| P::validate(&e).map(|()| e)) {
            Ok(event) => event,
            Err(e) => return Wire::Reject(e.to_string()),
        };
        let stored = match stored.map(object).transpose() {
            Ok(stored) => stored,
            Err(e) => return Wire::Reject(format!("the stored record is unreadable: {e}")),
        };
        match P::merge(incoming, stored) {
            // Straight into a byte buffer: `Value`'s `Display` goes through `fmt::Write`, which
            // costs a plugin about a tenth of its merge.
            Decision::Write(record) => {
                Wire::Write(serde_json::to_string(&record).unwrap_or_default())
            }
            Decision::Skip(why) => Wire::Skip(why),
            Decision::Reject(why) => Wire::Reject(why),
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy-plugin",
        default_bindings_module: "ordo_plugin_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "export_policy_component",
    });
}

/// Exports `$plugin` (a type implementing [`Plugin`]) as the component's `policy` interface.
/// On targets other than WASI (`wasm32-wasip2`) it expands to nothing, so the crate also
/// builds natively, and a plugin's rule can be reused by hosts other than Ordo's.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
        const _: () = {
            use $crate::bindings::exports::ordo::plugin::policy as wit;

            struct OrdoExport;

            impl wit::Guest for OrdoExport {
                fn validate(event: String) -> Result<(), wit::FieldError> {
                    $crate::run::validate::<$plugin>(&event).map_err(|e| wit::FieldError {
                        field: e.field,
                        message: e.message,
                    })
                }

                fn merge(incoming: String, stored: Option<String>) -> wit::Decision {
                    match $crate::run::merge::<$plugin>(&incoming, stored.as_deref()) {
                        $crate::run::Wire::Write(record) => wit::Decision::Write(record),
                        $crate::run::Wire::Skip(why) => wit::Decision::Skip(why),
                        $crate::run::Wire::Reject(why) => wit::Decision::Reject(why),
                    }
                }

                fn schema() -> String {
                    <$plugin as $crate::Plugin>::SCHEMA.to_string()
                }
            }

    $crate::bindings::export_policy_component!(OrdoExport with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the record with the highest `n`.
    struct MaxN;

    impl Plugin for MaxN {
        const SCHEMA: &'static str = "{}";

        fn validate(event: &Record) -> Result<(), Invalid> {
            match event.get("n") {
                Some(Value::Number(_)) => Ok(()),
                _ => Err(Invalid::field("n", "must be a number")),
            }
        }

        fn merge(incoming: Record, stored: Option<Record>) -> Decision {
            let n = |r: &Record| r["n"].as_i64();
            match stored {
                Some(s) if n(&s) >= n(&incoming) => Decision::Skip("older".into()),
                _ => Decision::Write(incoming),
            }
        }
    }

    #[test]
    fn text_entry_points_parse_validate_and_serialise() {
        assert_eq!(
            run::merge::<MaxN>(r#"{"n":2}"#, Some(r#"{"n":1}"#)),
            run::Wire::Write(r#"{"n":2}"#.into())
        );
        assert!(matches!(
            run::merge::<MaxN>(r#"{"n":1}"#, Some(r#"{"n":2}"#)),
            run::Wire::Skip(_)
        ));
        assert_eq!(
            run::merge::<MaxN>(r#"{"n":"x"}"#, None),
            run::Wire::Reject("`n` must be a number".into())
        );
        assert_eq!(
            run::validate::<MaxN>("[1]"),
            Err(Invalid::body("must be a JSON object"))
        );
    }

    #[test]
    fn helpers_name_the_field() {
        let r: Record = serde_json::from_str(r#"{"a":"","b":1,"t":"2006-01-02T15:00:00.5+10:00"}"#)
            .expect("fixture");
        assert_eq!(non_empty(&r, "a").expect_err("empty").field, "a");
        assert_eq!(string(&r, "b").expect_err("number").field, "b");
        assert_eq!(string(&r, "c").expect_err("absent").message, "is required");
        assert_eq!(all_strings(&r).expect_err("b").field, "b");
        assert!(timestamp(&r, "t").is_ok());
        assert_eq!(timestamp(&r, "a").expect_err("not a time").field, "a");
        let update: Record =
            serde_json::from_str(r#"{"id":"1","t":"2006-01-02T15:00:00Z"}"#).expect("fixture");
        assert!(flat_update(&update, "id", "t").is_ok());
        assert_eq!(flat_update(&r, "a", "t").expect_err("b first").field, "b");
    }
}
