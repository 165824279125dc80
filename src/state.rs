//! The state every front end shares: the key-value service, the
//! configuration, the connection counts and the shutdown signal. Built by
//! [`crate::server`] (or a test) and handed to each listener; nothing in it
//! knows which protocol uses it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

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
    /// What the operator commands set (`verbosity`, `slabs automove`,
    /// `lru_crawler ...`): reported back by `stats settings`.
    pub operator: Operator,
    /// Listeners and open connections, for `stats conns`.
    conns: Registry,
    shutdown: watch::Sender<bool>,
}

/// Settings the operator commands change at run time. None of them changes
/// how this server works (it has no log levels by verbosity, no slab mover,
/// no background LRU crawler); they are kept so that `stats settings`
/// reports what was set, as memcached does.
pub struct Operator {
    pub verbosity: AtomicU64,
    pub slab_automove: AtomicU64,
    pub crawler_enabled: AtomicBool,
    pub crawler_sleep: AtomicU64,
    pub crawler_tocrawl: AtomicU64,
}

impl Default for Operator {
    /// memcached 1.6.18's defaults.
    fn default() -> Self {
        Operator {
            verbosity: AtomicU64::new(0),
            slab_automove: AtomicU64::new(1),
            crawler_enabled: AtomicBool::new(true),
            crawler_sleep: AtomicU64::new(100),
            crawler_tocrawl: AtomicU64::new(0),
        }
    }
}

type Registry = Arc<Mutex<BTreeMap<u64, Arc<ConnEntry>>>>;

/// One listener or connection as `stats conns` shows it.
pub struct ConnEntry {
    /// The socket's file descriptor (memcached's id too).
    pub id: u64,
    /// The peer (the bound address for a listener), as `stats conns`
    /// prints it: `tcp:127.0.0.1:40000` or `unix:/run/memcached.sock`.
    pub addr: Arc<str>,
    /// The listener a connection came through; `None` for a listener.
    pub listen: Option<Arc<str>>,
    busy: AtomicBool,
    last: AtomicU64,
}

impl ConnEntry {
    /// memcached's state name.
    pub fn state(&self) -> &'static str {
        match (&self.listen, self.busy.load(Ordering::Relaxed)) {
            (None, _) => "conn_listening",
            (Some(_), true) => "conn_parse_cmd",
            (Some(_), false) => "conn_waiting",
        }
    }

    /// When it last ran a command (unix secs; a listener: when it opened).
    pub fn last_command(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    /// The connection starts (`busy`) or finishes a batch of commands.
    pub fn set_busy(&self, busy: bool, now: u64) {
        self.busy.store(busy, Ordering::Relaxed);
        if busy {
            self.last.store(now, Ordering::Relaxed);
        }
    }
}

/// Keeps a [`ConnEntry`] listed until dropped.
pub struct ConnHandle {
    pub entry: Arc<ConnEntry>,
    registry: Registry,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.entry.id);
    }
}

impl AppState {
    pub fn new(kv: Arc<Kv>, config: Config) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(AppState {
            kv,
            config,
            curr_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            operator: Operator::default(),
            conns: Registry::default(),
            shutdown,
        })
    }

    /// Lists a listener (`listen` None) or a connection in `stats conns`
    /// while the handle lives.
    pub fn register(&self, id: u64, addr: Arc<str>, listen: Option<Arc<str>>) -> ConnHandle {
        let entry = Arc::new(ConnEntry {
            id,
            addr,
            listen,
            busy: AtomicBool::new(false),
            last: AtomicU64::new(self.kv.now()),
        });
        self.conns.lock().insert(id, entry.clone());
        ConnHandle {
            entry,
            registry: self.conns.clone(),
        }
    }

    /// Every listed listener and connection, by id.
    pub fn connections(&self) -> Vec<Arc<ConnEntry>> {
        self.conns.lock().values().cloned().collect()
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
