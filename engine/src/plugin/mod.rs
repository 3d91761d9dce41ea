//! The policy seam: what the engine asks of a pipeline's plugin.
//!
//! [`Policy`] is the trait the rest of the engine uses; [`wasm::WasmPolicy`] implements it
//! by running a WebAssembly component in a sandbox. Records cross as JSON text.

mod bindings;
pub mod wasm;

/// A validation failure reported by the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The top-level field at fault; empty when the body as a whole is wrong.
    pub field: String,
    /// The rule it broke.
    pub message: String,
}

/// What the plugin decided for an incoming event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store this JSON object as the record.
    Write(String),
    /// Keep the stored record; the event is stale. Carries the plugin's reason.
    Skip(String),
    /// The event cannot be applied; carries the reason for the dead-letter topic.
    Reject(String),
}

/// The plugin failed to answer: it trapped, ran out of fuel or memory, or broke the contract.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The plugin file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a component implementing `ordo:plugin/policy@0.1.0`.
    #[error("plugin {path} is not a valid policy component: {reason}")]
    Load {
        /// The plugin file.
        path: std::path::PathBuf,
        /// wasmtime's explanation, with its causes.
        reason: String,
    },
    /// A call did not complete (trap, fuel or memory exhausted).
    #[error("plugin call `{call}` failed: {reason}")]
    Call {
        /// The export called.
        call: &'static str,
        /// wasmtime's explanation, with its causes.
        reason: String,
    },
}

/// A pipeline's policy: validation, merge and the schema of its events.
pub trait Policy: Send + Sync + 'static {
    /// Checks one event (JSON text).
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError>;
    /// Merges `incoming` into `stored` (JSON text; `None` when the key is new).
    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError>;
    /// The JSON Schema of an event body, as JSON text.
    fn schema(&self) -> Result<String, PluginError>;
}
