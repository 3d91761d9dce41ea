//! The policy seam: what the engine asks of a pipeline's plugin.
//!
//! [`Policy`] is the trait the rest of the engine uses; [`wasm::WasmPolicy`] implements it
//! by running a WebAssembly component in a [`sandbox`]. Records cross as JSON text. A
//! [`PolicyHandle`] is what a pipeline holds: the policy currently in force, which
//! [`reload`] replaces when the plugin file changes.

use std::sync::{Arc, RwLock};

mod bindings;
pub mod budget;
pub mod compiled;
mod imports;
pub mod limiter;
pub mod reload;
pub mod sandbox;
pub mod selftest;
pub mod wasm;

pub use imports::MAX_RANDOM_BYTES;

/// Longest text a plugin's answer may carry into the engine (a skip or reject reason, a field
/// error's message, a failure's explanation), in bytes; longer text is cut on a character
/// boundary and marked. It flows into log lines, HTTP answers and Kafka headers.
pub const MAX_TEXT: usize = 1024;
/// Longest reason the engine composes around a plugin's text (a dead letter's `ordo-reason`, a
/// log line's error), in bytes: room for the engine's words and a [`MAX_TEXT`] text already
/// cut, so its marker survives.
pub const MAX_REASON: usize = 2 * MAX_TEXT;
/// Longest field name a field error may carry, in bytes.
pub const MAX_FIELD: usize = 128;

/// `text` if it is at most `max` bytes, else its first bytes up to a character boundary and a
/// marker saying how long it was.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [cut from {} bytes]", &text[..cut], text.len())
}

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
    /// The file is not a component implementing `ordo:plugin/policy@0.2.0` (or `@0.1.0`).
    #[error("plugin {path} is not a valid policy component: {reason}")]
    Load {
        /// The plugin file.
        path: std::path::PathBuf,
        /// wasmtime's explanation, with its causes.
        reason: String,
    },
    /// The plugin refused its configuration (the pipeline's `plugin_config`), or takes none
    /// and was given some.
    #[error("plugin {path} refuses its plugin_config: {reason}")]
    Config {
        /// The plugin file.
        path: std::path::PathBuf,
        /// The plugin's reason (bounded), or the engine's.
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
    /// Every instance the plugin may have was busy for as long as a call may take: the host
    /// is overloaded, not the event at fault. Worth retrying.
    #[error("plugin busy: all {live} instances were in calls for {waited:?}")]
    Busy {
        /// The cap on live instances.
        live: usize,
        /// How long the call waited for one.
        waited: std::time::Duration,
    },
    /// A call ran past its wall-clock cap before using its CPU limit: the host starved its
    /// thread of CPU, so the event is not at fault. Worth retrying.
    #[error("plugin call `{call}` stopped after {waited:?} on the wall clock with CPU time left: the host is starved")]
    Starved {
        /// The export called.
        call: &'static str,
        /// The wall-clock cap it ran into.
        waited: std::time::Duration,
    },
}

impl PluginError {
    /// Whether the failure is the host's state rather than the event's: worth a retry, not a
    /// dead letter or a 422.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::Starved { .. })
    }

    /// What kind of failure, for a log line: wasmtime's explanation of a failed call may
    /// quote the plugin (its function names, its messages), so logs name the kind alone.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "unreadable",
            Self::Load { .. } => "not-a-policy",
            Self::Config { .. } => "config-refused",
            Self::Call {
                call: "validate", ..
            } => "validate-failed",
            Self::Call { call: "merge", .. } => "merge-failed",
            Self::Call { .. } => "call-failed",
            Self::Busy { .. } => "busy",
            Self::Starved { .. } => "starved",
        }
    }
}

/// A pipeline's policy: validation, merge and the schema of its events.
pub trait Policy: Send + Sync + 'static {
    /// Checks one event (JSON text).
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError>;
    /// Merges `incoming` into `stored` (JSON text; `None` when the key is new).
    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError>;
    /// The JSON Schema of an event body, as JSON text.
    fn schema(&self) -> Result<String, PluginError>;
    /// What identifies this policy's code, e.g. `sha256:<hex>` of the plugin file; written on
    /// every record it produces.
    fn id(&self) -> &str;
    /// Whether its schema requires `field` in every event. Ingest stamps an absent version
    /// field with the time of receipt only when it does not: a version the plugin requires
    /// (a sequence, epoch numbers) is the client's to send.
    fn requires(&self, _field: &str) -> bool {
        false
    }
}

/// The policy a pipeline runs now. Cloning shares it; [`PolicyHandle::replace`] swaps it for
/// every holder at once, while a caller that took [`PolicyHandle::current`] keeps the one it
/// took until it is done.
#[derive(Clone)]
pub struct PolicyHandle(Arc<RwLock<Arc<dyn Policy>>>);

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: Arc<dyn Policy>) -> Self {
        Self(Arc::new(RwLock::new(policy)))
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<dyn Policy> {
        match self.0.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `policy` in force and returns the one it replaces.
    pub fn replace(&self, policy: Arc<dyn Policy>) -> Arc<dyn Policy> {
        let mut slot = match self.0.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *slot, policy)
    }
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PolicyHandle")
            .field(&self.current().id())
            .finish()
    }
}
