//! The model over HTTP: DynamoDB's JSON 1.0 protocol on `POST /` (the operation in
//! `X-Amz-Target`), each request answered after the model's latency, any number at once; and,
//! for the bench, `GET /counts` (requests by operation and by client) and `GET /landings`
//! (when each write became visible).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Json, Query};
use poem::{get, handler, post, Body, EndpointExt as _, IntoResponse, Response, Route};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::tables::{ApiError, Landing, Tables};

/// The `X-Amz-Target` prefix of DynamoDB's operations.
const TARGET_PREFIX: &str = "DynamoDB_20120810.";
/// DynamoDB's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// How a request without an `app/<id>` in its user agent is counted.
const NO_CLIENT: &str = "-";

/// Requests counted as they are answered.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests by operation (`PutItem`, `GetItem`, ...), failed ones included.
    pub requests: BTreeMap<String, u64>,
    /// The same by client (the `app/<id>` of the user agent: `AWS_SDK_UA_APP_ID` for the
    /// Rust SDK, `user_agent_appid` for boto3), then by operation; `-` for none.
    pub clients: BTreeMap<String, BTreeMap<String, u64>>,
    /// Errors answered, by type (`ConditionalCheckFailedException`, ...).
    pub errors: BTreeMap<String, u64>,
    /// When the first and the latest `PutItem` were answered, in microseconds since the model
    /// started: the window over which a client that reports nothing itself is timed.
    #[serde(default)]
    pub puts_between_us: Option<[u64; 2]>,
}

impl Counts {
    /// Successful writes: PutItem requests less those refused.
    pub fn writes(&self) -> u64 {
        let refused = self.errors.get("ConditionalCheckFailedException").copied();
        let puts = self.requests.get("PutItem").copied().unwrap_or(0);
        // Only PutItem is refused on a condition in this model.
        puts.saturating_sub(refused.unwrap_or(0))
    }

    /// PutItem requests from `client`, refused ones included.
    pub fn puts_by(&self, client: &str) -> u64 {
        self.clients
            .get(client)
            .and_then(|ops| ops.get("PutItem"))
            .copied()
            .unwrap_or(0)
    }
}

/// The model: its tables, its latency, and what it counted.
pub struct Model {
    /// The items.
    tables: Tables,
    /// How long every request takes.
    latency: Duration,
    /// What was asked.
    counts: Mutex<Counts>,
    /// When the model started ([`Counts::puts_between_us`] counts from it).
    started: Instant,
}

impl Model {
    /// An empty model answering after `latency`.
    pub fn new(latency: Duration) -> Arc<Self> {
        Arc::new(Self {
            tables: Tables::default(),
            latency,
            counts: Mutex::new(Counts::default()),
            started: Instant::now(),
        })
    }

    fn count(&self, client: &str, op: &str, error: Option<&'static str>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.requests.entry(op.to_string()).or_default() += 1;
        *counts
            .clients
            .entry(client.to_string())
            .or_default()
            .entry(op.to_string())
            .or_default() += 1;
        if let Some(kind) = error {
            *counts.errors.entry(kind.to_string()).or_default() += 1;
        }
        if op == "PutItem" {
            let now = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let first = counts.puts_between_us.map_or(now, |[first, _]| first);
            counts.puts_between_us = Some([first, now]);
        }
    }
}

/// The `app/<id>` token of the request's user agent (the SDK's own header first).
fn client(headers: &HeaderMap) -> String {
    ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .flat_map(str::split_whitespace)
        .find_map(|token| token.strip_prefix("app/"))
        .map_or_else(|| NO_CLIENT.to_string(), str::to_string)
}

fn answer(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type(CONTENT_TYPE)
        .body(body.to_string())
}

fn error(e: &ApiError) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        &json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{}", e.kind), "message": e.message}),
    )
}

