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
