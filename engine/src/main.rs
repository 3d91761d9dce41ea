//! The `ordo` binary: `ordo [run]` serves the pipelines until Ctrl-C or SIGTERM; the other
//! commands (`validate`, `plugin test`, `replay`, `tap`, `dlq replay`) do one job and exit.
//! The work lives in the `ordo` library; this file only sets up logging and dispatches.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

mod cli;

use cli::args::{Cli, Command, ConfigCommand, DlqCommand, PluginCommand};
use cli::commands;

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
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if cli.log_format == "json" {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(logs);
    // Traces only for the engine, and only when OTEL_EXPORTER_OTLP_ENDPOINT asks for them.
    let serving = matches!(cli.command, None | Some(Command::Run(_)));
    let _exporter = match ordo::telemetry::layer() {
        Ok(Some((traces, exporter))) if serving => {
            registry.with(traces).init();
            Some(exporter)
        }
        Ok(_) => {
            registry.init();
            None
        }
        Err(e) => {
            eprintln!("ordo: {e}");
            return ExitCode::FAILURE;
        }
    };
    plugin_cache(cli.plugin_cache.as_deref());
    let outcome = match cli.command {
        None => commands::serve(cli.run),
        Some(Command::Run(run)) => commands::serve(run),
        Some(Command::Plugin(PluginCommand::Test(args))) => commands::plugin_test(args),
        Some(Command::Validate(args)) => commands::validate(args),
        Some(Command::Replay(args)) => commands::replay(args),
        Some(Command::Dlq(DlqCommand::Replay(args))) => commands::redrive(args),
        Some(Command::Tap(args)) => commands::tap(args),
        Some(Command::Load(args)) => commands::load(args),
        Some(Command::Top(args)) => commands::top(args),
        Some(Command::Config(ConfigCommand::Docs)) => commands::config_docs(),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ordo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps compiled plugins in `flag`'s directory (`off`: nowhere), else the default one. A
/// directory that cannot be used costs compile time, never a start: it is logged.
fn plugin_cache(flag: Option<&std::path::Path>) {
    use ordo::plugin::compiled;
    let dir = match flag {
        Some(p) if p.as_os_str() == "off" => return compiled::configure(None),
        Some(p) => Some(p.to_path_buf()),
        None => compiled::default_dir(),
    };
    let Some(dir) = dir else {
        tracing::warn!(
            "no HOME or XDG_CACHE_HOME: compiled plugins are not kept (set --plugin-cache)"
        );
        return compiled::configure(None);
    };
    match compiled::Cache::open(&dir) {
        Ok(cache) => compiled::configure(Some(cache)),
        Err(e) => {
            tracing::warn!(error = %e, "compiled plugins are not kept; every start compiles them");
            compiled::configure(None);
        }
    }
}
