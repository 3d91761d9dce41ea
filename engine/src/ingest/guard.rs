//! The HTTP side of [`crate::auth`]: reads the credentials of a request, and turns a denial
//! into its answer (401 with a `WWW-Authenticate` challenge, or 403), logged without the
//! credentials. A denial is decided before any record is looked up, so it never tells whether
//! a record exists.

use poem::http::{header, StatusCode};
use poem::Request;
use tracing::warn;

use super::problem::Problem;
use crate::audit::{Action, Record};
use crate::auth::{Denied, Principal};

/// The challenge of a 401 without credentials.
pub const CHALLENGE: &str = r#"Bearer realm="ordo""#;
/// The challenge of a 401 with credentials that are not valid.
pub const CHALLENGE_INVALID: &str = r#"Bearer realm="ordo", error="invalid_token""#;

/// The `Authorization` header's value, if it is text.
pub fn authorization(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The answer to `denied`, logged.
pub fn refusal(denied: &Denied, route: &str) -> Problem {
    warn!(route, denied = %denied, "Request denied.");
    match denied {
        Denied::Missing => {
            let mut problem = Problem::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this endpoint needs `Authorization: Bearer <API key or token>`",
            );
            problem.challenge = Some(CHALLENGE);
            problem
        }
        Denied::Invalid(_) => {
            let mut problem = Problem::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the credentials are not valid (unknown key, or a token that is expired, not yet valid, or for another issuer or audience)",
            );
            problem.challenge = Some(CHALLENGE_INVALID);
            problem
        }
        Denied::Forbidden { principal, scope } => Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("`{principal}` may not do this: it needs the scope `{scope}`"),
        ),
    }
}

impl<P: crate::bus::Publisher, S> super::PipelineApi<P, S> {
    /// Who sent `request`, if they hold `scope`; with no authenticator configured, nobody is
    /// named and everything is allowed (the engine then listens on loopback only). A denial
    /// is recorded in the audit trail (best effort: a denial whose record cannot be written is logged).
    pub(super) async fn authorized(
        &self,
        request: &Request,
        scope: &str,
        request_id: &str,
    ) -> Result<Option<Principal>, Problem> {
        let Some(auth) = self.auth.as_deref() else {
            return Ok(None);
        };
        let denied = match auth.authorize(authorization(request), scope) {
            Ok(principal) => return Ok(Some(principal)),
            Err(denied) => denied,
        };
        // The route's template: a read's path holds the key.
        let own = self.pipeline.route.as_deref().unwrap_or_default();
        let route = if request.uri().path() == own {
            own.to_string()
        } else {
            format!("{own}/{{id}}")
        };
        let problem = refusal(&denied, &route);
        if let Some(topic) = self.pipeline.audit_topic.as_deref() {
            let status = problem.status.to_string();
            let mut record = Record::new(Action::Denied, &self.pipeline.name, &status);
            if let Denied::Forbidden { principal, .. } = &denied {
                record.principal = Some(principal);
            }
            record.request_id = Some(request_id);
            if let Err(e) = crate::audit::write(self.publisher.as_ref(), topic, &record).await {
                warn!(pipeline = %self.pipeline.name, error = %e, "Audit record of a denial not written.");
            }
        }
        Err(problem)
    }

    /// Writes `record` to the audit trail; when it cannot be written the action fails with
    /// 503 rather than succeed unrecorded.
    pub(super) async fn audited(&self, record: &Record<'_>) -> Result<(), Problem> {
        let Some(topic) = self.pipeline.audit_topic.as_deref() else {
            return Ok(());
        };
        crate::audit::write(self.publisher.as_ref(), topic, record)
            .await
            .map_err(|e| {
                warn!(pipeline = %self.pipeline.name, error = %e, "Audit record not written; the request fails.");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Audit unavailable",
                    "the audit trail could not record this request, so it is not answered; retry later (an event may already be stored: applying it twice changes nothing)",
                )
                .retry_after(1)
            })
    }
}
