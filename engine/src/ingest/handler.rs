//! The ingest endpoint of one pipeline: `POST {route}`.
//!
//! Checks the body, stamps the version field when absent, asks the plugin to validate, then
//! produces the event keyed by its key field and answers 202 only after the broker's ack.

use poem::error::ReadBodyError;
use poem::http::{header, StatusCode};
use poem::{Request, Response};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest as _;
use tracing::{warn, Instrument as _};

use super::event::{prepare, unprocessable, Prepared};
use super::problem::Problem;
use super::PipelineApi;
use crate::audit;
use crate::bus::{BusError, Delivery, Publisher};
use crate::store::keys::Refused;
use crate::telemetry;

/// Largest body accepted, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Request header naming a retry-safe request.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Response header set when an answer is a replay of an earlier request's.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// Longest a request body may take to arrive, by default.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Ingest requests handled at once, all pipelines together: at 1 MiB bodies, about 1 GiB.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// The 202 answer: the broker acknowledged the event, and where it stored it.
#[derive(Debug, Serialize, poem_openapi::Object)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct Accepted {
    /// The pipeline that took the event.
    pub pipeline: String,
    /// The event's key.
    pub key: String,
    /// The partition it was written to.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The version field's value as produced (stamped or the client's).
    pub updated_at: serde_json::Value,
}

impl<P: Publisher, S> PipelineApi<P, S> {
    /// Handles one `POST {route}`.
    pub async fn ingest(&self, mut request: Request) -> Response {
        let id = request_id(&request);
        let span = tracing::info_span!("ingest", otel.kind = "server", pipeline = %self.pipeline.name, http.route = self.pipeline.route.as_deref().unwrap_or_default());
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let incoming = [telemetry::TRACEPARENT, telemetry::TRACESTATE]
            .into_iter()
            .filter_map(|name| header(name).map(|value| (name, value)));
        telemetry::continue_from(&span, incoming);
        let trace = telemetry::traceparent(&span, header(telemetry::TRACEPARENT));
        let mut response = self
            .accept(&mut request, &id, trace.as_deref())
            .instrument(span)
            .await
            .unwrap_or_else(Problem::into_response);
        self.metrics.answered(response.status().as_u16());
        if let Ok(value) = id.parse() {
            response
                .headers_mut()
                .insert(audit::REQUEST_ID_HEADER, value);
        }
        response
    }

