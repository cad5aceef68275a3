//! Logs and traces for every binary: structured logs on stderr and, when configured, OTLP
//! traces.
//!
//! Traces are off unless an endpoint is given (`--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). The standard
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER[_ARG]` are honoured;
//! `--trace-sample-ratio` overrides the sampler with a parent-based ratio.
//!
//! Only spans of the target [`TARGET`] are exported, and logs never see them: with traces off
//! they are disabled at their call site and cost a relaxed load each. Export never blocks the
//! caller: finished spans wait in a bounded queue ([`QUEUE_SPANS_MAX`]); when it is full a span
//! is dropped and counted (`agentgate_trace_spans_dropped_total`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use tracing_subscriber::Layer;

use crate::limits::{EXPORT_BATCH_SPANS_MAX, QUEUE_SPANS_MAX};
use crate::ops::MetricDoc;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The `tracing` target of the spans exported as traces.
pub const TARGET: &str = "agentgate::trace";
/// How often a partial batch leaves.
const EXPORT_INTERVAL: Duration = Duration::from_millis(500);
/// One export request's deadline.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The trace flags every binary takes (`#[command(flatten)]` into its configuration).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TraceArgs {
    /// Export traces over OTLP/gRPC to this endpoint (e.g. `http://127.0.0.1:4317`). Default:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`; none: traces off.
    #[arg(long, env = "AGENTGATE_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    /// Sample this fraction (0..=1) of new traces; a caller's sampled trace is always continued.
    /// Default: `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`, else every trace.
    #[arg(long, env = "AGENTGATE_TRACE_SAMPLE_RATIO", global = true)]
    pub trace_sample_ratio: Option<f64>,
}

impl TraceArgs {
    /// The settings of the binary named `service_name`.
    pub fn settings(&self, service_name: &'static str) -> TraceSettings {
        TraceSettings {
            endpoint: self.otlp_endpoint.clone(),
            sample_ratio: self.trace_sample_ratio,
            service_name,
        }
    }
}

/// What a binary says about its traces (its flags; the environment fills the rest).
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// OTLP gRPC endpoint (`http://host:4317`); `None`: the environment's, if any.
    pub endpoint: Option<String>,
    /// Parent-based ratio sampler for new traces; `None`: the environment's, else always on.
    pub sample_ratio: Option<f64>,
    /// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: &'static str,
}

impl TraceSettings {
    /// Whether spans are to be exported (an endpoint is configured and the SDK not disabled).
    pub fn exporting(&self) -> bool {
        self.endpoint().is_some()
    }

    /// The endpoint to export to, or None when traces are off.
    fn endpoint(&self) -> Option<String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return None;
        }
        self.endpoint
            .clone()
            .filter(|e| !e.trim().is_empty())
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    }
}

/// Keeps the trace pipeline alive; dropping it flushes what is queued (bounded by the export
/// timeout) and stops exporting.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown_with_timeout(EXPORT_TIMEOUT);
        }
    }
}

/// Installs logs (JSON, or `text` for terminals; level from `RUST_LOG`, else `default_filter`)
/// and, when configured, the OTLP trace pipeline. Must run inside a tokio runtime that outlives
/// the returned guard (the exporter's gRPC channel lives on it).
pub fn init(
    log_format: &str,
    default_filter: &str,
    traces: &TraceSettings,
) -> Result<Telemetry, String> {
    // Logs never carry the exported spans (their fields would be formatted per request).
    let logs_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter))
        .add_directive(
            format!("{TARGET}=off")
                .parse()
                .map_err(|e| format!("log filter: {e}"))?,
        );
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if log_format == "text" {
        fmt.boxed()
    } else {
        let json = tracing_subscriber::fmt::format()
            .json()
            .with_current_span(false);
        fmt.json().event_format(WithTraceIds(json)).boxed()
    }
    .with_filter(logs_filter);

    let endpoint = traces.endpoint();
    let (provider, otel) = match &endpoint {
        None => (None, None),
        Some(endpoint) => {
            let provider = provider(endpoint, traces)?;
            let tracer = provider.tracer("agentgate");
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_level(false)
                .with_filter(Targets::new().with_target(TARGET, LevelFilter::TRACE));
            (Some(provider), Some(layer))
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    if let Some(endpoint) = endpoint.filter(|_| provider.is_some()) {
        tracing::info!(%endpoint, queue_spans_max = QUEUE_SPANS_MAX, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

fn provider(endpoint: &str, traces: &TraceSettings) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        pending: pending.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            // Our bound (`Bounded`) is the one that applies: the inner queue never fills.
            .with_max_queue_size(QUEUE_SPANS_MAX * 2)
            .with_max_export_batch_size(EXPORT_BATCH_SPANS_MAX)
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build(),
    )
    .build();
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(traces.service_name);
    }
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            pending,
            limit: QUEUE_SPANS_MAX,
        })
        .with_resource(resource.build());
    if let Some(ratio) = traces.sample_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "the trace sample ratio must be within 0..=1, not {ratio}"
            ));
        }
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    }
    Ok(builder.build())
}

