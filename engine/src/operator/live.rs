//! `GET /admin/live`: what the operator page draws, pushed as server-sent events. Each event
//! is one [`LiveReading`]: per pipeline, the rates since the previous reading (from the
//! registry's own families, computed as `ordo top` computes them), lag by partition, the plugin
//! in force and its last reload, and the last dead letters with their reasons' codes and
//! fields. Names and numbers only: never a field of a record or a plugin's words.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::{BoxStream, StreamExt as _};
use poem_openapi::Object;

use crate::metrics::snapshot::{rows, Row, Snapshot};
use crate::metrics::{DeadLetterNote, Metrics};
use crate::pipeline::Waits;
use crate::plugin::reload::{PluginStatus, Reloader};
use crate::shutdown::Shutdown;

/// The interval between readings when the client names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Live streams served at once by one engine; more are answered 503.
pub const MAX_STREAMS: usize = 32;
/// How often a comment line keeps an idle connection open through proxies.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One reading of the whole engine.
#[derive(Debug, Clone, Object)]
pub struct LiveReading {
    /// When it was taken (RFC 3339, UTC).
    pub at: String,
    /// Seconds since the previous reading of this stream (0 for the first: rates are 0).
    pub interval_seconds: f64,
    /// The engine's version.
    pub version: String,
    /// Every pipeline, by name.
    pub pipelines: Vec<LivePipeline>,
    /// Reloads that put a new plugin in force since start-up, every pipeline together.
    pub reloads_swapped: f64,
    /// Reloads refused since start-up, every pipeline together.
    pub reloads_refused: f64,
    /// Each readiness check (`kafka`, `dynamodb:<pipeline>`) and whether it passed when last
    /// checked (every 10 s, and on each `GET /readyz`).
    pub checks: BTreeMap<String, bool>,
}

/// One pipeline at one reading. Rates are per second over the interval.
#[derive(Debug, Clone, Object)]
pub struct LivePipeline {
    /// The pipeline's name.
    pub name: String,
    /// POSTs accepted (2xx) per second.
    pub ingest_per_second: f64,
    /// POSTs refused (4xx) or failed (5xx) per second.
    pub refused_per_second: f64,
    /// Events written per second.
    pub applied_per_second: f64,
    /// Events written since start-up.
    pub applied_total: f64,
    /// Stale events skipped per second.
    pub skipped_per_second: f64,
    /// Stale events skipped since start-up.
    pub skipped_total: f64,
    /// Events dead-lettered since start-up.
    pub dead_letters_total: f64,
    /// Events dead-lettered since the previous reading.
    pub dead_letters_new: f64,
    /// Messages not yet committed, over every partition this engine holds.
    pub lag_total: f64,
    /// Messages not yet committed, by partition (as librdkafka last reported).
    pub lag: BTreeMap<String, f64>,
    /// Mean time of one `merge` call over the interval, in microseconds; absent without calls.
    #[oai(skip_serializing_if_is_none)]
    pub merge_micros: Option<f64>,
    /// Keys waiting out a transient failure.
    pub keys_waiting: f64,
    /// Why keys wait, when some do.
    #[oai(skip_serializing_if_is_none)]
    pub waiting_reason: Option<String>,
    /// Failed applies retried per second.
    pub retries_per_second: f64,
    /// Keys the consumer applies at once now: the limit its throughput and DynamoDB's
    /// throttling set, at most the pipeline's `concurrency`; absent where this engine does
    /// not consume.
    #[oai(skip_serializing_if_is_none)]
    pub keys_at_once: Option<f64>,
    /// The plugin in force.
    #[oai(skip_serializing_if_is_none)]
    pub plugin: Option<LivePlugin>,
    /// The last dead letters, newest first.
    pub dead_letters: Vec<LiveDeadLetter>,
}

/// The plugin a pipeline runs.
#[derive(Debug, Clone, Object)]
pub struct LivePlugin {
    /// `sha256:<hex>` of its file.
    pub id: String,
    /// The file the pipeline watches.
    pub file: String,
    /// When it was put in force (RFC 3339).
    pub loaded_at: String,
    /// The last reload since start-up, if any.
    #[oai(skip_serializing_if_is_none)]
    pub last_reload: Option<LiveReload>,
}

