//! Host bindings generated from `plugins/wit/`, converted to engine types at this border.

wasmtime::component::bindgen!({
    path: "../plugins/wit",
    world: "policy-plugin",
});

use exports::ordo::plugin::policy;

use super::{bounded, MAX_FIELD, MAX_TEXT};

/// A field error with its texts bounded: they reach 422 answers and log lines.
impl From<policy::FieldError> for super::FieldError {
    fn from(e: policy::FieldError) -> Self {
        Self {
            field: bounded(&e.field, MAX_FIELD),
            message: bounded(&e.message, MAX_TEXT),
        }
    }
}

/// A decision with its reason bounded (it reaches log lines and dead-letter headers); a
/// record's size is the store's to judge.
impl From<policy::Decision> for super::Decision {
    fn from(d: policy::Decision) -> Self {
        match d {
            policy::Decision::Write(record) => Self::Write(record),
            policy::Decision::Skip(why) => Self::Skip(bounded(&why, MAX_TEXT)),
            policy::Decision::Reject(why) => Self::Reject(bounded(&why, MAX_TEXT)),
        }
    }
}
