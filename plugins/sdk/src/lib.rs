//! The Ordo plugin SDK: write a policy plugin as a type implementing [`Plugin`] and export it
//! with [`export_plugin!`].
//!
//! The SDK does the WIT plumbing (`ordo:plugin/policy@0.2.0`), hands the pipeline's
//! `plugin_config` to [`Plugin::configure`] once per instance and keeps what it makes, parses
//! events and records into [`Record`]s, runs [`Plugin::validate`] before [`Plugin::merge`] (an
//! invalid event is rejected with the field it names), and serialises the decision. The same
//! code runs natively, so a plugin's rules are unit-tested with `cargo test` and benchmarked
//! against the component; [`run`] holds the text-level entry points the host calls.
//! [`entity`] reads the configuration of a generic entity policy (key, version and its form,
//! required fields, schema help).
//!
//! ```ignore
//! use ordo_plugin_sdk::{entity::Entity, export_plugin, Decision, Invalid, Plugin, Record};
//!
//! struct Lww;
//!
//! impl Plugin for Lww {
//!     type Config = Entity;
//!
//!     fn configure(config: &Record) -> Result<Entity, String> {
//!         Entity::parse(config, &[])
//!     }
//!
//!     fn schema(entity: &Entity) -> String {
//!         entity.schema("An update.").to_string()
//!     }
//!
//!     fn validate(entity: &Entity, event: &Record) -> Result<(), Invalid> {
//!         entity.check(event).map(|_| ())
//!     }
//!
//!     fn merge(entity: &Entity, incoming: Record, stored: Option<Record>) -> Decision {
//!         let newer = stored.map_or(true, |s| entity.version(&s).ok() < entity.version(&incoming).ok());
//!         if newer { Decision::Write(incoming) } else { Decision::Skip("stale".into()) }
//!     }
//! }
//!
//! export_plugin!(Lww);
//! ```
#![deny(missing_docs)]

pub mod entity;
mod version;

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
    /// What the plugin makes of its configuration, kept by the instance for every call.
    type Config: Send + Sync + 'static;

    /// Reads the pipeline's `plugin_config` (`{}` when it has none). An error refuses the
    /// plugin with that reason: name the key at fault.
    fn configure(config: &Record) -> Result<Self::Config, String>;

    /// The JSON Schema of an event body; the engine shows it in its OpenAPI document.
    fn schema(config: &Self::Config) -> String;

    /// Checks one event. Called at ingest (a failure is a 422 naming the field) and before
    /// every merge (a failure rejects the event).
    fn validate(config: &Self::Config, event: &Record) -> Result<(), Invalid>;

    /// Merges a valid `incoming` event into the `stored` record (`None` for a new key).
    /// Must be deterministic: the same inputs always give the same decision.
    fn merge(config: &Self::Config, incoming: Record, stored: Option<Record>) -> Decision;
}

/// A plugin's configuration for a plugin that takes none: `{}` only.
pub fn no_config(config: &Record) -> Result<(), String> {
    match config.keys().next() {
        None => Ok(()),
        Some(key) => Err(format!(
            "`{key}` is not a key this plugin knows (it takes no configuration)"
        )),
    }
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
    all_strings_but(record, None)
}

