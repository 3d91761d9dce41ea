//! The `Host` check of an engine that serves loopback without `[auth]`. Such an engine trusts
//! whoever can reach the port, which on a developer's machine includes any web page the
//! browser shows: a page whose name an attacker points at 127.0.0.1 (DNS rebinding) sends
//! its requests there with its own name in `Host`. So only requests that name the engine as
//! a local client does (a loopback address, `localhost`, or the listen address) are
//! answered, and a browser's `Origin`, when sent, must name one of those too. The attack is
//! the one behind Vite's CVE-2025-24010; Jupyter checks host names for the same reason.

use std::net::{IpAddr, SocketAddr};

use poem::endpoint::BoxEndpoint;
use poem::http::{header, StatusCode, Uri};
use poem::{EndpointExt as _, Request};

use crate::ingest::problem::Problem;

/// `app`, answering 403 to a request whose `Host` or `Origin` does not name this engine as
/// a local client would (see the module's text); `listen` is the address it serves on.
pub fn local_names_only(app: BoxEndpoint<'static>, listen: SocketAddr) -> BoxEndpoint<'static> {
    app.around(move |inner, request| async move {
        match foreign(&request, listen) {
            None => inner.call(request).await,
            Some(which) => Ok(Problem::new(
                StatusCode::FORBIDDEN,
                "Not a local name",
                format!(
                    "this engine serves loopback without authentication, so it answers only requests whose {which} names localhost, a loopback address or {listen}; a web page under another name cannot use it"
                ),
            )
            .into_response()),
        }
    })
    .boxed()
}

/// Which header does not name a local address: `Host` (missing counts) or `Origin`.
fn foreign(request: &Request, listen: SocketAddr) -> Option<&'static str> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()));
    if !host.is_some_and(|h| local(authority_host(&h), listen)) {
        return Some("`Host`");
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let named = origin
            .to_str()
            .ok()
            .and_then(|o| o.parse::<Uri>().ok())
            .and_then(|uri| uri.host().map(|h| local(h, listen)));
        if named != Some(true) {
            return Some("`Origin`");
        }
    }
    None
}

/// The host part of `authority` (`name:port`, `[v6]:port`), brackets kept.
fn authority_host(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(rest) => rest
            .find(']')
            .map_or(authority, |end| &authority[..end + 2]),
        None => authority.split(':').next().unwrap_or(authority),
    }
}

/// Whether `host` (a name, an IPv4 address or a bracketed IPv6 one) is local.
fn local(host: &str, listen: SocketAddr) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || ip == listen.ip())
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use poem::{handler, Route};

    use super::*;

    #[handler]
    fn ok() -> &'static str {
        "ok"
    }

    #[tokio::test]
    async fn only_local_names_are_answered() {
        let listen: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let app = local_names_only(Route::new().at("/", poem::get(ok)).boxed(), listen);
        let cli = TestClient::new(app);
        for (host, origin) in [
            ("127.0.0.1:3000", None),
            ("localhost:3000", None),
            ("LOCALHOST.", None),
            ("127.0.0.2", None),
            ("[::1]:3000", None),
            ("localhost:3000", Some("http://localhost:3000")),
            ("127.0.0.1:3000", Some("http://[::1]:5173")),
        ] {
            let mut call = cli.get("/").header("host", host);
            if let Some(origin) = origin {
                call = call.header("origin", origin);
            }
            call.send().await.assert_status_is_ok();
        }
        for (host, origin) in [
            ("evil.example:3000", None),
            ("localhost.evil.example", None),
            ("127.0.0.1.nip.io", None),
            ("10.0.0.1:3000", None),
            ("localhost:3000", Some("http://evil.example")),
            ("localhost:3000", Some("null")),
        ] {
            let mut call = cli.get("/").header("host", host);
            if let Some(origin) = origin {
                call = call.header("origin", origin);
            }
            let refused = call.send().await;
            refused.assert_status(StatusCode::FORBIDDEN);
            refused.assert_content_type("application/problem+json");
        }
    }
}
