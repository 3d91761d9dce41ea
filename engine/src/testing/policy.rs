//! A native policy, for tests of the engine's own logic without a WebAssembly host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::plugin::{Decision, FieldError, PluginError, Policy};

/// Keeps the record with the highest `v` (a number); an event without one is invalid.
pub struct MaxV;

fn v(text: &str) -> Option<u64> {
    serde_json::from_str::<Value>(text).ok()?["v"].as_u64()
}

impl Policy for MaxV {
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
        Ok(match v(event) {
            Some(_) => Ok(()),
            None => Err(FieldError {
                field: "v".into(),
                message: "must be a number".into(),
            }),
        })
    }

    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError> {
        Ok(match stored {
            Some(s) if v(s) >= v(incoming) => Decision::Skip("older".into()),
            _ => Decision::Write(incoming.to_string()),
        })
    }

    fn schema(&self) -> Result<String, PluginError> {
        Ok("{}".into())
    }

    fn id(&self) -> &str {
        "native:maxv"
    }
}

/// [`MaxV`], but its first calls fail as a plugin at its cap of live instances does: the
/// host's trouble, not the event's. Or they panic, as a bug in the engine would.
pub struct BusyFirst {
    /// Calls still to fail.
    left: AtomicUsize,
    /// Whether a failing call panics.
    panics: bool,
}

impl BusyFirst {
    /// Fails the first `calls` calls (validate and merge alike).
    pub fn new(calls: usize) -> Self {
        Self {
            left: AtomicUsize::new(calls),
            panics: false,
        }
    }

    /// Panics in the first `calls` calls.
    pub fn panicking(calls: usize) -> Self {
        Self {
            panics: true,
            ..Self::new(calls)
        }
    }

    fn busy(&self) -> Result<(), PluginError> {
        match self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        {
            Ok(_) if self.panics => panic!("a planned panic of a test policy"),
            Ok(_) => Err(PluginError::Busy {
                live: 4,
                waited: Duration::from_secs(1),
            }),
            Err(_) => Ok(()),
        }
    }
}

impl Policy for BusyFirst {
    fn validate(&self, event: &str) -> Result<Result<(), FieldError>, PluginError> {
        self.busy()?;
        MaxV.validate(event)
    }

    fn merge(&self, incoming: &str, stored: Option<&str>) -> Result<Decision, PluginError> {
        self.busy()?;
        MaxV.merge(incoming, stored)
    }

    fn schema(&self) -> Result<String, PluginError> {
        MaxV.schema()
    }

    fn id(&self) -> &str {
        "native:busy-first"
    }
}
