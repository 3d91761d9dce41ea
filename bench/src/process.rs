//! The real `ordo` binary as a bench runs it: a pipelines file of the bench's own, one or
//! more `ordo run` processes on it, and what is read of them from outside (their address,
//! `/metrics`, memory).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::process_peak_rss_kib;

/// Longest a bench waits for an engine to settle what it was given.
const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

/// A pipelines file with one patient-profile pipeline, in a folder removed when dropped.
pub struct PipelinesFile {
    /// Holds the file.
    dir: tempfile::TempDir,
}

impl PipelinesFile {
    /// One pipeline on `topic` (owned: created with 6 partitions unless it exists), applying
    /// to `table` as consumer group `group`, with the built last-writer-wins plugin.
    pub fn write(topic: &str, table: &str, group: &str) -> anyhow::Result<Self> {
        let plugin = crate::engine::plugins_dir()
            .join("patient_profile_lww.wasm")
            .canonicalize()
            .context("plugins/build/patient_profile_lww.wasm (make plugins)")?;
        let dir = tempfile::Builder::new()
            .prefix("ordo-bench-")
            .tempdir()
            .context("a folder for the pipelines file")?;
        let text = format!(
            "[pipelines.patient-profile]\nroute = \"/patientprofile\"\ntopic = \"{topic}\"\nkey_field = \"PatientId\"\nversion_field = \"UpdatedAt\"\ntable = \"{table}\"\nconsumer_group = \"{group}\"\nplugin = \"{}\"\n{}\n",
            plugin.display(),
            crate::engine::PATIENT_PLUGIN_CONFIG,
        );
        let path = dir.path().join("pipelines.toml");
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(Self { dir })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pipelines.toml")
    }
}

/// What a child (`who`, for errors) started with its standard output piped announces on its
/// first line after `prefix` (its address); the rest of its output is read and dropped, so that a later line
/// never meets a full or closed pipe.
pub fn announced(child: &mut Child, who: &str, prefix: &str) -> anyhow::Result<String> {
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("{who}'s stdout"))?;
    let mut lines = std::io::BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    let said = line
        .trim()
        .strip_prefix(prefix)
        .with_context(|| format!("{who} did not start: {line:?}"))?
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    Ok(said)
}

/// A running `ordo run`; killed when dropped.
pub struct EngineProcess {
    child: Child,
    /// `http://ADDR`: its routes (when it serves them), `/metrics` and `/admin`.
    pub url: String,
}

impl EngineProcess {
    /// Starts `ordo run --role <role>` on `config` and `brokers`, listening on a free local
    /// port, with `env` added to its environment (the store's endpoint, for one); returns once
    /// it serves.
    pub fn start(
        config: &Path,
        brokers: &str,
        role: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let bin = crate::ordo_bin()?;
        let mut child = Command::new(&bin)
            .args(["run", "--config"])
            .arg(config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--brokers",
                brokers,
                "--role",
                role,
            ])
            .env("ORDO_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let url = announced(&mut child, "the engine", "Ordo listening on ")?;
        Ok(Self { child, url })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resets the kernel's peak-RSS counter of the process to its current RSS.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// The process's peak resident set since start or [`Self::reset_peak`], in MiB.
    pub fn peak_mib(&self) -> f64 {
        process_peak_rss_kib(self.pid()) as f64 / 1024.0
    }

    /// The sum of the samples of `family` in `/metrics`; 0 when it does not answer.
    pub async fn metric(&self, http: &reqwest::Client, family: &str) -> u64 {
        let Ok(r) = http.get(format!("{}/metrics", self.url)).send().await else {
            return 0;
        };
        let text = r.text().await.unwrap_or_default();
        let prefix = format!("{family}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Events the consumer has settled (applied, skipped or dead-lettered).
    pub async fn settled(&self, http: &reqwest::Client) -> u64 {
        self.metric(http, "ordo_events_total").await
    }

    /// Waits until the engine has settled `n` events.
    pub async fn wait_settled(&self, http: &reqwest::Client, n: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        while self.settled(http).await < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the engine did not settle {n} events within {SETTLE_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
