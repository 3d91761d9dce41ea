//! The Quix Streams peer: `bench/peers/quix_app.py`, a Python job written as a team would
//! write it by hand (consume, one conditional put per message, no read), run by its own
//! interpreter from the virtual environment `make quix-tools` installs.
//!
//! The application reports nothing. The benchmark starts it with the topic, table, endpoint
//! and consumer group as arguments and judges it from outside: whoever counts its table's
//! requests (the counting proxy in front of moto, or the model itself) sees one `PutItem` per
//! message, so the job has handled every
//! event once `n` puts are answered; the benchmark then scans the table until it holds a record
//! for every key, and stops the process. Its rate is taken over the window of those answers,
//! from the first to the last (its interpreter's start and the group's join are not counted,
//! as no design's are).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::target::Target;

/// How often the benchmark looks at the counts while the application runs.
const POLL: Duration = Duration::from_millis(20);

/// The application and the interpreter that runs it.
pub struct Quix {
    python: PathBuf,
    app: PathBuf,
}

/// Where one run of the application reads.
pub struct Job<'a> {
    /// Kafka bootstrap servers.
    pub brokers: &'a str,
    /// The workload's topic.
    pub topic: &'a str,
    /// A consumer group of its own.
    pub group: &'a str,
}

/// The interpreter `make quix-tools` installs: `ORDO_QUIX_PYTHON`, else
/// `$ORDO_CACHE/quix/bin/python`, `ORDO_CACHE` being `~/.cache/ordo` unless set.
fn python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("ORDO_QUIX_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let cache = match std::env::var_os("ORDO_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/ordo"),
    };
    Some(cache.join("quix/bin/python"))
}

/// The last `lines` lines of the file at `path`, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Quix {
    /// The application beside this crate and its interpreter; an error naming `make
    /// quix-tools` when the interpreter is not installed.
    pub fn find() -> anyhow::Result<Self> {
        let python = python().context("no HOME, no ORDO_CACHE and no ORDO_QUIX_PYTHON")?;
        anyhow::ensure!(
            python.exists(),
            "{} is missing: `make quix-tools` installs Quix Streams (or set ORDO_QUIX_PYTHON)",
            python.display()
        );
        let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/quix_app.py");
        anyhow::ensure!(app.exists(), "{} is missing", app.display());
        Ok(Self { python, app })
    }

    /// The version of Quix Streams installed beside the interpreter, as pip recorded it
    /// (`?` when unreadable): for the report.
    pub fn version(&self) -> String {
        let Some(venv) = self.python.parent().and_then(Path::parent) else {
            return "?".into();
        };
        let pattern = venv.join("lib");
        // <venv>/lib/python3.X/site-packages/quixstreams-<version>.dist-info
        std::fs::read_dir(&pattern)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|d| std::fs::read_dir(d.path().join("site-packages")).ok())
            .flatten()
            .flatten()
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("quixstreams-")?
                    .strip_suffix(".dist-info")
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "?".into())
    }

    /// Runs the application over the `n` events of `job`'s topic into `target` (over
    /// DynamoDB's API, through the counting proxy to moto or straight to the model) until it has answered `n` puts and the table holds
    /// a record for every key of `newest`; returns its events per second. Fails when the
    /// process exits, or when `deadline` passes first.
    pub async fn run(
        &self,
        job: &Job<'_>,
        target: &Target,
        newest: &HashMap<String, String>,
        n: usize,
        deadline: Duration,
    ) -> anyhow::Result<f64> {
        let (endpoint, table) = target.endpoint();
        // Quix Streams keeps a state folder in its working directory: a fresh one per run.
        let dir = tempfile::tempdir().context("a working directory for the Python app")?;
        let log = dir.path().join("quix.log");
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let mut child = tokio::process::Command::new(&self.python)
            .arg(&self.app)
            .args(["--broker", job.brokers, "--topic", job.topic])
            .args([
                "--table",
                table,
                "--endpoint",
                endpoint,
                "--group",
                job.group,
            ])
            .current_dir(dir.path())
            // boto3 reads the region from AWS_DEFAULT_REGION.
            .env("AWS_DEFAULT_REGION", region)
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("the Python app's log")?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", self.python.display()))?;
        let started = Instant::now();
        let exited = |status: std::process::ExitStatus| {
            anyhow::anyhow!(
                "the Quix Streams app exited ({status}) before the table held every record:\n{}",
                tail(&log, 20)
            )
        };
        let counts = loop {
            let counts = target.counts().await?;
            if counts.puts as usize >= n {
                break counts;
            }
            if let Some(status) = child.try_wait()? {
                return Err(exited(status));
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "the Quix Streams app answered {} of {n} puts on {} within {deadline:?}:\n{}",
                counts.puts,
                job.topic,
                tail(&log, 20)
            );
            tokio::time::sleep(POLL).await;
        };
        loop {
            let records = target.records().await?;
            if newest.keys().all(|key| records.contains_key(key)) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "the Quix Streams app's table lacks records of {} keys after {deadline:?}",
                newest.keys().filter(|k| !records.contains_key(*k)).count()
            );
            tokio::time::sleep(POLL).await;
        }
        // Its offsets do not matter after the run (the group is never read again): no need to
        // wait for a graceful stop.
        child.kill().await.context("stop the Quix Streams app")?;
        let span = counts
            .puts_span
            .context("puts counted without their times")?;
        Ok((counts.puts.saturating_sub(1)) as f64 / span.as_secs_f64())
    }
}
