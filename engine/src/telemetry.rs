//! Traces with OpenTelemetry, off unless configured: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, the engine's spans (one per ingest request, per
//! applied batch, per plugin call, per DynamoDB read and write) go to that OTLP/HTTP endpoint
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `http/json`).
//!
//! A W3C `traceparent` sent with a POST is the ingest span's parent; the ingest span's own
//! context travels in the Kafka message's `traceparent` header and is the parent of the
//! consumer's span, so one trace shows an event from HTTP to DynamoDB. Spans carry the
//! pipeline, table and plugin, never a key or a field value.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header that carries the trace context, over HTTP and in Kafka messages.
pub const TRACEPARENT: &str = "traceparent";
/// Its companion with vendor-specific state.
pub const TRACESTATE: &str = "tracestate";

/// The exporter; dropping it flushes the spans not yet sent.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("ordo: traces not all exported at exit: {e}");
        }
    }
}

/// Whether the environment asks for traces.
fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracing layer that exports spans, and the exporter to keep until exit; `None` when the
/// environment does not ask for traces. An error names what is wrong with the settings.
pub fn layer<S>() -> Result<Option<(impl tracing_subscriber::Layer<S>, Exporter)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !configured() {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("http/protobuf") => Protocol::HttpBinary,
        Ok("http/json") => Protocol::HttpJson,
        Ok(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not supported: use http/protobuf or http/json"
            ))
        }
    };
    // The endpoint comes from the OTEL_EXPORTER_OTLP_* variables, read by the exporter.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| format!("the OTLP trace exporter: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "ordo".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("ordo");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Exporter { provider })))
}

/// Makes the trace context in `headers` (`traceparent`, `tracestate`) the parent of `span`;
/// a missing or malformed context leaves `span` a root.
pub fn continue_from<'a>(
    span: &tracing::Span,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let carrier: HashMap<String, String> = headers
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT) || k.eq_ignore_ascii_case(TRACESTATE))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    if carrier.is_empty() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed, when there is nothing to do.
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` to send on with work done under `span`: the span's own context when
/// traces are exported, else `incoming` when it is a well-formed `traceparent` (so a trace
/// started upstream survives an engine that does not export).
pub fn traceparent(span: &tracing::Span, incoming: Option<&str>) -> Option<String> {
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() {
        return Some(format!(
            "00-{}-{}-{:02x}",
            own.trace_id(),
            own.span_id(),
            own.trace_flags().to_u8()
        ));
    }
    incoming.filter(|t| well_formed(t)).map(str::to_string)
}

/// Whether `text` is a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, ids not zero.
fn well_formed(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_is_passed_on() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(well_formed(good));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nx: y",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
        let span = tracing::Span::none();
        assert_eq!(traceparent(&span, Some(good)).as_deref(), Some(good));
        assert_eq!(traceparent(&span, Some("garbage")), None);
    }
}
