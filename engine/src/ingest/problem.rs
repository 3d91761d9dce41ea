//! Error answers as RFC 9457 `application/problem+json`.

use poem::http::{header, StatusCode};
use poem::Response;
use poem_openapi::Object;
use serde::Serialize;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// RFC 9457 problem details: what went wrong with a request.
#[derive(Debug, Clone, Serialize, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Problem {
    /// The HTTP status, repeated in the body as RFC 9457 asks.
    pub status: u16,
    /// A short, fixed summary of the problem type.
    pub title: String,
    /// What went wrong with this request.
    pub detail: String,
    /// The body field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Line of a JSON syntax error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Column of a JSON syntax error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`, not in the body).
    #[serde(skip)]
    #[oai(skip)]
    pub retry_after: Option<u32>,
    /// The challenge of a 401 (sent as `WWW-Authenticate`, not in the body).
    #[serde(skip)]
    #[oai(skip)]
    pub challenge: Option<&'static str>,
}

impl Problem {
    /// A problem with `status`, `title` and `detail` only.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status: status.as_u16(),
            title: title.to_string(),
            detail: detail.into(),
            field: None,
            line: None,
            column: None,
            retry_after: None,
            challenge: None,
        }
    }

    /// Names the field at fault (an empty name means the body as a whole).
    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    /// Says the client may retry after `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_string());
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(body);
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