/// Every field but `except` is a string; the error names the first that is not (in key
/// order: records keep their keys sorted).
pub fn all_strings_but(record: &Record, except: Option<&str>) -> Result<(), Invalid> {
    match record
        .iter()
        .find(|(name, v)| !v.is_string() && Some(name.as_str()) != except)
    {
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

    /// Parses the configuration (JSON text) and hands it to [`Plugin::configure`].
    pub fn configure<P: Plugin>(config: &str) -> Result<P::Config, String> {
        match serde_json::from_str::<Value>(config) {
            Ok(Value::Object(config)) => P::configure(&config),
            _ => Err("plugin_config must be a JSON object".into()),
        }
    }

    /// The plugin's schema under `config`.
    pub fn schema<P: Plugin>(config: &P::Config) -> String {
        P::schema(config)
    }

    /// Parses `event` and validates it.
    pub fn validate<P: Plugin>(config: &P::Config, event: &str) -> Result<(), Invalid> {
        P::validate(config, &object(event)?)
    }

    /// Parses and validates `incoming`, parses `stored`, merges.
    pub fn merge<P: Plugin>(config: &P::Config, incoming: &str, stored: Option<&str>) -> Wire {
        let incoming = match object(incoming).and_then(|e| P::validate(config, &e).map(|()| e)) {
            Ok(event) => event,
            Err(e) => return Wire::Reject(e.to_string()),
        };
        let stored = match stored.map(object).transpose() {
            Ok(stored) => stored,
            Err(e) => return Wire::Reject(format!("the stored record is unreadable: {e}")),
        };
        match P::merge(config, incoming, stored) {
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

            type Config = <$plugin as $crate::Plugin>::Config;

            /// This instance's configuration, set once by `configure`.
            static CONFIG: ::std::sync::OnceLock<Config> = ::std::sync::OnceLock::new();

            /// The configuration; a host that never called `configure` gets the plugin as
            /// `{}` configures it.
            fn config() -> Result<&'static Config, String> {
                if let Some(config) = CONFIG.get() {
                    return Ok(config);
                }
                let config = $crate::run::configure::<$plugin>("{}")
                    .map_err(|why| format!("the plugin was not configured: {why}"))?;
                Ok(CONFIG.get_or_init(|| config))
            }

            impl wit::Guest for OrdoExport {
                fn configure(config: String) -> Result<(), String> {
                    let config = $crate::run::configure::<$plugin>(&config)?;
                    CONFIG
                        .set(config)
                        .map_err(|_| "the plugin was configured already".to_string())
                }

                fn validate(event: String) -> Result<(), wit::FieldError> {
                    let config = config().map_err(|why| wit::FieldError {
                        field: String::new(),
                        message: why,
                    })?;
                    $crate::run::validate::<$plugin>(config, &event).map_err(|e| wit::FieldError {
                        field: e.field,
                        message: e.message,
                    })
                }

                fn merge(incoming: String, stored: Option<String>) -> wit::Decision {
                    let config = match config() {
                        Ok(config) => config,
                        Err(why) => return wit::Decision::Reject(why),
                    };
                    match $crate::run::merge::<$plugin>(config, &incoming, stored.as_deref()) {
                        $crate::run::Wire::Write(record) => wit::Decision::Write(record),
                        $crate::run::Wire::Skip(why) => wit::Decision::Skip(why),
                        $crate::run::Wire::Reject(why) => wit::Decision::Reject(why),
                    }
                }

                fn schema() -> String {
                    match config() {
                        Ok(config) => $crate::run::schema::<$plugin>(config),
                        // Not JSON: the host refuses the plugin, with the reason in its log.
                        Err(why) => why,
                    }
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
        type Config = ();

        fn configure(config: &Record) -> Result<(), String> {
            no_config(config)
        }

        fn schema(_: &()) -> String {
            "{}".into()
        }

        fn validate(_: &(), event: &Record) -> Result<(), Invalid> {
            match event.get("n") {
                Some(Value::Number(_)) => Ok(()),
                _ => Err(Invalid::field("n", "must be a number")),
            }
        }

        fn merge(_: &(), incoming: Record, stored: Option<Record>) -> Decision {
            let n = |r: &Record| r["n"].as_i64();
            match stored {
                Some(s) if n(&s) >= n(&incoming) => Decision::Skip("older".into()),
                _ => Decision::Write(incoming),
            }
        }
    }

    #[test]
    fn text_entry_points_parse_validate_and_serialise() {
        run::configure::<MaxN>("{}").expect("no configuration");
        let c = &();
        assert_eq!(
            run::merge::<MaxN>(c, r#"{"n":2}"#, Some(r#"{"n":1}"#)),
            run::Wire::Write(r#"{"n":2}"#.into())
        );
        assert!(matches!(
            run::merge::<MaxN>(c, r#"{"n":1}"#, Some(r#"{"n":2}"#)),
            run::Wire::Skip(_)
        ));
        assert_eq!(
            run::merge::<MaxN>(c, r#"{"n":"x"}"#, None),
            run::Wire::Reject("`n` must be a number".into())
        );
        assert_eq!(
            run::validate::<MaxN>(c, "[1]"),
            Err(Invalid::body("must be a JSON object"))
        );
    }

    #[test]
    fn a_configuration_that_is_no_object_or_not_taken_is_refused() {
        assert!(run::configure::<MaxN>("[]").is_err());
        let err = run::configure::<MaxN>(r#"{"n": 1}"#).expect_err("takes none");
        assert!(err.contains("`n`"), "{err}");
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