/// One DynamoDB request: waits the model's latency, then runs it.
#[handler]
async fn operation(headers: &HeaderMap, body: Body, model: Data<&Arc<Model>>) -> Response {
    let op = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string();
    let client = client(headers);
    // Read the body before the wait, so the latency is the model's and not the upload's.
    let request = match body.into_bytes().await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes),
        Err(e) => {
            let e = ApiError {
                kind: "SerializationException",
                message: format!("the body could not be read: {e}"),
            };
            return error(&e);
        }
    };
    if !model.latency.is_zero() {
        tokio::time::sleep(model.latency).await;
    }
    let result = match request {
        Ok(request) => model.tables.call(&op, &request),
        Err(e) => Err(ApiError {
            kind: "SerializationException",
            message: format!("the body is not JSON: {e}"),
        }),
    };
    model.count(&client, &op, result.as_ref().err().map(|e| e.kind));
    match result {
        Ok(body) => answer(StatusCode::OK, &body),
        Err(e) => error(&e),
    }
}

#[handler]
fn read_counts(model: Data<&Arc<Model>>) -> Json<Counts> {
    Json(
        model
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

/// `GET /landings`'s query.
#[derive(Debug, Deserialize)]
struct LandingsQuery {
    /// The table.
    table: String,
    /// The first landing wanted (0: all); the answer's `next` is where to go on from.
    #[serde(default)]
    from: usize,
}

/// Writes that landed, as `GET /landings` answers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Landings {
    /// (key, Unix-epoch nanoseconds), in the order the writes landed.
    pub landings: Vec<Landing>,
    /// The `from` of the next call.
    pub next: usize,
}

#[handler]
fn read_landings(query: Query<LandingsQuery>, model: Data<&Arc<Model>>) -> Response {
    match model.tables.landings(&query.table, query.from) {
        Ok((landings, next)) => Json(Landings { landings, next }).into_response(),
        Err(e) => error(&e),
    }
}

/// The model's HTTP app.
pub fn app(model: Arc<Model>) -> impl poem::Endpoint {
    Route::new()
        .at("/", post(operation))
        .at("/counts", get(read_counts))
        .at("/landings", get(read_landings))
        .data(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::test::TestClient;

    /// What the model answers on `GET /counts`.
    async fn counts(cli: &TestClient<impl poem::Endpoint>) -> Counts {
        cli.get("/counts")
            .send()
            .await
            .json()
            .await
            .value()
            .deserialize()
    }

    #[tokio::test]
    async fn requests_are_answered_after_the_latency_and_counted_by_client() {
        let model = Model::new(Duration::from_millis(20));
        let cli = TestClient::new(app(Arc::clone(&model)));
        let started = std::time::Instant::now();
        let described = cli
            .post("/")
            .header("x-amz-target", "DynamoDB_20120810.DescribeTable")
            .header("x-amz-user-agent", "aws-sdk-rust/1 app/engine-1 m/E")
            .body(r#"{"TableName":"missing"}"#)
            .send()
            .await;
        assert!(started.elapsed() >= Duration::from_millis(20));
        described.assert_status(StatusCode::BAD_REQUEST);
        let body: Value = described.json().await.value().deserialize();
        assert_eq!(
            body["__type"],
            "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
        );
        let counts = counts(&cli).await;
        assert_eq!(counts.clients["engine-1"]["DescribeTable"], 1);
        assert_eq!(counts.errors["ResourceNotFoundException"], 1);
    }

    #[tokio::test]
    async fn the_window_of_answered_puts_is_counted() {
        let model = Model::new(Duration::from_millis(5));
        let cli = TestClient::new(app(Arc::clone(&model)));
        assert_eq!(counts(&cli).await.puts_between_us, None);
        cli.post("/")
            .header("x-amz-target", "DynamoDB_20120810.CreateTable")
            .body(r#"{"TableName":"t","KeySchema":[{"AttributeName":"PatientId","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"PatientId","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#)
            .send()
            .await
            .assert_status_is_ok();
        for _ in 0..2 {
            cli.post("/")
                .header("x-amz-target", "DynamoDB_20120810.PutItem")
                .body(r#"{"TableName":"t","Item":{"PatientId":{"S":"p1"}}}"#)
                .send()
                .await
                .assert_status_is_ok();
        }
        let [first, last] = counts(&cli).await.puts_between_us.unwrap_or_default();
        // The second put was answered at least one latency after the first.
        assert!(last >= first + 5_000, "{first} µs to {last} µs");
    }
}
