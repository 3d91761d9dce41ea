//! Ordo keeps a replica of an entity correct when its update events arrive out of order.
//!
//! One event's path through the engine, in the order of the modules:
//!
//! 1. [`config`]: `pipelines.toml` → checked [`config::Pipeline`]s.
//! 2. [`ingest`]: `POST {route}` validates the body, stamps the version field and produces it.
//! 3. [`bus`]: the keyed Kafka producer, topic creation, and the consumer group.
//! 4. [`plugin`]: the pipeline's WebAssembly policy (validate, merge, schema) in a sandbox.
//! 5. [`pipeline`]: read the stored record, merge through the plugin, write conditionally.
//! 6. [`store`]: DynamoDB, with writes conditioned on the version merged against.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::Server;
use tracing::{error, info};

pub mod bus;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod redrive;
pub mod replay;
pub mod shutdown;
pub mod store;
pub mod tap;
pub mod validate;

use bus::producer::KafkaPublisher;
use plugin::reload::{load_checked, Reloader};
use plugin::PolicyHandle;
use shutdown::Shutdown;
use store::dynamo::DynamoStore;

/// How long shutdown waits for in-flight HTTP requests and for the producer to flush.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the process runs; what it runs is in the pipelines file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The pipelines file.
    pub config: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// How long ingest waits for the broker's ack before answering 503.
    pub produce_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Ingest requests handled at once; more get 503 rather than queueing without bound.
    pub max_in_flight: usize,
    /// Bearer token the admin endpoints require; `None` leaves them open (bind to loopback).
    pub admin_token: Option<String>,
    /// Longest a consumer's fetch waits for data (see [`bus::consumer::DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
}

/// Why the engine could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipelines file is wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A plugin could not be loaded.
    #[error("pipeline `{pipeline}`: {source}")]
    Plugin {
        /// The pipeline.
        pipeline: String,
        /// What failed.
        source: plugin::PluginError,
    },
    /// The broker could not be reached or refused a request.
    #[error("pipeline `{pipeline}`: {source} (is the broker at {brokers} running? `make local-dev-stack` starts one)")]
    Bus {
        /// The pipeline.
        pipeline: String,
        /// The brokers tried.
        brokers: String,
        /// What failed.
        source: bus::BusError,
    },
    /// The store could not be reached or the table is wrong.
    #[error("pipeline `{pipeline}`: {source} (is DynamoDB reachable? check AWS_ENDPOINT_URL and AWS_REGION)")]
    Store {
        /// The pipeline.
        pipeline: String,
        /// What failed.
        source: store::StoreError,
    },
    /// The HTTP listener failed.
    #[error("HTTP server on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
}

