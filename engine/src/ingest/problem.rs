//! Error answers as RFC 9457 `application/problem+json`.

use poem::http::{header, StatusCode};
use poem::Response;
use serde::Serialize;

/// One problem document; optional members are left out when unknown.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The HTTP status, repeated in the body as RFC 9457 asks.
    pub status: u16,
    /// A short, fixed summary of the problem type.
    pub title: &'static str,
    /// What went wrong with this request.
    pub detail: String,
    /// The body field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Line of a JSON syntax error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column of a JSON syntax error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// Seconds after which a retry may succeed.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem with `status`, `title` and `detail` only.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: status.as_u16(),
            title,
            detail: detail.into(),
            field: None,
            line: None,
            column: None,
            retry_after: None,
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
            .header(header::CONTENT_TYPE, "application/problem+json")
            .body(body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
