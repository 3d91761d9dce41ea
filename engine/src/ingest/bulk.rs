//! Bulk ingest: `POST {route}` with `Content-Type: application/x-ndjson`, one event per line.
//!
//! Every line is checked as a single event would be (JSON object, version stamped, key,
//! plugin validation); the accepted ones are produced all at once, every one in flight, and
//! the answer comes once the broker acknowledged (or refused) each: per line, where it was
//! stored or the problem naming its field. `200` when every line was accepted, `503` (with
//! `Retry-After`) when none was and each was refused for a 503 reason, `207` when
//! some were not; a rejected line never holds back the others, and nothing accepted is lost.
//! Blank lines are skipped (they keep their numbers). An `Idempotency-Key` is refused here:
//! each line may be retried on its own, as applying an event twice changes nothing.

use futures::future::join_all;
use poem::http::StatusCode;
use poem::{Request, Response};
use serde::Serialize;
use serde_json::Value;

use super::event::Prepared;
use super::problem::Problem;
use super::PipelineApi;
use crate::audit;
use crate::bus::Publisher;

/// Largest bulk body accepted by default, in bytes.
pub const DEFAULT_BULK_BODY_LIMIT: usize = 32 << 20;
/// Most events one bulk body may carry by default.
pub const DEFAULT_BULK_MAX_LINES: usize = 10_000;

/// The answer to a bulk request.
#[derive(Debug, Serialize, poem_openapi::Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct BulkAnswer {
    /// The pipeline that took the events.
    pub pipeline: String,
    /// Lines accepted: acknowledged by the broker.
    pub accepted: usize,
    /// Lines not accepted.
    pub rejected: usize,
    /// One result per event line, in line order.
    pub results: Vec<LineResult>,
}

/// What became of one line.
#[derive(Debug, Serialize, poem_openapi::Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase", skip_serializing_if_is_none)]
pub struct LineResult {
    /// The line's number in the body (1-based).
    pub line: usize,
    /// 202 when accepted; else the status a single request would have got (400, 422, 503).
    pub status: u16,
    /// The event's key, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The partition it was written to, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Its offset there, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The version field's value as produced, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Value>,
    /// Why the line was not accepted (its `field` names the field at fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

impl LineResult {
    fn refused(line: usize, mut problem: Problem) -> Self {
        // The body's line is `line`; a JSON error's own line is always 1 within it.
        problem.line = None;
        Self {
            line,
            status: problem.status,
            key: None,
            partition: None,
            offset: None,
            updated_at: None,
            problem: Some(problem),
        }
    }
}

impl<P: Publisher, S> PipelineApi<P, S> {
    /// Handles a bulk `POST {route}` (the caller is authorized already).
    pub(super) async fn accept_bulk(
        &self,
        request: &mut Request,
        request_id: &str,
        trace: Option<&str>,
        caller: Option<&str>,
    ) -> Result<Response, Problem> {
        if request.headers().contains_key(super::IDEMPOTENCY_HEADER) {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key not taken with application/x-ndjson",
                "a bulk request is not remembered by key: retry the lines that were not accepted (applying an event twice changes nothing)",
            )
            .field("Idempotency-Key"));
        }
        // A bulk body takes as many shares of the in-flight budget as single bodies of its
        // size would, so bulk requests do not get around the bound on memory; taken before
        // the body is read.
        let _permits = self.in_flight_share(request, self.limits.bulk_body_limit)?;
        let body = self.read_body(request, self.limits.bulk_body_limit).await?;
        let lines: Vec<(usize, &[u8])> = body
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .collect();
        if lines.is_empty() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "No events",
                "the body holds no event: one JSON object per line",
            ));
        }
        if lines.len() > self.limits.bulk_max_lines {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too many events",
                format!(
                    "the body holds {} events; at most {} per request: split it (or use `ordo load`)",
                    lines.len(),
                    self.limits.bulk_max_lines
                ),
            ));
        }
        let mut results: Vec<Option<LineResult>> = Vec::with_capacity(lines.len());
        let mut ready: Vec<(usize, Prepared, String)> = Vec::new();
        for (slot, (line, text)) in lines.iter().enumerate() {
            let checked = serde_json::from_slice::<Value>(text)
                .map_err(|e| {
                    let mut p = Problem::new(
                        StatusCode::BAD_REQUEST,
                        "Malformed JSON",
                        format!("line {line} is not valid JSON: {e}"),
                    );
                    p.column = u32::try_from(e.column()).ok();
                    p
                })
                .and_then(|value| self.prepare(value));
            match checked {
                Ok(prepared) => {
                    ready.push((slot, prepared, format!("{request_id}.{line}")));
                    results.push(None);
                }
                Err(problem) => results.push(Some(LineResult::refused(*line, problem))),
            }
        }
        let sent = join_all(
            ready
                .iter()
                .map(|(_, p, id)| self.send(&p.key, &p.text, caller, id, trace)),
        )
        .await;
        let mut trail = Vec::new();
        for ((slot, prepared, id), delivery) in ready.iter().zip(sent) {
            let line = lines[*slot].0;
            results[*slot] = Some(match delivery {
                Ok(d) => {
                    trail.push((prepared.key.as_str(), id.as_str()));
                    LineResult {
                        line,
                        status: StatusCode::ACCEPTED.as_u16(),
                        key: Some(prepared.key.clone()),
                        partition: Some(d.partition),
                        offset: Some(d.offset),
                        updated_at: Some(prepared.updated_at.clone()),
                        problem: None,
                    }
                }
                Err(problem) => {
                    let mut refused = LineResult::refused(line, problem);
                    refused.key = Some(prepared.key.clone());
                    refused
                }
            });
        }
        let audited = join_all(trail.iter().map(|(key, id)| {
            let mut record =
                audit::Record::new(audit::Action::Ingest, &self.pipeline.name, "accepted");
            record.principal = caller;
            record.key = Some(key);
            record.request_id = Some(id);
            async move { self.audited(&record).await }
        }))
        .await;
        audited.into_iter().collect::<Result<Vec<()>, Problem>>()?;
        let results: Vec<LineResult> = results.into_iter().flatten().collect();
        let accepted = trail.len();
        let answer = BulkAnswer {
            pipeline: self.pipeline.name.clone(),
            accepted,
            rejected: results.len() - accepted,
            results,
        };
        // Nothing taken and every line refused for a 503 reason (broker or plugin pool
        // away): the whole body is to be retried, so it is answered as a single request would.
        let unavailable = answer
            .results
            .iter()
            .map(|r| r.problem.as_ref().filter(|p| p.status == 503))
            .collect::<Option<Vec<&Problem>>>()
            .filter(|all| answer.accepted == 0 && !all.is_empty());
        if let Some(all) = unavailable {
            let first = all[0];
            let mut problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                &first.title,
                format!(
                    "none of the {} lines was taken ({}); retry the whole body",
                    all.len(),
                    first.detail
                ),
            );
            problem.retry_after = Some(all.iter().filter_map(|p| p.retry_after).max().unwrap_or(1));
            return Err(problem);
        }
        let status = if answer.rejected == 0 {
            StatusCode::OK
        } else {
            StatusCode::MULTI_STATUS
        };
        Ok(Response::builder()
            .status(status)
            .content_type("application/json")
            .body(serde_json::to_string(&answer).unwrap_or_default()))
    }
}
