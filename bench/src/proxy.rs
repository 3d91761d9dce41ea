//! A counting proxy in front of a DynamoDB endpoint (moto): every request is passed on
//! unchanged and its answer passed back, and the `GetItem` and `PutItem` calls are counted
//! into a [`Counter`] on their way back. It is how the benchmark counts the writes of a design
//! it cannot look inside (the Quix Streams application, in Python) from outside, and every
//! design on moto goes through one, so they all pay the same extra hop.
//!
//! Written by hand rather than with a proxy crate: it is a few dozen lines over poem and reqwest,
//! which the benchmarks already build, and what it needs is the counting, not the proxying.

use std::sync::Arc;

use poem::http::{HeaderMap, HeaderName, StatusCode};
use poem::{Request, Response};

use crate::counting::{Counter, Counts};

/// The DynamoDB JSON protocol names the operation in this header: `DynamoDB_20120810.PutItem`.
const TARGET_HEADER: &str = "x-amz-target";

/// Headers of one hop, not to be passed on (RFC 9110 §7.6.1), and the length, which the
/// client of the next hop sets again.
fn passes(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "content-length"
    )
}

/// The headers that pass, from `from`.
fn passed(from: &HeaderMap) -> HeaderMap {
    from.iter()
        .filter(|(name, _)| passes(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// What a request asks, as far as the counts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Get,
    Put,
    Other,
}

fn operation(headers: &HeaderMap) -> Operation {
    let target = headers
        .get(TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match target.rsplit('.').next() {
        Some("GetItem") => Operation::Get,
        Some("PutItem") => Operation::Put,
        _ => Operation::Other,
    }
}

/// A running proxy on a local port; stopped when dropped.
pub struct DynamoProxy {
    url: String,
    counter: Arc<Counter>,
    server: tokio::task::JoinHandle<()>,
}

struct Upstream {
    url: String,
    client: reqwest::Client,
    counter: Arc<Counter>,
}

impl Upstream {
    async fn forward(&self, mut request: Request) -> Response {
        match self.pass(&mut request).await {
            Ok(response) => response,
            Err(e) => Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(format!(
                    "the counting proxy could not reach {}: {e:#}",
                    self.url
                )),
        }
    }

    async fn pass(&self, request: &mut Request) -> anyhow::Result<Response> {
        let op = operation(request.headers());
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let body = request.take_body().into_bytes().await?;
        let answer = self
            .client
            .request(request.method().clone(), format!("{}{path}", self.url))
            .headers(passed(request.headers()))
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        let headers = passed(answer.headers());
        let body = answer.bytes().await?;
        match op {
            Operation::Get => self.counter.get(),
            Operation::Put => self.counter.put(status == StatusCode::OK),
            Operation::Other => {}
        }
        let mut response = Response::builder().status(status).body(body);
        response.headers_mut().extend(headers);
        Ok(response)
    }
}

impl DynamoProxy {
    /// Listens on a free local port and passes every request on to `upstream` (a URL
    /// without a trailing slash).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let counter = Arc::new(Counter::default());
        let upstream = Arc::new(Upstream {
            url: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            counter: Arc::clone(&counter),
        });
        let app = poem::endpoint::make(move |request: Request| {
            let upstream = Arc::clone(&upstream);
            async move { upstream.forward(request).await }
        });
        let (acceptor, addr) = crate::local_acceptor().await?;
        let server = tokio::spawn(async move {
            if let Err(e) = poem::Server::new_with_acceptor(acceptor).run(app).await {
                tracing::warn!(error = %e, "The counting proxy stopped.");
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            counter,
            server,
        })
    }

    /// Where clients send their requests.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests answered so far.
    pub fn counts(&self) -> Counts {
        self.counter.counts()
    }
}

impl Drop for DynamoProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    #[test]
    fn the_operation_is_read_from_the_target_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(operation(&headers), Operation::Other);
        for (target, op) in [
            ("DynamoDB_20120810.PutItem", Operation::Put),
            ("DynamoDB_20120810.GetItem", Operation::Get),
            ("DynamoDB_20120810.Scan", Operation::Other),
        ] {
            headers.insert(TARGET_HEADER, HeaderValue::from_static(target));
            assert_eq!(operation(&headers), op, "{target}");
        }
    }

    #[test]
    fn hop_headers_are_not_passed_on() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:1"));
        headers.insert("content-length", HeaderValue::from_static("3"));
        headers.insert("x-amz-target", HeaderValue::from_static("x"));
        let kept = passed(&headers);
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key("x-amz-target"));
    }
}
