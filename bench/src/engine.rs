//! Ordo's parts assembled in the benchmark's own process, the way the engine assembles them:
//! the ingest app on a local port, and consumers of a topic on any store (the latency model,
//! for one). Used where a figure needs a store the real binary cannot be pointed at, or a
//! consumer's own metrics (the real binary on the wire model is [`crate::process`]'s).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ordo::bus::kafka::{GroupSettings, KafkaConfig};
use ordo::bus::Publisher;
use ordo::ingest::{self, PipelineApi};
use ordo::metrics::{ConsumerMetrics, IngestMetrics, Metrics};
use ordo::pipeline::Applier;
use ordo::plugin::reload::{load_checked, PluginSpec, Reloader};
use ordo::plugin::sandbox::{Capabilities, Limits};
use ordo::plugin::PolicyHandle;
use ordo::store::Store;
use ordo::testing::MemoryStore;

/// The route every benchmark pipeline serves.
pub const ROUTE: &str = "/patientprofile";

/// The patient profile's `plugin_config` as JSON text, as `pipelines.toml` gives it.
pub fn patient_config() -> String {
    serde_json::Value::Object(patient_profile_lww::policy::patient_profile()).to_string()
}

/// The patient profile's `plugin_config` as one line of a pipelines file (the keys that
/// decide; the schema help left out).
pub const PATIENT_PLUGIN_CONFIG: &str = r#"plugin_config = { key_field = "PatientId", version_field = "UpdatedAt", strings_only = true }"#;

/// The built plugins' directory (`make plugins`).
pub fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build")
}

/// The built plugin `file` (in [`plugins_dir`]), loaded and checked as the engine loads it,
/// with the engine's default limits.
pub fn policy(file: &str) -> anyhow::Result<PolicyHandle> {
    let spec = PluginSpec {
        path: plugins_dir().join(file),
        limits: Limits::default(),
        capabilities: Capabilities::default(),
        self_test: None,
        key_field: "PatientId".into(),
        config: patient_config(),
    };
    Ok(PolicyHandle::new(Arc::new(load_checked(&spec)?)))
}

/// The built last-writer-wins plugin, loaded as [`policy`] does.
pub fn lww_policy() -> anyhow::Result<PolicyHandle> {
    policy("patient_profile_lww.wasm")
}

/// Serves the ingest route for `topic` through `publisher` on a free local port, with the
/// engine's default limits; returns the route's URL. The server runs until the runtime ends.
pub async fn serve_ingest<P: Publisher>(publisher: P, topic: &str) -> anyhow::Result<String> {
    let mut pipeline = ordo::testing::pipeline("patient-profile");
    pipeline.route = Some(ROUTE.into());
    pipeline.topic = topic.into();
    let publisher = Arc::new(publisher);
    let api = Arc::new(PipelineApi {
        serves: true,
        pipeline: Arc::new(pipeline),
        policy: lww_policy()?,
        publisher: Arc::clone(&publisher),
        store: MemoryStore::new("PatientId"),
        limits: ingest::Limits {
            body_limit: ingest::DEFAULT_BODY_LIMIT,
            bulk_body_limit: ingest::DEFAULT_BULK_BODY_LIMIT,
            bulk_max_lines: ingest::DEFAULT_BULK_MAX_LINES,
            body_timeout: ingest::DEFAULT_BODY_TIMEOUT,
            produce_timeout: Duration::from_secs(10),
        },
        in_flight: Arc::new(tokio::sync::Semaphore::new(ingest::DEFAULT_MAX_IN_FLIGHT)),
        idempotency: ordo::store::keys::IdempotencyKeys::default(),
        metrics: IngestMetrics::default(),
        auth: None,
        waits: Default::default(),
    });
    let metrics = Metrics::new();
    let reloader = Arc::new(Reloader::new(Vec::new()));
    // No live stream is read here; a dropped trigger ends any at once.
    let (_, shutdown) = ordo::shutdown::channel();
    let live = ordo::operator::live::Live::new(
        ordo::operator::live::LiveSource {
            metrics: metrics.clone(),
            reloader: Arc::clone(&reloader),
            waits: Vec::new(),
        },
        shutdown,
    );
    let admin = ordo::operator::Admin {
        role: ordo::Role::All,
        reloader,
        token: None,
        auth: None,
        live,
        readiness: ordo::operator::ready::Readiness::default(),
    };
    let app = ordo::operator::app(vec![api], publisher, metrics, admin);
    let (acceptor, addr) = crate::local_acceptor().await?;
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    Ok(format!("http://{addr}{ROUTE}"))
}

