//! POST → visible latency of the real `ordo` binary against offered rate, measured as
//! HdrHistogram users measure it: a sweep of rates, p50, p99, p999 and max at each, and the
//! knee (the highest rate whose p99 is under 50 ms).
//!
//! The release `ordo run` (ingest and apply in one process) on a pipelines file of this
//! bench's, on the bench broker, its DynamoDB the wire model (`model_dynamo`: every request
//! answers after 4 ms, any number at once), started by this bench as a child. Each request is
//! a new patient, sent **open loop**: request `i` of a rate is due at `start + i / rate`
//! whatever the answers do, and its latency runs from that due instant, not from when it was
//! actually sent, so a stalled sender or server counts against the figure (no coordinated
//! omission). It ends when the model wrote the record: the model records the instant each
//! write lands, in Unix-epoch nanoseconds of this machine's clock, which the bench reads
//! afterwards; nothing polls the table.
//!
//! The rates run from low to high on one warm engine; a rate is over the limit when its p99 is
//! 50 ms or more, or a request was refused or never became visible, and the sweep stops after
//! two such rates in a row (one may be a hiccup of the shared machine).
//!
//! `cargo run --release -p ordo-bench --bin latency_bench` after `cargo build --release -p ordo`
//! (a broker at `KAFKA_BROKERS`, the plugins built). `ORDO_BENCH_SECONDS` per rate (default
//! 60), `ORDO_BENCH_RATES` (comma-separated, default below), `ORDO_BENCH_PLOT` the SVG to
//! draw (none when unset); raw figures under `ORDO_BENCH_RESULTS` (`latency_bench-rates.csv`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use ordo_bench::engine::ROUTE;
use ordo_bench::model::MODEL_LATENCY;
use ordo_bench::open_loop::{offer, Landed};
use ordo_bench::plot::{latency_svg, RatePoint};
use ordo_bench::process::{EngineProcess, PipelinesFile};
use ordo_bench::results::Table;
use ordo_bench::wire::child::ModelProcess;
use ordo_bench::{setting, CpuMeter};

/// The offered rates, low to high, when `ORDO_BENCH_RATES` does not say; 500 is the goal's.
const RATES: [usize; 13] = [
    100, 200, 400, 500, 600, 800, 1000, 1200, 1600, 2000, 2500, 3000, 4000,
];
/// The p99 a rate must stay under.
const LIMIT_MS: f64 = 50.0;
/// The rate the goal names.
const GOAL_RATE: usize = 500;
/// Rates over the limit in a row that end the sweep.
const OVER_IN_A_ROW: usize = 2;
/// Seconds of unmeasured requests first, so the group has joined and connections are open.
const WARM_UP_SECONDS: f64 = 2.0;
/// Longest the bench waits, after a rate's last request was due, for its writes to land.
const DRAIN: Duration = Duration::from_secs(60);
/// Latencies are kept in microseconds, up to an hour, to three significant digits.
const HIGHEST_US: u64 = 3_600_000_000;

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).context("a latency histogram")
}

