//! Ordo policy plugin: per-field last-writer-wins for any entity, configured by the
//! pipeline's `plugin_config` (named for the patient profile, its first user).
//!
//! The rule lives in [`policy`] as plain Rust, tested natively; [`ordo_plugin_sdk`] exports
//! it as a component when built for `wasm32-wasip2`.
#![deny(missing_docs)]

pub mod policy;

ordo_plugin_sdk::export_plugin!(policy::FieldMerge);
