//! The oracle: what the records must be, written here from the events alone, not with the
//! plugins.
//!
//! Both policies of the simulation agree on one rule, field by field: a field holds the value
//! of the newest event (by instant) that set it, and `UpdatedAt` the newest instant any event
//! brought. Whole-record last-writer-wins stores the newest event as it came; the field merge
//! also keeps, per field, the text of the instant that set it (`FieldUpdatedAt`). Instants are
//! distinct within a key, so there are no ties to settle, and the oracle reads instants by
//! looking up the texts it generated, never by parsing them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::plan::{Event, Kind, FIELDS, KEY, VERSION};
use crate::store::{Record, META_ATTRIBUTE};

/// The field merge's per-field instants.
const FIELD_VERSIONS: &str = "FieldUpdatedAt";

/// What the records must be.
#[derive(Debug, Default)]
pub struct Oracle {
    /// Per event: its key and kind.
    events: Vec<(String, Kind)>,
    /// Per key: the instant of each version text its events carry.
    texts: BTreeMap<String, BTreeMap<String, i128>>,
    /// Per key: its valid events.
    valid: BTreeMap<String, Vec<usize>>,
}

impl Oracle {
    /// The oracle of `events`.
    pub fn new(events: &[Event]) -> Self {
        let mut oracle = Self::default();
        for (i, event) in events.iter().enumerate() {
            oracle.events.push((event.key.clone(), event.kind.clone()));
            if let Kind::Valid { instant, fields } = &event.kind {
                oracle
                    .texts
                    .entry(event.key.clone())
                    .or_default()
                    .insert(fields[VERSION].clone(), *instant);
                oracle.valid.entry(event.key.clone()).or_default().push(i);
            }
        }
        oracle
    }

    /// Whether event `i` is one no policy may apply.
    pub fn is_poison(&self, i: usize) -> bool {
        matches!(self.events.get(i), Some((_, Kind::Poison(_))))
    }

    /// The keys with valid events, and every key any event names.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.valid.keys()
    }

    /// The instant each field of `key`'s stored `record` holds (`UpdatedAt` included), by the
    /// record's own account: its `FieldUpdatedAt` when the field merge wrote it, else the
    /// record's `UpdatedAt` for every field.
    pub fn held(
        &self,
        key: &str,
        record: Option<&Record>,
    ) -> Result<BTreeMap<String, i128>, String> {
        let Some(record) = record else {
            return Ok(BTreeMap::new());
        };
        let instant = |text: Option<&Value>| -> Result<i128, String> {
            let text = text.and_then(Value::as_str).unwrap_or_default();
            self.texts
                .get(key)
                .and_then(|t| t.get(text))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "key {key}: the record holds an instant no event of it carried: {text:?}"
                    )
                })
        };
        let at = instant(record.get(VERSION))?;
        let mut held = BTreeMap::from([(VERSION.to_string(), at)]);
        // A field without an instant of its own holds the record's (a whole record's fields
        // all do); the field merge's own instants, where it keeps them, come after.
        for field in FIELDS.iter().filter(|f| record.contains_key(**f)) {
            held.insert(field.to_string(), at);
        }
        if let Some(Value::Object(versions)) = record.get(FIELD_VERSIONS) {
            for (field, text) in versions {
                held.insert(field.clone(), instant(Some(text))?);
            }
        }
        Ok(held)
    }

    /// Whether valid event `i` is reflected in `record`: every field it sets holds its
    /// instant or a newer one. `Err` when the record cannot be read so.
    pub fn durable(&self, i: usize, record: Option<&Record>) -> Result<bool, String> {
        let Some((key, Kind::Valid { instant, fields })) = self.events.get(i) else {
            return Ok(false);
        };
        let held = self.held(key, record)?;
        Ok(fields
            .keys()
            .all(|field| held.get(field).is_some_and(|h| h >= instant)))
    }

    /// Whether `after` holds every field of `before` at the same instant or a newer one.
    pub fn never_older(
        &self,
        key: &str,
        before: Option<&Record>,
        after: &Record,
    ) -> Result<(), String> {
        let (before, after) = (self.held(key, before)?, self.held(key, Some(after))?);
        for (field, at) in &before {
            if after.get(field).is_none_or(|now| now < at) {
                return Err(format!(
                    "key {key}: `{field}` went from the instant {at} to {:?}",
                    after.get(field)
                ));
            }
        }
        Ok(())
    }

    /// Checks `key`'s final stored record against the fold of its valid events.
    pub fn check_final(
        &self,
        key: &str,
        events: &[Event],
        record: Option<&Record>,
    ) -> Result<(), String> {
        let valid = self.valid.get(key).map(Vec::as_slice).unwrap_or_default();
        let stored = record.map(|r| {
            let mut plain = r.clone();
            plain.remove(META_ATTRIBUTE);
            Value::Object(plain)
        });
        let Some(newest) = valid.iter().max_by_key(|i| instant_of(&events[**i])) else {
            return match stored {
                None => Ok(()),
                Some(stored) => Err(format!(
                    "key {key}: no valid event, yet the record {stored}"
                )),
            };
        };
        let Some(stored) = stored else {
            return Err(format!(
                "key {key}: no record, yet {} valid events",
                valid.len()
            ));
        };
        let expected = if stored.get(FIELD_VERSIONS).is_some() {
            self.merged(key, valid, events)
        } else {
            serde_json::from_str(&events[*newest].body).unwrap_or_default()
        };
        match first_difference(&stored, &expected) {
            None => Ok(()),
            Some((field, stored, expected)) => Err(format!(
                "key {key}: `{field}` is {stored}, the oracle says {expected}"
            )),
        }
    }

    /// The field merge's record of `key`'s valid events.
    fn merged(&self, key: &str, valid: &[usize], events: &[Event]) -> Value {
        let mut record = Map::new();
        let mut versions = Map::new();
        let mut newest: BTreeMap<&str, (i128, &str, &str)> = BTreeMap::new();
        for i in valid {
            let Kind::Valid { instant, fields } = &events[*i].kind else {
                continue;
            };
            let text = fields[VERSION].as_str();
            for (field, value) in fields {
                let slot = newest
                    .entry(field.as_str())
                    .or_insert((*instant, value, text));
                if *instant > slot.0 {
                    *slot = (*instant, value, text);
                }
            }
        }
        record.insert(KEY.into(), key.into());
        for (field, (_, value, text)) in newest {
            record.insert(field.into(), value.into());
            if field != VERSION {
                versions.insert(field.into(), text.into());
            }
        }
        record.insert(FIELD_VERSIONS.into(), Value::Object(versions));
        Value::Object(record)
    }
}

/// The first field (values before the field merge's instants) where `stored` and `expected`
/// differ: its name and both values (`null` where absent).
fn first_difference(stored: &Value, expected: &Value) -> Option<(String, Value, Value)> {
    let mut fields: Vec<&String> = stored
        .as_object()
        .into_iter()
        .chain(expected.as_object())
        .flat_map(|o| o.keys())
        .collect();
    fields.sort_by_key(|f| (f.as_str() == FIELD_VERSIONS, f.as_str()));
    fields.dedup();
    fields.into_iter().find_map(|field| {
        let (s, e) = (&stored[field], &expected[field]);
        (s != e).then(|| (field.clone(), s.clone(), e.clone()))
    })
}

/// The instant of a valid event (`i128::MIN` for a poison one).
fn instant_of(event: &Event) -> i128 {
    match &event.kind {
        Kind::Valid { instant, .. } => *instant,
        Kind::Poison(_) => i128::MIN,
    }
}