/// Runs every pipeline until `shutdown` resolves, then drains and returns.
///
/// Prints `Ordo listening on http://ADDR` on stdout once requests are served, so a supervisor
/// or a test that asked for port 0 learns the port.
pub async fn run(settings: Settings, shutdown: Shutdown) -> Result<(), Error> {
    let pipelines = config::from_file(&settings.config)?;
    let dynamodb = store::dynamo::client().await;
    let publisher = Arc::new(
        KafkaPublisher::new(&settings.brokers, bus::producer::DEFAULT_DELIVERY_TIMEOUT).map_err(
            |source| Error::Bus {
                pipeline: "*".into(),
                brokers: settings.brokers.clone(),
                source,
            },
        )?,
    );

    let mut routes = Vec::new();
    let mut registry = metrics::Registry::default();
    let mut tables = Vec::new();
    let mut in_force = Vec::new();
    // One budget for all pipelines: it bounds the process's memory, not a route's share.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight.max(1)));
    let mut consumers = Vec::new();
    let mut plugins = Vec::new();
    for p in pipelines {
        let spec = p.plugin_spec();
        let loaded = load_checked(&spec).map_err(|source| Error::Plugin {
            pipeline: p.name.clone(),
            source,
        })?;
        let policy = PolicyHandle::new(Arc::new(loaded));
        info!(pipeline = %p.name, plugin = %p.plugin.display(), id = %policy.current().id(), "Plugin loaded.");
        let plugin_stats = Arc::clone(&spec.stats);
        plugins.push((p.name.clone(), spec, policy.clone()));
        let bus_error = |source| Error::Bus {
            pipeline: p.name.clone(),
            brokers: settings.brokers.clone(),
            source,
        };
        bus::admin::ensure_topics(
            &settings.brokers,
            &[&p.topic, &p.dead_letter_topic],
            p.partitions,
            p.replication_factor,
        )
        .await
        .map_err(bus_error)?;
        let store = DynamoStore::new(dynamodb.clone(), &p.table, &p.key_field);
        store.ensure_table().await.map_err(|source| Error::Store {
            pipeline: p.name.clone(),
            source,
        })?;

        let schema = ingest::docs::schema_of(policy.current().as_ref());
        let doc = ingest::PipelineDoc {
            name: p.name.clone(),
            route: p.route.clone(),
            topic: p.topic.clone(),
            key_field: p.key_field.clone(),
            version_field: p.version_field.clone(),
            schema,
        };
        let ingest_stats = Arc::new(metrics::IngestStats::default());
        let consumer_stats = Arc::new(bus::consumer::Stats::default());
        registry.add(
            &p.name,
            metrics::PipelineMetrics {
                ingest: Arc::clone(&ingest_stats),
                consumer: Arc::clone(&consumer_stats),
                plugin: plugin_stats,
                writes: store.write_latency(),
            },
        );
        let handler = Arc::new(ingest::Ingest {
            pipeline: p.name.clone(),
            topic: p.topic.clone(),
            key_field: p.key_field.clone(),
            version_field: p.version_field.clone(),
            policy: policy.clone(),
            publisher: Arc::clone(&publisher),
            body_limit: settings.body_limit,
            produce_timeout: settings.produce_timeout,
            in_flight: Arc::clone(&in_flight),
            idempotency: ingest::idempotency::IdempotencyCache::default(),
            stats: Arc::clone(&ingest_stats),
        });
        tables.push((p.name.clone(), store.clone()));
        in_force.push((p.name.clone(), policy.clone()));
        routes.push(ingest::PipelineRoutes {
            ingest: handler,
            read_back: Arc::new(ingest::ReadBack {
                pipeline: p.name.clone(),
                store: store.clone(),
            }),
            doc,
        });

        let applier = Arc::new(
            pipeline::Applier::new(store, policy, &p.key_field).with_cache(p.cache_records),
        );
        let consumer_settings = bus::consumer::ConsumerSettings {
            pipeline: p.name.clone(),
            brokers: settings.brokers.clone(),
            group: p.consumer_group.clone(),
            topic: p.topic.clone(),
            dead_letter_topic: p.dead_letter_topic.clone(),
            concurrency: p.concurrency,
            max_attempts: p.max_attempts,
            fetch_wait: settings.fetch_wait,
        };
        let name = p.name.clone();
        let task = bus::consumer::run(
            consumer_settings,
            applier,
            Arc::clone(&publisher),
            consumer_stats,
            shutdown.clone(),
        );
        consumers.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                error!(pipeline = %name, error = %e, "Consumer failed.");
            }
        }));
    }

    let reloader = Arc::new(Reloader::new(plugins));
    registry.set_reloader(Arc::clone(&reloader));
    tokio::spawn(Arc::clone(&reloader).watch(shutdown.clone()));
    spawn_sighup_reload(Arc::clone(&reloader), shutdown.clone());

    let acceptor = TcpListener::bind(settings.listen)
        .into_acceptor()
        .await
        .map_err(|source| Error::Http {
            addr: settings.listen,
            source,
        })?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(settings.listen);
    info!(addr = %local, "HTTP server started.");
    println!("Ordo listening on http://{local}");

    let mut stop = shutdown.clone();
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            ingest::app(
                routes,
                registry,
                ingest::ready::Readiness {
                    publisher: Arc::clone(&publisher),
                    tables,
                    plugins: in_force,
                },
                Some(ingest::admin::Admin {
                    reloader,
                    token: settings.admin_token.clone(),
                }),
            ),
            async move { stop.wait().await },
            Some(DRAIN_TIMEOUT),
        )
        .await;
    for consumer in consumers {
        let _ = consumer.await;
    }
    if let Err(e) = publisher.flush(DRAIN_TIMEOUT) {
        error!(error = %e, "Producer flush at shutdown failed; unacknowledged events were answered 503.");
    }
    served.map_err(|source| Error::Http {
        addr: local,
        source,
    })
}

/// Reloads every pipeline's plugin on SIGHUP, until `shutdown`.
fn spawn_sighup_reload(reloader: Arc<Reloader>, mut shutdown: Shutdown) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "Cannot listen for SIGHUP; reload through the file or the admin endpoint.");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                got = hangup.recv() => {
                    if got.is_none() { return; }
                    info!("SIGHUP: reloading every plugin.");
                    reloader.reload_all().await;
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (reloader, shutdown);
}