    async fn accept(
        &self,
        request: &mut Request,
        request_id: &str,
        trace: Option<&str>,
    ) -> Result<Response, Problem> {
        let scope = crate::auth::write_scope(&self.pipeline.name);
        let principal = self.authorized(request, &scope, request_id).await?;
        let caller = principal.as_ref().map(|p| p.name.as_str());
        if super::event::is_ndjson(request) {
            return self.accept_bulk(request, request_id, trace, caller).await;
        }
        check_content_type(request)?;
        let idempotency_key = idempotency_key(request)?;
        // A single body is at most --body-limit and each connection holds one at a time, so it
        // is read before its share is taken: a client dribbling it holds no share of ingest.
        let body = self.read_body(request, self.limits.body_limit).await?;
        let _permit = self.in_flight_share(request, self.limits.body_limit)?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            let mut p = Problem::new(
                StatusCode::BAD_REQUEST,
                "Malformed JSON",
                format!("the body is not valid JSON: {e}"),
            );
            p.line = u32::try_from(e.line()).ok();
            p.column = u32::try_from(e.column()).ok();
            p
        })?;
        let Prepared {
            key,
            text,
            updated_at,
        } = self.prepare(value)?;
        let p = &self.pipeline;
        let (body, replayed) = match idempotency_key {
            Some(id) => {
                let hash: [u8; 32] = sha2::Sha256::digest(&*body).into();
                self.idempotency
                    .once(caller.unwrap_or(""), &id, hash, || {
                        self.produce(&key, &text, &updated_at, caller, request_id, trace)
                    })
                    .await
                    .map_err(|refused| match refused {
                        Refused::Failed(problem) => problem,
                        Refused::OtherBody => unprocessable(
                            "Idempotency-Key",
                            "was used for another body within the key's window; a retry must send the same body, a new request a new key",
                        ),
                        Refused::InProgress => Problem::new(
                            StatusCode::CONFLICT,
                            "Idempotency-Key in use",
                            "a request with this Idempotency-Key is being produced now; retry shortly to get its answer",
                        )
                        .field("Idempotency-Key")
                        .retry_after(1),
                        Refused::Unavailable(why) => {
                            warn!(pipeline = %p.name, error = %why, "Idempotency keys unavailable; request refused with 503.");
                            Problem::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "Idempotency keys unavailable",
                                "the table that remembers Idempotency-Keys did not answer, so the key could not be honoured; nothing was produced, retry later",
                            )
                            .retry_after(2)
                        }
                    })?
            }
            None => (
                self.produce(&key, &text, &updated_at, caller, request_id, trace)
                    .await?,
                false,
            ),
        };
        let mut record = audit::Record::new(
            audit::Action::Ingest,
            &self.pipeline.name,
            if replayed { "replayed" } else { "accepted" },
        );
        record.principal = caller;
        record.key = Some(&key);
        record.request_id = Some(request_id);
        self.audited(&record).await?;
        let mut response = Response::builder()
            .status(StatusCode::ACCEPTED)
            .content_type("application/json")
            .body(body);
        if replayed {
            response.headers_mut().insert(
                REPLAYED_HEADER,
                poem::http::HeaderValue::from_static("true"),
            );
        }
        Ok(response)
    }

    /// Checks one event as ingest takes it (see [`prepare`]) with the plugin in force.
    pub(super) fn prepare(&self, value: Value) -> Result<Prepared, Problem> {
        prepare(&self.pipeline, self.policy.current().as_ref(), value)
    }

    /// Produces the event (with its request id and principal as headers) and waits for the
    /// ack; returns the 202 body.
    async fn produce(
        &self,
        key: &str,
        text: &str,
        updated_at: &Value,
        principal: Option<&str>,
        request_id: &str,
        trace: Option<&str>,
    ) -> Result<String, Problem> {
        let delivery = self.send(key, text, principal, request_id, trace).await?;
        let accepted = Accepted {
            pipeline: self.pipeline.name.clone(),
            key: key.to_string(),
            partition: delivery.partition,
            offset: delivery.offset,
            updated_at: updated_at.clone(),
        };
        Ok(serde_json::to_string(&accepted).unwrap_or_default())
    }

    /// Produces the event (with its request id and principal as headers) and waits, at most
    /// the produce timeout, for the broker's ack.
    pub(super) async fn send(
        &self,
        key: &str,
        text: &str,
        principal: Option<&str>,
        request_id: &str,
        trace: Option<&str>,
    ) -> Result<Delivery, Problem> {
        let started = std::time::Instant::now();
        let (topic, timeout) = (&self.pipeline.topic, self.limits.produce_timeout);
        let mut headers = vec![(audit::REQUEST_ID_KAFKA_HEADER, request_id)];
        let mac = principal.map(|name| crate::vouch::sign(name, key.as_bytes(), text.as_bytes()));
        if let (Some(name), Some(mac)) = (principal, mac.as_deref()) {
            headers.push((audit::PRINCIPAL_KAFKA_HEADER, name));
            headers.push((crate::vouch::MAC_KAFKA_HEADER, mac));
        }
        if let Some(trace) = trace {
            headers.push((telemetry::TRACEPARENT, trace));
        }
        let delivery = tokio::time::timeout(
            timeout,
            self.publisher
                .publish(topic, key, text.as_bytes(), &headers),
        )
        .await
        .unwrap_or_else(|_| {
            Err(BusError::NotAcknowledged {
                topic: topic.clone(),
                reason: format!("no acknowledgement within {} ms", timeout.as_millis()),
            })
        });
        self.metrics
            .produce
            .observe(started.elapsed().as_secs_f64());
        delivery.map_err(|e| {
            warn!(pipeline = %self.pipeline.name, error = %e, "Event not acknowledged by the broker.");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Broker unavailable",
                format!("{e}; the event may or may not be stored: retry it (applying an event twice changes nothing)"),
            )
            .retry_after(1)
        })
    }

    /// The share of the in-flight budget a body of up to `limit` bytes takes: one per
    /// `--body-limit` bytes of its declared `Content-Length` (of `limit` when it declares
    /// none). A bulk body takes it before it is read, so bodies waiting to be read cannot add
    /// up beyond the budget. A declared length above `limit` is refused at once (413); no
    /// share left, 503.
    pub(super) fn in_flight_share(
        &self,
        request: &Request,
        limit: usize,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, Problem> {
        let declared = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(read_error(ReadBodyError::PayloadTooLarge, limit));
        }
        let size = declared.map_or(limit, |n| n as usize);
        let shares = size.div_ceil(self.limits.body_limit.max(1)).max(1);
        u32::try_from(shares)
            .ok()
            .and_then(|n| self.in_flight.try_acquire_many(n).ok())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Overloaded",
                    "too many requests in flight; nothing was stored, retry later",
                )
                .retry_after(1)
            })
    }

    /// The body, at most `limit` bytes, within the body time limit. A single body is read
    /// before its share of the in-flight budget is taken, so a slow client holds none; a bulk
    /// body after (see [`Self::in_flight_share`]).
    pub(super) async fn read_body(
        &self,
        request: &mut Request,
        limit: usize,
    ) -> Result<impl std::ops::Deref<Target = [u8]>, Problem> {
        let timeout = self.limits.body_timeout;
        tokio::time::timeout(timeout, request.take_body().into_bytes_limit(limit))
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "Body too slow",
                    format!(
                        "the body did not arrive within {} ms; nothing was stored",
                        timeout.as_millis()
                    ),
                )
            })?
            .map_err(|e| read_error(e, limit))
    }
}

/// The problem of a body that could not be read whole within `limit` bytes.
fn read_error(e: ReadBodyError, limit: usize) -> Problem {
    match e {
        ReadBodyError::PayloadTooLarge => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Body too large",
            format!("the body exceeds {limit} bytes"),
        ),
        other => Problem::new(
            StatusCode::BAD_REQUEST,
            "Unreadable body",
            other.to_string(),
        ),
    }
}

/// The `Idempotency-Key` header, when sent: 1 to 255 visible ASCII characters.
fn idempotency_key(request: &Request) -> Result<Option<String>, Problem> {
    let Some(value) = request.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_string())),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

fn check_content_type(request: &Request) -> Result<(), Problem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("Content-Type must be application/json, not {content_type:?}"),
        ))
    }
}

/// The request's id: the caller's `X-Request-Id` when it is a sane one, else a new one.
pub(super) fn request_id(request: &Request) -> String {
    audit::request_id(
        request
            .headers()
            .get(audit::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
}
