//! Each pipeline's routes: `POST {route}` checks an event ([`event`]) and produces it (one,
//! or an NDJSON body of many: [`bulk`]), `GET {route}/{id}` reads the replica back; who may
//! call them ([`guard`]) and the problem documents they answer with ([`problem`]).
//! `Idempotency-Key`s are remembered in `crate::store::keys`. The engine's own endpoints,
//! `/docs` and the assembly of the whole application are the operator's side
//! (`crate::operator`).

use std::sync::Arc;
use std::time::Duration;

use poem::{get, post, Route};

pub mod bulk;
mod event;
pub mod guard;
mod handler;
pub mod problem;
mod read;
#[cfg(test)]
mod tests;

pub use bulk::{DEFAULT_BULK_BODY_LIMIT, DEFAULT_BULK_MAX_LINES};
pub use event::{prepare, Prepared, NDJSON};
pub use handler::{
    Accepted, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
};

use crate::bus::Publisher;
use crate::config::Pipeline;
use crate::metrics::IngestMetrics;
use crate::plugin::PolicyHandle;
use crate::store::Store;

/// How one request to a pipeline route is bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body accepted, in bytes.
    pub body_limit: usize,
    /// Largest `application/x-ndjson` body accepted, in bytes.
    pub bulk_body_limit: usize,
    /// Most events (lines) one `application/x-ndjson` body may carry.
    pub bulk_max_lines: usize,
    /// Longest the body may take to arrive (then 408).
    pub body_timeout: Duration,
    /// How long to wait for the broker's ack before answering 503 (the producer goes on
    /// trying, so the event may still land).
    pub produce_timeout: Duration,
}

/// One pipeline's HTTP side: `POST {route}` produces, `GET {route}/{id}` reads back, and the
/// pipeline's part of `/docs` and `/readyz`.
pub struct PipelineApi<P, S> {
    /// The pipeline as configured.
    pub pipeline: Arc<Pipeline>,
    /// Whether its routes are served: it has a route and the process's role ingests.
    pub serves: bool,
    /// Its plugin, for validation and the body schema; the one in force at each request.
    pub policy: PolicyHandle,
    /// The producer.
    pub publisher: Arc<P>,
    /// Its table.
    pub store: S,
    /// Body size and ack wait.
    pub limits: Limits,
    /// Bounds requests in flight; one budget for every pipeline, as it bounds the process's
    /// memory rather than a route's share.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Answers remembered by `Idempotency-Key`.
    pub idempotency: crate::store::keys::IdempotencyKeys,
    /// Answers by status and produce latency, for `/metrics`.
    pub metrics: IngestMetrics,
    /// Who may call its routes; `None`: anyone who can reach the (loopback) listener.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Keys its consumer holds back on a transient failure, for `/readyz`.
    pub waits: crate::pipeline::Waits,
}

/// Adds every pipeline's `POST {route}` and `GET {route}/{id}` to `route`.
pub fn routes<P: Publisher, S: Store>(
    mut route: Route,
    pipelines: &[Arc<PipelineApi<P, S>>],
) -> Route {
    for p in pipelines {
        // A route-less pipeline only consumes; a process in the apply role serves no route.
        let Some(own) = p.pipeline.route.as_deref().filter(|_| p.serves) else {
            continue;
        };
        let ingest = Arc::clone(p);
        route = route.at(
            own,
            post(poem::endpoint::make(move |request| {
                let p = Arc::clone(&ingest);
                async move { p.ingest(request).await }
            })),
        );
        let read = Arc::clone(p);
        route = route.at(
            format!("{own}/:id"),
            get(poem::endpoint::make(move |request| {
                let p = Arc::clone(&read);
                async move { p.read_back(request).await }
            })),
        );
    }
    route
}
