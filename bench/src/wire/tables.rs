//! The model's tables, in memory: the DynamoDB operations the engine and a boto3 peer call,
//! each taking the request's JSON and giving the response's (or DynamoDB's error), with no
//! latency of its own (the server adds it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::condition::{self, Bindings, Condition, Item};

/// A DynamoDB error: its type (the part of `__type` after `#`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `ValidationException`, `ResourceNotFoundException`, ...
    pub kind: &'static str,
    /// What DynamoDB would say, or what the model does not do.
    pub message: String,
}

impl ApiError {
    fn validation(message: impl Into<String>) -> Self {
        Self {
            kind: "ValidationException",
            message: message.into(),
        }
    }

    fn not_found(table: &str) -> Self {
        Self {
            kind: "ResourceNotFoundException",
            message: format!("Requested resource not found: Table: {table} not found"),
        }
    }
}

/// One write as it landed: the item's key and the instant, in nanoseconds since the Unix epoch
/// (the wall clock a bench in another process reads too).
pub type Landing = (String, u64);

/// One table: a partition key only, as the engine's tables are.
struct Table {
    /// The partition key's name.
    key: String,
    /// Its type: `S`, `N` or `B`.
    key_type: String,
    /// Seconds since the epoch, for DescribeTable.
    created: f64,
    /// The TTL attribute, once UpdateTimeToLive named one.
    ttl: Option<String>,
    /// Items by their key's value; ordered, so Scan pages are stable.
    items: BTreeMap<String, Item>,
    /// Every successful PutItem, in order, for a bench to read when writes became visible.
    landings: Vec<Landing>,
}

impl Table {
    fn describe(&self, name: &str) -> Value {
        json!({
            "TableName": name,
            "TableStatus": "ACTIVE",
            "TableArn": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{name}"),
            "KeySchema": [{"AttributeName": self.key, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": self.key, "AttributeType": self.key_type}],
            "CreationDateTime": self.created,
            "ItemCount": self.items.len(),
            "TableSizeBytes": 0,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        })
    }

    /// The key of `item` (or of a `Key` map) as stored, checked against the schema.
    fn key_of(&self, item: &Item) -> Result<String, ApiError> {
        let value = item.get(&self.key).ok_or_else(|| {
            ApiError::validation(format!(
                "One or more parameter values were invalid: Missing the key {} in the item",
                self.key
            ))
        })?;
        value
            .get(&self.key_type)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {} expected: {}",
                    self.key, self.key_type
                ))
            })
    }
}

/// Every table of the model.
#[derive(Default)]
pub struct Tables {
    tables: Mutex<HashMap<String, Table>>,
}

/// A request's object member `name`, when given.
fn member<'a>(request: &'a Value, name: &str) -> Option<&'a Map<String, Value>> {
    request.get(name).and_then(Value::as_object)
}

