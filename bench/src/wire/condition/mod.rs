//! Condition expressions (`ConditionExpression`, a Scan's `FilterExpression`): parsed and
//! evaluated against one item in DynamoDB's JSON form (`{"S": "x"}`, `{"N": "1"}`, `{"M": …}`).
//!
//! Only the grammar the engine and a Python peer use: `attribute_exists(path)`,
//! `attribute_not_exists(path)`, the comparisons `= <> < <= > >=`, `AND`, `OR`, `NOT` and
//! parentheses; a path is a name or `#alias` followed by `.name` and `[index]`. Anything else
//! is refused with a message that says so, rather than guessed at.
//!
//! Written here rather than taken from a DynamoDB emulator crate: the one that embeds
//! (dynoxide-rs) keeps items in SQLite behind a lock, which would add its own cost per
//! request to a model whose only cost is meant to be the fixed latency, and the grammar
//! needed is this small.
//!
//! In order: `lex` (text to tokens), [`parse`] (tokens to a [`Condition`], aliases and
//! placeholders resolved), `eval` (a condition against an item: [`Condition::holds`]).

use serde_json::{Map, Value};

mod eval;
mod lex;
mod parse;

pub use parse::parse;

/// An item: attribute name → attribute value, in DynamoDB's JSON form.
pub type Item = Map<String, Value>;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `attribute_exists(path)`.
    Exists(Path),
    /// `attribute_not_exists(path)`.
    NotExists(Path),
    /// `left op right`.
    Compare(Operand, Op, Operand),
    /// `a AND b`.
    And(Box<Condition>, Box<Condition>),
    /// `a OR b`.
    Or(Box<Condition>, Box<Condition>),
    /// `NOT a`.
    Not(Box<Condition>),
}

/// One step of a document path.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An attribute or map member, its `#alias` already resolved.
    Name(String),
    /// A list element.
    Index(usize),
}

/// A document path: `#o.#r`, `Tags[0]`.
pub type Path = Vec<Step>;

/// A comparison's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// An attribute of the item (missing when it is absent).
    Path(Path),
    /// A `:placeholder`'s value.
    Value(Value),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Why an expression was refused: DynamoDB's `ValidationException` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request's `ExpressionAttributeNames` and `ExpressionAttributeValues`.
