//! The `[auth]` table: who may call the engine. API keys are named principals with scopes,
//! stored as the SHA-256 of the key (never the key); JWTs come from one OIDC issuer whose
//! signing keys are a JWKS file.
//!
//! ```toml
//! [auth]
//! [[auth.api_keys]]
//! name = "profile-service"
//! sha256 = "<hex SHA-256 of the key>"
//! scopes = ["patient-profile:write", "patient-profile:read"]
//!
//! [auth.jwt]
//! issuer = "https://login.example.org/"
//! audience = "ordo"
//! jwks = "jwks.json"
//! scopes_claim = "scope"
//! ```

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::ConfigError;

/// The scope of the admin endpoints.
pub const ADMIN_SCOPE: &str = "admin";
/// The claim JWT scopes are read from when `scopes_claim` is not given.
pub const DEFAULT_SCOPES_CLAIM: &str = "scope";
/// Seconds of clock difference allowed on `exp` and `nbf` when `leeway_seconds` is not given.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;
/// Most leeway a file may ask for.
const MAX_LEEWAY_SECONDS: u64 = 300;

/// `[auth]` as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFile {
    /// Named API keys: `[[auth.api_keys]]` tables, below.
    #[serde(default)]
    api_keys: Vec<ApiKeyFile>,
    /// JWTs from one OIDC issuer: the table `[auth.jwt]`, below.
    jwt: Option<JwtFile>,
}

/// One `[[auth.api_keys]]` as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeyFile {
    /// The principal the key stands for, as the audit trail names it (required).
    name: String,
    /// The SHA-256 of the key, 64 hex digits: the key itself is never in the file (required).
    sha256: String,
    /// What the key may do: `<pipeline>:write`, `<pipeline>:read`, `admin` (required).
    scopes: Vec<String>,
}

/// `[auth.jwt]` as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtFile {
    /// The `iss` a token must carry (required).
    issuer: String,
    /// The `aud` a token must carry (required).
    audience: String,
    /// The issuer's signing keys: a JWKS file, or an `https://` URL fetched and refreshed
    /// (required).
    jwks: String,
    /// A CA (PEM file) trusted for an `https://` key set besides the system's roots.
    jwks_ca: Option<PathBuf>,
    /// The claim holding the token's scopes (a space-separated string or a list).
    #[serde(default = "default_scopes_claim")]
    scopes_claim: String,
    /// Clock difference allowed when checking `exp` and `nbf`, in seconds (up to 300).
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
}

fn default_scopes_claim() -> String {
    DEFAULT_SCOPES_CLAIM.into()
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECONDS
}

/// Who may call the engine, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Named API keys.
    pub api_keys: Vec<ApiKey>,
    /// JWTs accepted, when configured.
    pub jwt: Option<JwtConfig>,
}

/// One API key: a principal, the SHA-256 of its key, its scopes.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The principal, as it appears in the audit trail.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// What it may do.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// JWTs accepted: issuer, audience, where the signing keys are, where the scopes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `iss` a token must carry.
    pub issuer: String,
    /// `aud` a token must carry (one of its audiences).
    pub audience: String,
    /// Where the signing keys are.
    pub jwks: JwksSource,
    /// The claim holding the scopes (space-separated text, or a list).
    pub scopes_claim: String,
    /// Seconds of clock difference allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
}

/// Where a key set is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file (resolved against the pipelines file's folder), re-read when it changes.
    File(PathBuf),
    /// An `https://` URL, fetched at start and every few minutes, and again (at most every
    /// few seconds) when a token names a key the set does not hold.
    Url {
        /// The URL.
        url: String,
        /// A CA (PEM) to trust besides the system's roots.
        ca: Option<PathBuf>,
    },
}

