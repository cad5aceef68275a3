//! What every AgentGate binary serves besides its API: structured logs, and `/livez`,
//! `/readyz`, `/metrics` over plain HTTP/1 on their own listener.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::net::BoxListener;

/// What `/readyz` and `/metrics` ask the binary.
pub trait Probe: Send + Sync + 'static {
    /// Ready to serve, or why not.
    fn readiness(&self) -> Result<(), String>;
    /// Refreshes the gauges read at scrape time, just before `/metrics` renders.
    fn before_scrape(&self) {}
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn handle(
    probe: &dyn Probe,
    metrics: Option<&PrometheusHandle>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match probe.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let Some(m) = metrics else {
                return text(StatusCode::NOT_FOUND, "metrics are not enabled\n".into());
            };
            probe.before_scrape();
            let mut r = text(StatusCode::OK, m.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /livez, /readyz or /metrics\n".into(),
        ),
    }
}

/// Serves `/livez`, `/readyz` and `/metrics` until the task is dropped.
pub async fn serve_health(
    mut listener: BoxListener,
    probe: Arc<dyn Probe>,
    metrics: Option<PrometheusHandle>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (probe, metrics) = (probe.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = handle(probe.as_ref(), metrics.as_ref(), &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// What kind of metric a [`MetricDoc`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric a binary exposes: name, kind, unit, HELP text and label keys. Label values are
/// always drawn from bounded sets (tenants, configured servers, catalog tools, Raft ids):
/// never session ids, argument values or anything else an agent chooses freely.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Option<metrics::Unit>,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl MetricDoc {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        MetricDoc {
            name,
            kind: MetricKind::Counter,
            unit: None,
            help,
            labels: &[],
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        MetricDoc {
            kind: MetricKind::Gauge,
            ..MetricDoc::counter(name, help)
        }
    }

    /// A histogram in seconds.
    pub const fn seconds(name: &'static str, help: &'static str) -> Self {
        MetricDoc {
            kind: MetricKind::Histogram,
            unit: Some(metrics::Unit::Seconds),
            ..MetricDoc::counter(name, help)
        }
    }

    pub const fn unit(self, unit: metrics::Unit) -> Self {
        MetricDoc {
            unit: Some(unit),
            ..self
        }
    }

    pub const fn labels(self, labels: &'static [&'static str]) -> Self {
        MetricDoc { labels, ..self }
    }
}

/// Installs the process-wide Prometheus recorder (histograms with `buckets`, in seconds) and
/// describes every metric of `docs`. Unlabelled metrics are registered at zero so that they are
/// on the first scrape: `rate()` and `increase()` then see their first events, and alerts on
/// them do not wait for a first event. (A gauge whose zero would mislead is set before every
/// render by its binary's [`Probe::before_scrape`].)
pub fn install_metrics(buckets: &[f64], docs: &[&[MetricDoc]]) -> Result<PrometheusHandle, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(buckets)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    for d in docs.iter().flat_map(|d| d.iter()) {
        let unlabelled = d.labels.is_empty();
        match (d.kind, d.unit) {
            (MetricKind::Counter, Some(u)) => metrics::describe_counter!(d.name, u, d.help),
            (MetricKind::Counter, None) => metrics::describe_counter!(d.name, d.help),
            (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(d.name, u, d.help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(d.name, d.help),
            (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(d.name, u, d.help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(d.name, d.help),
        }
        match d.kind {
            MetricKind::Counter if unlabelled => metrics::counter!(d.name).increment(0),
            MetricKind::Gauge if unlabelled => metrics::gauge!(d.name).increment(0.0),
            MetricKind::Histogram if unlabelled => {
                let _ = metrics::histogram!(d.name);
            }
            _ => {}
        }
    }
    Ok(handle)
}
