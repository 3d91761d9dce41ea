//! Config → running parts. [`build`] turns one checked [`Pipeline`] into everything that runs
//! it (its plugin slot, its topics and table, its HTTP side and its apply loop), the way
//! vector's `SinkConfig::build` turns a sink's config into a running sink. [`Shared`] is what
//! every pipeline's parts share: one producer, one DynamoDB client, one metrics registry, one
//! budget of requests in flight. [`Engine`] is every pipeline built and running, with the
//! operator's side over them: what `run` serves, then drains.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::error;

use crate::auth::Auth;
use crate::bus::kafka::{self, GroupSettings, KafkaConfig, KafkaPublisher};
use crate::bus::Publisher as _;
use crate::config::Pipeline;
use crate::ingest::{self, PipelineApi};
use crate::metrics::Metrics;
use crate::operator::{self, live, Admin};
use crate::pipeline::{self, Applier};
use crate::plugin::reload::{Reloader, Slot};
use crate::shutdown::Shutdown;
use crate::store::dynamo::{self, DynamoStore};
use crate::store::keys::{DynamoKeys, IdempotencyKeys};
use crate::{config, Error, Settings};

/// How long shutdown waits for the producer to flush.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every pipeline's parts share.
pub struct Shared {
    /// How Kafka clients are built.
    pub kafka: KafkaConfig,
    /// The one producer: ingest and dead letters.
    pub publisher: Arc<KafkaPublisher>,
    /// The one DynamoDB client (it pools connections).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The one registry `/metrics` renders.
    pub metrics: Metrics,
    /// Ingest requests in flight, over every pipeline.
    pub in_flight: Arc<Semaphore>,
    /// Body size and ack wait of every ingest request.
    pub limits: ingest::Limits,
    /// Longest a consumer's fetch waits.
    pub fetch_wait: Duration,
    /// Who may call the pipelines' routes; `None` without `[auth]`.
    pub auth: Option<Arc<Auth>>,
    /// What this process does: serve the routes, apply, or both.
    pub role: crate::Role,
}

impl Shared {
    /// The clients and budgets `settings` describe (creating clients does not connect).
    pub async fn new(
        settings: &Settings,
        kafka: &crate::config::kafka::KafkaProperties,
        auth: Option<Arc<Auth>>,
    ) -> Result<Self, Error> {
        let kafka = KafkaConfig::new(&settings.brokers).with_properties(kafka);
        let publisher = kafka
            .producer(kafka::DEFAULT_DELIVERY_TIMEOUT)
            .map_err(|source| Error::bus("*", &kafka, source))?;
        Ok(Self {
            publisher: Arc::new(publisher),
            kafka,
            dynamodb: dynamo::client().await,
            metrics: Metrics::new(),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            limits: ingest::Limits {
                body_limit: settings.body_limit,
                bulk_body_limit: settings.bulk_body_limit,
                bulk_max_lines: settings.bulk_max_lines,
                body_timeout: settings.body_timeout,
                produce_timeout: settings.produce_timeout,
            },
            fetch_wait: settings.fetch_wait,
            auth,
            role: settings.role,
        })
    }
}

/// A pipeline's apply loop, ready to spawn.
pub type ApplyLoop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One pipeline, built.
pub struct Built {
    /// Its plugin, loaded and in force, for the reloader.
    pub slot: Slot,
    /// Its HTTP side.
    pub api: Arc<PipelineApi<KafkaPublisher, DynamoStore>>,
    /// Its consumer group member and apply loop, running until shutdown once spawned.
    pub apply: ApplyLoop,
}

