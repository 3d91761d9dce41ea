//! A fault-injecting HTTP proxy in front of the DynamoDB emulator: it forwards every request
//! as it is, or answers each one as DynamoDB does past a table's capacity
//! (`ProvisionedThroughputExceededException`), or stops listening altogether so connections
//! are refused, then listens again on the same port. It runs on a runtime of its own, so a
//! test blocking its thread (starting an engine) does not stall it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::{Body, Request, Response, Server};

/// DynamoDB's answer to a throttled request (awsJson1_0).
const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. (injected by the test proxy)"}"#;

struct State {
    /// Where requests go.
    upstream: String,
    client: reqwest::Client,
    /// Whether every request is answered as throttled.
    throttling: AtomicBool,
    /// Requests answered as throttled so far.
    throttled: AtomicUsize,
    /// Requests forwarded so far.
    forwarded: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// The proxy's URL, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    address: SocketAddr,
    state: Arc<State>,
    /// Stops the server listening now, when it listens.
    serving: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    /// Where the server runs.
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// A proxy on a free port of 127.0.0.1, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let port = super::free_port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            throttling: AtomicBool::new(false),
            throttled: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let mut proxy = Self {
            endpoint: format!("http://{address}"),
            address,
            state,
            serving: None,
            runtime: Some(runtime),
        };
        proxy.listen().await;
        proxy
    }

    /// Listens (again) and forwards.
    pub async fn listen(&mut self) {
        if self.serving.is_some() {
            return;
        }
        let state = Arc::clone(&self.state);
        let app = poem::endpoint::make(move |request: Request| {
            let state = Arc::clone(&state);
            async move { forward(&state, request).await }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(TcpListener::bind(self.address));
        let Some(runtime) = &self.runtime else {
            return;
        };
        let task = runtime.spawn(async move {
            let _ = server
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(Duration::ZERO),
                )
                .await;
        });
        // Listening once a connection is accepted.
        while tokio::net::TcpStream::connect(self.address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.serving = Some((stop, task));
    }

    /// Stops listening and drops every connection: the engine's requests are refused.
    pub async fn refuse(&mut self) {
        if let Some((stop, task)) = self.serving.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        // Refused once nothing accepts.
        while tokio::net::TcpStream::connect(self.address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Answers every request as throttled (`true`) or forwards again.
    pub fn throttle(&self, on: bool) {
        self.state.throttling.store(on, Ordering::SeqCst);
    }

    /// Requests answered as throttled so far.
    pub fn throttled(&self) -> usize {
        self.state.throttled.load(Ordering::SeqCst)
    }

    /// Requests forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.serving.take() {
            let _ = stop.send(());
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Forwards `request` upstream, or answers it as throttled.
async fn forward(state: &State, mut request: Request) -> Response {
    if state.throttling.load(Ordering::SeqCst) {
        state.throttled.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .content_type("application/x-amz-json-1.0")
            .body(THROTTLED);
    }
    let body = match request.take_body().into_bytes().await {
        Ok(body) => body,
        Err(e) => return bad_gateway(e.to_string()),
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let method = match reqwest::Method::from_bytes(request.method().as_str().as_bytes()) {
        Ok(method) => method,
        Err(e) => return bad_gateway(e.to_string()),
    };
    let mut upstream = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .body(body.to_vec());
    for (name, value) in request.headers() {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return bad_gateway(e.to_string()),
    };
    state.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    match answer.bytes().await {
        Ok(bytes) => response.body(Body::from(bytes.to_vec())),
        Err(e) => bad_gateway(e.to_string()),
    }
}

fn bad_gateway(why: String) -> Response {
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .body(why)
}
