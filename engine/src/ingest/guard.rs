//! The HTTP side of [`crate::auth`]: reads the credentials of a request, and turns a denial
//! into its answer (401 with a `WWW-Authenticate` challenge, or 403), logged without the
//! credentials. A denial is decided before any record is looked up, so it never tells whether
//! a record exists.

use poem::http::{header, StatusCode};
use poem::Request;
use tracing::warn;

use super::problem::Problem;
use crate::auth::{Auth, Denied, Principal};

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

/// Who sent `request`, if they hold `scope`; with no authenticator configured, nobody is
/// named and everything is allowed (the engine then listens on loopback only).
pub fn authorize(
    auth: Option<&Auth>,
    request: &Request,
    scope: &str,
) -> Result<Option<Principal>, Problem> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    auth.authorize(authorization(request), scope)
        .map(Some)
        .map_err(|denied| refusal(&denied, request.uri().path()))
}

/// The answer to `denied`, logged.
pub fn refusal(denied: &Denied, path: &str) -> Problem {
    warn!(path, denied = %denied, "Request denied.");
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