/// Makes `pipeline`'s topics ready and returns its event topic's partition count. A
/// pipeline with a route owns its event topic: created with its `partitions` and
/// `topic_config` unless it exists. A route-less one does not: the topic must exist, and
/// Ordo reads its partitions from the brokers and never changes it. The dead-letter, change
/// and audit topics are Ordo's, created as the cluster's defaults with as many partitions.
/// The engine does so at its start, and `ordo load` before loading (a backfill may come
/// before any engine ran).
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    pipeline: &Pipeline,
) -> Result<i32, crate::bus::BusError> {
    let partitions = if pipeline.owns_topic() {
        kafka::ensure_topic_with(
            kafka,
            &pipeline.topic,
            pipeline.partitions,
            pipeline.replication_factor,
            &pipeline.topic_config,
        )
        .await?;
        pipeline.partitions
    } else {
        kafka::partition_count(kafka, &pipeline.topic)
            .await?
            .ok_or_else(|| crate::bus::BusError::Admin {
                topic: pipeline.topic.clone(),
                reason: "it does not exist; a pipeline without a `route` consumes a topic other services produce, and Ordo does not create it (create it, or give the pipeline a route)".into(),
            })?
    };
    let mut topics = vec![pipeline.dead_letter_topic.as_str()];
    topics.extend(pipeline.changes_topic.as_deref());
    topics.extend(pipeline.audit_topic.as_deref());
    kafka::ensure_topics(kafka, &topics, partitions, pipeline.replication_factor).await?;
    Ok(partitions)
}

/// Builds `pipeline`: loads and self-tests its plugin, creates its topics and table when
/// missing, joins its consumer group. Nothing runs until the caller spawns [`Built::apply`]
/// and serves [`Built::api`].
pub async fn build(
    pipeline: Pipeline,
    shared: &Shared,
    shutdown: &Shutdown,
) -> Result<Built, Error> {
    let p = Arc::new(pipeline);
    let metrics = &shared.metrics;
    let slot = Slot::load(&p.name, p.plugin_spec(), metrics.plugin(&p.name)).map_err(|source| {
        Error::Plugin {
            pipeline: p.name.clone(),
            source,
        }
    })?;
    let bus_error = |source| Error::bus(&p.name, &shared.kafka, source);
    let _partitions = ensure_topics(&shared.kafka, &p).await.map_err(bus_error)?;
    let store = DynamoStore::new(shared.dynamodb.clone(), &p.table, &p.key_field)
        .with_metrics(metrics.store(&p.name))
        .with_table_options(p.table_options.clone());
    let table = if p.create_tables {
        store.ensure_table().await
    } else {
        store.require_table().await
    };
    table.map_err(|source| Error::Store {
        pipeline: p.name.clone(),
        source,
    })?;
    let keys = DynamoKeys::new(
        shared.dynamodb.clone(),
        &p.idempotency.table,
        &p.name,
        p.idempotency.window,
    );
    keys.prepare(p.create_tables)
        .await
        .map_err(|source| Error::Store {
            pipeline: p.name.clone(),
            source,
        })?;
    let policy = slot.handle().clone();
    // Metrics follow the role: a process that does not apply shows no consumer series, one
    // that serves no route no ingest series.
    let role = shared.role;
    let consumer_metrics = if role.applies() {
        metrics.consumer(&p.name)
    } else {
        crate::metrics::ConsumerMetrics::default()
    };
    let waits = pipeline::Waits::new(&p.name, consumer_metrics.clone());
    let apply: ApplyLoop = if role.applies() {
        let applier = Applier::new(store.clone(), policy.clone(), &p.key_field)
            .with_key_source(p.key_source)
            .with_change_feed(p.changes_topic.is_some())
            .with_cache(p.cache_records)
            .with_version_skew(&p.version_field, p.max_version_skew);
        let group = GroupSettings {
            pipeline: p.name.clone(),
            group: p.consumer_group.clone(),
            topic: p.topic.clone(),
            fetch_wait: shared.fetch_wait,
        };
        let (consumer, revoked) = shared
            .kafka
            .group(&group, consumer_metrics.lag.clone())
            .map_err(bus_error)?;
        Box::pin(pipeline::consume::run(
            consumer,
            revoked,
            Arc::clone(&p),
            Arc::new(applier),
            Arc::clone(&shared.publisher),
            consumer_metrics,
            waits.clone(),
            shutdown.clone(),
        ))
    } else {
        Box::pin(async {})
    };
    let serves = role.ingests() && p.route.is_some();
    let api = Arc::new(PipelineApi {
        serves,
        metrics: if serves {
            metrics.ingest(&p.name)
        } else {
            crate::metrics::IngestMetrics::default()
        },
        pipeline: p,
        policy,
        publisher: Arc::clone(&shared.publisher),
        store,
        limits: shared.limits,
        in_flight: Arc::clone(&shared.in_flight),
        idempotency: IdempotencyKeys::new(keys),
        auth: shared.auth.clone(),
        waits,
    });
    Ok(Built { slot, api, apply })
}

