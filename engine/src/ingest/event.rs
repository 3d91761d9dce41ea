//! One event as ingest takes it, whichever way it comes (`POST`, an NDJSON line of a bulk
//! body, `ordo load`): checked and stamped by [`prepare`], ready to produce.

use chrono::Utc;
use poem::http::{header, StatusCode};
use poem::Request;
use serde_json::Value;
use tracing::warn;

use super::problem::Problem;
use crate::config::Pipeline;
use crate::plugin::Policy;

/// The media type of a bulk body: one JSON event per line.
pub const NDJSON: &str = "application/x-ndjson";

/// One event, checked and ready to produce.
pub struct Prepared {
    /// Its key.
    pub key: String,
    /// The event as produced (version stamped).
    pub text: String,
    /// Its version field's value.
    pub updated_at: Value,
}

/// Checks one event as ingest takes it (HTTP, bulk, `ordo load`): a JSON object, its
/// version stamped with the time of receipt when absent (unless the plugin's schema requires
/// it) and not too far ahead, a non-empty
/// string key, and `policy`'s validation. Returns what to produce, or the problem naming the
/// field.
pub fn prepare(
    pipeline: &Pipeline,
    policy: &dyn Policy,
    value: Value,
) -> Result<Prepared, Problem> {
    let Value::Object(mut record) = value else {
        return Err(unprocessable("", "the body must be a JSON object"));
    };
    let p = pipeline;
    // Stamped with the time of receipt, unless the plugin requires the client's own version
    // (one that is not an instant: a sequence, epoch numbers); it then names the field.
    if !record.contains_key(&p.version_field) && !policy.requires(&p.version_field) {
        let now = crate::version::rfc3339(Utc::now());
        record.insert(p.version_field.clone(), Value::String(now));
    }
    if let Some(version) = record.get(&p.version_field) {
        if let Some(why) = crate::version::too_far_ahead(version, Utc::now(), p.max_version_skew) {
            return Err(unprocessable(
                &p.version_field,
                &format!("`{}` {why}", p.version_field),
            ));
        }
    }
    let key = match record.get(&p.key_field) {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(_) => return Err(unprocessable(&p.key_field, "must be a non-empty string")),
        None => return Err(unprocessable(&p.key_field, "is required")),
    };
    let updated_at = record.get(&p.version_field).cloned().unwrap_or(Value::Null);
    let text = Value::Object(record).to_string();
    match policy.validate(&text) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let detail = if e.field.is_empty() {
                e.message
            } else {
                format!("`{}` {}", e.field, e.message)
            };
            return Err(unprocessable(&e.field, &detail));
        }
        Err(e) if e.is_transient() => {
            warn!(pipeline = %p.name, error = %e, "Plugin busy during validation; nothing produced.");
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Plugin busy",
                format!("{e}; nothing was produced, retry later"),
            )
            .retry_after(1));
        }
        Err(e) => {
            // A trap, fuel, time or memory limit on this body: the event is refused, and
            // the engine keeps serving others.
            warn!(pipeline = %p.name, error = e.kind(), "Plugin failed during validation; event refused.");
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Plugin failed on this event",
                e.to_string(),
            ));
        }
    }
    Ok(Prepared {
        key,
        text,
        updated_at,
    })
}

/// A 422 naming `field`.
pub(super) fn unprocessable(field: &str, detail: &str) -> Problem {
    let detail = if field.is_empty() || detail.contains(&format!("`{field}`")) {
        detail.to_string()
    } else {
        format!("`{field}` {detail}")
    };
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid event", detail).field(field)
}

/// Whether `request` carries a bulk body.
pub(super) fn is_ndjson(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(NDJSON))
}
