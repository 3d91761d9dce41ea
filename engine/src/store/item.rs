//! JSON records ⇄ DynamoDB items.
//!
//! Strings stay strings (`S`), so the seed's scan shows `"IsPregnant": {"S": "False"}`;
//! numbers become `N`, booleans `BOOL`, null `NULL`, arrays `L` and objects `M`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The largest item DynamoDB stores: 400 KB, names and values counted as DynamoDB counts them.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Room kept for the engine's own attribute ([`super::META_ATTRIBUTE`]: the plugin's
/// `sha256:` id and the revision), which is added to a record before it is written.
pub const META_BYTES: usize = 128;

/// Why `record` could not be stored as one DynamoDB item, or `None`.
pub fn too_large(record: &Map<String, Value>) -> Option<String> {
    let size = item_size(record) + META_BYTES;
    (size > MAX_ITEM_BYTES).then(|| {
        format!(
            "the merged record is {size} bytes as DynamoDB counts them (with the engine's own attribute); an item holds at most {MAX_ITEM_BYTES}"
        )
    })
}

/// The size DynamoDB counts for `record` as an item: each attribute's name and value.
pub fn item_size(record: &Map<String, Value>) -> usize {
    record.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// The size DynamoDB counts for one value: strings their UTF-8 bytes, numbers one byte per
/// two significant digits plus one, booleans and null one byte, lists and maps three bytes
/// plus one per element plus the elements (and, in maps, their names).
fn value_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::String(s) => s.len(),
        Value::Number(n) => {
            let text = n.to_string();
            let digits = text
                .split(['e', 'E'])
                .next()
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>();
            let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
            significant.max(1).div_ceil(2) + 1
        }
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Object(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

/// Converts a JSON value to an attribute value.
pub fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attribute).collect()),
        Value::Object(o) => AttributeValue::M(to_item(o)),
    }
}

/// Converts a JSON object to an item.
pub fn to_item(record: &Map<String, Value>) -> Item {
    record
        .iter()
        .map(|(k, v)| (k.clone(), to_attribute(v)))
        .collect()
}

/// Converts an attribute value to JSON; binary attributes have no JSON form and are refused.
pub fn from_attribute(value: &AttributeValue) -> Result<Value, String> {
    Ok(match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => Value::Number(parse_number(n)?),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => {
            Value::Array(l.iter().map(from_attribute).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(m) => Value::Object(from_item(m)?),
        AttributeValue::Ss(ss) => Value::Array(ss.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(ns) => Value::Array(
            ns.iter()
                .map(|n| parse_number(n).map(Value::Number))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("attribute type {other:?} has no JSON form")),
    })
}

/// Converts an item to a JSON object.
pub fn from_item(item: &Item) -> Result<Map<String, Value>, String> {
    item.iter()
        .map(|(k, v)| {
            from_attribute(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("{k}: {e}"))
        })
        .collect()
}

fn parse_number(n: &str) -> Result<Number, String> {
    serde_json::from_str::<Number>(n).map_err(|e| format!("number {n:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_record_is_all_strings() {
        let record = json!({"PatientId": "1", "IsPregnant": "False"});
        let item = to_item(record.as_object().expect("object"));
        assert_eq!(item["IsPregnant"], AttributeValue::S("False".into()));
        assert_eq!(item["PatientId"], AttributeValue::S("1".into()));
    }

    #[test]
    fn round_trip_keeps_every_json_type() {
        let record = json!({
            "s": "x", "n": 12.5, "i": -3, "b": true, "z": null,
            "l": [1, "two"], "m": {"inner": [false]}
        });
        let map = record.as_object().expect("object");
        assert_eq!(&from_item(&to_item(map)).expect("converts"), map);
    }

    #[test]
    fn sizes_are_counted_as_dynamodb_counts_them() {
        let record =
            json!({"PatientId": "1", "n": 12345, "b": true, "l": ["ab", 1], "m": {"k": "v"}});
        let map = record.as_object().expect("object");
        // 9+1, 1+(3+1), 1+1, 1+(3+(1+2)+(1+2)), 1+(3+1+1+1)
        assert_eq!(item_size(map), 10 + 5 + 2 + 10 + 7);
        assert!(too_large(map).is_none());
        let big = json!({"PatientId": "1", "Notes": "x".repeat(MAX_ITEM_BYTES)});
        let why = too_large(big.as_object().expect("object")).expect("too large");
        assert!(why.contains("at most 409600"), "{why}");
    }

    #[test]
    fn binary_is_refused_with_the_attribute_name() {
        let mut item = Item::new();
        item.insert("blob".into(), AttributeValue::B(vec![1u8].into()));
        let err = from_item(&item).expect_err("binary");
        assert!(err.starts_with("blob:"), "{err}");
    }
}
