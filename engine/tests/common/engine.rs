//! The engine under test: the real `ordo` binary, started by [`EngineBuilder`] on a free port
//! with a pipelines file of its own, and what a test does with it (POST, GET, signals, wait for
//! commits).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::kafka::{brokers, topic_size};
use super::stack::{aws_env, lww_plugin, send_signal};

/// How long a test waits for an effect before it fails.
/// Generous: a killed member holds its partitions for the 10 s session timeout.
pub const EFFECT_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Names no other test run uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub pipeline: String,
    pub topic: String,
    pub table: String,
    pub group: String,
}

impl Names {
    pub fn unique(label: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!(
            "{label}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        );
        Self {
            pipeline: "patient-profile".into(),
            topic: format!("test.{id}"),
            table: format!("test-{id}"),
            group: format!("test.{id}"),
        }
    }
}

/// How an engine is started: names, brokers, flags, plugin, extra pipeline keys, environment.
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    names: Names,
    brokers: String,
    args: Vec<String>,
    plugin: PathBuf,
    extra: String,
    env: Vec<(String, String)>,
    routeless: bool,
    unconfigured: bool,
}

impl EngineBuilder {
    /// Without a `plugin_config` table, as a pipelines file written before plugins took one.
    pub fn unconfigured(mut self) -> Self {
        self.unconfigured = true;
        self
    }

    /// Without a route: the pipeline consumes a topic that exists already (created by the
    /// test, as another service would), and Ordo neither creates nor produces to it.
    pub fn routeless(mut self) -> Self {
        self.routeless = true;
        self
    }

    /// Against `brokers` instead of the local stack's.
    pub fn brokers(mut self, brokers: &str) -> Self {
        self.brokers = brokers.to_string();
        self
    }

    /// With extra command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// With `plugin` instead of the built last-writer-wins plugin.
    pub fn plugin(mut self, plugin: &Path) -> Self {
        self.plugin = plugin.to_path_buf();
        self
    }

    /// With `lines` appended to the pipeline's table.
    pub fn extra(mut self, lines: &str) -> Self {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }

    /// With environment variable `key` set to `value` (e.g. `AWS_ENDPOINT_URL` of a private
    /// DynamoDB API).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The pipelines file [`EngineBuilder::start`] writes, as text (a test may write it
    /// itself to run other commands on it).
    pub fn config_text(&self) -> String {
        format!(
            r#"[pipelines.{pipeline}]
{owned}topic = "{topic}"
key_field = "PatientId"
version_field = "UpdatedAt"
table = "{table}"
plugin = "{plugin}"
consumer_group = "{group}"
{config}
{extra}

[idempotency]
table = "{table}-idempotency"

[audit]
topic = "{topic}.audit"
"#,
            pipeline = self.names.pipeline,
            owned = if self.routeless {
                ""
            } else {
                "route = \"/patientprofile\"\npartitions = 3\n"
            },
            topic = self.names.topic,
            table = self.names.table,
            group = self.names.group,
            plugin = self.plugin.display(),
            config = if self.unconfigured {
                String::new()
            } else {
                super::stack::patient_plugin_config()
            },
            extra = self.extra,
        )
    }

