//! The memcached listener: accepts connections up to `--max-connections`
//! (refusing more the way memcached does) and, on shutdown, stops
//! accepting and waits for every connection to finish its current batch.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::connection::Connection;
use crate::auth::Credentials;
use crate::kv::stats::bump;
use crate::net::tls::TlsAcceptor;
use crate::state::AppState;

/// Serves until shutdown; with `tls` every connection must speak TLS, with
/// `auth` every connection must authenticate first.
pub async fn run(
    listener: TcpListener,
    shared: Arc<AppState>,
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<Credentials>>,
) {
    let mut shutdown = shared.shutdown_signal();
    let listen = listener.local_addr().ok();
    let _listed = listen.map(|addr| shared.register(listener.as_raw_fd() as u64, addr, None));
    // Every connection holds a sender; when all are dropped, draining is done.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (mut socket, peer) = match accepted {
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
                let _ = socket
                    .write_all(b"ERROR Too many open connections\r\n")
                    .await;
                let _ = socket.shutdown().await;
            });
            continue;
        }
        let _ = socket.set_nodelay(true);
        let listed = shared.register(socket.as_raw_fd() as u64, peer, listen.or(Some(peer)));
        shared.curr_connections.fetch_add(1, Ordering::Relaxed);
        shared.total_connections.fetch_add(1, Ordering::Relaxed);
        let (shared, alive, tls, auth) = (shared.clone(), alive.clone(), tls.clone(), auth.clone());
        tokio::spawn(async move {
            let entry = listed.entry.clone();
            let ended = match tls {
                None => {
                    Connection::new(socket, shared.clone(), auth)
                        .listed(entry)
                        .run()
                        .await
                }
                Some(acceptor) => match crate::net::tls::accept(&acceptor, socket).await {
                    Ok(stream) => {
                        Connection::new(stream, shared.clone(), auth)
                            .listed(entry)
                            .run()
                            .await
                    }
                    Err(e) => Err(e),
                },
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
