//! Ordo keeps a replica of an entity correct when its update events arrive out of order.
//!
//! The modules, in the order one event meets them:
//!
//! 1. [`config`]: `pipelines.toml` → checked [`config::Pipeline`]s, every problem named at once.
//! 2. [`build`]: one checked pipeline → its running parts (plugin slot, HTTP side, apply loop).
//! 3. [`ingest`]: `POST {route}` validates the body, stamps the version field and produces it;
//!    the engine's own endpoints and the OpenAPI document.
//! 4. [`bus`]: the bus seam (publisher and consumer traits) and its Kafka implementation.
//! 5. [`pipeline`]: the apply loop: per-key order, merge through the plugin, conditional
//!    write, dead letters, offsets stored once durable.
//! 6. [`plugin`]: the pipeline's WebAssembly policy (validate, merge, schema) in a sandbox,
//!    and hot swap.
//! 7. [`store`]: the store seam and DynamoDB, with writes conditioned on the revision merged
//!    against.
//!
//! Beside the data path: [`metrics`] (the Prometheus registry, a leaf every component
//! updates), [`shutdown`] (the signal every task awaits), [`ops`] (the one-shot commands:
//! validate, replay, tap, dead-letter re-drive) and [`testing`] (in-memory bus and store for
//! tests), [`version`] (versions from the future), [`auth`] (who may call what),
//! [`audit`] (who did what, on a Kafka topic) and [`redact`] (keys in logs as keyed hashes); `mistakes` keeps past mistakes of the apply
//! path that only a test build can put back, for the simulation to find.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

pub mod audit;
pub mod auth;
pub mod build;
pub mod bus;
pub mod config;
pub mod ingest;
pub mod metrics;
pub(crate) mod mistakes;
pub mod ops;
pub mod pipeline;
pub mod plugin;
pub mod redact;
pub mod serve;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod version;

use bus::Publisher as _;
use plugin::reload::Reloader;
use shutdown::Shutdown;

/// The port served when no listen address is given.
pub const DEFAULT_PORT: u16 = 3000;
/// How long shutdown waits for the producer to flush.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the process runs; what it runs is in the pipelines file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The pipelines file.
    pub config: PathBuf,
    /// HTTP listen address; `None`: port 3000 on every address with `[auth]`, on loopback
    /// without.
    pub listen: Option<SocketAddr>,
    /// Serve without `[auth]` on a non-loopback address all the same.
    pub insecure_no_auth: bool,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<serve::Tls>,
    /// Serve `/admin/*` and `/metrics` here instead of on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// How long ingest waits for the broker's ack before answering 503.
    pub produce_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Largest `application/x-ndjson` body accepted, in bytes.
    pub bulk_body_limit: usize,
    /// Most events (lines) one `application/x-ndjson` body may carry.
    pub bulk_max_lines: usize,
    /// Longest a request body may take to arrive (then 408).
    pub body_timeout: Duration,
    /// Ingest requests handled at once; more get 503 rather than queueing without bound.
    pub max_in_flight: usize,
    /// Bearer token the admin endpoints require; `None` leaves them open (bind to loopback).
    pub admin_token: Option<String>,
    /// Longest a consumer's fetch waits for data (see [`bus::kafka::DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
}

