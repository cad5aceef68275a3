//! Relaying an upstream's reply to the agent: allowlisted headers, the upstream's session id
//! sealed into a token any edge can open, and the body passed on frame by frame. Event streams
//! of watched calls go through a pump that ends the stream as soon as a kill switch covering the
//! call arrives (with a JSON-RPC error event when the call had an id) or the agent goes away
//! (dropping the upstream body cancels upstream).
//!
//! INVARIANT: replies are relayed as they arrive, never buffered whole (but for `tools/list`,
//! which `proxy.rs` filters within a bound).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{EdgeError, denial_body};
use crate::gate::{self, Subject};
use crate::limits::SESSION_ID_BYTES_MAX;
use crate::limits::STREAM_FRAMES_BUFFERED;
use crate::proxy::{Ctx, Gateway};
use crate::session::Session;
use crate::sse;
use crate::upstream::{self, BoxError, FORWARD_RESPONSE, MCP_SESSION_ID};

/// The response body type of every edge reply.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A whole reply.
pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The response headers an agent may see.
pub fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARD_RESPONSE {
        for v in from.get_all(name) {
            to.append(name, v.clone());
        }
    }
}

/// What a relayed stream watches for: the kill switches that would have stopped its call.
#[derive(Debug, Clone)]
pub struct Watched {
    pub tenant: String,
    pub agent: String,
    pub session: Option<String>,
    pub tool: Option<String>,
    pub read_only: bool,
    pub region: String,
    pub request_id: Option<Value>,
}

impl Watched {
    fn subject(&self) -> Subject<'_> {
        Subject {
            tenant: &self.tenant,
            agent: &self.agent,
            session: self.session.as_deref(),
            tool: self.tool.as_deref(),
            read_only: self.read_only,
            region: &self.region,
        }
    }
}

impl Gateway {
    /// Relays an upstream reply (see the module docs). `initialize` is the protocol revision an
    /// `initialize` request asked for, sealed into the new session's token.
    pub(crate) fn relay(
        &self,
        ctx: Ctx,
        resp: Response<Incoming>,
        watched: Option<Watched>,
        initialize: Option<String>,
    ) -> Response<Body> {
        let (parts, incoming) = resp.into_parts();
        let mut out_headers = HeaderMap::new();
        copy_response_headers(&parts.headers, &mut out_headers);
        if let Some(upstream_sid) = parts
            .headers
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
        {
            if upstream_sid.len() > SESSION_ID_BYTES_MAX {
                return EdgeError::Upstream("the upstream's session id is too long".into())
                    .reply(None);
            }
            let session = Session {
                tenant: ctx.agent.tenant.clone(),
                server: ctx.server.clone(),
                agent: ctx.agent.id.clone(),
                upstream: upstream_sid.to_string(),
                revision: initialize
                    .or_else(|| ctx.session.as_ref().map(|s| s.revision.clone()))
                    .unwrap_or_else(|| ctx.revision.clone()),
            };
            if let Ok(v) = HeaderValue::from_str(&self.sessions.seal(&session)) {
                out_headers.insert(MCP_SESSION_ID, v);
            }
        }
        let stream = upstream::is_event_stream(&parts.headers);
        let permit = ctx.permit;
        let body: Body = match watched {
            Some(w) if stream => self.pump(incoming, w, permit),
            _ => incoming
                .map_frame(move |f| {
                    let _held_until_the_body_ends = &permit;
                    f
                })
                .map_err(BoxError::from)
                .boxed_unsync(),
        };
        let mut r = Response::new(body);
        *r.status_mut() = parts.status;
        *r.headers_mut() = out_headers;
        r
    }

    /// Relays a stream through a bounded channel, ending it when a kill switch covering the
    /// call arrives or the agent goes away.
    fn pump(&self, mut incoming: Incoming, w: Watched, permit: OwnedSemaphorePermit) -> Body {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(STREAM_FRAMES_BUFFERED);
        let mut view = self.view.clone();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // A switch committed between the decision and now counts too.
            view.mark_changed();
            loop {
                tokio::select! {
                    biased;
                    changed = view.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let state = view.borrow_and_update().state.clone();
                        if let Some(d) = gate::kill_switch(&state, &w.subject(), clock.now_ms()) {
                            metrics::counter!("agentgate_edge_streams_aborted_total").increment(1);
                            if let Some(id) = &w.request_id {
                                let event = sse::message_event(&denial_body(Some(id), &d).to_string());
                                let _ = tx.send(Ok(Frame::data(Bytes::from(event)))).await;
                            }
                            break;
                        }
                    }
                    () = tx.closed() => break,
                    frame = incoming.frame() => match frame {
                        None => break,
                        Some(Ok(f)) => {
                            if tx.send(Ok(f)).await.is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(Err(e.into())).await;
                            break;
                        }
                    },
                }
            }
        });
        StreamBody::new(ReceiverStream::new(rx)).boxed_unsync()
    }
}