/// Creates `topic` with `partitions` and its dead-letter topic `<topic>.dlq` (what a
/// [`Member`] reads and writes) when missing.
pub async fn ensure_consumed_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let dlq = format!("{topic}.dlq");
    ordo::bus::kafka::ensure_topics(&KafkaConfig::new(brokers), &[topic, &dlq], partitions, 1)
        .await?;
    Ok(())
}

/// Where a consumer reads: brokers, topic (its dead letters go to `<topic>.dlq`) and group.
pub struct Source<'a> {
    pub brokers: &'a str,
    pub topic: &'a str,
    pub group: String,
    /// Keys applied at once.
    pub concurrency: usize,
    /// The change feed's topic, when the consumer keeps one.
    pub changes_topic: Option<String>,
}

/// One running consumer (what one engine runs per pipeline); stopped by [`Member::stop`].
pub struct Member {
    pub metrics: ConsumerMetrics,
    trigger: ordo::shutdown::Trigger,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Starts Ordo's consumer (`pipeline::consume::run`) on `source`, applying to `store`
    /// through `policy` with an applier and record cache of its own.
    pub fn start<S: Store>(
        source: &Source<'_>,
        policy: &PolicyHandle,
        store: S,
    ) -> anyhow::Result<Self> {
        Self::start_with(source, policy, store, true)
    }

    /// [`Member::start`], with the keys applied at once following the store's latency
    /// (`adaptive`, the default) or fixed at the source's concurrency (as before issue 34).
    pub fn start_with<S: Store>(
        source: &Source<'_>,
        policy: &PolicyHandle,
        store: S,
        adaptive: bool,
    ) -> anyhow::Result<Self> {
        let kafka = KafkaConfig::new(source.brokers);
        let mut pipeline = ordo::testing::pipeline("bench");
        pipeline.adaptive_concurrency = adaptive;
        pipeline.topic = source.topic.into();
        pipeline.consumer_group = source.group.clone();
        pipeline.dead_letter_topic = format!("{}.dlq", source.topic);
        pipeline.concurrency = source.concurrency;
        pipeline.max_attempts = 20;
        pipeline.changes_topic = source.changes_topic.clone();
        let group = GroupSettings {
            pipeline: pipeline.name.clone(),
            group: pipeline.consumer_group.clone(),
            topic: pipeline.topic.clone(),
            // The engine's `--fetch-wait-ms`, as `ORDO_FETCH_WAIT_MS` sets it for a run.
            fetch_wait: Duration::from_millis(crate::setting(
                "ORDO_FETCH_WAIT_MS",
                ordo::bus::kafka::DEFAULT_FETCH_WAIT.as_millis() as usize,
            ) as u64),
        };
        let metrics = ConsumerMetrics::default();
        let (consumer, revoked) = kafka.group(&group, metrics.lag.clone())?;
        let (trigger, shutdown) = ordo::shutdown::channel();
        let applier = Arc::new(
            Applier::new(store, policy.clone(), "PatientId")
                .with_change_feed(pipeline.changes_topic.is_some()),
        );
        let task = tokio::spawn(ordo::pipeline::consume::run(
            consumer,
            revoked,
            Arc::new(pipeline),
            applier,
            Arc::new(kafka.producer(Duration::from_secs(10))?),
            metrics.clone(),
            ordo::pipeline::Waits::new("bench", metrics.clone()),
            shutdown,
        ));
        Ok(Self {
            metrics,
            trigger,
            task,
        })
    }

    /// Stops the consumer and waits for it; its metrics stay readable.
    pub async fn stop(self) -> anyhow::Result<ConsumerMetrics> {
        self.trigger.fire();
        self.task.await?;
        Ok(self.metrics)
    }
}
