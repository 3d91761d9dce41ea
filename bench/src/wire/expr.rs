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

use std::cmp::Ordering;

use serde_json::{Map, Value};

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

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Alias(String),
    Placeholder(String),
    Number(usize),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Dot,
    Comma,
    Op(Op),
}

fn tokens(text: &str) -> Result<Vec<Token>, Invalid> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |start: usize| {
        let mut end = start;
        while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        (chars[start..end].iter().collect::<String>(), end)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let double = match two.as_str() {
            "<>" => Some(Op::Ne),
            "<=" => Some(Op::Le),
            ">=" => Some(Op::Ge),
            _ => None,
        };
        if let Some(op) = double {
            out.push(Token::Op(op));
            i += 2;
            continue;
        }
        let single = match c {
            '(' => Some(Token::Open),
            ')' => Some(Token::Close),
            '[' => Some(Token::OpenBracket),
            ']' => Some(Token::CloseBracket),
            '.' => Some(Token::Dot),
            ',' => Some(Token::Comma),
            '=' => Some(Token::Op(Op::Eq)),
            '<' => Some(Token::Op(Op::Lt)),
            '>' => Some(Token::Op(Op::Gt)),
            _ => None,
        };
        if let Some(token) = single {
            out.push(token);
            i += 1;
            continue;
        }
        if c == '#' || c == ':' {
            let (name, end) = word(i + 1);
            if name.is_empty() {
                return Err(Invalid(format!("a bare {c:?} at character {i}")));
            }
            out.push(if c == '#' {
                Token::Alias(format!("#{name}"))
            } else {
                Token::Placeholder(format!(":{name}"))
            });
            i = end;
        } else if c.is_ascii_digit() {
            let (digits, end) = word(i);
            let n = digits
                .parse()
                .map_err(|_| Invalid(format!("{digits:?} is not a list index")))?;
            out.push(Token::Number(n));
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let (name, end) = word(i);
            out.push(Token::Word(name));
            i = end;
        } else {
            return Err(Invalid(format!("unexpected {c:?} at character {i}")));
        }
    }
    Ok(out)
}

/// The request's `ExpressionAttributeNames` and `ExpressionAttributeValues`.
pub struct Bindings<'a> {
    /// `#alias` → attribute name.
    pub names: Option<&'a Map<String, Value>>,
    /// `:placeholder` → attribute value.
    pub values: Option<&'a Map<String, Value>>,
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    bindings: &'a Bindings<'a>,
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, token: Token) -> Result<(), Invalid> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            other => Err(Invalid(format!("expected {token:?}, found {other:?}"))),
        }
    }

    fn or(&mut self) -> Result<Condition, Invalid> {
        let mut left = self.and()?;
        while keyword(self.peek(), "OR") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, Invalid> {
        let mut left = self.not()?;
        while keyword(self.peek(), "AND") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, Invalid> {
        if keyword(self.peek(), "NOT") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, Invalid> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close)?;
            return Ok(inner);
        }
        if let (Some(Token::Word(name)), Some(Token::Open)) =
            (self.peek().cloned(), self.tokens.get(self.at + 1))
        {
            let exists = match name.as_str() {
                "attribute_exists" => true,
                "attribute_not_exists" => false,
                other => {
                    return Err(Invalid(format!(
                        "function {other:?}: the model knows attribute_exists and attribute_not_exists only"
                    )))
                }
            };
            self.at += 2;
            let path = self.path()?;
            self.expect(Token::Close)?;
            return Ok(if exists {
                Condition::Exists(path)
            } else {
                Condition::NotExists(path)
            });
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            other => {
                return Err(Invalid(format!(
                    "expected a comparison (= <> < <= > >=), found {other:?}; BETWEEN, IN and other functions are not in the model"
                )))
            }
        };
        Ok(Condition::Compare(left, op, self.operand()?))
    }

    fn operand(&mut self) -> Result<Operand, Invalid> {
        if let Some(Token::Placeholder(name)) = self.peek().cloned() {
            self.at += 1;
            let value = self
                .bindings
                .values
                .and_then(|v| v.get(&name))
                .ok_or_else(|| {
                    Invalid(format!(
                        "An expression attribute value used in expression is not defined; attribute value: {name}"
                    ))
                })?;
            return Ok(Operand::Value(value.clone()));
        }
        Ok(Operand::Path(self.path()?))
    }

    fn name(&mut self) -> Result<String, Invalid> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            Some(Token::Alias(alias)) => self
                .bindings
                .names
                .and_then(|n| n.get(&alias))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    Invalid(format!(
                        "An expression attribute name used in the document path is not defined; attribute name: {alias}"
                    ))
                }),
            other => Err(Invalid(format!("expected an attribute name, found {other:?}"))),
        }
    }

    fn path(&mut self) -> Result<Path, Invalid> {
        let mut path = vec![Step::Name(self.name()?)];
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    path.push(Step::Name(self.name()?));
                }
                Some(Token::OpenBracket) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Number(n)) => path.push(Step::Index(n)),
                        other => {
                            return Err(Invalid(format!("expected an index, found {other:?}")))
                        }
                    }
                    self.expect(Token::CloseBracket)?;
                }
                _ => return Ok(path),
            }
        }
    }
}

