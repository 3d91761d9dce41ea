//! A test fixture: a policy component built against `ordo:plugin@0.1.0`
//! (`plugins/wit/legacy/0.1.0`), the contract before `configure`. The engine must still load
//! it and run it, without configuration. Its rule: an event needs a non-empty string
//! `PatientId` and a string `UpdatedAt`, and replaces the stored record when its `UpdatedAt`
//! sorts after the stored one's (text order: enough for a fixture).
//!
//! It does not use the SDK, which speaks the current contract.

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod component {
    wit_bindgen::generate!({
        path: "../wit/legacy/0.1.0",
        world: "policy-plugin",
    });

    use exports::ordo::plugin::policy::{Decision, FieldError, Guest};

    struct Legacy;

    impl Guest for Legacy {
        fn validate(event: String) -> Result<(), FieldError> {
            super::check(&event)
                .map(|_| ())
                .map_err(|(field, message)| FieldError {
                    field: field.into(),
                    message: message.into(),
                })
        }

        fn merge(incoming: String, stored: Option<String>) -> Decision {
            let at = match super::check(&incoming) {
                Ok(at) => at,
                Err((field, message)) => return Decision::Reject(format!("{field} {message}")),
            };
            match stored.as_deref().map(super::check) {
                Some(Ok(held)) if held >= at => Decision::Skip("stale".into()),
                _ => Decision::Write(incoming),
            }
        }

        fn schema() -> String {
            r#"{"type": "object", "required": ["PatientId"], "properties": {"PatientId": {"type": "string", "example": "1"}}}"#.into()
        }
    }

    export!(Legacy);
}

/// The event's `UpdatedAt`, or the field at fault and why.
pub fn check(text: &str) -> Result<String, (&'static str, &'static str)> {
    let event: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ("", "must be a JSON object"))?;
    match event.get("PatientId").and_then(|v| v.as_str()) {
        Some(id) if !id.is_empty() => {}
        _ => return Err(("PatientId", "must be a non-empty string")),
    }
    match event.get("UpdatedAt").and_then(|v| v.as_str()) {
        Some(at) => Ok(at.to_string()),
        None => Err(("UpdatedAt", "must be a string")),
    }
}
