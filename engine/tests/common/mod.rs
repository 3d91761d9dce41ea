//! Harness for end-to-end tests: starts the `ordo` binary on a free port with a pipelines file
//! of its own (unique topic, table and group), against the local stack's real servers.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long a test waits for an effect before it fails.
/// Generous: a killed member holds its partitions for the 10 s session timeout.
pub const EFFECT_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Kafka brokers of the local stack.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Environment for the engine and the test's own AWS client, defaulting to the local stack.
fn aws_env() -> [(&'static str, String); 5] {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    [
        ("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID", "test")),
        (
            "AWS_SECRET_ACCESS_KEY",
            var("AWS_SECRET_ACCESS_KEY", "test"),
        ),
        ("AWS_REGION", var("AWS_REGION", "us-east-1")),
        (
            "AWS_ENDPOINT_URL",
            var("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ),
        ("KAFKA_BROKERS", brokers()),
    ]
}

/// The built patient-profile plugin; `make plugins` builds it.
pub fn lww_plugin() -> PathBuf {
    built_plugin("patient_profile_lww")
}

/// The built per-field merge plugin.
pub fn field_merge_plugin() -> PathBuf {
    built_plugin("patient_profile_field_merge")
}

/// The built hostile test fixture.
pub fn hostile_plugin() -> PathBuf {
    built_plugin("hostile")
}

/// `plugins/build/<name>.wasm`, which `make plugins` builds.
pub fn built_plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/build")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make plugins` (or `make test`)",
        path.display()
    );
    path.canonicalize().expect("plugin path canonicalizes")
}