pub struct Bindings<'a> {
    /// `#alias` → attribute name.
    pub names: Option<&'a Map<String, Value>>,
    /// `:placeholder` → attribute value.
    pub values: Option<&'a Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    /// Whether `text` holds for `item` with these names and values.
    fn check(text: &str, names: Value, values: Value, item: Option<Value>) -> bool {
        let (names, values) = (map(names), map(values));
        let bindings = Bindings {
            names: Some(&names),
            values: Some(&values),
        };
        let item = item.map(map);
        parse(text, &bindings).expect("parses").holds(item.as_ref())
    }

    fn record(revision: Option<u64>) -> Value {
        let mut item =
            json!({"PatientId": {"S": "p1"}, "UpdatedAt": {"S": "2006-01-02T15:00:00Z"}});
        if let Some(n) = revision {
            item["_ordo"] = json!({"M": {"revision": {"N": n.to_string()}}});
        }
        item
    }

    #[test]
    fn the_engines_absent_condition_holds_only_for_a_new_key() {
        let names = json!({"#k": "PatientId"});
        let text = "attribute_not_exists(#k)";
        assert!(check(text, names.clone(), json!({}), None));
        assert!(!check(text, names, json!({}), Some(record(None))));
    }

    #[test]
    fn the_engines_unrevised_condition_wants_an_item_without_meta() {
        let names = json!({"#k": "PatientId", "#o": "_ordo"});
        let text = "attribute_exists(#k) AND attribute_not_exists(#o)";
        assert!(check(text, names.clone(), json!({}), Some(record(None))));
        assert!(!check(
            text,
            names.clone(),
            json!({}),
            Some(record(Some(1)))
        ));
        assert!(!check(text, names, json!({}), None));
    }

    #[test]
    fn the_engines_revision_condition_reads_the_nested_revision() {
        let names = json!({"#k": "PatientId", "#o": "_ordo", "#r": "revision"});
        let text = "attribute_exists(#k) AND #o.#r = :r";
        let values = json!({":r": {"N": "3"}});
        assert!(check(
            text,
            names.clone(),
            values.clone(),
            Some(record(Some(3)))
        ));
        assert!(!check(
            text,
            names.clone(),
            values.clone(),
            Some(record(Some(4)))
        ));
        assert!(!check(
            text,
            names.clone(),
            values.clone(),
            Some(record(None))
        ));
        assert!(!check(text, names, values, None));
    }

    #[test]
    fn a_peers_newer_than_condition_compares_strings_bytewise() {
        let names = json!({"#u": "UpdatedAt"});
        let text = "attribute_not_exists(PatientId) OR #u < :u";
        let newer = json!({":u": {"S": "2006-01-02T15:00:01Z"}});
        let older = json!({":u": {"S": "2006-01-02T14:59:59Z"}});
        assert!(check(text, names.clone(), newer.clone(), None));
        assert!(check(text, names.clone(), newer, Some(record(None))));
        assert!(!check(text, names, older, Some(record(None))));
    }

    #[test]
    fn numbers_compare_by_value_and_types_do_not_mix() {
        let item = Some(json!({"n": {"N": "10"}, "s": {"S": "10"}}));
        assert!(check(
            "n > :v",
            json!({}),
            json!({":v": {"N": "9"}}),
            item.clone()
        ));
        assert!(check(
            "n = :v",
            json!({}),
            json!({":v": {"N": "10.0"}}),
            item.clone()
        ));
        assert!(!check(
            "s > :v",
            json!({}),
            json!({":v": {"N": "9"}}),
            item.clone()
        ));
        assert!(check(
            "s <> :v",
            json!({}),
            json!({":v": {"N": "10"}}),
            item.clone()
        ));
        assert!(check(
            "missing <> :v",
            json!({}),
            json!({":v": {"N": "1"}}),
            item.clone()
        ));
        assert!(!check(
            "missing = :v",
            json!({}),
            json!({":v": {"N": "1"}}),
            item
        ));
    }

    #[test]
    fn not_and_or_and_parentheses_bind_as_dynamodb_says() {
        let item = Some(json!({"a": {"N": "1"}}));
        let values = json!({":one": {"N": "1"}, ":two": {"N": "2"}});
        // AND binds tighter than OR: true OR (false AND false).
        assert!(check(
            "a = :one or a = :two and a = :two",
            json!({}),
            values.clone(),
            item.clone()
        ));
        assert!(!check(
            "(a = :one OR a = :two) AND a = :two",
            json!({}),
            values.clone(),
            item.clone()
        ));
        assert!(check(
            "NOT a = :two",
            json!({}),
            values.clone(),
            item.clone()
        ));
        assert!(!check("NOT attribute_exists(a)", json!({}), values, item));
    }

    #[test]
    fn unbound_or_unknown_parts_are_refused_with_their_name() {
        let empty = Map::new();
        let none = Bindings {
            names: Some(&empty),
            values: Some(&empty),
        };
        let err = |text: &str| parse(text, &none).expect_err(text).0;
        assert!(err("attribute_exists(#k)").contains("#k"));
        assert!(err("a = :v").contains(":v"));
        assert!(err("begins_with(a, :v)").contains("begins_with"));
        assert!(err("a BETWEEN :x AND :y").contains("BETWEEN"));
        assert!(err("a = b c").contains("after a complete condition"));
        assert!(err("a = ").contains("attribute name"));
    }

    #[test]
    fn list_elements_are_reached_by_index() {
        let item = Some(json!({"l": {"L": [{"S": "x"}, {"S": "y"}]}}));
        assert!(check(
            "l[1] = :y",
            json!({}),
            json!({":y": {"S": "y"}}),
            item.clone()
        ));
        assert!(check(
            "attribute_not_exists(l[2])",
            json!({}),
            json!({}),
            item
        ));
    }
}
