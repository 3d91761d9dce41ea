//! Ordo's benchmarks (`make bench` runs them and writes `BENCHMARKS.md`): each measures a part
//! of the engine against a baseline in the same run. They live in a crate of their own so that
//! their dependencies (Extism and its second wasmtime, for one) are not built by `make test`'s
//! unit and end-to-end run. This library is what the benchmark programs in `src/bin/` share:
//! settings from the environment, medians with their range, CPU and peak memory (here), and:
//! - [`topic`] and [`workload`]: the workloads, produced to a topic before the consumers
//!   start, and what the table must end with;
//! - [`engine`]: Ordo's parts assembled in the bench's own process;
//! - [`process`]: the real `ordo` binary as a child process, on a pipelines file of its own;
//! - [`peers`]: the designs Ordo is compared with in the consume benchmark;
//! - [`model`] and [`wire`]: the 4 ms latency model of DynamoDB, in process and over
//!   DynamoDB's own protocol (`model_dynamo`, shared by processes);
//! - [`counting`] and [`proxy`]: counting a design's store requests outside it;
//! - [`target`] and [`stale`]: one design's table for one run, and its audit afterwards;
//! - [`open_loop`]: open-loop load and when its writes landed;
//! - [`results`] and [`plot`]: raw figures as CSV, latency as an SVG plot.

pub mod counting;
pub mod engine;
pub mod model;
pub mod open_loop;
pub mod peers;
pub mod plot;
pub mod process;
pub mod proxy;
pub mod results;
pub mod stale;
pub mod target;
pub mod topic;
pub mod wire;
pub mod workload;

/// Points the AWS SDK at the local stack's DynamoDB (moto, test credentials) unless the
/// environment already says otherwise. Call it first thing in `main`, before any thread starts.
pub fn local_aws_env() {
    for (k, d) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
    ] {
        if std::env::var(k).is_err() {
            // Single-threaded start-up, before any client reads the environment.
            unsafe { std::env::set_var(k, d) };
        }
    }
}

/// Logs to standard error at `ORDO_LOG`'s filter, `warn` by default (stdout is the report).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORDO_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The `ordo` binary: `ORDO_BIN`, else the one built beside the running benchmark (the same
/// target folder: `make bench` builds both).
pub fn ordo_bin() -> anyhow::Result<std::path::PathBuf> {
    sibling_bin("ORDO_BIN", "ordo", "cargo build --release -p ordo --bins")
}

/// The program `name`: the path in `variable` when set, else the one beside the running
/// benchmark (cargo builds a workspace's programs into one folder); an error naming `build`
/// when it is missing.
pub fn sibling_bin(variable: &str, name: &str, build: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    let bin = match std::env::var_os(variable) {
        Some(bin) => std::path::PathBuf::from(bin),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join(name))
            .with_context(|| format!("the {name} program's folder"))?,
    };
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: {build} (or set {variable})",
        bin.display()
    );
    Ok(bin)
}

/// The Kafka bootstrap servers the benchmarks use: `KAFKA_BROKERS`, else the local stack's.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A listener on a free local port, and its address.
pub async fn local_acceptor(
) -> anyhow::Result<(impl poem::listener::Acceptor, std::net::SocketAddr)> {
    use anyhow::Context as _;
    use poem::listener::{Acceptor as _, Listener as _};
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("no local address")?;
    Ok((acceptor, addr))
}

/// `name` from the environment as a number, or `default`; at least 1.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// The median of several measurements and their range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// The middle value (the upper middle for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// `median (min–max)` with `decimals` digits after the point.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// Median and range of `values` (sorted in place); NaN for none.
pub fn spread(values: &mut [f64]) -> Spread {
    if values.is_empty() {
        return Spread {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    values.sort_by(f64::total_cmp);
    Spread {
        median: values[values.len() / 2],
        min: values[0],
        max: values[values.len() - 1],
    }
}

/// The peak resident set (`VmHWM`) of process `pid`, in KiB; 0 when unknown.
pub fn process_peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU use over a window: some processes' together, in cores, and the whole machine's busy
/// share.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    at: std::time::Instant,
    pids: Vec<u32>,
    process_ticks: u64,
    machine: (u64, u64),
}

/// The user + system ticks of process `pid` (0 when it is gone).
fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// (machine busy ticks, machine total ticks).
fn machine_ticks() -> (u64, u64) {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?;
            let values: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            let total: u64 = values.iter().take(8).sum();
            // idle and iowait
            let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
            Some((total - idle, total))
        })
        .unwrap_or((0, 0))
}

impl CpuMeter {
    /// Starts measuring processes `pids` (this one: `std::process::id()`) now.
    pub fn start(pids: &[u32]) -> Self {
        Self {
            at: std::time::Instant::now(),
            pids: pids.to_vec(),
            process_ticks: pids.iter().map(|p| process_ticks(*p)).sum(),
            machine: machine_ticks(),
        }
    }

    /// (cores the processes used together, share of the machine's CPU that was busy) since
    /// the start. Assumes the usual 100 clock ticks a second.
    pub fn read(&self) -> (f64, f64) {
        let process: u64 = self.pids.iter().map(|p| process_ticks(*p)).sum();
        let (busy, total) = machine_ticks();
        let seconds = self.at.elapsed().as_secs_f64().max(1e-9);
        let cores = process.saturating_sub(self.process_ticks) as f64 / 100.0 / seconds;
        let machine = busy.saturating_sub(self.machine.0) as f64
            / total.saturating_sub(self.machine.1).max(1) as f64;
        (cores, machine)
    }
}
