//! What every listener shares: binding with memcached's backlog, the
//! warning for an exposed unauthenticated listener, TLS, and the unix
//! socket's file.

use std::net::SocketAddr;

use tokio::net::TcpListener;

pub mod tls;
pub mod unix;

/// memcached's default listen backlog (`-b`); std's 128 overflows under a
/// burst of connects, and each overflow costs the client a 1 s SYN retry.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listener with [`LISTEN_BACKLOG`]; the memcached and the HTTP
/// listener both bind through here.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Warns when a listener is reachable beyond this host without auth.
pub fn warn_if_exposed(addr: SocketAddr, authenticated: bool) {
    if !addr.ip().is_loopback() && !authenticated {
        tracing::warn!(%addr, "listening on a non-loopback address without authentication");
    }
}