/// Checks `[auth]` against the pipelines' names; every problem is named.
pub(super) fn check(
    file: AuthFile,
    pipelines: &[String],
    base: &Path,
) -> (Option<AuthConfig>, Vec<ConfigError>) {
    let mut problems = Vec::new();
    let mut problem = |key: String, text: String| {
        let key = if key == "auth" {
            key
        } else {
            format!("auth.{key}")
        };
        problems.push(ConfigError::Setting { key, problem: text })
    };
    if file.api_keys.is_empty() && file.jwt.is_none() {
        problem(
            "auth".into(),
            "names no API key and no JWT issuer, so nobody could call the engine (remove [auth] for a loopback-only engine)".into(),
        );
    }
    let mut api_keys = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, key) in file.api_keys.into_iter().enumerate() {
        let at = format!("api_keys[{i}]");
        if key.name.trim().is_empty() {
            problem(format!("{at}.name"), "must not be empty".into());
        }
        if names.contains(&key.name) {
            problem(
                format!("{at}.name"),
                format!("`{}` names another key already", key.name),
            );
        }
        names.push(key.name.clone());
        for scope in &key.scopes {
            if let Some(why) = scope_problem(scope, pipelines) {
                problem(format!("{at}.scopes"), why);
            }
        }
        match parse_sha256(&key.sha256) {
            Some(sha256) => {
                if api_keys.iter().any(|k: &ApiKey| k.sha256 == sha256) {
                    problem(
                        format!("{at}.sha256"),
                        "is the hash of another key already".into(),
                    );
                }
                api_keys.push(ApiKey {
                    name: key.name,
                    sha256,
                    scopes: key.scopes,
                });
            }
            None => problem(
                format!("{at}.sha256"),
                "must be 64 hexadecimal digits: the SHA-256 of the key (e.g. `printf %s \"$KEY\" | sha256sum`), never the key itself".into(),
            ),
        }
    }
    let jwt = file.jwt.map(|jwt| {
        if jwt.issuer.trim().is_empty() {
            problem("jwt.issuer".into(), "must not be empty".into());
        }
        if jwt.audience.trim().is_empty() {
            problem("jwt.audience".into(), "must not be empty".into());
        }
        if jwt.leeway_seconds > MAX_LEEWAY_SECONDS {
            problem(
                "jwt.leeway_seconds".into(),
                format!("must be at most {MAX_LEEWAY_SECONDS}"),
            );
        }
        let jwks = if jwt.jwks.starts_with("https://") {
            let ca = jwt.jwks_ca.as_ref().map(|c| base.join(c));
            if let Some(ca) = ca.as_ref().filter(|c| !c.is_file()) {
                problem(
                    "jwt.jwks_ca".into(),
                    format!("cannot read {}", ca.display()),
                );
            }
            JwksSource::Url {
                url: jwt.jwks.clone(),
                ca,
            }
        } else if jwt.jwks.contains("://") {
            problem(
                "jwt.jwks".into(),
                "must be a file or an https:// URL (a key set is never fetched in the clear)"
                    .into(),
            );
            JwksSource::File(PathBuf::new())
        } else {
            let path = base.join(&jwt.jwks);
            if !path.is_file() {
                problem("jwt.jwks".into(), format!("cannot read {}", path.display()));
            }
            JwksSource::File(path)
        };
        JwtConfig {
            issuer: jwt.issuer,
            audience: jwt.audience,
            jwks,
            scopes_claim: jwt.scopes_claim,
            leeway_seconds: jwt.leeway_seconds,
        }
    });
    (Some(AuthConfig { api_keys, jwt }), problems)
}

/// Why `scope` is not one the engine knows, or `None`.
fn scope_problem(scope: &str, pipelines: &[String]) -> Option<String> {
    if scope == ADMIN_SCOPE {
        return None;
    }
    let known = || {
        format!(
            "is not a scope (scopes: `admin`, and `<pipeline>:write` or `<pipeline>:read` for a pipeline of this file: {})",
            pipelines.join(", ")
        )
    };
    match scope.rsplit_once(':') {
        Some((pipeline, "write" | "read")) if pipelines.iter().any(|p| p == pipeline) => None,
        Some((pipeline, "write" | "read")) => Some(format!(
            "`{scope}` names no pipeline of this file (`{pipeline}`)"
        )),
        _ => Some(format!("`{scope}` {}", known())),
    }
}

/// 32 bytes from 64 hexadecimal digits, or `None`.
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> AuthFile {
        toml::from_str(text).expect("reads")
    }

    #[test]
    fn keys_scopes_and_the_issuer_are_checked_and_every_problem_named() {
        let (_, problems) = check(
            file(
                r#"
[[api_keys]]
name = "a"
sha256 = "not hex"
scopes = ["p:write", "q:read", "p:delete", "admin"]
[[api_keys]]
name = "a"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
scopes = []
[jwt]
issuer = ""
audience = "ordo"
jwks = "http://login.example.org/jwks"
"#,
            ),
            &["p".into()],
            Path::new("/nowhere"),
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for expected in [
            "`auth.api_keys[0].sha256` must be 64 hexadecimal digits",
            "`auth.api_keys[0].scopes` `q:read` names no pipeline of this file",
            "`auth.api_keys[0].scopes` `p:delete` is not a scope",
            "`auth.api_keys[1].name` `a` names another key already",
            "`auth.jwt.issuer` must not be empty",
            "`auth.jwt.jwks` must be a file or an https:// URL",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(expected)),
                "{expected} missing from {text:#?}"
            );
        }
    }

    #[test]
    fn a_right_table_reads_and_its_key_hash_is_never_shown() {
        let (auth, problems) = check(
            file(
                r#"
[[api_keys]]
name = "svc"
sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
scopes = ["p:write"]
"#,
            ),
            &["p".into()],
            Path::new("."),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let auth = auth.expect("auth");
        assert_eq!(auth.api_keys[0].sha256[0], 0x9f);
        assert!(
            !format!("{auth:?}").contains("9f86"),
            "no hash in debug output"
        );
    }
}
