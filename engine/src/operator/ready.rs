//! Readiness: the broker and every pipeline's table answer. Checked by [`probe`] every
//! [`PROBE_EVERY`]; `GET /readyz` answers from the last outcome ([`Readiness`]), so however
//! many anonymous callers ask, the broker and the tables are asked at most once per
//! [`PROBE_EVERY`]. Each outcome is shown as `ordo_ready{check}`, so alert rules, the operator
//! page and `ordo top` see readiness without calling `/readyz`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::bus::Publisher;
use crate::ingest::PipelineApi;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How long each check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often [`probe`] checks, and how old an outcome `/readyz` may answer with.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Each check (`kafka`, `dynamodb:<pipeline>`) and why it failed, if it did.
pub type Checks = BTreeMap<String, Result<(), String>>;

/// The last outcome of the checks, shared by [`probe`] and `/readyz`. Cloning shares it.
#[derive(Clone)]
pub struct Readiness {
    last: Arc<Mutex<Option<(Instant, Checks)>>>,
    fresh: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new(PROBE_EVERY)
    }
}

impl Readiness {
    /// Outcomes younger than `fresh` are answered as they are.
    pub fn new(fresh: Duration) -> Self {
        Self {
            last: Arc::new(Mutex::new(None)),
            fresh,
        }
    }

    /// The last outcome, when it is younger than `fresh`; else the checks run now, once,
    /// for every caller waiting (they wait on the same lock and find the new outcome).
    pub async fn current<P: Publisher, S: Store>(
        &self,
        publisher: &P,
        pipelines: &[Arc<PipelineApi<P, S>>],
        metrics: &Metrics,
    ) -> Checks {
        let mut last = self.last.lock().await;
        if let Some((at, checks)) = last.as_ref() {
            if at.elapsed() < self.fresh {
                return checks.clone();
            }
        }
        let checks = check(publisher, pipelines, metrics).await;
        *last = Some((Instant::now(), checks.clone()));
        checks
    }
}

/// Runs each check (`kafka`, `dynamodb:<pipeline>`) now; the outcomes are also shown in
/// `metrics`.
async fn check<P: Publisher, S: Store>(
    publisher: &P,
    pipelines: &[Arc<PipelineApi<P, S>>],
    metrics: &Metrics,
) -> Checks {
    let mut checks = BTreeMap::new();
    let kafka = publisher.check(CHECK_TIMEOUT).await;
    checks.insert("kafka".to_string(), kafka.map_err(|e| e.to_string()));
    for p in pipelines {
        let table = match tokio::time::timeout(CHECK_TIMEOUT, p.store.check()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        checks.insert(format!("dynamodb:{}", p.pipeline.name), table);
    }
    metrics.checked(&checks.iter().map(|(c, r)| (c.clone(), r.is_ok())).collect());
    checks
}

/// Checks every [`PROBE_EVERY`], from now until `shutdown`, keeping the outcome in
/// `readiness`.
pub async fn probe<P: Publisher, S: Store>(
    readiness: Readiness,
    publisher: Arc<P>,
    pipelines: Vec<Arc<PipelineApi<P, S>>>,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    loop {
        readiness
            .current(publisher.as_ref(), &pipelines, &metrics)
            .await;
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}
