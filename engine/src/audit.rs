//! The audit trail: one JSON record per action (`ingest`, `read`, `apply`, `skip`,
//! `dead-letter`, `reload`, `admin`, `denied`) on a Kafka topic, `ordo.audit` by default: who did what
//! to which record, when, with which plugin, and the request id that follows an event from its
//! POST to its write. Never a field value. See `docs/audit.md` for the mapping to FHIR
//! AuditEvent.
//!
//! An action whose record cannot be written does not succeed silently: ingest and read answer
//! 503 (an event may already be in its topic; a retry is harmless, merges being idempotent),
//! and the apply loop keeps retrying without moving the partition's commit point. A denial or
//! a reload whose record cannot be written is logged.

use serde::Serialize;

use crate::bus::{BusError, Publisher};

/// The audit topic when `[audit]` does not name one.
pub use crate::config::DEFAULT_AUDIT_TOPIC as DEFAULT_TOPIC;
/// The HTTP header carrying the request id (sent back on every pipeline answer; a caller may
/// send its own).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The Kafka header carrying the request id on an event.
pub const REQUEST_ID_KAFKA_HEADER: &str = "ordo-request-id";
/// The Kafka header carrying the principal that posted an event.
pub const PRINCIPAL_KAFKA_HEADER: &str = "ordo-principal";
/// Longest request id accepted from a caller.
const MAX_REQUEST_ID: usize = 128;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// An event was accepted (or refused) at `POST {route}`.
    Ingest,
    /// A record was read at `GET {route}/{id}`.
    Read,
    /// An event was written to the replica.
    Apply,
    /// An event changed nothing (the stored record is as new).
    Skip,
    /// An event went to the dead-letter topic.
    DeadLetter,
    /// A pipeline's plugin was reloaded on request.
    Reload,
    /// The operator's side was read: the plugins in force listed, or a live stream opened.
    Admin,
    /// A request was refused for its credentials (401) or scope (403).
    Denied,
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct Record<'a> {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who: `key:<name>`, `jwt:<iss>#<sub>` or `admin-token`; `null` when unknown (no
    /// `[auth]`, or an event whose principal no Ordo vouched for: see `claimed`).
    pub principal: Option<&'a str>,
    /// On an applied, skipped or dead-lettered event: the `ordo-principal` header it carried
    /// without a valid signature ([`crate::vouch`]), repeated as a claim (at most 256
    /// characters); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed: Option<&'a str>,
    /// What.
    pub action: Action,
    /// The pipeline; `*` for an action on the operator's side that concerns every one.
    pub pipeline: &'a str,
    /// The endpoint's route template, for actions on the operator's side (`admin`, and a
    /// `denied` there); left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    /// The record's key, when the action concerns one.
    pub key: Option<&'a str>,
    /// How it ended: `accepted`, `replayed`, `refused`, `found`, `not-found`, `written`,
    /// `skipped`, `dead-lettered`, `swapped`, `unchanged`, or the HTTP status of a denial.
    pub outcome: &'a str,
    /// The record's revision, when known.
    pub revision: Option<u64>,
    /// The plugin in force (`sha256:` of its file), when one was involved.
    pub plugin: Option<&'a str>,
    /// The request id that follows an event from its POST to its write.
    pub request_id: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// A record of `action` on `pipeline` that ended with `outcome`, now; the other fields
    /// are set by the caller.
    pub fn new(action: Action, pipeline: &'a str, outcome: &'a str) -> Self {
        Self {
            time: crate::version::rfc3339(chrono::Utc::now()),
            principal: None,
            claimed: None,
            action,
            pipeline,
            route: None,
            key: None,
            outcome,
            revision: None,
            plugin: None,
            request_id: None,
        }
    }
}

/// Writes `record` to `topic`, keyed by its record key (so one record's trail stays in
/// order) or its pipeline.
pub async fn write<P: Publisher>(
    publisher: &P,
    topic: &str,
    record: &Record<'_>,
) -> Result<(), BusError> {
    let json = serde_json::to_vec(record).map_err(|e| BusError::Client(e.to_string()))?;
    let key = record.key.unwrap_or(record.pipeline);
    publisher.publish(topic, key, &json, &[]).await.map(|_| ())
}

/// The caller's request id when it is a sane one (1 to 128 of `A-Z a-z 0-9 . _ -`), else a
/// new random one.
pub fn request_id(given: Option<&str>) -> String {
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
        {
            id.to_string()
        }
        _ => crate::random_id(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_no_more_than_their_fields_and_ids_are_sane() {
        let mut record = Record::new(Action::DeadLetter, "p", "dead-lettered");
        record.key = Some("1");
        let json = serde_json::to_value(&record).expect("serialises");
        assert_eq!(json["action"], "dead-letter");
        assert_eq!(
            json.as_object().map(|o| o.len()),
            Some(9),
            "time, principal, action, pipeline, key, outcome, revision, plugin, request_id"
        );
        assert_eq!(request_id(Some("abc-1.2_3")), "abc-1.2_3");
        assert_eq!(request_id(Some("bad id\n")).len(), 32);
        assert_ne!(request_id(None), request_id(None));
    }
}