/// Why the engine could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipelines file is wrong.
    #[error(transparent)]
    Config(#[from] config::Problems),
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
    /// The pipelines file has no `[auth]` table, and the listen address is not loopback.
    #[error("refusing to serve without authentication on {addr}: anyone who can reach it could write and read every record. Add an [auth] table to the pipelines file (see README, Security), listen on loopback (--listen 127.0.0.1:3000), or pass --insecure-no-auth")]
    Unauthenticated {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The `[auth]` table's key set could not be read.
    #[error("[auth]: {0}")]
    Auth(#[from] auth::jwt::JwksError),
    /// The TLS certificate or key could not be used.
    #[error("TLS: {path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
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

impl Error {
    /// A bus failure of `pipeline` (`*` for all), naming the brokers of `kafka`.
    fn bus(pipeline: &str, kafka: &bus::kafka::KafkaConfig, source: bus::BusError) -> Self {
        Self::Bus {
            pipeline: pipeline.to_string(),
            brokers: kafka.brokers().to_string(),
            source,
        }
    }
}

/// Runs every pipeline until `shutdown` resolves, then drains and returns.
///
/// Prints `Ordo listening on http://ADDR` on stdout once requests are served, so a supervisor
/// or a test that asked for port 0 learns the port.
pub async fn run(settings: Settings, shutdown: Shutdown) -> Result<(), Error> {
    let config = config::load(&settings.config)?;
    let listen = listen_address(&settings, config.auth.is_some())?;
    if let Some(tls) = &settings.tls {
        tls.check()?;
    }
    let auth = match &config.auth {
        Some(auth) => Some(Arc::new(auth::Auth::new(auth).await?)),
        None => None,
    };
    let pipelines = config.pipelines;
    let shared = build::Shared::new(&settings, &config.kafka, auth.clone()).await?;
    let (mut slots, mut apis, mut applying) = (Vec::new(), Vec::new(), Vec::new());
    for pipeline in pipelines {
        let built = build::build(pipeline, &shared, &shutdown).await?;
        slots.push(built.slot);
        apis.push(built.api);
        applying.push(tokio::spawn(built.apply));
    }
    let reloader = Arc::new(Reloader::new(slots));
    reloader.spawn_triggers(&shutdown);
    let live = ingest::live::Live::new(
        ingest::live::LiveSource {
            metrics: shared.metrics.clone(),
            reloader: Arc::clone(&reloader),
            waits: apis
                .iter()
                .map(|a| (a.pipeline.name.clone(), a.waits.clone()))
                .collect(),
        },
        shutdown.clone(),
    );
    let admin = ingest::Admin {
        reloader,
        token: settings.admin_token.clone(),
        auth,
        live,
    };
    let publisher = Arc::clone(&shared.publisher);
    tokio::spawn(ingest::ready::probe(
        Arc::clone(&publisher),
        apis.clone(),
        shared.metrics.clone(),
        shutdown.clone(),
    ));
    let app = ingest::app(
        apis.clone(),
        Arc::clone(&publisher),
        shared.metrics.clone(),
        admin.clone(),
    );
    let served = match settings.admin_listen {
        None => serve::serve(listen, settings.tls.clone(), app, "Ordo", shutdown).await,
        Some(admin_listen) => {
            // The operator's side on an address of its own; the public one no longer has it.
            let side = ingest::app(apis, Arc::clone(&publisher), shared.metrics, admin);
            let (public, operator) = tokio::join!(
                serve::serve(
                    listen,
                    settings.tls.clone(),
                    ingest::without_operator(app),
                    "Ordo",
                    shutdown.clone()
                ),
                serve::serve(
                    admin_listen,
                    settings.tls.clone(),
                    ingest::operator_only(side),
                    "Ordo admin",
                    shutdown
                ),
            );
            public.and(operator)
        }
    };
    for apply in applying {
        let _ = apply.await;
    }
    if let Err(e) = publisher.flush(DRAIN_TIMEOUT) {
        error!(error = %e, "Producer flush at shutdown failed; unacknowledged events were answered 503.");
    }
    served
}

/// `bytes` as lowercase hexadecimal digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 random bytes in hexadecimal (fixed if the system has no randomness: an id, not a secret).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    hex(&bytes)
}

/// The messages of `e` and its sources, joined by `: ` (a message already ending the text is
/// not repeated). Not the AWS SDK's `DisplayErrorContext`, which also prints the debug form
/// (the raw HTTP response, and so a record), nor reqwest's own text, which is only "error
/// sending request".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Where to listen: the address asked for, or port 3000 on every address with `[auth]` and on
/// loopback without. Without `[auth]`, a non-loopback address needs `--insecure-no-auth`.
fn listen_address(settings: &Settings, authenticated: bool) -> Result<SocketAddr, Error> {
    let addr = settings.listen.unwrap_or(if authenticated {
        SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))
    } else {
        SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
    });
    for addr in std::iter::once(addr).chain(settings.admin_listen) {
        if !authenticated && !addr.ip().is_loopback() {
            if !settings.insecure_no_auth {
                return Err(Error::Unauthenticated { addr });
            }
            warn!(%addr, "Serving WITHOUT authentication on a non-loopback address (--insecure-no-auth): anyone who can reach it may write and read every record.");
        }
    }
    Ok(addr)
}
