//! JWTs from the configured OIDC issuer: signature (RSA, RSA-PSS, ECDSA or EdDSA; never an
//! HMAC, which a public key set would turn into a forgery), `exp` and `nbf` with a small
//! leeway, `iss` and `aud`, all checked by `jsonwebtoken`. The signing keys are a JWKS file,
//! re-read when it changes, or an `https://` URL, fetched at start, every
//! [`REFRESH_EVERY`] and (at most every [`REFETCH_AT_MOST`]) when a token names a key the set
//! does not hold; either way keys rotate without a restart. A fetched body is capped at
//! [`MAX_JWKS_BYTES`] and a redirect is followed only to the same host and port. A key whose
//! `use` is `enc` is left out, and one whose `alg` names an algorithm verifies only tokens
//! signed with it.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tracing::warn;

use super::{Denied, Principal};
use crate::config::auth::{JwksSource, JwtConfig};
use crate::watch::{stamp, Stamp};

/// How often a key set at a URL is fetched again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Least time between two fetches asked for by tokens naming an unknown key.
pub const REFETCH_AT_MOST: Duration = Duration::from_secs(5);
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest key set body read (a real one is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Redirects followed, each to the same host.
const MAX_REDIRECTS: usize = 5;

/// Signature algorithms accepted.
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a key set could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a key set the engine can use.
    #[error("the JWKS file {path} {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The key set could not be fetched or used.
    #[error("the JWKS at {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// One signing key.
struct Key {
    /// Its `kid`.
    id: Option<String>,
    /// The algorithm its `alg` binds it to, when it names one.
    alg: Option<Algorithm>,
    /// The key.
    key: DecodingKey,
}

/// The key set in force and the file state it was read from.
struct Keys {
    /// Modification time, length and inode of the file when last read (or tried).
    stamp: Option<Stamp>,
    /// The keys.
    keys: Vec<Key>,
}

/// Fetches a key set from its URL.
struct Fetcher {
    /// The URL.
    url: String,
    /// An HTTPS client trusting the system's roots and the configured CA.
    client: reqwest::Client,
    /// Woken when a token names an unknown key.
    wake: tokio::sync::Notify,
}

/// Verifies the configured issuer's tokens.
pub struct JwtVerifier {
    /// Issuer, audience, key set, scopes claim, leeway.
    config: JwtConfig,
    /// The keys in force.
    keys: RwLock<Keys>,
    /// The fetcher, for a key set at a URL.
    fetcher: Option<Fetcher>,
}

/// Whether `token` has the shape of a JWS compact serialisation.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl JwtVerifier {
    /// A verifier for `config`; reads (or fetches) its key set now, and for a URL keeps
    /// fetching it in the background.
    pub async fn new(config: JwtConfig) -> Result<Arc<Self>, JwksError> {
        let (keys, stamp, fetcher) = match &config.jwks {
            JwksSource::File(path) => (read_keys(path)?, stamp(path), None),
            JwksSource::Url { url, ca } => {
                let fetcher = Fetcher::new(url, ca.as_deref())?;
                (fetcher.fetch().await?, None, Some(fetcher))
            }
        };
        let verifier = Arc::new(Self {
            config,
            keys: RwLock::new(Keys { stamp, keys }),
            fetcher,
        });
        if verifier.fetcher.is_some() {
            tokio::spawn(refetching(Arc::downgrade(&verifier)));
        }
        Ok(verifier)
    }

    /// The principal `token` names, if it is valid.
    pub fn verify(&self, token: &str) -> Result<Principal, Denied> {
        self.refresh();
        let header =
            decode_header(token).map_err(|e| Denied::Invalid(format!("JWT header: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Denied::Invalid(format!(
                "JWT signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        // A key whose `alg` names another algorithm never verifies this token.
        let candidates: Vec<&Key> = keys
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.id == header.kid)
            .filter(|k| k.alg.is_none_or(|alg| alg == header.alg))
            .collect();
        if candidates.is_empty() {
            if let Some(fetcher) = &self.fetcher {
                fetcher.wake.notify_one();
            }
            return Err(Denied::Invalid(format!(
                "JWT signed by key {:?}, which the key set does not hold",
                header.kid.unwrap_or_default()
            )));
        }
        let mut last = String::new();
        for key in candidates {
            match decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Denied::Invalid(format!("JWT: {last}")))
    }

    /// The principal of verified `claims`.
    fn principal(&self, claims: &Value) -> Result<Principal, Denied> {
        let name = claims["sub"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Denied::Invalid("JWT without a `sub`".into()))?;
        let scopes = match &claims[self.config.scopes_claim.as_str()] {
            Value::String(text) => text.split_whitespace().map(str::to_string).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Default::default(),
        };
        // `iss` was checked to be the configured issuer.
        Ok(Principal {
            name: format!("jwt:{}#{name}", self.config.issuer),
            scopes,
        })
    }

    /// Re-reads the key file when it changed since it was last read; a file that no longer
    /// reads leaves the keys in force and is logged once per change.
    fn refresh(&self) {
        let JwksSource::File(path) = &self.config.jwks else {
            return;
        };
        let now = stamp(path);
        if now == self.keys.read().unwrap_or_else(|p| p.into_inner()).stamp {
            return;
        }
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.stamp == now {
            return;
        }
        keys.stamp = now;
        match read_keys(path) {
            Ok(fresh) => keys.keys = fresh,
            Err(e) => {
                warn!(error = %e, "JWKS file changed but cannot be used; the keys read before stay in force.");
            }
        }
    }
}

/// The signing keys in the JWKS file `path`.
fn read_keys(path: &Path) -> Result<Vec<Key>, JwksError> {
    let text = std::fs::read_to_string(path).map_err(|source| JwksError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_keys(&text, |problem| JwksError::Invalid {
        path: path.to_path_buf(),
        problem,
    })
}

/// Keeps fetching the key set of `verifier` (while it lives): every [`REFRESH_EVERY`], and
/// when woken by a token naming an unknown key, at most every [`REFETCH_AT_MOST`]. A fetch
/// that fails leaves the keys in force, logged.
async fn refetching(verifier: std::sync::Weak<JwtVerifier>) {
    let mut last = Instant::now();
    loop {
        let Some(strong) = verifier.upgrade() else {
            return;
        };
        let Some(fetcher) = &strong.fetcher else {
            return;
        };
        let woken = tokio::select! {
            () = fetcher.wake.notified() => true,
            () = tokio::time::sleep(REFRESH_EVERY) => false,
        };
        if woken {
            let since = last.elapsed();
            if since < REFETCH_AT_MOST {
                tokio::time::sleep(REFETCH_AT_MOST - since).await;
            }
        }
        last = Instant::now();
        match fetcher.fetch().await {
            Ok(keys) => {
                strong.keys.write().unwrap_or_else(|p| p.into_inner()).keys = keys;
            }
            Err(e) => warn!(error = %e, "JWKS fetch failed; the keys read before stay in force."),
        }
    }
}

impl Fetcher {
    fn new(url: &str, ca: Option<&Path>) -> Result<Self, JwksError> {
        let error = |reason: String| JwksError::Fetch {
            url: url.to_string(),
            reason,
        };
        let mut client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_host = attempt.previous().first().is_some_and(|first| {
                    first.host_str() == attempt.url().host_str()
                        && first.port_or_known_default() == attempt.url().port_or_known_default()
                });
                if !same_host {
                    attempt.error("a redirect to another host is not followed")
                } else if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| error(format!("{}: {e}", ca.display())))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| error(format!("{}: {e}", ca.display())))?;
            client = client.add_root_certificate(certificate);
        }
        Ok(Self {
            url: url.to_string(),
            client: client.build().map_err(|e| error(e.to_string()))?,
            wake: tokio::sync::Notify::new(),
        })
    }

    async fn fetch(&self) -> Result<Vec<Key>, JwksError> {
        let error = |reason: String| JwksError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| error(crate::error_chain(&e)))?;
        let body = capped(response, MAX_JWKS_BYTES)
            .await
            .map_err(|e| error(format!("the body {e}")))?;
        let text = String::from_utf8(body).map_err(|_| error("the body is not UTF-8".into()))?;
        parse_keys(&text, error)
    }
}

/// The body of `response`, refused once it passes `limit` bytes (announced or read).
async fn capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("is larger than {limit} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The signing keys in the JWK set `text` (keys marked for encryption left out); `invalid`
/// turns a problem into the error.
fn parse_keys(text: &str, invalid: impl Fn(String) -> JwksError) -> Result<Vec<Key>, JwksError> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| invalid(format!("is not a JWK set: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(named) => Some(
                Algorithm::from_str(&named.to_string())
                    .ok()
                    .filter(|alg| ALGORITHMS.contains(alg))
                    .ok_or_else(|| {
                        invalid(format!(
                            "holds key {:?} for {named}, which is not a signature algorithm the engine accepts",
                            jwk.common.key_id.clone().unwrap_or_default()
                        ))
                    })?,
            ),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            invalid(format!(
                "holds key {:?} that cannot be used: {e}",
                jwk.common.key_id.clone().unwrap_or_default()
            ))
        })?;
        keys.push(Key {
            id: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err(invalid("holds no key".into()));
    }
    Ok(keys)
}
