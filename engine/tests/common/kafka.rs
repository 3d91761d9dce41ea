//! Kafka: the local stack's brokers, messages produced as another service would, dead letters
//! read back, and a private broker to stop and restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use super::engine::{Engine, EFFECT_TIMEOUT};
use super::stack::{cache_dir, free_port, send_signal};

/// Kafka brokers of the local stack.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
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
    produce_with_id(topic, key, payload, None).await
}

/// As [`produce_raw`], with the request id `id` in the `ordo-request-id` header.
pub async fn produce_with_id(
    topic: &str,
    key: &str,
    payload: &str,
    id: Option<&str>,
) -> (i32, i64) {
    let headers: Vec<(&str, &str)> = id.map(|id| ("ordo-request-id", id)).into_iter().collect();
    produce_with_headers(topic, key, payload, &headers).await
}

/// As [`produce_raw`], with `headers` (name, value) on the event.
pub async fn produce_with_headers(
    topic: &str,
    key: &str,
    payload: &str,
    headers: &[(&str, &str)],
) -> (i32, i64) {
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
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if !headers.is_empty() {
        let mut owned = rdkafka::message::OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(rdkafka::message::Header {
                key: name,
                value: Some(*value),
            });
        }
        record = record.headers(owned);
    }
    let delivery = producer
        .send(record, Timeout::After(Duration::from_secs(10)))
        .await
        .expect("broker acknowledges");
    (delivery.partition, delivery.offset)
}

/// Creates `topic` with `partitions`, as the service that owns it would.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topics request");
    for result in created {
        result.expect("topic created");
    }
}

/// Produces `payload` to `partition` of `topic` without a key, as a producer that keys
/// nothing would: the Profile service of the project's story. Returns its offset.
pub async fn produce_unkeyed(brokers: &str, topic: &str, partition: i32, payload: &str) -> i64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .expect("plain producer");
    let record: FutureRecord<'_, (), str> = FutureRecord::to(topic)
        .partition(partition)
        .payload(payload);
    let delivery = producer
        .send(record, Timeout::After(Duration::from_secs(10)))
        .await
        .expect("broker acknowledges");
    assert_eq!(delivery.partition, partition);
    delivery.offset
}

