//! An OTLP/HTTP (JSON) endpoint of the test's own, receiving the spans an engine exports.

use std::sync::{Arc, Mutex};

use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use poem::web::Data;
use poem::{handler, post, EndpointExt as _, Route, Server};
use serde_json::Value;

/// One span: (trace id, span id, parent span id, name), ids in lower-case hex.
pub type Span = (String, String, String, String);

type Bodies = Arc<Mutex<Vec<String>>>;

#[handler]
async fn receive(body: String, bodies: Data<&Bodies>) -> &'static str {
    bodies.lock().expect("bodies").push(body);
    "{}"
}

/// The endpoint: where to send, and what arrived.
pub struct Collector {
    /// Its base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub url: String,
    bodies: Bodies,
}

impl Collector {
    /// Serves on a free loopback port until the test ends.
    pub async fn start() -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the collector");
        let address = acceptor.local_addr()[0]
            .as_socket_addr()
            .copied()
            .expect("socket address");
        let bodies = Bodies::default();
        let app = Route::new()
            .at("/v1/traces", post(receive))
            .data(bodies.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self {
            url: format!("http://{address}"),
            bodies,
        }
    }

    /// The export requests' bodies as they arrived.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("bodies").clone()
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        let mut found = Vec::new();
        for body in self.bodies() {
            let Ok(json) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            for resource in json["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        let text =
                            |name: &str| span[name].as_str().unwrap_or_default().to_lowercase();
                        found.push((
                            text("traceId"),
                            text("spanId"),
                            text("parentSpanId"),
                            span["name"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                }
            }
        }
        found
    }
}
