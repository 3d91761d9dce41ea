//! Stale records: once a design has consumed a workload, the benchmark reads the table itself
//! (a scan, or the model's own map; never the design's word) and counts the keys whose stored
//! record is not that key's newest update. A missing record counts as stale too.

use std::collections::HashMap;

use ordo::store::Record;

use crate::workload::VERSION_FIELD;

/// What the table held against what it should.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audit {
    /// Keys the workload updated.
    pub keys: usize,
    /// Keys whose record is missing or does not carry the newest `UpdatedAt`.
    pub stale: usize,
    /// Of those, keys with no record at all.
    pub missing: usize,
}

/// Compares `table` (records by key) with each key's newest `UpdatedAt`.
pub fn audit(table: &HashMap<String, Record>, newest: &HashMap<String, String>) -> Audit {
    let mut found = Audit {
        keys: newest.len(),
        ..Audit::default()
    };
    for (key, version) in newest {
        match table.get(key) {
            None => {
                found.missing += 1;
                found.stale += 1;
            }
            Some(record) => {
                let stored = record.get(VERSION_FIELD).and_then(|v| v.as_str());
                if stored != Some(version.as_str()) {
                    found.stale += 1;
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(version: &str) -> Record {
        json!({"PatientId": "x", "UpdatedAt": version, "Ordo": {"revision": 3}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn an_older_record_and_a_missing_one_are_stale() {
        let newest: HashMap<String, String> = [("a", "t5"), ("b", "t5"), ("c", "t5")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let table: HashMap<String, Record> = [("a", record("t5")), ("b", record("t3"))]
            .into_iter()
            .map(|(k, r)| (k.to_string(), r))
            .collect();
        assert_eq!(
            audit(&table, &newest),
            Audit {
                keys: 3,
                stale: 2,
                missing: 1
            }
        );
    }

    #[test]
    fn a_table_of_newest_records_has_none_stale() {
        let newest: HashMap<String, String> = [("a".to_string(), "t5".to_string())].into();
        let table: HashMap<String, Record> = [("a".to_string(), record("t5"))].into();
        assert_eq!(audit(&table, &newest).stale, 0);
    }
}
