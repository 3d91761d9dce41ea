//! The command line: what each `ordo` command takes, with its flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Ordo: keeps a replica correct when its update events arrive out of order.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Log lines as `pretty` text (default) or `json`, one object per line.
    #[arg(long, global = true, env = "ORDO_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,
    /// Where compiled plugins are kept so a restart does not compile them again (a Python or
    /// JavaScript plugin takes 10–30 s): created 0700, trusted only when this user's and
    /// writable by nobody else. `off` compiles every time. Default:
    /// `$XDG_CACHE_HOME/ordo/compiled-plugins` or `~/.cache/ordo/compiled-plugins`.
    #[arg(long, global = true, env = "ORDO_PLUGIN_CACHE", value_name = "DIR|off")]
    pub plugin_cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every pipeline of the config (the default).
    Run(RunArgs),
    /// Work with policy plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Check a pipelines file, its plugins and (unless --no-environment) the broker and the
    /// tables; list every problem, each naming the pipeline and the key. Exits 1 on any.
    Validate(ValidateArgs),
    /// Re-apply a pipeline's events from an offset or a time, up to where the topic ends now.
    /// Safe beside live traffic: stale events are skipped. Commits nothing.
    Replay(ReplayArgs),
    /// The dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Show a pipeline's events as they arrive and what its plugin decides for each (against
    /// the stored record; nothing is written). Ctrl-C stops it.
    Tap(TapArgs),
    /// Backfill: load events (one JSON object per line) into a pipeline's topic, each checked
    /// by its plugin and acknowledged by the broker; rejected lines go to a side file with
    /// their reason. Ctrl-C stops it and says which line to resume from.
    Load(LoadArgs),
    /// A running engine's pipelines in the terminal, from its /metrics and /readyz: rates,
    /// lag by partition, dead letters, the plugin in force, reloads, readiness. q quits.
    Top(TopArgs),
    /// The configuration's reference.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print docs/config.md: every key of the pipelines file and every flag, generated from
    /// their definitions.
    Docs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The engine's address serving /metrics: its admin listener when it has one.
    #[arg(long, env = "ORDO_TOP_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Milliseconds between readings.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Sent as `Authorization: Bearer` (the admin token, or a token with the `admin` scope).
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: PipelineArgs,
    /// The events: a file of JSON lines, or `-` for standard input.
    pub input: PathBuf,
    /// Resume at this line (1-based), as a stopped load said. Lines from there that were
    /// produced before are produced again, which changes nothing in the replica.
    #[arg(long)]
    pub from_line: Option<u64>,
    /// Where rejected lines go, as JSON lines with their reason: created 0600 and refused
    /// when it exists (it holds the records of an earlier load), unless `--from-line`
    /// resumes that load, which appends to it; never through a symbolic link. Default:
    /// `<input>.rejected.jsonl`, or `ordo-load.rejected.jsonl` for standard input.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Events in flight at most.
    #[arg(long, default_value_t = ordo::ops::load::DEFAULT_IN_FLIGHT)]
    pub in_flight: usize,
    /// Secret that signs the principal (`ordo-load`) of the events produced; the engines'
    /// `ORDO_PRINCIPAL_KEY`, so their audit trail records it as vouched for.
    #[arg(long, env = "ORDO_PRINCIPAL_KEY", hide_env_values = true)]
    pub principal_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct TapArgs {
    #[command(flatten)]
    pub target: PipelineArgs,
    /// Start from the topic's first event instead of now.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Re-drive the pipeline's dead-lettered events (after a fix) through its topic; a second
    /// run re-drives only letters that arrived since.
    Replay(PipelineArgs),
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The pipeline, by its name in the pipelines file.
    pub pipeline: String,
    /// The pipelines file.
    #[arg(long, env = "ORDO_CONFIG", default_value = "pipelines.toml")]
    pub config: PathBuf,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub target: PipelineArgs,
    /// Where to start in every partition: an offset (e.g. 0) or an RFC 3339 time.
    #[arg(long)]
    pub from: ordo::ops::replay::Start,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The pipelines file.
    #[arg(default_value = "pipelines.toml", env = "ORDO_CONFIG")]
    pub config: PathBuf,
    /// Check only the file and its plugins, not the broker and DynamoDB.
    #[arg(long)]
    pub no_environment: bool,
    /// Accept secrets written in `[kafka]` as they are (see `ordo run --help`).
    #[arg(long, env = "ORDO_ALLOW_LITERAL_SECRETS")]
    pub allow_literal_secrets: bool,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin over a file of events (JSON Lines) from an empty store; print each
    /// decision and the final records. Exits 1 when an expectation fails.
    ///
    /// A line is an event object, or {"event": {...}, "expect": "write|skip|reject|invalid",
    /// "record": {...}} to check what the plugin does with it.
    Test(PluginTestArgs),
}