    /// Writes the pipelines file, starts the binary and waits until it serves. Engines of
    /// the same [`Names`] share their Idempotency-Key table and their audit topic
    /// (`<topic>.audit`); others never see them.
    pub fn start(self) -> Engine {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("pipelines.toml");
        std::fs::write(&config, self.config_text()).expect("write pipelines.toml");
        let names = self.names;
        let log = dir.path().join("engine.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([
                "--config",
                &config.display().to_string(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(&self.args)
            .envs(aws_env())
            .env("KAFKA_BROKERS", &self.brokers)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ORDO_LOG", "info,ordo=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the ordo binary");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Ordo listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "engine did not start (is the local stack up? `make local-dev-stack`); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Engine {
            names,
            url,
            brokers: self.brokers,
            child,
            _dir: dir,
            log,
        }
    }
}

/// A running engine; killed when dropped.
pub struct Engine {
    pub names: Names,
    pub url: String,
    /// The brokers it was started against.
    pub brokers: String,
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Engine {
    /// The peak resident set of the engine's process so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the engine's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// Starts an engine with one patient-profile pipeline under unique names, on the local
    /// stack, with the built last-writer-wins plugin.
    pub fn start(label: &str) -> Self {
        Self::builder(Names::unique(label)).start()
    }

    /// An engine to be started under `names`, by default on the local stack with the built
    /// last-writer-wins plugin.
    pub fn builder(names: Names) -> EngineBuilder {
        EngineBuilder {
            names,
            brokers: brokers(),
            args: Vec::new(),
            plugin: lww_plugin(),
            extra: String::new(),
            env: Vec::new(),
            routeless: false,
            unconfigured: false,
        }
    }

    /// The pipelines file it runs.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("pipelines.toml")
    }

    /// The engine's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `body` as JSON to the pipeline's route.
    pub async fn post(&self, body: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/patientprofile", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST reaches the engine");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// POSTs `body`, expects 202, and returns where the event went.
    pub async fn post_accepted(&self, body: &str) -> (i32, i64) {
        let (status, accepted) = self.post(body).await;
        assert_eq!(status, 202, "{accepted}");
        let field = |name: &str| {
            accepted[name]
                .as_i64()
                .unwrap_or_else(|| panic!("no {name} in {accepted}"))
        };
        (field("partition") as i32, field("offset"))
    }

    /// The audit topic the harness gives the engine.
    pub fn audit_topic(&self) -> String {
        format!("{}.audit", self.names.topic)
    }

    /// How many messages the pipeline's topic holds, over all partitions.
    pub fn topic_size(&self) -> i64 {
        topic_size(&self.brokers, &self.names.topic)
    }

    /// A client of the pipeline's group that reads its committed offsets and joins nothing.
    fn offset_reader(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.names.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offset reader")
    }

    /// The group's committed offset of each partition of the pipeline's topic, as the broker
    /// holds it now.
    pub fn committed(&self) -> HashMap<i32, i64> {
        let consumer = self.offset_reader();
        let metadata = consumer
            .fetch_metadata(Some(&self.names.topic), Duration::from_secs(10))
            .expect("topic metadata");
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition(&self.names.topic, p.id());
        }
        let committed = consumer
            .committed_offsets(tpl, Timeout::After(Duration::from_secs(10)))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }

    /// Waits until the consumer group committed past `offset` on `partition`.
    pub async fn wait_committed_past(&self, partition: i32, offset: i64) {
        let consumer = self.offset_reader();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.names.topic, partition);
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        loop {
            let committed = consumer
                .committed_offsets(tpl.clone(), Timeout::After(Duration::from_secs(5)))
                .ok()
                .and_then(|t| {
                    t.find_partition(&self.names.topic, partition)
                        .map(|p| p.offset())
                });
            if let Some(Offset::Offset(o)) = committed {
                if o > offset {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "offset {offset} of partition {partition} never committed; engine log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process with SIGKILL: no drain, no final commit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// GETs `path` and returns the status and the body as JSON (null when it is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET reaches the engine");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// GETs `path` as text.
    pub async fn get_text(&self, path: &str) -> String {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET reaches the engine")
            .text()
            .await
            .expect("text body")
    }

    /// The value of the sample `name{pipeline="<pipeline>"<labels>}` in the engine's
    /// `/metrics` (`labels`: more labels, each starting with a comma).
    pub async fn metric(&self, name: &str, labels: &str) -> u64 {
        let sample = format!("{name}{{pipeline=\"{}\"{labels}}} ", self.names.pipeline);
        self.get_text("/metrics")
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&sample))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        send_signal(self.child.id(), "TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "engine still running {within:?} after SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the group committed everything the pipeline's topic holds now.
    pub async fn wait_caught_up(&self) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .expect("watermark reader");
        let metadata = consumer
            .fetch_metadata(Some(&self.names.topic), Duration::from_secs(10))
            .expect("topic metadata");
        let partitions = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or_default();
        for p in 0..partitions as i32 {
            let (_, high) = consumer
                .fetch_watermarks(&self.names.topic, p, Duration::from_secs(10))
                .expect("watermarks");
            if high > 0 {
                self.wait_committed_past(p, high - 1).await;
            }
        }
    }

    /// Waits until the group committed past every `(partition, offset)`.
    pub async fn wait_all_committed(&self, produced: &[(i32, i64)]) {
        let mut highest: HashMap<i32, i64> = HashMap::new();
        for &(p, o) in produced {
            let h = highest.entry(p).or_insert(o);
            *h = (*h).max(o);
        }
        for (p, o) in highest {
            self.wait_committed_past(p, o).await;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `[auth]` table of API keys: (name, the key itself, scopes); only the keys' SHA-256 is
/// written, as in a real file.
pub fn api_keys_table(keys: &[(&str, &str, &[&str])]) -> String {
    use sha2::Digest as _;
    let mut table = String::from("[auth]\n");
    for (name, key, scopes) in keys {
        let hash: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
        table += &format!(
            "[[auth.api_keys]]\nname = \"{name}\"\nsha256 = \"{hash}\"\nscopes = [{}]\n",
            scopes.join(", ")
        );
    }
    table
}

/// Writes `head` (a raw HTTP/1.1 request, or its start) to `stream` and returns the first
/// bytes of the answer as text, waiting at most 10 s.
pub async fn first_answer(stream: &mut tokio::net::TcpStream, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(head).await.expect("write the request");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered in time")
        .expect("read the answer");
    String::from_utf8_lossy(&answer[..n]).to_string()
}