/// A JSON log line formatter that adds `trace_id` and `span_id` when the event happens inside a
/// traced span (a request the edge traces, an admin operation the node traces), so a log line
/// leads to its trace.
struct WithTraceIds<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(ids) = current_trace_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        writer.write_str(&tag_json_line(&line, &ids))
    }
}

/// The trace and span ids of the current span, when it belongs to a trace.
fn current_trace_ids() -> Option<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// `line` (one JSON object) with `trace_id` and `span_id` as its first fields.
fn tag_json_line(line: &str, (trace_id, span_id): &(String, String)) -> String {
    match line.strip_prefix('{') {
        Some(rest) => format!(r#"{{"trace_id":"{trace_id}","span_id":"{span_id}",{rest}"#),
        None => line.to_string(),
    }
}

/// Admits a finished span only while fewer than `limit` wait for export; counts the rest.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    limit: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            metrics::counter!("agentgate_trace_spans_dropped_total").increment(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Releases [`Bounded`]'s slots once a batch has been exported (or failed), and counts it.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        match &result {
            Ok(()) => metrics::counter!("agentgate_trace_spans_exported_total").increment(n as u64),
            Err(_) => metrics::counter!("agentgate_trace_spans_failed_total").increment(n as u64),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The trace pipeline's own metrics (every binary exposes them).
pub const METRICS: &[MetricDoc] = &[
    MetricDoc::counter(
        "agentgate_trace_spans_exported_total",
        "Spans exported over OTLP.",
    ),
    MetricDoc::counter(
        "agentgate_trace_spans_dropped_total",
        "Spans dropped because the export queue was full (export never blocks a request).",
    ),
    MetricDoc::counter(
        "agentgate_trace_spans_failed_total",
        "Spans whose export request failed (the collector was unreachable or refused them).",
    ),
];

/// The W3C trace context (`traceparent`, `tracestate`) in `carrier`, as a parent context.
pub fn extract(carrier: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

/// Writes `cx`'s W3C trace context into `carrier`.
pub fn inject(cx: &Context, carrier: &mut dyn Injector) {
    TraceContextPropagator::new().inject_context(cx, carrier);
}

/// Whether `cx` holds a valid span (a trace to continue or to pass on).
pub fn has_span(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
}

/// Whether `cx`'s span is sampled (its spans are to be recorded and exported).
pub fn is_sampled(cx: &Context) -> bool {
    cx.span().span_context().is_sampled()
}

/// The 32-hex-digit trace id of `cx`'s span, when valid.
pub fn trace_id(cx: &Context) -> Option<String> {
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Writes the current span's W3C context (when it belongs to a trace) into gRPC request
/// metadata, for the callee to continue the trace.
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if !has_span(&cx) {
        return;
    }
    let mut headers = http::HeaderMap::new();
    inject(&cx, &mut HeaderCarrier(&mut headers));
    for (k, v) in &headers {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(k.as_str().as_bytes()),
            tonic::metadata::MetadataValue::try_from(v.as_bytes()),
        ) {
            metadata.insert(k, v);
        }
    }
}

/// HTTP headers as a propagation carrier (both directions).
pub struct HeaderCarrier<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Read-only HTTP headers as a propagation carrier.
pub struct HeaderReader<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_context_round_trips_through_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static(PARENT));
        let cx = extract(&HeaderReader(&headers));
        assert!(has_span(&cx));
        assert_eq!(
            trace_id(&cx).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let mut out = http::HeaderMap::new();
        inject(&cx, &mut HeaderCarrier(&mut out));
        assert_eq!(
            out.get("traceparent").and_then(|v| v.to_str().ok()),
            Some(PARENT)
        );
    }

    #[test]
    fn malformed_context_is_no_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("00-zz-00f067aa0ba902b7-01"),
        );
        assert!(!has_span(&extract(&HeaderReader(&headers))));
        assert!(!has_span(&extract(&HeaderReader(&http::HeaderMap::new()))));
    }

    #[test]
    fn json_log_lines_lead_with_the_trace_ids() {
        let ids = (
            "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            "00f067aa0ba902b7".into(),
        );
        let line = r#"{"timestamp":"t","level":"WARN","fields":{"message":"m"}}
"#;
        let tagged = tag_json_line(line, &ids);
        let v: serde_json::Value = serde_json::from_str(tagged.trim()).unwrap_or_default();
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["fields"]["message"], "m");
        assert!(tagged.ends_with('\n'));
        assert_eq!(tag_json_line("not json\n", &ids), "not json\n");
    }

    #[test]
    fn traces_are_off_without_an_endpoint() {
        let s = TraceSettings::default();
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            assert_eq!(s.endpoint(), None);
        }
        let s = TraceSettings {
            endpoint: Some("http://127.0.0.1:4317".into()),
            ..TraceSettings::default()
        };
        if std::env::var_os("OTEL_SDK_DISABLED").is_none()
            && std::env::var_os("OTEL_TRACES_EXPORTER").is_none()
        {
            assert_eq!(s.endpoint().as_deref(), Some("http://127.0.0.1:4317"));
        }
    }
}
