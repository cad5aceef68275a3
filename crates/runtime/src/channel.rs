//! The one way AgentGate dials a core node: a lazily connected channel with a deadline on every
//! request and HTTP/2 keepalive, so a half-open connection (a partition, a killed peer) is
//! noticed and replaced instead of hanging.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::net::Dialer;

/// A channel to `addr` (`host:port`, or a full `http(s)://` URI), dialed with `dialer`.
pub fn lazy(addr: &str, rpc_timeout: Duration, dialer: &Dialer) -> Result<Channel, String> {
    let uri = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let ep = Endpoint::from_shared(uri).map_err(|e| format!("bad address `{addr}`: {e}"))?;
    let ep = ep
        .connect_timeout(rpc_timeout.min(Duration::from_secs(2)))
        .timeout(rpc_timeout)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    Ok(if dialer.is_tcp() {
        ep.connect_lazy()
    } else {
        ep.connect_with_connector_lazy(dialer.clone())
    })
}
