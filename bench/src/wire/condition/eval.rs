//! A [`Condition`] against an item.

use std::cmp::Ordering;

use serde_json::Value;

use super::{Condition, Item, Op, Operand, Path, Step};

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