#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// The plugin component (.wasm).
    pub plugin: PathBuf,
    /// The events, one JSON object per line.
    pub events: PathBuf,
    /// The field that keys records; default: the first `required` field of the plugin's schema.
    #[arg(long)]
    pub key_field: Option<String>,
    /// Fuel per call.
    #[arg(long, default_value_t = ordo::plugin::sandbox::DEFAULT_FUEL)]
    pub fuel: u64,
    /// Milliseconds of CPU time per call.
    #[arg(long, default_value_t = ordo::plugin::sandbox::DEFAULT_TIMEOUT.as_millis() as u64)]
    pub timeout_ms: u64,
    /// MiB of memory per instance.
    #[arg(long, default_value_t = ordo::plugin::sandbox::DEFAULT_MEMORY_BYTES >> 20)]
    pub memory_mib: usize,
    /// The plugin's configuration, as a pipeline's `plugin_config` gives it: a JSON object,
    /// e.g. '{"key_field": "PatientId", "version_field": "UpdatedAt"}'. Default: {}.
    #[arg(long, value_name = "JSON", conflicts_with = "config_file")]
    pub config: Option<String>,
    /// As --config, read from a file holding the JSON object.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipelines file.
    #[arg(long, env = "ORDO_CONFIG", default_value = "pipelines.toml")]
    pub config: PathBuf,
    /// What this process does: `ingest` serves the pipelines' routes and joins no consumer
    /// group; `apply` consumes and applies every pipeline's topic and serves no pipeline
    /// route; `all` does both. Scale ingest on request rate, apply on partitions and lag.
    #[arg(long, env = "ORDO_ROLE", value_enum, default_value_t = RoleArg::All)]
    pub role: RoleArg,
    /// HTTP listen address. Default: 0.0.0.0:3000 when the pipelines file has an [auth]
    /// table, else 127.0.0.1:3000 (without authentication the engine serves loopback only).
    #[arg(long, env = "ORDO_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve the operator's side (/admin/..., /metrics, with /healthz and /readyz) on this
    /// address instead of the public one, which then answers 404 there.
    #[arg(long, env = "ORDO_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key. The files
    /// are re-read when they change.
    #[arg(long, env = "ORDO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "ORDO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve without authentication on a non-loopback address (no [auth] table). Anyone who
    /// can reach the port may then write and read every record; logged at WARN on every start.
    #[arg(long, env = "ORDO_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Accept passwords, client secrets and private keys written in `[kafka]` as they are;
    /// by default the engine refuses them and asks for `"${env:NAME}"` or `"${file:PATH}"`.
    #[arg(long, env = "ORDO_ALLOW_LITERAL_SECRETS")]
    pub allow_literal_secrets: bool,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Milliseconds ingest waits for the broker's ack before answering 503. The producer
    /// keeps trying for up to 5 minutes after that, so a 503 event may still land.
    #[arg(long, env = "ORDO_PRODUCE_TIMEOUT_MS", default_value_t = ordo::bus::kafka::DEFAULT_PRODUCE_TIMEOUT.as_millis() as u64)]
    pub produce_timeout_ms: u64,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "ORDO_BODY_LIMIT", default_value_t = ordo::ingest::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Largest `application/x-ndjson` (bulk) body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "ORDO_BULK_BODY_LIMIT", default_value_t = ordo::ingest::DEFAULT_BULK_BODY_LIMIT)]
    pub bulk_body_limit: usize,
    /// Most events (lines) one `application/x-ndjson` body may carry (more get 413).
    #[arg(long, env = "ORDO_BULK_MAX_LINES", default_value_t = ordo::ingest::DEFAULT_BULK_MAX_LINES)]
    pub bulk_max_lines: usize,
    /// Milliseconds a request body may take to arrive; a slower one gets 408.
    #[arg(long, env = "ORDO_BODY_TIMEOUT_MS", default_value_t = ordo::ingest::DEFAULT_BODY_TIMEOUT.as_millis() as u64)]
    pub body_timeout_ms: u64,
    /// Shares of ingest handled at once, each --body-limit bytes of body: a request takes one,
    /// a bulk request one per --body-limit bytes it declares, before its body is read. More
    /// get 503 with Retry-After.
    #[arg(long, env = "ORDO_MAX_IN_FLIGHT", default_value_t = ordo::ingest::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Connections each listener serves at once; more wait in the kernel's accept queue until
    /// one closes.
    #[arg(long, env = "ORDO_MAX_CONNECTIONS", default_value_t = ordo::connections::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Milliseconds a new connection has for its TLS handshake and its first request's head;
    /// a slower one is closed.
    #[arg(long, env = "ORDO_HEAD_TIMEOUT_MS", default_value_t = ordo::connections::DEFAULT_HEAD_TIMEOUT.as_millis() as u64, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub head_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may stay with nothing read or written before the
    /// server closes it (a request in flight is answered first).
    #[arg(long, env = "ORDO_IDLE_TIMEOUT_MS", default_value_t = ordo::connections::DEFAULT_IDLE_TIMEOUT.as_millis() as u64, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub idle_timeout_ms: u64,
    /// Longest a consumer's fetch waits for new events, in milliseconds. Apache Kafka answers
    /// as soon as events arrive, so this only sets how often an idle consumer asks; tansu (the
    /// native dev stack) holds the fetch for the whole wait, so there it adds up to this much
    /// latency.
    #[arg(long, env = "ORDO_FETCH_WAIT_MS", default_value_t = ordo::bus::kafka::DEFAULT_FETCH_WAIT.as_millis() as u64)]
    pub fetch_wait_ms: u64,
    /// Write record keys in logs as they are, instead of as a short keyed hash (`k:3f9a…`).
    /// For a development stack: keys name patients.
    #[arg(long, env = "ORDO_LOG_KEYS")]
    pub log_keys: bool,
    /// Secret of the keyed hash that stands for keys in logs; engines sharing it show the same
    /// hash for the same key. Unset: a random secret per process.
    #[arg(long, env = "ORDO_LOG_KEY_SECRET", hide_env_values = true)]
    pub log_key_secret: Option<String>,
    /// Secret that signs the principal an event carries to Kafka, so the audit trail records it
    /// only when an Ordo vouched for it (else as `claimed`). Engines (and `ordo load`) that
    /// apply each other's events must share it. Unset: a random secret per process.
    #[arg(long, env = "ORDO_PRINCIPAL_KEY", hide_env_values = true)]
    pub principal_key: Option<String>,
    /// Bearer token the admin endpoints (/admin/...) require. Unset: they are open.
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Serve the pipelines' routes only.
    Ingest,
    /// Consume and apply only.
    Apply,
    /// Both.
    All,
}

impl From<RoleArg> for ordo::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Ingest => Self::Ingest,
            RoleArg::Apply => Self::Apply,
            RoleArg::All => Self::All,
        }
    }
}
