//! One function per `ordo` command: each runs it and says how the process exits.

use std::process::ExitCode;

use ordo::bus::kafka::KafkaConfig;

use super::args::{
    LoadArgs, PipelineArgs, PluginTestArgs, ReplayArgs, RunArgs, TapArgs, TopArgs, ValidateArgs,
};

pub fn plugin_test(args: PluginTestArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use ordo::plugin::Policy as _;
    let limits = ordo::plugin::sandbox::Limits {
        fuel: args.fuel,
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        memory_bytes: args.memory_mib << 20,
    };
    let config = match (&args.config, &args.config_file) {
        (Some(text), _) => text.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, None) => ordo::plugin::wasm::EMPTY_CONFIG.to_string(),
    };
    let policy = ordo::plugin::wasm::WasmPolicy::load_configured(
        &args.plugin,
        limits,
        Default::default(),
        &config,
    )?;
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
    println!("{}", cost_line(policy.take_costliest(), limits));
    Ok(if report.failures().next().is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What the costliest call needed against the limits it ran under: what to set
/// `plugin_fuel` and `plugin_memory_mib` from.
fn cost_line(cost: ordo::plugin::wasm::Cost, limits: ordo::plugin::sandbox::Limits) -> String {
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    format!(
        "costliest call: {} fuel of {} ({:.0}x headroom), {:.1} MiB of memory of {:.0} MiB",
        cost.fuel,
        limits.fuel,
        limits.fuel as f64 / cost.fuel.max(1) as f64,
        mib(cost.memory_bytes),
        mib(limits.memory_bytes),
    )
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
pub async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use ordo::ops::load::{self, LoadError, Options};

    ordo::vouch::init(args.principal_key.as_deref());
    let (pipeline, kafka) = pipeline_of(&args.target)?;
    // The producer first: it connects while the plugin loads and the topics are checked, and
    // `ready` below then spares the first event librdkafka's half-second wait for an id.
    let publisher = kafka.producer(load::DELIVERY_TIMEOUT)?;
    let policy = ordo::plugin::reload::load_checked(&pipeline.plugin_spec())
        .map_err(|e| anyhow::anyhow!("pipeline `{}`: {e}", pipeline.name))?;
    // The topics the engine creates at its start, so that a load may come first; a broker
    // that refuses is named now rather than after the delivery timeout.
    ordo::build::ensure_topics(&kafka, &pipeline)
        .await
        .with_context(|| format!("the topics of `{}` on {}", pipeline.name, kafka.brokers()))?;
    publisher
        .ready(&pipeline.topic, load::READY_TIMEOUT)
        .await
        .with_context(|| format!("the topic {} on {}", pipeline.topic, kafka.brokers()))?;
    let stdin = args.input.as_os_str() == "-";
    let (input, size): (Box<dyn std::io::Read + Send>, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let rejects_path = args.rejects.clone().unwrap_or_else(|| {
        if stdin {
            "ordo-load.rejected.jsonl".into()
        } else {
            let mut name = args.input.clone().into_os_string();
            name.push(".rejected.jsonl");
            name.into()
        }
    });
    let resuming = args.from_line.is_some();
    let reported = if resuming {
        load::reported(&std::fs::read_to_string(&rejects_path).unwrap_or_default())
    } else {
        Default::default()
    };
    let mut rejects = side_file(&rejects_path, resuming).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
            "it exists, and holds the rejected records of an earlier load: resume that load with --from-line, or move the file away (or name another with --rejects)".to_string()
        } else if e.raw_os_error() == Some(libc::ELOOP) {
            "it is a symbolic link, which the rejected records are never written through".to_string()
        } else {
            e.to_string()
        };
        anyhow::anyhow!("cannot write {}: {why}", rejects_path.display())
    })?;
    let bar = match size {
        Some(bytes) => indicatif::ProgressBar::new(bytes).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let options = Options {
        from_line: args.from_line.unwrap_or(1).max(1),
        in_flight: args.in_flight.max(1),
        run: format!("load-{}", std::process::id()),
        reported,
    };
    let started = std::time::Instant::now();
    eprintln!(
        "loading {} into `{}` (topic {}) from line {}",
        args.input.display(),
        pipeline.name,
        pipeline.topic,
        options.from_line
    );
    let result = load::load(
        &pipeline,
        &policy,
        &publisher,
        load::read_lines(input),
        &mut rejects,
        &options,
        stop,
        |at| {
            bar.set_position(at.bytes);
            let rate = at.produced as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{} produced, {} rejected, {rate:.0} events/s",
                at.produced, at.rejected
            ));
        },
    )
    .await;
    bar.finish_and_clear();
    let _ = ordo::bus::Publisher::flush(&publisher, std::time::Duration::from_secs(10));
    match result {
        Ok(summary) => {
            let at = summary.progress;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "load `{}`: {} lines read, {} events produced, {} rejected (in {}), {:.1} s, {:.0} events/s",
                pipeline.name,
                at.lines,
                at.produced,
                at.rejected,
                rejects_path.display(),
                seconds,
                at.produced as f64 / seconds.max(1e-3)
            );
            match summary.resume_from {
                Some(line) => {
                    eprintln!("interrupted: resume with --from-line {line}");
                    Ok(ExitCode::from(130))
                }
                None => Ok(ExitCode::SUCCESS),
            }
        }
        Err(e @ LoadError::Produce { .. }) => {
            eprintln!("ordo load: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// The side file of rejected lines: created readable by its owner only (the lines are
/// records) and never over an existing file, or appended to when a load resumes; never
/// opened through a symbolic link (one planted there could send the records elsewhere).
fn side_file(
    path: &std::path::Path,
    append: bool,
) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    let mut options = std::fs::OpenOptions::new();
    if append {
        options.create(true).append(true);
    } else {
        // O_CREAT | O_EXCL: fails on any existing name, a symbolic link included.
        options.write(true).create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).map(std::io::BufWriter::new)
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
        allow_literal_secrets: args.allow_literal_secrets,
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
    ordo::vouch::init(cli.principal_key.as_deref());
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
        allow_literal_secrets: cli.allow_literal_secrets,
        admin_listen: cli.admin_listen,
        tls: cli
            .tls_cert
            .zip(cli.tls_key)
            .map(|(cert, key)| ordo::serve::Tls { cert, key }),
        brokers: cli.brokers,
        produce_timeout: std::time::Duration::from_millis(cli.produce_timeout_ms),
        body_limit: cli.body_limit,
        bulk_body_limit: cli.bulk_body_limit,
        bulk_max_lines: cli.bulk_max_lines,
        body_timeout: std::time::Duration::from_millis(cli.body_timeout_ms),
        max_in_flight: cli.max_in_flight,
        admin_token: cli.admin_token.filter(|t| !t.is_empty()),
        fetch_wait: std::time::Duration::from_millis(cli.fetch_wait_ms),
        connections: ordo::connections::Limits {
            max_connections: cli.max_connections,
            head_timeout: std::time::Duration::from_millis(cli.head_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(cli.idle_timeout_ms),
        },
        role: cli.role.into(),
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

#[tokio::main]
pub async fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    ordo::ops::top::run(ordo::ops::top::Options {
        url: args.url,
        interval: std::time::Duration::from_millis(args.interval_ms.max(100)),
        token: args.token,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the configuration's reference (docs/config.md) with the flags of `ordo run`.
pub fn config_docs() -> anyhow::Result<ExitCode> {
    print!("{}", ordo::config::reference::markdown(&flags()));
    Ok(ExitCode::SUCCESS)
}

/// The flags `ordo run` takes (with the global ones), as a Markdown table from their clap
/// definitions.
fn flags() -> String {
    use clap::CommandFactory as _;
    let cli = super::args::Cli::command();
    let mut out = String::from("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for arg in cli.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match defaults.as_slice() {
            [] => String::new(),
            [v] if v == "false" => "off".into(),
            values => format!("`{}`", values.join(",")),
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `--{long}` | {env} | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
}
