//! An oracle for patient-profile records, written from the updates alone: what a record must
//! be, and whether an update is reflected in it. The simulation and the fault suite check the
//! engine against it; it never runs a plugin, and it never parses an instant: the caller says
//! which instant each update's version text stands for.
//!
//! Both patient-profile policies agree on one rule, field by field: a field holds the value
//! of the newest update (by instant) that set it, and the version field the text of the newest
//! instant any update brought. Whole-record last-writer-wins stores the newest update as it
//! came (its fields then all hold its instant); the field merge also keeps, per field, the
//! text of the instant that set it (`FieldUpdatedAt`). So a swap from the one to the other
//! changes how a record is written, not what it must hold. Instants are distinct within a key
//! (the callers make them so), so there are no ties to settle.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::store::{Record, META_ATTRIBUTE};

/// The field that keys a record.
pub const KEY: &str = "PatientId";
/// The field whose instant orders updates.
pub const VERSION: &str = "UpdatedAt";
/// The field merge's per-field instants.
pub const FIELD_VERSIONS: &str = "FieldUpdatedAt";

/// One valid update, as the oracle knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The record it updates.
    pub key: String,
    /// The instant its version text stands for (nanoseconds since the epoch).
    pub instant: i128,
    /// The fields it sets, the version's text included; the key left out.
    pub fields: BTreeMap<String, String>,
    /// Its body, as sent.
    pub body: String,
}

impl Update {
    /// The update `body` makes (a JSON object of strings with a key and a version), standing
    /// for `instant`; `None` when it is not one.
    pub fn of(body: &str, instant: i128) -> Option<Self> {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
            return None;
        };
        let key = object.get(KEY)?.as_str()?.to_string();
        object.get(VERSION)?.as_str()?;
        let mut fields = BTreeMap::new();
        for (field, value) in object.iter().filter(|(f, _)| *f != KEY) {
            fields.insert(field.clone(), value.as_str()?.to_string());
        }
        Some(Self {
            key,
            instant,
            fields,
            body: body.to_string(),
        })
    }
}

/// What the records must be.
#[derive(Debug, Default)]
pub struct Oracle {
    /// Per key: the instant of each version text its updates carry.
    texts: BTreeMap<String, BTreeMap<String, i128>>,
    /// Per key: its updates.
    updates: BTreeMap<String, Vec<Update>>,
}

impl Oracle {
    /// Adds `update`.
    pub fn add(&mut self, update: Update) {
        self.texts
            .entry(update.key.clone())
            .or_default()
            .insert(update.fields[VERSION].clone(), update.instant);
        self.updates
            .entry(update.key.clone())
            .or_default()
            .push(update);
    }

    /// The keys with updates.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.updates.keys()
    }

    /// The instant each field of `key`'s stored `record` holds (the version field included),
    /// by the record's own account: its `FieldUpdatedAt` where the field merge kept one, else
    /// the record's version.
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
                        "key {key}: the record holds an instant no update of it carried: {text:?}"
                    )
                })
        };
        let at = instant(record.get(VERSION))?;
        let mut held = BTreeMap::new();
        for field in record
            .keys()
            .filter(|f| !matches!(f.as_str(), KEY | FIELD_VERSIONS | META_ATTRIBUTE))
        {
            held.insert(field.clone(), at);
        }
        if let Some(Value::Object(versions)) = record.get(FIELD_VERSIONS) {
            for (field, text) in versions {
                held.insert(field.clone(), instant(Some(text))?);
            }
        }
        Ok(held)
    }

    /// Whether `update` is reflected in `record`: every field it sets holds its instant or a
    /// newer one. `Err` when the record cannot be read so.
    pub fn durable(&self, update: &Update, record: Option<&Record>) -> Result<bool, String> {
        let held = self.held(&update.key, record)?;
        Ok(update
            .fields
            .keys()
            .all(|field| held.get(field).is_some_and(|h| *h >= update.instant)))
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

    /// Checks `key`'s stored `record` (as stored: the engine's metadata is left aside), field
    /// by field, against the fold of its updates: the newest update as it came when the
    /// record is a whole one, else the field merge's record.
    pub fn check_final(&self, key: &str, record: Option<&Record>) -> Result<(), String> {
        let updates = self.updates.get(key).map(Vec::as_slice).unwrap_or_default();
        let stored = record.map(|r| {
            let mut plain = r.clone();
            plain.remove(META_ATTRIBUTE);
            Value::Object(plain)
        });
        let Some(newest) = updates.iter().max_by_key(|u| u.instant) else {
            return match stored {
                None => Ok(()),
                Some(stored) => Err(format!("key {key}: no update, yet the record {stored}")),
            };
        };
        let Some(stored) = stored else {
            return Err(format!(
                "key {key}: no record, yet {} updates",
                updates.len()
            ));
        };
        let expected = if stored.get(FIELD_VERSIONS).is_some() {
            merged(key, updates)
        } else {
            serde_json::from_str(&newest.body).unwrap_or_default()
        };
        match first_difference(&stored, &expected) {
            None => Ok(()),
            Some((field, stored, expected)) => Err(format!(
                "key {key}: `{field}` is {stored}, the oracle says {expected}"
            )),
        }
    }
}

