//! One function per `ordo` command: each runs it and says how the process exits.

use std::process::ExitCode;

use ordo::bus::kafka::KafkaConfig;

use super::args::{PipelineArgs, PluginTestArgs, ReplayArgs, RunArgs, TapArgs, ValidateArgs};

pub fn plugin_test(args: PluginTestArgs) -> anyhow::Result<ExitCode> {
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

/// The pipeline `args` names, from its file, and how to reach its brokers.
fn pipeline_of(args: &PipelineArgs) -> anyhow::Result<(ordo::config::Pipeline, KafkaConfig)> {
    let (pipeline, properties) = ordo::ops::pipeline_named(&args.config, &args.pipeline)?;
    Ok((
        pipeline,
        KafkaConfig::new(&args.brokers).with_properties(&properties),
    ))
}

#[tokio::main]
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (pipeline, kafka) = pipeline_of(&args.target)?;
    eprintln!(
        "replaying `{}` from {:?} (topic {})",
        pipeline.name, args.from, pipeline.topic
    );
    let summary = ordo::ops::replay::replay(
        &pipeline,
        &kafka,
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
pub async fn tap(args: TapArgs) -> anyhow::Result<ExitCode> {
    let (pipeline, kafka) = pipeline_of(&args.target)?;
    eprintln!(
        "tapping `{}` (topic {}); Ctrl-C stops",
        pipeline.name, pipeline.topic
    );
    let tapping = ordo::ops::tap::tap(
        &pipeline,
        &kafka,
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
pub async fn redrive(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let (pipeline, kafka) = pipeline_of(&args)?;
    let done = ordo::ops::redrive::redrive(&pipeline, &kafka, |done, total| {
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
pub async fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let options = ordo::ops::validate::Options {
        environment: !args.no_environment,
        kafka: KafkaConfig::new(&args.brokers),
    };
    let report = ordo::ops::validate::validate(&args.config, &options).await;
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
pub async fn serve(cli: RunArgs) -> anyhow::Result<ExitCode> {
    ordo::redact::init(cli.log_keys, cli.log_key_secret.as_deref());
    let (trigger, shutdown) = ordo::shutdown::channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown requested; draining.");
        trigger.fire();
    });
    let settings = ordo::Settings {
        config: cli.config,
        listen: cli.listen,
        insecure_no_auth: cli.insecure_no_auth,
        admin_listen: cli.admin_listen,
        tls: cli
            .tls_cert
            .zip(cli.tls_key)
            .map(|(cert, key)| ordo::serve::Tls { cert, key }),
        brokers: cli.brokers,
        produce_timeout: std::time::Duration::from_millis(cli.produce_timeout_ms),
        body_limit: cli.body_limit,
        body_timeout: std::time::Duration::from_millis(cli.body_timeout_ms),
        max_in_flight: cli.max_in_flight,
        admin_token: cli.admin_token.filter(|t| !t.is_empty()),
        fetch_wait: std::time::Duration::from_millis(cli.fetch_wait_ms),
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