/// Every pipeline of a configuration, built and running: their apply loops spawned, their
/// plugins watched, readiness probed.
pub struct Engine {
    apis: Vec<Arc<PipelineApi<KafkaPublisher, DynamoStore>>>,
    applying: Vec<JoinHandle<()>>,
    admin: Admin,
    shared: Shared,
}

impl Engine {
    /// Builds every pipeline of `config` (see [`build`]) and starts them, until `shutdown`.
    pub async fn start(
        settings: &Settings,
        config: config::Config,
        shutdown: &Shutdown,
    ) -> Result<Self, Error> {
        let auth = match &config.auth {
            Some(auth) => Some(Arc::new(Auth::new(auth).await?)),
            None => None,
        };
        let shared = Shared::new(settings, &config.kafka, auth.clone()).await?;
        let (mut slots, mut apis, mut applying) = (Vec::new(), Vec::new(), Vec::new());
        for pipeline in config.pipelines {
            if !settings.role.applies() && pipeline.route.is_none() {
                tracing::info!(pipeline = %pipeline.name, role = settings.role.as_str(), "Pipeline without a route left to the engines that apply.");
                continue;
            }
            let built = build(pipeline, &shared, shutdown).await?;
            slots.push(built.slot);
            apis.push(built.api);
            applying.push(tokio::spawn(built.apply));
        }
        let reloader = Arc::new(Reloader::new(slots));
        reloader.spawn_triggers(shutdown);
        let source = live::LiveSource {
            metrics: shared.metrics.clone(),
            reloader: Arc::clone(&reloader),
            waits: apis
                .iter()
                .map(|a| (a.pipeline.name.clone(), a.waits.clone()))
                .collect(),
        };
        let admin = Admin {
            role: settings.role,
            reloader,
            token: settings.admin_token.clone(),
            auth,
            live: live::Live::new(source, shutdown.clone()),
            readiness: operator::ready::Readiness::default(),
        };
        tokio::spawn(operator::ready::probe(
            admin.readiness.clone(),
            Arc::clone(&shared.publisher),
            apis.clone(),
            shared.metrics.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            apis,
            applying,
            admin,
            shared,
        })
    }

    /// The whole HTTP application (each call a new one, for a second listener).
    pub fn app(&self) -> BoxEndpoint<'static> {
        operator::app(
            self.apis.clone(),
            Arc::clone(&self.shared.publisher),
            self.shared.metrics.clone(),
            self.admin.clone(),
        )
    }

    /// Waits for every apply loop to end (after shutdown), then flushes the producer.
    pub async fn drain(self) {
        for apply in self.applying {
            let _ = apply.await;
        }
        let publisher = Arc::clone(&self.shared.publisher);
        // librdkafka's flush blocks its thread until the queue is empty or the timeout ends.
        let flushed = tokio::task::spawn_blocking(move || publisher.flush(DRAIN_TIMEOUT)).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(error = %e, "Producer flush at shutdown failed; unacknowledged events were answered 503.")
            }
            Err(e) => error!(error = %e, "Producer flush at shutdown did not finish."),
        }
    }
}