/// One rate's figures.
struct Row {
    rate: usize,
    sent: usize,
    accepted: usize,
    /// Due → visible, µs, of every request that became visible.
    visible: Histogram<u64>,
    /// Due → answered 202, µs.
    acked: Histogram<u64>,
    /// Cores the engine used while the rate was offered, and the machine's busy share.
    cpu: (f64, f64),
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Row {
    fn quantile(&self, q: f64) -> f64 {
        ms(self.visible.value_at_quantile(q))
    }

    /// Every request accepted and visible, and the p99 under the limit.
    fn under(&self) -> bool {
        let all = self.accepted == self.sent && self.visible.len() as usize == self.sent;
        all && self.quantile(0.99) < LIMIT_MS
    }
}

async fn measure(
    http: &reqwest::Client,
    url: &str,
    model: &ModelProcess,
    landed: &mut Landed,
    engine_pid: u32,
    rate: usize,
    seconds: f64,
) -> anyhow::Result<Row> {
    let cpu = CpuMeter::start(&[engine_pid]);
    let sent = offer(http, url, &format!("r{rate}"), rate, seconds).await?;
    let cpu = cpu.read();
    landed.wait(model, &sent, DRAIN).await?;
    let (mut visible, mut acked) = (histogram()?, histogram()?);
    for request in &sent {
        if let Some(us) = request.acked_us {
            acked.saturating_record(us.max(1));
        }
        if let Some(at) = landed.at(&request.key) {
            visible.saturating_record((at.saturating_sub(request.due_ns) / 1000).max(1));
        }
    }
    landed.clear();
    Ok(Row {
        rate,
        sent: sent.len(),
        accepted: sent.iter().filter(|r| r.acked_us.is_some()).count(),
        visible,
        acked,
        cpu,
    })
}

/// The offered rates: `ORDO_BENCH_RATES`, else [`RATES`].
fn rates() -> anyhow::Result<Vec<usize>> {
    match std::env::var("ORDO_BENCH_RATES") {
        Ok(list) => list
            .split(',')
            .map(|r| {
                r.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|r| *r > 0)
                    .with_context(|| format!("ORDO_BENCH_RATES: {r:?} is not a rate"))
            })
            .collect(),
        Err(_) => Ok(RATES.to_vec()),
    }
}

