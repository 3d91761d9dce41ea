//! The `ordo` binary: flags, logging, and a shutdown on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Ordo: keeps a replica correct when its update events arrive out of order.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The pipelines file.
    #[arg(long, env = "ORDO_CONFIG", default_value = "pipelines.toml")]
    config: PathBuf,
    /// HTTP listen address.
    #[arg(long, env = "ORDO_LISTEN", default_value = "0.0.0.0:3000")]
    listen: SocketAddr,
    /// Kafka bootstrap brokers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Milliseconds ingest waits for the broker's ack before answering 503.
    #[arg(long, env = "ORDO_PRODUCE_TIMEOUT_MS", default_value_t = ordo::bus::producer::DEFAULT_DELIVERY_TIMEOUT.as_millis() as u64)]
    produce_timeout_ms: u64,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, env = "ORDO_BODY_LIMIT", default_value_t = ordo::ingest::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Ingest requests handled at once; more get 503 with Retry-After.
    #[arg(long, env = "ORDO_MAX_IN_FLIGHT", default_value_t = ordo::ingest::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ORDO_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
    };
    ordo::run(settings, shutdown).await?;
    Ok(())
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
