//! DynamoDB: clients of the local stack's API (or a private one), items read back, and a
//! private moto server to freeze.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use super::engine::{Engine, EFFECT_TIMEOUT};
use super::stack::{aws_env, cache_dir, free_port, send_signal};

/// A DynamoDB client for the local stack.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    for (k, v) in aws_env() {
        if std::env::var(k).is_err() {
            // Only the test process reads these; set before any client is built.
            unsafe { std::env::set_var(k, v) };
        }
    }
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// A client of the DynamoDB API at `endpoint`.
pub async fn dynamodb_at(endpoint: &str) -> aws_sdk_dynamodb::Client {
    dynamodb().await; // sets the local credentials and region when the environment has none
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// Reads the item for `key`.
pub async fn get_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> Option<HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key("PatientId", AttributeValue::S(key.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem against the local DynamoDB API")
        .item
}

/// Waits until the item for `key` satisfies `done`, and returns it.
pub async fn wait_item(
    engine: &Engine,
    key: &str,
    done: impl Fn(&HashMap<String, AttributeValue>) -> bool,
) -> HashMap<String, AttributeValue> {
    let client = dynamodb().await;
    let deadline = Instant::now() + EFFECT_TIMEOUT;
    loop {
        if let Some(item) = get_item(&client, &engine.names.table, key).await {
            if done(&item) {
                return item;
            }
        }
        assert!(
            Instant::now() < deadline,
            "item {key} never reached the expected state; engine log:\n{}",
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The string value of attribute `name`.
pub fn s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        other => panic!("attribute {name} is not a string: {other:?}"),
    }
}

/// A DynamoDB API of the test's own (moto's server from the stack's virtualenv), to freeze
/// without disturbing the tests that share the stack's. Killed when dropped.
pub struct PrivateDynamo {
    pub endpoint: String,
    child: Child,
}

impl PrivateDynamo {
    pub fn start() -> Self {
        let moto = cache_dir().join("venv/bin/moto_server");
        assert!(
            moto.exists(),
            "{} is missing: run `make local-dev-stack`",
            moto.display()
        );
        let port = free_port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto at {endpoint} never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { endpoint, child }
    }

    /// Sends `signal` (`STOP` freezes it: requests hang; `CONT` thaws it, data intact).
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// A client of this API.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        dynamodb_at(&self.endpoint).await
    }
}

impl Drop for PrivateDynamo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
