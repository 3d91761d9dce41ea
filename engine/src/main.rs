//! The `ordo` binary: `ordo [run]` serves the pipelines until Ctrl-C or SIGTERM;
//! `ordo plugin test` runs a plugin offline over a file of events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Ordo: keeps a replica correct when its update events arrive out of order.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Log lines as `pretty` text (default) or `json`, one object per line.
    #[arg(long, global = true, env = "ORDO_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, Args)]
struct TapArgs {
    #[command(flatten)]
    target: PipelineArgs,
    /// Start from the topic's first event instead of now.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Re-drive the pipeline's dead-lettered events (after a fix) through its topic; a second
    /// run re-drives only letters that arrived since.
    Replay(PipelineArgs),
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// The pipeline, by its name in the pipelines file.
    pipeline: String,
    /// The pipelines file.
    #[arg(long, env = "ORDO_CONFIG", default_value = "pipelines.toml")]
    config: PathBuf,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    target: PipelineArgs,
    /// Where to start in every partition: an offset (e.g. 0) or an RFC 3339 time.
    #[arg(long)]
    from: ordo::replay::Start,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The pipelines file.
    #[arg(default_value = "pipelines.toml", env = "ORDO_CONFIG")]
    config: PathBuf,
    /// Check only the file and its plugins, not the broker and DynamoDB.
    #[arg(long)]
    no_environment: bool,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin over a file of events (JSON Lines) from an empty store; print each
    /// decision and the final records. Exits 1 when an expectation fails.
    ///
    /// A line is an event object, or {"event": {...}, "expect": "write|skip|reject|invalid",
    /// "record": {...}} to check what the plugin does with it.
    Test(PluginTestArgs),
}

#[derive(Debug, Args)]
struct PluginTestArgs {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// The events, one JSON object per line.
    events: PathBuf,
    /// The field that keys records; default: the first `required` field of the plugin's schema.
    #[arg(long)]
    key_field: Option<String>,
    /// Fuel per call.
    #[arg(long, default_value_t = ordo::plugin::sandbox::DEFAULT_FUEL)]
    fuel: u64,
    /// Milliseconds per call.
    #[arg(long, default_value_t = ordo::plugin::sandbox::DEFAULT_TIMEOUT.as_millis() as u64)]
    timeout_ms: u64,
    /// MiB of memory per instance.
    #[arg(long, default_value_t = ordo::plugin::sandbox::DEFAULT_MEMORY_BYTES >> 20)]
    memory_mib: usize,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The pipelines file.
    #[arg(long, env = "ORDO_CONFIG", default_value = "pipelines.toml")]
    config: PathBuf,
    /// HTTP listen address.
    #[arg(long, env = "ORDO_LISTEN", default_value = "0.0.0.0:3000")]
    listen: SocketAddr,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Milliseconds ingest waits for the broker's ack before answering 503. The producer
    /// keeps trying for up to 5 minutes after that, so a 503 event may still land.
    #[arg(long, env = "ORDO_PRODUCE_TIMEOUT_MS", default_value_t = ordo::bus::producer::DEFAULT_PRODUCE_TIMEOUT.as_millis() as u64)]
    produce_timeout_ms: u64,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "ORDO_BODY_LIMIT", default_value_t = ordo::ingest::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Ingest requests handled at once; more get 503 with Retry-After.
    #[arg(long, env = "ORDO_MAX_IN_FLIGHT", default_value_t = ordo::ingest::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Bearer token the admin endpoints (/admin/...) require. Unset: they are open.
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The engine logs at info; the one-shot commands print their own report and log only
    // what ORDO_LOG asks for.
    let default_filter = match cli.command {
        None | Some(Command::Run(_)) => "info",
        Some(_) => "off",
    };
    let filter =
        EnvFilter::try_from_env("ORDO_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let outcome = match cli.command {
        None => serve(cli.run),
        Some(Command::Run(run)) => serve(run),
        Some(Command::Plugin(PluginCommand::Test(args))) => plugin_test(args),
        Some(Command::Validate(args)) => validate(args),
        Some(Command::Replay(args)) => replay(args),
        Some(Command::Dlq(DlqCommand::Replay(args))) => redrive(args),
        Some(Command::Tap(args)) => tap(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ordo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn plugin_test(args: PluginTestArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use ordo::plugin::Policy as _;
    let limits = ordo::plugin::sandbox::Limits {
        fuel: args.fuel,
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        memory_bytes: args.memory_mib << 20,
    };
    let policy = ordo::plugin::wasm::WasmPolicy::load(&args.plugin, limits, Default::default())?;
    let key_field = match args.key_field {
        Some(k) => k,
        None => serde_json::from_str::<serde_json::Value>(&policy.schema()?)
            .ok()
            .and_then(|s| s["required"][0].as_str().map(str::to_string))
            .context("the plugin's schema names no required field; pass --key-field")?,
    };
    let input = std::fs::read_to_string(&args.events)
        .with_context(|| format!("cannot read {}", args.events.display()))?;
    println!("plugin {} ({})", args.plugin.display(), policy.id());
    let report = ordo::plugin::selftest::run(&policy, &key_field, &input)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.events.display()))?;
    println!("{report}");
    Ok(if report.failures().next().is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The pipeline `args` names, from its file.
fn pipeline_of(args: &PipelineArgs) -> anyhow::Result<ordo::config::Pipeline> {
    let pipelines = ordo::config::from_file(&args.config)?;
    let names: Vec<String> = pipelines.iter().map(|p| p.name.clone()).collect();
    pipelines
        .into_iter()
        .find(|p| p.name == args.pipeline)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no pipeline `{}` (it has: {})",
                args.config.display(),
                args.pipeline,
                names.join(", ")
            )
        })
}