impl From<&PluginStatus> for LivePlugin {
    fn from(p: &PluginStatus) -> Self {
        Self {
            id: p.plugin.clone(),
            file: p.file.display().to_string(),
            loaded_at: rfc3339(p.loaded_at),
            last_reload: p.last_reload.as_ref().map(|r| LiveReload {
                at: rfc3339(r.at),
                outcome: r.outcome.as_str().to_string(),
                detail: r.detail.clone(),
            }),
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Object)]
pub struct LiveReload {
    /// When (RFC 3339).
    pub at: String,
    /// `swapped`, `unchanged` or `refused`.
    pub outcome: String,
    /// Why a refused file was refused.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
}

/// One dead letter: where the event is, and why it was refused. Never its fields.
#[derive(Debug, Clone, Object)]
pub struct LiveDeadLetter {
    /// When it was dead-lettered (RFC 3339).
    pub at: String,
    /// The event's partition.
    pub partition: i32,
    /// The event's offset.
    pub offset: i64,
    /// The event's key as logs show it: a keyed hash unless the engine runs with `--log-keys`.
    pub key: String,
    /// Why: the reason's code and field.
    pub reason: String,
}

/// What the readings are taken from; one per engine, shared by every stream.
pub struct LiveSource {
    /// The engine's metrics.
    pub metrics: Metrics,
    /// The plugin slots.
    pub reloader: Arc<Reloader>,
    /// Each pipeline's waiting keys.
    pub waits: Vec<(String, Waits)>,
}

/// A point in time as RFC 3339, UTC.
fn rfc3339(at: SystemTime) -> String {
    crate::version::rfc3339(at.into())
}

impl LiveSource {
    /// The reading at `now` (a snapshot of the metrics), after `previous` taken `seconds` ago.
    fn reading(&self, previous: &Snapshot, now: &Snapshot, seconds: f64) -> LiveReading {
        let plugins = self.reloader.plugins();
        let pipelines = rows(previous, now, seconds)
            .into_iter()
            .map(|row| {
                let plugin = plugins.iter().find(|p| p.pipeline == row.name);
                let waiting_reason = self
                    .waits
                    .iter()
                    .find(|(name, _)| *name == row.name)
                    .and_then(|(_, w)| w.degraded());
                let dead_letters = self.metrics.recent_dead_letters(&row.name).newest_first();
                let skipped_total = now.pipelines.get(&row.name).map_or(0.0, |r| r.skipped);
                pipeline(row, skipped_total, plugin, waiting_reason, dead_letters)
            })
            .collect();
        LiveReading {
            at: rfc3339(SystemTime::now()),
            interval_seconds: seconds,
            version: env!("CARGO_PKG_VERSION").to_string(),
            pipelines,
            reloads_swapped: now.swapped,
            reloads_refused: now.refused,
            checks: now.checks.clone(),
        }
    }

    /// The metrics as they are now.
    fn snapshot(&self) -> Snapshot {
        self.metrics.snapshot()
    }
}

fn pipeline(
    row: Row,
    skipped_total: f64,
    plugin: Option<&PluginStatus>,
    waiting_reason: Option<String>,
    dead_letters: Vec<DeadLetterNote>,
) -> LivePipeline {
    LivePipeline {
        ingest_per_second: row.ingest,
        refused_per_second: row.refused,
        applied_per_second: row.applied,
        applied_total: row.applied_total,
        skipped_per_second: row.skipped,
        skipped_total,
        dead_letters_total: row.dead_letters.0,
        dead_letters_new: row.dead_letters.1,
        lag_total: row.lag.0,
        lag: row.lag.1.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        merge_micros: row.merge_micros,
        keys_waiting: row.waiting,
        waiting_reason,
        retries_per_second: row.retries,
        keys_at_once: row.concurrency,
        plugin: plugin.map(LivePlugin::from),
        dead_letters: dead_letters
            .into_iter()
            .map(|d| LiveDeadLetter {
                at: rfc3339(d.at),
                partition: d.partition,
                offset: d.offset,
                key: d.key,
                reason: d.reason,
            })
            .collect(),
        name: row.name,
    }
}

/// The live side of the admin endpoints: where readings come from, how many streams may
/// run, and the shutdown that ends them (so an open page never holds up a shutdown).
#[derive(Clone)]
pub struct Live {
    /// Where readings come from; set once the plugin slots exist.
    pub source: Arc<LiveSource>,
    /// Streams that may still start.
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Ends every stream.
    pub shutdown: Shutdown,
}

impl Live {
    /// Streams of readings from `source`, ended by `shutdown`.
    pub fn new(source: LiveSource, shutdown: Shutdown) -> Self {
        Self {
            source: Arc::new(source),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            shutdown,
        }
    }

    /// A stream of readings `interval` apart, the first at once; `None` when
    /// [`MAX_STREAMS`] already run.
    pub fn stream(&self, interval: Duration) -> Option<BoxStream<'static, LiveReading>> {
        let permit = Arc::clone(&self.streams).try_acquire_owned().ok()?;
        let source = Arc::clone(&self.source);
        let readings = futures::stream::unfold(
            (source, None::<(Snapshot, Instant)>, permit),
            move |(source, previous, permit)| async move {
                if previous.is_some() {
                    tokio::time::sleep(interval).await;
                }
                let now = source.snapshot();
                let reading = match &previous {
                    Some((before, at)) => source.reading(before, &now, at.elapsed().as_secs_f64()),
                    None => source.reading(&now, &now, 0.0),
                };
                Some((reading, (source, Some((now, Instant::now())), permit)))
            },
        );
        let mut shutdown = self.shutdown.clone();
        Some(
            readings
                .take_until(Box::pin(async move { shutdown.wait().await }))
                .boxed(),
        )
    }
}
