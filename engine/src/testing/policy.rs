//! A native policy, for tests of the engine's own logic without a WebAssembly host.

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