/// A small deterministic generator, so a failing shuffle can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ORDO_TEST_SEED` or the clock; the seed is printed.
    pub fn from_env() -> Self {
        let seed = std::env::var("ORDO_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("ORDO_TEST_SEED={seed}");
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Updates of many patients, each with distinct `UpdatedAt` instants written in mixed UTC
/// offsets; `FirstName` says which update it is.
pub struct Workload {
    /// (patient id, JSON body), in generation order.
    pub events: Vec<(String, String)>,
    /// Per patient, the `FirstName` of its newest update.
    pub newest: HashMap<String, String>,
}

impl Workload {
    pub fn new(rng: &mut Rng, prefix: &str, patients: usize, updates: usize) -> Self {
        use time::format_description::well_known::Rfc3339;
        use time::{OffsetDateTime, UtcOffset};
        let offsets = [(0, 0), (10, 0), (-5, -30), (5, 45)];
        let base = 1_136_214_000_000_000_000i128; // 2006-01-02T15:00:00Z
        let mut events = Vec::new();
        let mut newest = HashMap::new();
        for p in 0..patients {
            let id = format!("{prefix}-{p}");
            // Distinct instants per patient, in random order of generation.
            let mut steps: Vec<i128> = (0..updates as i128).collect();
            rng.shuffle(&mut steps);
            let newest_step = updates as i128 - 1;
            for step in steps {
                let (h, m) = offsets[rng.below(offsets.len())];
                let offset = UtcOffset::from_hms(h, m, 0).expect("offset");
                let instant =
                    OffsetDateTime::from_unix_timestamp_nanos(base + step * 1_000_000 + 123)
                        .expect("instant")
                        .to_offset(offset);
                let stamp = instant.format(&Rfc3339).expect("format");
                let name = format!("v{step}");
                if step == newest_step {
                    newest.insert(id.clone(), name.clone());
                }
                let body = serde_json::json!({
                    "PatientId": id, "FirstName": name, "LastName": "Doe",
                    "IsPregnant": if step % 2 == 0 { "False" } else { "True" }, "UpdatedAt": stamp
                });
                events.push((id.clone(), body.to_string()));
            }
        }
        rng.shuffle(&mut events);
        Self { events, newest }
    }
}

/// Asserts the table holds each patient's newest update.
pub async fn assert_newest(engine: &Engine, newest: &HashMap<String, String>) {
    let client = dynamodb().await;
    let mut wrong = Vec::new();
    for (id, name) in newest {
        match get_item(&client, &engine.names.table, id).await {
            Some(item) if s(&item, "FirstName") == name => {}
            Some(item) => wrong.push(format!("{id}: {} instead of {name}", s(&item, "FirstName"))),
            None => wrong.push(format!("{id}: missing")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} records wrong: {wrong:?}\nengine log:\n{}",
        wrong.len(),
        newest.len(),
        engine.log()
    );
}

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
    /// Starts an engine with one patient-profile pipeline under unique names.
    pub fn start(label: &str) -> Self {
        Self::start_with(Names::unique(label))
    }

    pub fn start_with(names: Names) -> Self {
        Self::start_custom(names, &brokers(), &[])
    }

    /// Starts against `brokers`, with extra command-line arguments.
    pub fn start_custom(names: Names, brokers: &str, args: &[&str]) -> Self {
        Self::start_configured(names, brokers, args, &lww_plugin(), "")
    }

    /// Starts with `plugin` and `extra` lines appended to the pipeline's table.
    pub fn start_configured(
        names: Names,
        brokers: &str,
        args: &[&str],
        plugin: &Path,
        extra: &str,
    ) -> Self {
        Self::start_full(names, brokers, args, plugin, extra, &[])
    }

    /// As [`Engine::start_configured`], with environment variables overriding the defaults
    /// (e.g. `AWS_ENDPOINT_URL` of a private DynamoDB API).
    pub fn start_full(
        names: Names,
        brokers: &str,
        args: &[&str],
        plugin: &Path,
        extra: &str,
        env: &[(&str, String)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("pipelines.toml");
        std::fs::write(
            &config,
            format!(
                r#"[pipelines.{pipeline}]
route = "/patientprofile"
topic = "{topic}"
key_field = "PatientId"
version_field = "UpdatedAt"
table = "{table}"
plugin = "{plugin}"
partitions = 3
consumer_group = "{group}"
max_attempts = 5
{extra}
"#,
                pipeline = names.pipeline,
                topic = names.topic,
                table = names.table,
                group = names.group,
                plugin = plugin.display(),
            ),
        )
        .expect("write pipelines.toml");
        let log = dir.path().join("engine.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([
                "--config",
                &config.display().to_string(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .envs(aws_env())
            .env("KAFKA_BROKERS", brokers)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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
        Self {
            names,
            url,
            brokers: brokers.to_string(),
            child,
            _dir: dir,
            log,
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

    /// How many messages the pipeline's topic holds, over all partitions.
    pub fn topic_size(&self) -> i64 {
        topic_size(&self.brokers, &self.names.topic)
    }

    /// Waits until the consumer group committed past `offset` on `partition`.
    pub async fn wait_committed_past(&self, partition: i32, offset: i64) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.names.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offset reader");
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
}

impl Engine {
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

/// How many messages `topic` (3 partitions, as the harness creates them) holds.
pub fn topic_size(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("watermark reader");
    (0..3)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(10)))
                .expect("watermarks from the broker");
            high - low
        })
        .sum()
}

/// Produces `payload` keyed by `key` straight to `topic`, as another service would.
pub async fn produce_raw(topic: &str, key: &str, payload: &str) -> (i32, i64) {
    static PRODUCER: std::sync::OnceLock<FutureProducer> = std::sync::OnceLock::new();
    let producer = PRODUCER.get_or_init(|| {
        ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .create()
            .expect("test producer")
    });
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .expect("broker acknowledges");
    (delivery.partition, delivery.offset)
}

/// A broker of the test's own (tansu from the stack's cache), to stop without disturbing the
/// tests that share the stack's broker. Killed when dropped.
pub struct PrivateBroker {
    pub address: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// Sends `signal` (e.g. `HUP`, `STOP`) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The stack's cache folder (`ORDO_CACHE`, else `~/.cache/ordo`).
pub fn cache_dir() -> PathBuf {
    std::env::var("ORDO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ordo")
        })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PrivateBroker {
    pub fn start() -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let mut broker = Self {
            address,
            child: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.restart();
        broker
    }

    /// Starts the broker (again) on the same address with the same storage, and waits until
    /// it answers.
    pub fn restart(&mut self) {
        let tansu = cache_dir().join("tansu/bin/tansu");
        assert!(
            tansu.exists(),
            "{} is missing: run `make local-dev-stack`",
            tansu.display()
        );
        let child = Command::new(tansu)
            .arg("broker")
            .current_dir(self._dir.path())
            .env("STORAGE_ENGINE", "sqlite://tansu.db")
            .env("LISTENER_URL", format!("tcp://{}", self.address))
            .env("ADVERTISED_LISTENER_URL", format!("tcp://{}", self.address))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let broker = &*self;
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .create()
            .expect("metadata client");
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        while probe
            .fetch_metadata(None, Timeout::After(Duration::from_secs(1)))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private broker at {} never answered",
                broker.address
            );
        }
    }

    /// Sends `signal` to the broker (`STOP` freezes it, `CONT` thaws it).
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            send_signal(child.id(), signal);
        }
    }

    /// Stops the broker (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A dead letter: (original offset, `ordo-reason`, `ordo-pipeline`, `ordo-original-topic`).
pub type Letter = (i64, String, String, String);

/// Reads `n` messages from the engine's dead-letter topic, sorted by original offset.
pub async fn read_dead_letters(engine: &Engine, n: usize) -> Vec<Letter> {
    use rdkafka::consumer::StreamConsumer;
    use rdkafka::message::{Headers, Message};
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{}-dlq-reader", engine.names.group))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq reader");
    reader
        .subscribe(&[&format!("{}.dlq", engine.names.topic)])
        .expect("subscribe");
    let mut letters = Vec::new();
    while letters.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("dead letters arrive")
            .expect("readable");
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        letters.push((
            header("ordo-original-offset")
                .parse::<i64>()
                .expect("offset header"),
            header("ordo-reason"),
            header("ordo-pipeline"),
            header("ordo-original-topic"),
        ));
    }
    letters.sort();
    letters
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

/// The `ordo` binary as a command, with the local stack's AWS settings unless the environment
/// has its own.
pub fn ordo_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command.envs(aws_env()).env("NO_COLOR", "1");
    command
}
