//! Ordo policy plugin for patient profiles: per-field last-writer-wins.
//!
//! The rule lives in [`policy`] as plain Rust, tested natively; [`ordo_plugin_sdk`] exports
//! it as a component when built for `wasm32-wasip2`.
#![deny(missing_docs)]

pub mod policy;

ordo_plugin_sdk::export_plugin!(policy::FieldMerge);
