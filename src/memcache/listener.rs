//! The memcached listeners (TCP and `--unix-socket`): accept connections up
//! to `--max-connections`, one count shared by both (refusing more the way
//! memcached does) and, on shutdown, stop accepting and wait for every
//! connection to finish its current batch.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use super::connection::Connection;
use crate::auth::Credentials;
use crate::kv::stats::bump;
use crate::net::tls::TlsAcceptor;
use crate::state::AppState;

/// A bound memcached listener.
pub enum Listener {
    Tcp(TcpListener),
    /// Never TLS: the socket does not leave the host and its file mode
    /// decides who may connect (memcached does not do TLS on it either).
    Unix(UnixListener),
}

/// An accepted connection and its `stats conns` address.
enum Accepted {
    Tcp(tokio::net::TcpStream, Arc<str>),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    /// The listener's own address as `stats conns` prints it.
    fn label(&self) -> Option<Arc<str>> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(|a| format!("tcp:{a}").into()),
            Listener::Unix(l) => l.local_addr().ok().and_then(|a| {
                a.as_pathname()
                    .map(|p| format!("unix:{}", p.display()).into())
            }),
        }
    }

    fn fd(&self) -> u64 {
        match self {
            Listener::Tcp(l) => l.as_raw_fd() as u64,
            Listener::Unix(l) => l.as_raw_fd() as u64,
        }
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Accepted::Tcp(s, format!("tcp:{peer}").into())
            }
            Listener::Unix(l) => Accepted::Unix(l.accept().await?.0),
        })
    }
}

/// Serves until shutdown; with `tls` every TCP connection must speak TLS,
/// with `auth` every connection must authenticate first.
pub async fn run(
    listener: Listener,
    shared: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<Credentials>>,
) {
    let mut shutdown = shared.shutdown_signal();
    let listen = listener.label();
    let _listed = listen
        .clone()
        .map(|addr| shared.register(listener.fd(), addr, None));
    // Every connection holds a sender; when all are dropped, draining is done.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let current = shared.curr_connections.load(Ordering::Relaxed);
        if current as usize >= shared.config.max_connections {
            bump(&shared.kv.stats.rejected_connections);
            tokio::spawn(async move {
                match accepted {
                    Accepted::Tcp(s, _) => refuse(s).await,
                    Accepted::Unix(s) => refuse(s).await,
                }
            });
            continue;
        }
        let (fd, peer) = match &accepted {
            Accepted::Tcp(s, peer) => (s.as_raw_fd() as u64, peer.clone()),
            // A unix peer has no name of its own; show the socket's.
            Accepted::Unix(s) => (
                s.as_raw_fd() as u64,
                listen.clone().unwrap_or("unix:".into()),
            ),
        };
        let listed = shared.register(fd, peer.clone(), listen.clone().or(Some(peer.clone())));
        shared.curr_connections.fetch_add(1, Ordering::Relaxed);
        shared.total_connections.fetch_add(1, Ordering::Relaxed);
        let (shared, alive, tls, auth) = (shared.clone(), alive.clone(), tls.clone(), auth.clone());
        tokio::spawn(async move {
            let entry = listed.entry.clone();
            let ended = match (accepted, tls) {
                (Accepted::Unix(s), _) => serve_on(s, shared.clone(), auth, entry).await,
                (Accepted::Tcp(s, _), None) => serve_on(s, shared.clone(), auth, entry).await,
                (Accepted::Tcp(s, _), Some(acceptor)) => {
                    match crate::net::tls::accept(&acceptor, s).await {
                        Ok(stream) => serve_on(stream, shared.clone(), auth, entry).await,
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            shared.curr_connections.fetch_sub(1, Ordering::Relaxed);
            drop(listed);
            drop(alive);
        });
    }
    drop(alive);
    let _ = drained.recv().await;
}

async fn serve_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    shared: Arc<AppState>,
    auth: Option<Arc<Credentials>>,
    entry: Arc<crate::state::ConnEntry>,
) -> std::io::Result<()> {
    Connection::new(stream, shared, auth)
        .listed(entry)
        .run()
        .await
}

/// memcached's answer to a connection over `--max-connections`.
async fn refuse<S: AsyncWrite + Unpin>(mut socket: S) {
    let _ = socket
        .write_all(b"ERROR Too many open connections\r\n")
        .await;
    let _ = socket.shutdown().await;
}
