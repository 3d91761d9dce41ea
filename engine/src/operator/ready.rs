//! Readiness: the broker and every pipeline's table answer. Checked on each `GET /readyz` and,
//! by [`probe`], every [`PROBE_EVERY`]; each outcome is shown as `ordo_ready{check}`, so alert
//! rules, the operator page and `ordo top` see readiness without calling `/readyz`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::Publisher;
use crate::ingest::PipelineApi;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How long each check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often [`probe`] checks.
pub const PROBE_EVERY: Duration = Duration::from_secs(10);

/// Each check (`kafka`, `dynamodb:<pipeline>`) and why it failed, if it did; the outcomes are
/// also shown in `metrics`.
pub async fn check<P: Publisher, S: Store>(
    publisher: &P,
    pipelines: &[Arc<PipelineApi<P, S>>],
    metrics: &Metrics,
) -> BTreeMap<String, Result<(), String>> {
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

/// Checks every [`PROBE_EVERY`], from now until `shutdown`.
pub async fn probe<P: Publisher, S: Store>(
    publisher: Arc<P>,
    pipelines: Vec<Arc<PipelineApi<P, S>>>,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    loop {
        check(publisher.as_ref(), &pipelines, &metrics).await;
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}