/// `path` as BENCHMARKS.md (at the repository's root) links it.
fn link(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match (root.canonicalize(), path.canonicalize()) {
        (Ok(root), Ok(path)) => path
            .strip_prefix(&root)
            .map_or(path.clone(), Path::to_path_buf)
            .display()
            .to_string(),
        _ => path.display().to_string(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ordo_bench::init_logs();
    let brokers = ordo_bench::brokers();
    let seconds = setting("ORDO_BENCH_SECONDS", 60) as f64;
    let rates = rates()?;
    let model = ModelProcess::start(MODEL_LATENCY)?;
    let id = std::process::id();
    let (topic, table) = (format!("bench.latency.{id}"), format!("bench-latency-{id}"));
    let pipelines = PipelinesFile::write(&topic, &table, &format!("{topic}.ordo"))?;
    let engine = EngineProcess::start(
        &pipelines.path(),
        &brokers,
        "all",
        &model.client_env("ordo"),
    )?;
    let url = format!("{}{ROUTE}", engine.url);
    let http = reqwest::Client::new();
    let mut landed = Landed::new(&table);
    let warm = offer(&http, &url, "warm", rates[0], WARM_UP_SECONDS).await?;
    landed.wait(&model, &warm, DRAIN).await?;
    landed.clear();

    let csv = Table::new(
        "latency_bench-rates",
        &[
            "rate",
            "seconds",
            "sent",
            "accepted",
            "visible",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "ack_p50_ms",
            "ack_p99_ms",
            "engine_cores",
            "machine_busy_pct",
        ],
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut over_in_a_row = 0;
    for rate in rates {
        let row = measure(
            &http,
            &url,
            &model,
            &mut landed,
            engine.pid(),
            rate,
            seconds,
        )
        .await?;
        csv.row(&[
            rate.to_string(),
            seconds.to_string(),
            row.sent.to_string(),
            row.accepted.to_string(),
            row.visible.len().to_string(),
            format!("{:.3}", row.quantile(0.5)),
            format!("{:.3}", row.quantile(0.99)),
            format!("{:.3}", row.quantile(0.999)),
            format!("{:.3}", ms(row.visible.max())),
            format!("{:.3}", ms(row.acked.value_at_quantile(0.5))),
            format!("{:.3}", ms(row.acked.value_at_quantile(0.99))),
            format!("{:.3}", row.cpu.0),
            format!("{:.1}", row.cpu.1 * 100.0),
        ])?;
        over_in_a_row = if row.under() { 0 } else { over_in_a_row + 1 };
        rows.push(row);
        if over_in_a_row >= OVER_IN_A_ROW {
            break;
        }
    }
    report(&rows, seconds)
}

/// Prints the table, the knee, the goal and the plot's link (drawing it when asked).
fn report(rows: &[Row], seconds: f64) -> anyhow::Result<()> {
    println!("| offered (requests/s) | samples: visible of sent | p50 (ms) | p99 (ms) | p999 (ms) | max (ms) | POST answered, p50 / p99 (ms) | engine CPU (cores) | machine busy (%) | p99 < {LIMIT_MS} ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let sample = |q: f64| {
            if row.visible.is_empty() {
                "—".to_string()
            } else {
                format!("{:.1}", row.quantile(q))
            }
        };
        println!(
            "| {} | {} of {} | {} | {} | {} | {} | {:.1} / {:.1} | {:.2} | {:.0} | {} |",
            row.rate,
            row.visible.len(),
            row.sent,
            sample(0.5),
            sample(0.99),
            sample(0.999),
            sample(1.0),
            ms(row.acked.value_at_quantile(0.5)),
            ms(row.acked.value_at_quantile(0.99)),
            row.cpu.0,
            row.cpu.1 * 100.0,
            if row.under() { "yes" } else { "**no**" },
        );
    }
    let knee = rows.iter().filter(|r| r.under()).map(|r| r.rate).max();
    let highest = rows.iter().map(|r| r.rate).max().unwrap_or(0);
    let knee_text = match knee {
        Some(k) if k == highest => format!(
            "at least {k} requests/s (the highest rate offered; the sweep did not reach the knee)"
        ),
        Some(k) => format!("{k} requests/s"),
        None => "below every rate offered: no rate had p99 under the limit".to_string(),
    };
    let goal = match rows.iter().find(|r| r.rate == GOAL_RATE) {
        Some(r) => format!(
            "p99 {:.1} ms at {GOAL_RATE} requests/s ({})",
            r.quantile(0.99),
            if r.under() { "met" } else { "**NOT met**" }
        ),
        None => format!(
            "{GOAL_RATE} requests/s was not offered in this sweep ({})",
            match knee {
                Some(k) if k >= GOAL_RATE => "it is under the knee: met",
                _ => "the sweep stopped below it: **NOT met**",
            }
        ),
    };
    let smallest = rows.iter().map(|r| r.visible.len()).min().unwrap_or(0);
    println!(
        "\nThe real `ordo` binary (`ordo run`, ingest and apply in one process) on this program's broker, its DynamoDB the wire model (`model_dynamo`, a process of its own: every request answered after {} ms, any number at once). {seconds:.0} s per rate after {WARM_UP_SECONDS:.0} s unmeasured; each request a new patient, sent open loop and timed from the instant it was due (so a stall counts against the figure: no coordinated omission) to the instant the model wrote its record; quantiles by HdrHistogram (3 significant digits), each over its row's samples (the p999 of {smallest} samples rests on its slowest {}). POST answered: due → 202, the ingest part. A rate is over the limit when its p99 is {LIMIT_MS} ms or more or a request was refused or never visible ({} s after the last was due); the sweep stops after {OVER_IN_A_ROW} such rates in a row. CPU over the time the rate was offered.",
        MODEL_LATENCY.as_millis(),
        smallest.div_ceil(1000),
        DRAIN.as_secs(),
    );
    println!("\n**Knee** (the highest rate with p99 < {LIMIT_MS} ms): {knee_text}. Goal: p99 < {LIMIT_MS} ms at {GOAL_RATE} requests/s: {goal}.");
    if let Some(path) = std::env::var_os("ORDO_BENCH_PLOT").map(std::path::PathBuf::from) {
        let points: Vec<RatePoint> = rows
            .iter()
            .filter(|r| !r.visible.is_empty())
            .map(|r| RatePoint {
                rate: r.rate as f64,
                p50: r.quantile(0.5),
                p99: r.quantile(0.99),
                p999: r.quantile(0.999),
            })
            .collect();
        latency_svg(
            &path,
            "Ordo: POST → visible against offered rate (wire model, 4 ms store)",
            &points,
            LIMIT_MS,
        )?;
        println!(
            "\n![POST → visible latency against offered rate: p50, p99, p999]({})",
            link(&path)
        );
    }
    Ok(())
}
