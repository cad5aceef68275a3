//! AgentGate's transport seam ([`agentgate_runtime::net`]) on turmoil's simulated network: the
//! nodes' and edges' own code dials and accepts here exactly as it does on TCP.

use std::net::SocketAddr;

use agentgate_runtime::net::{AcceptFuture, BoxListener, Conn, Dialer, Listener};

struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> AcceptFuture<'_> {
        Box::pin(async move {
            let (s, peer) = self.0.accept().await?;
            Ok((Conn::new(s), peer))
        })
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Listens on `port` of the current simulated host.
pub async fn bind(port: u16) -> std::io::Result<BoxListener> {
    let l = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    Ok(Box::new(SimListener(l)))
}

/// Dials `host:port` over the simulated network.
pub fn dialer() -> Dialer {
    Dialer::custom(|authority| {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(authority.as_str()).await?;
            Ok(Conn::new(s))
        })
    })
}