/// Parses `text` with the request's `bindings`; every alias and placeholder must be bound.
pub fn parse(text: &str, bindings: &Bindings<'_>) -> Result<Condition, Invalid> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
        bindings,
    };
    let condition = parser.or()?;
    match parser.peek() {
        None => Ok(condition),
        Some(extra) => Err(Invalid(format!(
            "unexpected {extra:?} after a complete condition"
        ))),
    }
}

/// The value at `path` in `item`, if there is one.
fn resolve<'a>(item: &'a Item, path: &Path) -> Option<&'a Value> {
    let mut steps = path.iter();
    let Some(Step::Name(first)) = steps.next() else {
        return None;
    };
    let mut value = item.get(first)?;
    for step in steps {
        value = match step {
            Step::Name(name) => value.get("M")?.get(name)?,
            Step::Index(i) => value.get("L")?.get(*i)?,
        };
    }
    Some(value)
}

/// A number attribute's value. DynamoDB keeps 38 digits; `f64` is enough for what the model
/// compares (revisions, counters, epoch seconds).
fn number(value: &Value) -> Option<f64> {
    value.get("N")?.as_str()?.parse().ok()
}

/// How two attribute values order, when they are of one type DynamoDB orders (S, N, B).
fn order(left: &Value, right: &Value) -> Option<Ordering> {
    if let (Some(l), Some(r)) = (number(left), number(right)) {
        return l.partial_cmp(&r);
    }
    for kind in ["S", "B"] {
        if let (Some(l), Some(r)) = (left.get(kind), right.get(kind)) {
            // UTF-8 bytes for S; B is base64 text here, and compared as such.
            return Some(l.as_str()?.cmp(r.as_str()?));
        }
    }
    None
}

fn equal(left: &Value, right: &Value) -> bool {
    match (number(left), number(right)) {
        (Some(l), Some(r)) => l == r,
        _ => left == right,
    }
}

impl Condition {
    /// Whether the condition holds for `item` (`None`: no item, as for a put to a new key).
    pub fn holds(&self, item: Option<&Item>) -> bool {
        let at = |path: &Path| item.and_then(|i| resolve(i, path));
        match self {
            Condition::Exists(path) => at(path).is_some(),
            Condition::NotExists(path) => at(path).is_none(),
            Condition::And(a, b) => a.holds(item) && b.holds(item),
            Condition::Or(a, b) => a.holds(item) || b.holds(item),
            Condition::Not(a) => !a.holds(item),
            Condition::Compare(left, op, right) => {
                let value = |o: &Operand| match o {
                    Operand::Path(path) => at(path).cloned(),
                    Operand::Value(v) => Some(v.clone()),
                };
                match (value(left), value(right), op) {
                    (Some(l), Some(r), Op::Eq) => equal(&l, &r),
                    (Some(l), Some(r), Op::Ne) => !equal(&l, &r),
                    // A missing attribute equals nothing and differs from everything.
                    (_, _, Op::Ne) => true,
                    (Some(l), Some(r), op) => order(&l, &r).is_some_and(|o| match op {
                        Op::Lt => o.is_lt(),
                        Op::Le => o.is_le(),
                        Op::Gt => o.is_gt(),
                        _ => o.is_ge(),
                    }),
                    _ => false,
                }
            }
        }
    }
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