#[tokio::main]
async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let pipeline = pipeline_of(&args.target)?;
    eprintln!(
        "replaying `{}` from {:?} (topic {})",
        pipeline.name, args.from, pipeline.topic
    );
    let summary = ordo::replay::replay(
        &pipeline,
        &args.target.brokers,
        args.from,
        |done, total| eprintln!("  {done}/{total} events"),
        |reason| eprintln!("  rejected: {reason}"),
    )
    .await?;
    println!(
        "replay `{}`: {} events, {} written, {} skipped as stale, {} rejected",
        pipeline.name, summary.events, summary.written, summary.skipped, summary.rejected
    );
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn tap(args: TapArgs) -> anyhow::Result<ExitCode> {
    let pipeline = pipeline_of(&args.target)?;
    eprintln!(
        "tapping `{}` (topic {}); Ctrl-C stops",
        pipeline.name, pipeline.topic
    );
    let tapping = ordo::tap::tap(
        &pipeline,
        &args.target.brokers,
        args.from_beginning,
        args.limit,
        |event| println!("{event}"),
    );
    tokio::select! {
        result = tapping => { result?; }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn redrive(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let pipeline = pipeline_of(&args)?;
    let done = ordo::redrive::redrive(&pipeline, &args.brokers, |done, total| {
        eprintln!("  {done}/{total} letters")
    })
    .await?;
    println!(
        "dlq replay `{}`: {done} letters re-driven from {} to {}",
        pipeline.name, pipeline.dead_letter_topic, pipeline.topic
    );
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let options = ordo::validate::Options {
        environment: !args.no_environment,
        brokers: args.brokers,
    };
    let report = ordo::validate::validate(&args.config, &options).await;
    let file = args.config.display();
    for note in &report.notes {
        println!("note: {note}");
    }
    if report.problems.is_empty() {
        let checked = if options.environment {
            "file, plugins, broker and tables"
        } else {
            "file and plugins"
        };
        println!(
            "{file}: ok ({checked}; pipelines: {})",
            report.pipelines.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let n = report.problems.len();
    println!("{file}: {n} problem{}", if n == 1 { "" } else { "s" });
    for problem in &report.problems {
        println!("  {problem}");
    }
    Ok(ExitCode::FAILURE)
}

#[tokio::main]
async fn serve(cli: RunArgs) -> anyhow::Result<ExitCode> {
    let (trigger, shutdown) = ordo::shutdown::channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown requested; draining.");
        trigger.fire();
    });
    let settings = ordo::Settings {
        config: cli.config,
        listen: cli.listen,
        brokers: cli.brokers,
        produce_timeout: std::time::Duration::from_millis(cli.produce_timeout_ms),
        body_limit: cli.body_limit,
        max_in_flight: cli.max_in_flight,
        admin_token: cli.admin_token.filter(|t| !t.is_empty()),
    };
    ordo::run(settings, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
