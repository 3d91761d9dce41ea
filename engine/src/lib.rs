//! Ordo keeps a replica of an entity correct when its update events arrive out of order.
//!
//! The modules, in the order one event meets them (README's Layout lists them in this
//! order, and `tests/layout.rs` holds the two together):
//!
//! 1. [`config`]: `pipelines.toml` → checked [`config::Pipeline`]s, every problem named at once.
//! 2. [`build`]: one checked pipeline → its running parts (plugin slot, HTTP side, apply
//!    loop); every pipeline started as one engine.
//! 3. [`serve`]: the listeners, HTTP or HTTPS, the operator's side apart when asked.
//! 4. [`ingest`]: the pipeline routes: `POST {route}` checks the body, stamps the version
//!    field and produces it (one event or NDJSON); `GET {route}/{id}` reads the replica.
//! 5. [`bus`]: the bus seam (publisher and consumer traits) and its Kafka implementation.
//! 6. [`pipeline`]: the apply loop: per-key order, merge through the plugin, conditional
//!    write, dead letters, offsets stored once durable.
//! 7. [`plugin`]: the pipeline's WebAssembly policy (validate, merge, schema) in a sandbox,
//!    and hot swap.
//! 8. [`store`]: the store seam and DynamoDB, with writes conditioned on the revision merged
//!    against; Idempotency-Keys behind a seam of their own.
//!
//! Beside the data path:
//!
//! - [`operator`]: the operator's side: health, readiness, metrics, the admin API, the live
//!   stream, `/ui`, `/docs`, and the assembly of the HTTP application.
//! - [`connections`]: each listener's bounds: connection cap, head deadline, idle timeout.
//! - [`auth`]: who may call what.
//! - [`audit`]: who did what, on a Kafka topic.
//! - [`vouch`]: the principal an event carries, signed at ingest and checked at apply.
//! - [`redact`]: keys in logs as keyed hashes.
//! - [`metrics`]: the Prometheus registry, a leaf every component updates, and its snapshot.
//! - [`telemetry`]: OpenTelemetry traces, from the HTTP call to the write.
//! - [`shutdown`]: the signal every task awaits.
//! - [`version`]: versions from the future; instants and durations as text.
//! - [`watch`]: how a changed file is noticed.
//! - [`ops`]: the one-shot commands: validate, replay, tap, dead-letter re-drive, load, top.
//! - `testing` (feature `testing`): in-memory bus, store and policy, the records' oracle, and
//!   the simulation of the apply path.
//! - `mistakes`: past mistakes of the apply path that only a test build can put back, for the
//!   simulation to find.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

pub mod audit;
pub mod auth;
pub mod build;
pub mod bus;
pub mod config;
pub mod connections;
pub mod ingest;
pub mod metrics;
pub(crate) mod mistakes;
pub mod operator;
pub mod ops;
pub mod pipeline;
pub mod plugin;
pub mod redact;
pub mod serve;
pub mod shutdown;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod version;
pub mod vouch;
pub mod watch;

use shutdown::Shutdown;

/// The port served when no listen address is given.
pub const DEFAULT_PORT: u16 = 3000;

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
    /// Accept secrets written in `[kafka]` as they are (not as `${env:…}` or `${file:…}`).
    pub allow_literal_secrets: bool,
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
    /// The bounds on each listener's connections.
    pub connections: connections::Limits,
    /// What this process does: ingest, apply, or both.
    pub role: Role,
}

/// What an engine process does (`ordo run --role`). Ingest and apply scale differently: by
/// request rate, and by partitions and lag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Serves the pipelines' routes (ingest and read-back); joins no consumer group.
    Ingest,
    /// Consumes and applies every pipeline's topic; serves no pipeline route.
    Apply,
    /// Both.
    #[default]
    All,
}

impl Role {
    /// Whether this role serves the pipelines' routes.
    pub fn ingests(self) -> bool {
        matches!(self, Self::Ingest | Self::All)
    }

    /// Whether this role consumes and applies.
    pub fn applies(self) -> bool {
        matches!(self, Self::Apply | Self::All)
    }

    /// The role's name as `--role` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Apply => "apply",
            Self::All => "all",
        }
    }
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
    #[error("refusing to serve without authentication on {addr}: anyone who can reach it could write and read every record. Add an [auth] table to the pipelines file (see docs/security.md), listen on loopback (--listen 127.0.0.1:3000), or pass --insecure-no-auth")]
    Unauthenticated {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// `[kafka]` holds secrets as they are, and `--allow-literal-secrets` was not given.
    #[error("[kafka]: {} written in the file as it is; refer to it instead (\"${{env:NAME}}\" or \"${{file:PATH}}\"), or pass --allow-literal-secrets", .0.join(", "))]
    LiteralSecrets(Vec<String>),
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
    let literal = config.kafka.literal_secrets();
    if !literal.is_empty() && !settings.allow_literal_secrets {
        return Err(Error::LiteralSecrets(literal.to_vec()));
    }
    let authenticated = config.auth.is_some();
    let listen = listen_address(&settings, authenticated)?;
    if let Some(tls) = &settings.tls {
        tls.check()?;
    }
    tracing::info!(role = settings.role.as_str(), "Engine starting.");
    let engine = build::Engine::start(&settings, config, &shutdown).await?;
    let listeners = serve::Listeners {
        public: listen,
        admin: settings.admin_listen,
        tls: settings.tls.clone(),
        local_names_only: !authenticated,
        limits: settings.connections,
    };
    let served = listeners.serve(|| engine.app(), shutdown).await;
    engine.drain().await;
    served
}

/// 16 random bytes in hexadecimal (fixed if the system has no randomness: an id, not a secret).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
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
