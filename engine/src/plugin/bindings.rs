//! Host bindings generated from `plugins/wit/`, converted to engine types at this border.

wasmtime::component::bindgen!({
    path: "../plugins/wit",
    world: "policy-plugin",
});

use exports::ordo::plugin::policy;

impl From<policy::FieldError> for super::FieldError {
    fn from(e: policy::FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<policy::Decision> for super::Decision {
    fn from(d: policy::Decision) -> Self {
        match d {
            policy::Decision::Write(record) => Self::Write(record),
            policy::Decision::Skip(why) => Self::Skip(why),
            policy::Decision::Reject(why) => Self::Reject(why),
        }
    }
}