fn table_name(request: &Value) -> Result<&str, ApiError> {
    request
        .get("TableName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("TableName is required"))
}

/// Parameters the model does not implement: refused by name rather than ignored.
fn refuse(request: &Value, names: &[&str]) -> Result<(), ApiError> {
    match names.iter().find(|n| request.get(**n).is_some()) {
        Some(name) => Err(ApiError::validation(format!(
            "{name} is not in the latency model (bench/src/wire)"
        ))),
        None => Ok(()),
    }
}

/// The request's condition (or filter) `field`, parsed with its bindings.
fn condition(request: &Value, field: &str) -> Result<Option<Condition>, ApiError> {
    let Some(text) = request.get(field).and_then(Value::as_str) else {
        return Ok(None);
    };
    let bindings = Bindings {
        names: member(request, "ExpressionAttributeNames"),
        values: member(request, "ExpressionAttributeValues"),
    };
    condition::parse(text, &bindings)
        .map(Some)
        .map_err(|e| ApiError::validation(format!("Invalid {field}: {e}")))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Tables {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Table>> {
        // A panic while holding the lock leaves the tables as they were at that step; the
        // model goes on serving them.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs operation `op` (the `X-Amz-Target` suffix) on `request`.
    pub fn call(&self, op: &str, request: &Value) -> Result<Value, ApiError> {
        match op {
            "CreateTable" => self.create_table(request),
            "DescribeTable" => self.describe_table(request),
            "DescribeTimeToLive" => self.describe_ttl(request),
            "UpdateTimeToLive" => self.update_ttl(request),
            "GetItem" => self.get_item(request),
            "PutItem" => self.put_item(request),
            "Scan" => self.scan(request),
            other => Err(ApiError {
                kind: "UnknownOperationException",
                message: format!("{other} is not in the latency model (bench/src/wire)"),
            }),
        }
    }

    fn create_table(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        refuse(
            request,
            &["LocalSecondaryIndexes", "GlobalSecondaryIndexes"],
        )?;
        let schema = request
            .get("KeySchema")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let [hash] = schema.as_slice() else {
            return Err(ApiError::validation(
                "the latency model keeps tables with a partition key only (one KeySchema element)",
            ));
        };
        let key = hash
            .get("AttributeName")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::validation("KeySchema needs an AttributeName"))?;
        let key_type = request
            .get("AttributeDefinitions")
            .and_then(Value::as_array)
            .and_then(|defs| defs.iter().find(|d| d["AttributeName"] == key))
            .and_then(|d| d.get("AttributeType"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::validation(format!("AttributeDefinitions does not define {key}"))
            })?;
        let mut tables = self.lock();
        if tables.contains_key(name) {
            return Err(ApiError {
                kind: "ResourceInUseException",
                message: format!("Table already exists: {name}"),
            });
        }
        let table = Table {
            key: key.to_string(),
            key_type: key_type.to_string(),
            created: now_nanos() as f64 / 1e9,
            ttl: None,
            items: BTreeMap::new(),
            landings: Vec::new(),
        };
        let description = table.describe(name);
        tables.insert(name.to_string(), table);
        Ok(json!({ "TableDescription": description }))
    }

    fn describe_table(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        let tables = self.lock();
        let table = tables.get(name).ok_or_else(|| ApiError::not_found(name))?;
        Ok(json!({ "Table": table.describe(name) }))
    }

    fn describe_ttl(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        let tables = self.lock();
        let table = tables.get(name).ok_or_else(|| ApiError::not_found(name))?;
        Ok(match &table.ttl {
            Some(attribute) => json!({"TimeToLiveDescription": {
                "TimeToLiveStatus": "ENABLED", "AttributeName": attribute
            }}),
            None => json!({"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}),
        })
    }

    /// Remembers the TTL attribute; the model expires nothing (no bench runs that long).
    fn update_ttl(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        let spec = request
            .get("TimeToLiveSpecification")
            .cloned()
            .ok_or_else(|| ApiError::validation("TimeToLiveSpecification is required"))?;
        let mut tables = self.lock();
        let table = tables
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found(name))?;
        table.ttl = (spec["Enabled"] == true)
            .then(|| spec["AttributeName"].as_str().map(str::to_string))
            .flatten();
        Ok(json!({ "TimeToLiveSpecification": spec }))
    }

    fn get_item(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        refuse(request, &["ProjectionExpression", "AttributesToGet"])?;
        let key = member(request, "Key").ok_or_else(|| ApiError::validation("Key is required"))?;
        let tables = self.lock();
        let table = tables.get(name).ok_or_else(|| ApiError::not_found(name))?;
        let id = table.key_of(key)?;
        // Every read is consistent: the model has one copy.
        Ok(match table.items.get(&id) {
            Some(item) => json!({ "Item": item }),
            None => json!({}),
        })
    }

    fn put_item(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        refuse(request, &["Expected", "ConditionalOperator"])?;
        let item = member(request, "Item")
            .ok_or_else(|| ApiError::validation("Item is required"))?
            .clone();
        let returns_old = match request.get("ReturnValues").and_then(Value::as_str) {
            None | Some("NONE") => false,
            Some("ALL_OLD") => true,
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "ReturnValues {other} is not valid for PutItem"
                )))
            }
        };
        let condition = condition(request, "ConditionExpression")?;
        let mut tables = self.lock();
        let table = tables
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found(name))?;
        let id = table.key_of(&item)?;
        let old = table.items.get(&id);
        if let Some(condition) = condition {
            if !condition.holds(old) {
                return Err(ApiError {
                    kind: "ConditionalCheckFailedException",
                    message: "The conditional request failed".into(),
                });
            }
        }
        let old = table.items.insert(id.clone(), item);
        table.landings.push((id, now_nanos()));
        Ok(match old {
            Some(old) if returns_old => json!({ "Attributes": old }),
            _ => json!({}),
        })
    }

    fn scan(&self, request: &Value) -> Result<Value, ApiError> {
        let name = table_name(request)?;
        refuse(
            request,
            &["ProjectionExpression", "Segment", "IndexName", "ScanFilter"],
        )?;
        let filter = condition(request, "FilterExpression")?;
        let limit = request
            .get("Limit")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |l| l as usize);
        let tables = self.lock();
        let table = tables.get(name).ok_or_else(|| ApiError::not_found(name))?;
        let start = match member(request, "ExclusiveStartKey") {
            Some(key) => Some(table.key_of(key)?),
            None => None,
        };
        let after = |id: &String| start.as_ref().is_none_or(|s| id > s);
        let mut scanned = table.items.iter().filter(|(id, _)| after(id));
        let page: Vec<(&String, &Item)> = scanned.by_ref().take(limit).collect();
        let more = scanned.next().is_some();
        // DynamoDB applies the limit to the items read, then the filter.
        let items: Vec<&Item> = page
            .iter()
            .map(|(_, item)| *item)
            .filter(|item| filter.as_ref().is_none_or(|f| f.holds(Some(item))))
            .collect();
        let mut out = json!({ "Count": items.len(), "ScannedCount": page.len() });
        if request.get("Select").and_then(Value::as_str) != Some("COUNT") {
            out["Items"] = json!(items);
        }
        if let (true, Some((_, last))) = (more, page.last()) {
            let key = last.get(&table.key).cloned().unwrap_or(Value::Null);
            out["LastEvaluatedKey"] = json!({ &table.key: key });
        }
        Ok(out)
    }

    /// The landings of `table` from the `from`-th on, and the index to ask from next.
    pub fn landings(&self, table: &str, from: usize) -> Result<(Vec<Landing>, usize), ApiError> {
        let tables = self.lock();
        let t = tables
            .get(table)
            .ok_or_else(|| ApiError::not_found(table))?;
        let from = from.min(t.landings.len());
        Ok((t.landings[from..].to_vec(), t.landings.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(tables: &Tables, name: &str) {
        tables
            .call(
                "CreateTable",
                &json!({
                    "TableName": name,
                    "KeySchema": [{"AttributeName": "PatientId", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "PatientId", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                }),
            )
            .expect("created");
    }

    fn put(tables: &Tables, id: &str, condition: Option<&str>) -> Result<Value, ApiError> {
        let mut request = json!({
            "TableName": "t",
            "Item": {"PatientId": {"S": id}, "FirstName": {"S": "Ada"}},
            "ExpressionAttributeNames": {"#k": "PatientId"},
        });
        if let Some(c) = condition {
            request["ConditionExpression"] = json!(c);
        }
        tables.call("PutItem", &request)
    }

    #[test]
    fn a_conditional_put_lands_once_and_is_read_back() {
        let tables = Tables::default();
        create(&tables, "t");
        put(&tables, "p1", Some("attribute_not_exists(#k)")).expect("first put");
        let again = put(&tables, "p1", Some("attribute_not_exists(#k)")).expect_err("exists");
        assert_eq!(again.kind, "ConditionalCheckFailedException");
        let got = tables
            .call(
                "GetItem",
                &json!({"TableName": "t", "Key": {"PatientId": {"S": "p1"}}}),
            )
            .expect("read");
        assert_eq!(got["Item"]["FirstName"], json!({"S": "Ada"}));
        let (landed, next) = tables.landings("t", 0).expect("landings");
        assert_eq!((landed.len(), next, landed[0].0.as_str()), (1, 1, "p1"));
        assert!(tables.landings("t", next).expect("none new").0.is_empty());
    }

    #[test]
    fn what_start_up_asks_is_answered_as_dynamodb_does() {
        let tables = Tables::default();
        let missing = tables
            .call("DescribeTable", &json!({"TableName": "t"}))
            .expect_err("missing");
        assert_eq!(missing.kind, "ResourceNotFoundException");
        create(&tables, "t");
        let described = tables
            .call("DescribeTable", &json!({"TableName": "t"}))
            .expect("described");
        assert_eq!(described["Table"]["TableStatus"], "ACTIVE");
        assert_eq!(
            described["Table"]["KeySchema"][0]["AttributeName"],
            "PatientId"
        );
        let spec = json!({"AttributeName": "expires_at", "Enabled": true});
        tables
            .call(
                "UpdateTimeToLive",
                &json!({"TableName": "t", "TimeToLiveSpecification": spec}),
            )
            .expect("ttl on");
        let ttl = tables
            .call("DescribeTimeToLive", &json!({"TableName": "t"}))
            .expect("ttl");
        assert_eq!(ttl["TimeToLiveDescription"]["AttributeName"], "expires_at");
        let twice = tables.call(
            "CreateTable",
            &json!({"TableName": "t", "KeySchema": [{"AttributeName": "PatientId", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "PatientId", "AttributeType": "S"}]}),
        );
        assert_eq!(twice.expect_err("in use").kind, "ResourceInUseException");
        let unknown = tables
            .call("BatchWriteItem", &json!({}))
            .expect_err("unknown");
        assert_eq!(unknown.kind, "UnknownOperationException");
    }

    #[test]
    fn a_scan_pages_by_limit_and_filters_after_it() {
        let tables = Tables::default();
        create(&tables, "t");
        for id in ["a", "b", "c"] {
            put(&tables, id, None).expect("put");
        }
        let first = tables
            .call("Scan", &json!({"TableName": "t", "Limit": 2}))
            .expect("page one");
        assert_eq!(first["Count"], 2);
        let start = first["LastEvaluatedKey"].clone();
        assert_eq!(start, json!({"PatientId": {"S": "b"}}));
        let rest = tables
            .call(
                "Scan",
                &json!({"TableName": "t", "ExclusiveStartKey": start}),
            )
            .expect("page two");
        assert_eq!(rest["Items"][0]["PatientId"], json!({"S": "c"}));
        assert!(rest.get("LastEvaluatedKey").is_none());
        let filtered = tables
            .call(
                "Scan",
                &json!({"TableName": "t", "FilterExpression": "PatientId <> :a",
                        "ExpressionAttributeValues": {":a": {"S": "a"}}}),
            )
            .expect("filtered");
        assert_eq!(
            (filtered["Count"].clone(), filtered["ScannedCount"].clone()),
            (json!(2), json!(3))
        );
    }

    #[test]
    fn an_item_without_its_key_or_with_a_legacy_condition_is_refused() {
        let tables = Tables::default();
        create(&tables, "t");
        let keyless = tables
            .call(
                "PutItem",
                &json!({"TableName": "t", "Item": {"Name": {"S": "x"}}}),
            )
            .expect_err("no key");
        assert!(
            keyless.message.contains("Missing the key PatientId"),
            "{keyless:?}"
        );
        let legacy = tables
            .call(
                "PutItem",
                &json!({"TableName": "t", "Item": {"PatientId": {"S": "x"}}, "Expected": {}}),
            )
            .expect_err("legacy");
        assert!(legacy.message.contains("Expected"), "{legacy:?}");
    }
}
