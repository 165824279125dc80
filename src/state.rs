//! The state every front end shares: the key-value service, the
//! configuration, the connection counts and the shutdown signal. Built by
//! [`crate::server`] (or a test) and handed to each listener; nothing in it
//! knows which protocol uses it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::kv::Kv;

/// State shared by every connection of every front end.
pub struct AppState {
    pub kv: Arc<Kv>,
    pub config: Config,
    /// Open memcached connections (`curr_connections`).
    pub curr_connections: AtomicU64,
    /// memcached connections accepted since start (`total_connections`).
    pub total_connections: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl AppState {
    pub fn new(kv: Arc<Kv>, config: Config) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(AppState {
            kv,
            config,
            curr_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            shutdown,
        })
    }

    /// Asks the whole server to shut down gracefully.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has been requested.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether shutdown has been requested.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