/// The field merge's record of `key`'s `updates`.
fn merged(key: &str, updates: &[Update]) -> Value {
    let mut newest: BTreeMap<&str, (i128, &str, &str)> = BTreeMap::new();
    for update in updates {
        let text = update.fields[VERSION].as_str();
        for (field, value) in &update.fields {
            let slot = newest
                .entry(field.as_str())
                .or_insert((update.instant, value, text));
            if update.instant > slot.0 {
                *slot = (update.instant, value, text);
            }
        }
    }
    let (mut record, mut versions) = (Map::new(), Map::new());
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(body: Value, instant: i128) -> Update {
        Update::of(&body.to_string(), instant).expect("an update")
    }

    fn record(v: Value) -> Record {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_whole_record_is_the_newest_update_and_a_merged_one_the_newest_per_field() {
        let mut oracle = Oracle::default();
        let old = update(
            json!({KEY: "1", "FirstName": "A", "Sex": "F", VERSION: "t1"}),
            1,
        );
        let new = update(
            json!({KEY: "1", "FirstName": "B", "Sex": "M", VERSION: "t3"}),
            3,
        );
        let partial = update(json!({KEY: "1", "Sex": "X", VERSION: "t2"}), 2);
        for u in [&old, &new] {
            oracle.add(u.clone());
        }
        let whole = record(
            json!({KEY: "1", "FirstName": "B", "Sex": "M", VERSION: "t3", META_ATTRIBUTE: {"revision": 2}}),
        );
        assert_eq!(oracle.check_final("1", Some(&whole)), Ok(()));
        assert_eq!(oracle.durable(&old, Some(&whole)), Ok(true));
        let stale = record(json!({KEY: "1", "FirstName": "A", "Sex": "F", VERSION: "t1"}));
        assert!(oracle
            .check_final("1", Some(&stale))
            .is_err_and(|e| e.contains("`FirstName` is \"A\"")));
        assert_eq!(oracle.durable(&new, Some(&stale)), Ok(false));
        assert!(oracle.never_older("1", Some(&whole), &stale).is_err());
        oracle.add(partial.clone());
        let merged = record(
            json!({KEY: "1", "FirstName": "B", "Sex": "M", VERSION: "t3",
            FIELD_VERSIONS: {"FirstName": "t3", "Sex": "t3"}}),
        );
        assert_eq!(oracle.check_final("1", Some(&merged)), Ok(()));
        assert_eq!(oracle.durable(&partial, Some(&merged)), Ok(true));
        assert!(oracle.check_final("1", None).is_err());
        assert!(
            oracle
                .held("1", Some(&record(json!({KEY: "1", VERSION: "t9"}))))
                .is_err(),
            "no update carried t9"
        );
    }
}
