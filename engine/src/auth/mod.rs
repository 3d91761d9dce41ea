//! Who is calling, and may they: credentials presented as `Authorization: Bearer …` are an
//! API key ([`keys`]) or a JWT from the configured issuer ([`jwt`]); either names a principal
//! with scopes. `<pipeline>:write` allows `POST {route}`, `<pipeline>:read` allows
//! `GET {route}/{id}`, `admin` allows `/admin/*`.
//!
//! A denial never says whether a record exists: it is decided before any lookup.

use std::collections::BTreeSet;

pub mod jwt;
pub mod keys;

pub use crate::config::auth::{AuthConfig, ADMIN_SCOPE};

/// The scope that allows producing to `pipeline`.
pub fn write_scope(pipeline: &str) -> String {
    format!("{pipeline}:write")
}

/// The scope that allows reading `pipeline`'s records back.
pub fn read_scope(pipeline: &str) -> String {
    format!("{pipeline}:read")
}

/// A caller the engine recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name, in the namespace of how it signed in, so an API key and a JWT subject that
    /// happen to be spelt alike are never taken for one caller: `key:<name>` for an API key,
    /// `jwt:<iss>#<sub>` for a token.
    pub name: String,
    /// What it may do.
    pub scopes: BTreeSet<String>,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `Authorization: Bearer …` header.
    #[error("no credentials: send `Authorization: Bearer <API key or token>`")]
    Missing,
    /// Credentials that are not valid (unknown key, bad signature, expired, wrong issuer or
    /// audience). The reason is for the log; the caller is told only that they are invalid.
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// A valid principal without the scope.
    #[error("`{principal}` lacks the scope `{scope}`")]
    Forbidden {
        /// Who asked.
        principal: String,
        /// What they would need.
        scope: String,
    },
}

/// The engine's authenticator: API keys and, when configured, one JWT issuer.
pub struct Auth {
    /// Named API keys.
    keys: keys::ApiKeys,
    /// JWTs of the configured issuer.
    jwt: Option<std::sync::Arc<jwt::JwtVerifier>>,
}

impl Auth {
    /// The authenticator `config` describes.
    pub async fn new(config: &AuthConfig) -> Result<Self, jwt::JwksError> {
        let jwt = match config.jwt.clone() {
            Some(jwt) => Some(jwt::JwtVerifier::new(jwt).await?),
            None => None,
        };
        Ok(Self {
            keys: keys::ApiKeys::new(&config.api_keys),
            jwt,
        })
    }

    /// Who `authorization` (the header's value) names.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Denied> {
        let given = authorization.ok_or(Denied::Missing)?.trim();
        let token = match given.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Denied::Invalid(
                    "the Authorization header is not `Bearer <credentials>`".into(),
                ))
            }
        };
        if token.is_empty() {
            return Err(Denied::Missing);
        }
        if let Some(principal) = self.keys.find(token) {
            return Ok(principal);
        }
        match &self.jwt {
            Some(jwt) if jwt::looks_like_jwt(token) => jwt.verify(token),
            _ => Err(Denied::Invalid("not a known API key".into())),
        }
    }

    /// Who `authorization` names, if they hold `scope`.
    pub fn authorize(&self, authorization: Option<&str>, scope: &str) -> Result<Principal, Denied> {
        let principal = self.authenticate(authorization)?;
        if principal.scopes.contains(scope) {
            Ok(principal)
        } else {
            Err(Denied::Forbidden {
                principal: principal.name,
                scope: scope.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth::ApiKey;
    use sha2::{Digest, Sha256};

    async fn auth() -> Auth {
        Auth::new(&AuthConfig {
            api_keys: vec![ApiKey {
                name: "svc".into(),
                sha256: Sha256::digest(b"s3cret").into(),
                scopes: vec![write_scope("p")],
            }],
            jwt: None,
        })
        .await
        .expect("no JWKS to read")
    }

    #[tokio::test]
    async fn a_key_is_its_principal_and_scopes_decide() {
        let auth = auth().await;
        assert_eq!(
            auth.authorize(Some("Bearer s3cret"), "p:write")
                .map(|p| p.name),
            Ok("key:svc".to_string())
        );
        assert_eq!(
            auth.authorize(Some("bearer  s3cret "), "p:read"),
            Err(Denied::Forbidden {
                principal: "key:svc".into(),
                scope: "p:read".into()
            })
        );
        assert_eq!(auth.authenticate(None), Err(Denied::Missing));
        assert!(matches!(
            auth.authenticate(Some("Bearer wrong")),
            Err(Denied::Invalid(_))
        ));
        assert!(matches!(
            auth.authenticate(Some("Basic czNjcmV0")),
            Err(Denied::Invalid(_))
        ));
    }
}
