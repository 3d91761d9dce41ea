//! The model as a bench starts it: the `model_dynamo` program as a child process (so engines
//! in other processes share it, and its work is not the bench's), with what the bench reads
//! from it: request counts and the instants writes landed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::server::{Counts, Landings};

/// The `model_dynamo` program: `ORDO_MODEL_BIN`, else the one beside the running bench.
fn model_bin() -> anyhow::Result<PathBuf> {
    crate::sibling_bin(
        "ORDO_MODEL_BIN",
        "model_dynamo",
        "cargo build -p ordo-bench --bins",
    )
}

/// A running model; killed when dropped (and it exits by itself when the bench's end of its
/// standard input closes, should the bench die without dropping it).
pub struct ModelProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL` is set to for its clients.
    pub url: String,
    http: reqwest::Client,
}

impl ModelProcess {
    /// Starts the model on a free local port, every request taking `latency`.
    pub fn start(latency: Duration) -> anyhow::Result<Self> {
        let bin = model_bin()?;
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--latency-us"])
            .arg(latency.as_micros().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let url = crate::process::announced(&mut child, "the model", "model_dynamo listening on ")?;
        Ok(Self {
            child,
            url,
            http: reqwest::Client::new(),
        })
    }

    /// The environment that points an AWS SDK client at the model, as client `app` (what
    /// [`Counts::clients`](super::server::Counts::clients) counts it under).
    pub fn client_env(&self, app: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "model"),
            ("AWS_SECRET_ACCESS_KEY", "model"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_SDK_UA_APP_ID", app),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The model process's id (for its CPU use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the model has counted so far.
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        let answer = self
            .http
            .get(format!("{}/counts", self.url))
            .send()
            .await
            .context("ask the model for its counts")?;
        answer.json().await.context("the model's counts")
    }

    /// The writes that landed in `table` from the `from`-th on.
    pub async fn landings(&self, table: &str, from: usize) -> anyhow::Result<Landings> {
        let answer = self
            .http
            .get(format!("{}/landings", self.url))
            .query(&[("table", table), ("from", &from.to_string())])
            .send()
            .await
            .context("ask the model for its landings")?;
        anyhow::ensure!(
            answer.status().is_success(),
            "the model answered {} for the landings of {table}",
            answer.status()
        );
        answer.json().await.context("the model's landings")
    }
}

impl Drop for ModelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
