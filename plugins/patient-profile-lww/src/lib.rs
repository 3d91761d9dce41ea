//! Ordo policy plugin for patient profiles: whole-record last-writer-wins on `UpdatedAt`.
//!
//! The rule lives in [`policy`] as plain Rust, tested natively; the WebAssembly export
//! glue below is compiled only for `wasm32` targets.
#![deny(missing_docs)]

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy-plugin",
    });

    use exports::ordo::plugin::policy::{Decision, FieldError, Guest};

    struct Plugin;

    impl Guest for Plugin {
        fn validate(event: String) -> Result<(), FieldError> {
            crate::policy::validate(&event).map_err(|e| FieldError {
                field: e.field,
                message: e.message,
            })
        }

        fn merge(incoming: String, stored: Option<String>) -> Decision {
            match crate::policy::merge(&incoming, stored.as_deref()) {
                crate::policy::Decision::Write(record) => Decision::Write(record),
                crate::policy::Decision::Skip(why) => Decision::Skip(why),
                crate::policy::Decision::Reject(why) => Decision::Reject(why),
            }
        }

        fn schema() -> String {
            crate::policy::SCHEMA.to_string()
        }
    }

    export!(Plugin);
}