/// A broker of the test's own (tansu from the stack's cache), to stop without disturbing the
/// tests that share the stack's broker. Killed when dropped.
pub struct PrivateBroker {
    /// Where it listens (plain Kafka).
    pub address: String,
    /// Where it tells clients to connect (its metadata): `address`, or a TLS front's.
    pub advertised: String,
    /// Extra arguments of `tansu broker` (e.g. `--authentication`).
    args: Vec<String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        Self::start_advertising(&address.clone(), &address, &[])
    }

    /// A broker listening on `address` whose metadata sends clients to `advertised` (a TLS
    /// front's address, say), run with the extra `args`.
    pub fn start_advertising(address: &str, advertised: &str, args: &[&str]) -> Self {
        let mut broker = Self {
            address: address.to_string(),
            advertised: advertised.to_string(),
            args: args.iter().map(ToString::to_string).collect(),
            child: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        broker.restart();
        broker
    }

    /// Runs `tansu` with `args` beside the broker (its `user` and `topic` commands).
    pub fn tansu(&self, args: &[&str]) -> std::process::Output {
        Command::new(cache_dir().join("tansu/bin/tansu"))
            .args(args)
            .current_dir(self._dir.path())
            .output()
            .expect("run tansu")
    }

    /// The extra arguments of the next (re)start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(ToString::to_string).collect();
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
            .args(&self.args)
            .current_dir(self._dir.path())
            .env("STORAGE_ENGINE", "sqlite://tansu.db")
            .env("LISTENER_URL", format!("tcp://{}", self.address))
            .env(
                "ADVERTISED_LISTENER_URL",
                format!("tcp://{}", self.advertised),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        self.wait_ready();
        self.index();
    }

    /// Waits until the broker answers (listens, when it asks for credentials).
    fn wait_ready(&self) {
        let broker = self;
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        let never = || format!("private broker at {} never answered", broker.address);
        if broker.args.iter().any(|a| a == "--authentication") {
            // Metadata needs credentials there: listening is what can be awaited.
            while std::net::TcpStream::connect(&broker.address).is_err() {
                assert!(Instant::now() < deadline, "{}", never());
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        // A client per attempt: one whose late answer taught it the advertised address (a TLS
        // front's, say) would ask there afterwards, in plain Kafka, forever.
        loop {
            let probe: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &broker.address)
                .create()
                .expect("metadata client");
            if probe
                .fetch_metadata(None, Timeout::After(Duration::from_secs(1)))
                .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "{}", never());
        }
    }

    /// Adds the header index tansu 0.6's schema lacks to this broker's database, as
    /// `devstack/stack.sh` does for the stack's broker (see `devstack/tansu_index.py`; an index
    /// changes no answer). Without it tansu scans the whole header table for each record it
    /// fetches, so reading a topic from its start costs records × headers: 36,000 events with
    /// two headers each took more than 60 s for the first fetch answer, and the checker's
    /// `read_all` gave up after a soak having read nothing (12,000 took 14 s, 18,000 31 s; with
    /// the index 36,000 take about a second).
    fn index(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devstack/tansu_index.py");
        let db = self._dir.path().join("tansu.db");
        let deadline = Instant::now() + EFFECT_TIMEOUT;
        loop {
            let out = Command::new("python3")
                .arg(&script)
                .arg(&db)
                .output()
                .expect("run python3 devstack/tansu_index.py");
            if out.status.success() && db.exists() {
                return;
            }
            // The schema may not be written yet when the broker first listens.
            assert!(
                Instant::now() < deadline,
                "could not index {}: {}",
                db.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
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

/// A dead letter as read from the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Letter {
    /// `ordo-original-partition`.
    pub partition: i32,
    /// `ordo-original-offset`.
    pub offset: i64,
    /// `ordo-reason`.
    pub reason: String,
    /// `ordo-pipeline`.
    pub pipeline: String,
    /// `ordo-original-topic`.
    pub topic: String,
    /// `ordo-event-left-out`: why the event is not in the letter (empty when it is).
    pub left_out: String,
    /// Bytes of the letter's payload (the event, or nothing).
    pub payload_len: usize,
    /// Bytes of all its header values together.
    pub headers_len: usize,
}

/// Reads `n` messages from the engine's dead-letter topic, sorted by original partition and
/// offset.
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
        letters.push(Letter {
            partition: header("ordo-original-partition")
                .parse::<i32>()
                .expect("partition header"),
            offset: header("ordo-original-offset")
                .parse::<i64>()
                .expect("offset header"),
            reason: header("ordo-reason"),
            pipeline: header("ordo-pipeline"),
            topic: header("ordo-original-topic"),
            left_out: header("ordo-event-left-out"),
            payload_len: message.payload().map_or(0, <[u8]>::len),
            headers_len: message.headers().map_or(0, |h| {
                h.iter().map(|x| x.value.map_or(0, <[u8]>::len)).sum()
            }),
        });
    }
    letters.sort();
    letters
}

/// Reads JSON messages of `topic` from its start until `enough` holds for what was read
/// (within 30 s).
pub async fn read_json_until(
    brokers: &str,
    topic: &str,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    use rdkafka::consumer::StreamConsumer;
    use rdkafka::message::Message;
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[topic]).expect("subscribe");
    let mut read = Vec::new();
    while !enough(&read) {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: not enough after 30 s: {read:#?}"))
            .expect("readable");
        if let Some(payload) = message.payload() {
            read.push(serde_json::from_slice(payload).expect("JSON"));
        }
    }
    read
}

/// Every JSON message `topic` holds now, from its start to its end as the broker reports it
/// when called.
pub fn read_all_json(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    read_all(brokers, topic)
        .iter()
        .map(|m| m.json().expect("JSON"))
        .collect()
}

/// A message as read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    /// Its partition.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its key, when it has one.
    pub key: Option<Vec<u8>>,
    /// Its body.
    pub payload: Vec<u8>,
    /// Its headers (values as text).
    pub headers: Vec<(String, String)>,
}

impl Read {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// Every message `topic` holds now, from its start to its end as the broker reports it when
/// called (none when the topic does not exist).
pub fn read_all(brokers: &str, topic: &str) -> Vec<Read> {
    use rdkafka::message::{Headers as _, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-all-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        // tansu holds a fetch for its whole wait even when data is there.
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(10)))
        .expect("metadata from the broker");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends = std::collections::HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(10)))
            .expect("watermarks from the broker");
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut read = Vec::new();
    // However long the topic: it fails only when nothing arrives for a while. A partition is
    // read once a message at or past its end arrived, or the client's position passed its end
    // (offsets the broker skipped, as after a restart, are no messages).
    let mut deadline = Instant::now() + EFFECT_TIMEOUT;
    let mut last: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    while !ends.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            if let Ok(positions) = consumer.position() {
                for e in positions.elements() {
                    if let Offset::Offset(at) = e.offset() {
                        if ends.get(&e.partition()).is_some_and(|end| at >= *end) {
                            ends.remove(&e.partition());
                        }
                    }
                }
            }
            assert!(
                ends.is_empty() || Instant::now() < deadline,
                "{topic}: partitions {ends:?} not read to their end (nothing for {EFFECT_TIMEOUT:?}; last read {last:?}, positions {:?})",
                consumer.position().map(|p| p.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>())
            );
            continue;
        };
        deadline = Instant::now() + EFFECT_TIMEOUT;
        let message = message.expect("readable");
        read.push(Read {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            let value = x.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (x.key.to_string(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        last.insert(message.partition(), message.offset());
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
    }
    read
}
