//! What an event must be before it is merged, whatever reads it (the apply loop, `ordo
//! validate`'s sample of a topic): UTF-8 JSON, an entity id from where `key_source` says, a
//! version not too far ahead of its receipt, and the plugin's own validation.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::Value;

use super::reason::{Code, Reason};
use crate::config::KeySource;
use crate::plugin::{PluginError, Policy};

/// One event as read from the bus.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The Kafka message key, when the message has one.
    pub key: Option<&'a [u8]>,
    /// The message body.
    pub payload: &'a [u8],
    /// The message's timestamp (ms since the epoch): the receipt time a version is judged
    /// against. `None`: not judged.
    pub timestamp: Option<i64>,
    /// Where it was read: (partition, offset). With a change feed, a write records the
    /// position of the last event folded into it, so a redelivery of that event publishes the
    /// record again (the first publish may not have happened).
    pub position: Option<(i32, i64)>,
}

/// The engine's own checks of an event, and where its entity id comes from.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The JSON field that is the key.
    pub key_field: String,
    /// Where an event's entity id comes from.
    pub key_source: KeySource,
    /// The version field and how far ahead of an event's timestamp it may be, when checked.
    pub versions: Option<(String, Duration)>,
}

impl Admission {
    /// Ids from the body's `key_field`; versions not judged.
    pub fn new(key_field: &str) -> Self {
        Self {
            key_field: key_field.to_string(),
            key_source: KeySource::Body,
            versions: None,
        }
    }

    /// Checks what the engine itself relies on: UTF-8 JSON object, a string entity id (from
    /// the body or the message key, as `key_source` says), and the plugin's own validation.
    /// The inner `Err` is why the event is refused; the outer one, a plugin that could not
    /// take the call (retry later).
    pub fn admit<'a>(
        &self,
        policy: &dyn Policy,
        event: &Event<'a>,
    ) -> Result<Result<(Cow<'a, str>, String), Reason>, PluginError> {
        let (message_key, payload) = (event.key, event.payload);
        let text = match std::str::from_utf8(payload) {
            Ok(text) => text,
            Err(e) => {
                return Ok(Err(Reason::new(
                    Code::NotUtf8,
                    format!("payload is not UTF-8: {e}"),
                )))
            }
        };
        let mut value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                return Ok(Err(Reason::new(
                    Code::NotJson,
                    format!("payload is not JSON: {e}"),
                )))
            }
        };
        let no_key = || {
            Reason::new(
                Code::NoKey,
                format!("`{}` must be a non-empty string", self.key_field),
            )
            .at(&self.key_field)
        };
        let body_key = match value.get(&self.key_field) {
            Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
            None => None,
            Some(_) => return Ok(Err(no_key())),
        };
        let (key, text) = match (self.key_source, body_key) {
            // The body says which entity; the message key is the producer's business.
            (KeySource::Body, Some(key)) => (key, Cow::Borrowed(text)),
            (KeySource::Body, None) => return Ok(Err(no_key())),
            (KeySource::Message, body_key) => {
                let message_key = match message_key.map(std::str::from_utf8) {
                    Some(Ok(k)) if !k.is_empty() => k.to_string(),
                    _ => {
                        return Ok(Err(Reason::new(
                            Code::NoKey,
                            "the message has no key (`key_source = \"message\"` takes the entity id from it)",
                        )))
                    }
                };
                match body_key {
                    Some(body_key) if body_key != message_key => {
                        // The values stay out of the reason: both are in the letter.
                        return Ok(Err(Reason::new(
                            Code::KeyMismatch,
                            format!(
                                "the message key differs from the body's `{}`",
                                self.key_field
                            ),
                        )
                        .at(&self.key_field)));
                    }
                    Some(_) => (message_key, Cow::Borrowed(text)),
                    None => match value.as_object_mut() {
                        Some(object) => {
                            object
                                .insert(self.key_field.clone(), Value::String(message_key.clone()));
                            (message_key, Cow::Owned(value.to_string()))
                        }
                        None => return Ok(Err(no_key())),
                    },
                }
            }
        };
        if let (Some((field, skew)), Some(received)) = (
            &self.versions,
            event.timestamp.and_then(crate::version::from_millis),
        ) {
            if let Some(why) = value
                .get(field)
                .and_then(|v| crate::version::too_far_ahead(v, received, *skew))
            {
                return Ok(Err(Reason::new(
                    Code::VersionAhead,
                    format!("`{field}` {why}"),
                )
                .at(field)));
            }
        }
        Ok(match policy.validate(&text) {
            Ok(Ok(())) => Ok((text, key)),
            Ok(Err(e)) if e.field.is_empty() => Err(Reason::new(
                Code::Invalid,
                format!("invalid event: {}", e.message),
            )),
            Ok(Err(e)) => Err(Reason::new(
                Code::Invalid,
                format!("invalid event: `{}` {}", e.field, e.message),
            )
            .at(&e.field)),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => Err(Reason::new(Code::PluginFailed, e.to_string())),
        })
    }
}
