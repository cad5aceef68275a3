//! The transport seam: every socket AgentGate opens or accepts goes through a [`Dialer`] or a
//! [`Listener`], so the same node and edge code runs on the operating system's TCP in production
//! and on a simulated network (turmoil, `tests/sim`) in simulations.
//!
//! Production uses [`Dialer::tcp`] and `tokio::net::TcpListener`; nothing else changes for it
//! but one dynamic call per read/write.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a connection must be.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One connection, dialed or accepted, whatever carries it.
pub struct Conn(Box<dyn Io>);

impl Conn {
    pub fn new(io: impl Io) -> Self {
        Conn(Box::new(io))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// tonic's server asks accepted connections for their peer; no AgentGate service reads it.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// hyper's pooled client asks dialed connections what they are (plain HTTP/1 or HTTP/2 by
/// negotiation, never proxied).
impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;
type DialFn = dyn Fn(String) -> DialFuture + Send + Sync;

/// Opens connections to `host:port`. Cheap to clone. Also a connector for tonic channels and
/// hyper clients (a `tower` service from [`Uri`] to a connection).
#[derive(Clone)]
pub struct Dialer {
    custom: Option<Arc<DialFn>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("custom", &self.custom.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Default bound on opening a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Dialer {
    /// The operating system's TCP, `TCP_NODELAY` set.
    pub fn tcp() -> Self {
        Dialer {
            custom: None,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// Dials with `f` (given `host:port`): a simulated network.
    pub fn custom(f: impl Fn(String) -> DialFuture + Send + Sync + 'static) -> Self {
        Dialer {
            custom: Some(Arc::new(f)),
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// Whether this is the operating system's TCP (callers may use their library's own dialer).
    pub fn is_tcp(&self) -> bool {
        self.custom.is_none()
    }

    /// Opens a connection to `authority` (`host:port`), within the connect timeout.
    pub fn dial(&self, authority: String) -> DialFuture {
        let custom = self.custom.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let connect = async {
                match custom {
                    Some(f) => f(authority).await,
                    None => {
                        let s = tokio::net::TcpStream::connect(authority.as_str()).await?;
                        s.set_nodelay(true)?;
                        Ok(Conn::new(s))
                    }
                }
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting took longer than {timeout:?}"),
                )),
            }
        })
    }
}

/// `host:port` of a URI, the port defaulted from its scheme.
pub fn authority(uri: &Uri) -> io::Result<String> {
    let host = uri.host().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("no host in `{uri}`"))
    })?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Ok(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<Conn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Conn>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let conn = dialer.dial(authority(&uri)?).await?;
            Ok(TokioIo::new(conn))
        })
    }
}

pub type AcceptFuture<'a> =
    Pin<Box<dyn Future<Output = io::Result<(Conn, SocketAddr)>> + Send + 'a>>;

/// Accepts connections.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> AcceptFuture<'_>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for tokio::net::TcpListener {
    fn accept(&mut self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let (s, peer) = tokio::net::TcpListener::accept(self).await?;
            s.set_nodelay(true)?;
            Ok((Conn::new(s), peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// A boxed listener.
pub type BoxListener = Box<dyn Listener>;

/// Binds a TCP listener on `addr`, boxed.
pub async fn bind(addr: SocketAddr) -> io::Result<BoxListener> {
    Ok(Box::new(tokio::net::TcpListener::bind(addr).await?))
}

/// The listener's connections as a stream (for tonic's `serve_with_incoming`). Accept errors (a
/// peer that reset before accept, too many open files) are skipped after a short pause rather
/// than ending the server.
pub fn incoming(listener: BoxListener) -> impl futures::Stream<Item = io::Result<Conn>> + Send {
    futures::stream::unfold(listener, |mut listener| async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => return Some((Ok(conn), listener)),
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_default_their_port() {
        let a = |s: &str| authority(&s.parse().unwrap()).unwrap();
        assert_eq!(a("http://up.example/mcp"), "up.example:80");
        assert_eq!(a("https://up.example/mcp"), "up.example:443");
        assert_eq!(a("http://127.0.0.1:9000/x"), "127.0.0.1:9000");
        assert_eq!(a("http://[::1]:9000/x"), "[::1]:9000");
        assert!(authority(&"/relative".parse().unwrap()).is_err());
    }
}
