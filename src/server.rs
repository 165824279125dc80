//! Process wiring for `serve`: opens the store, starts the listeners and the
//! expiry sweeper, and shuts everything down gracefully on SIGINT/SIGTERM
//! (or the `shutdown` command): stop accepting, let in-flight commands
//! finish, sync the store to disk.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::kv::Kv;
use crate::store::{expiry, Store};

/// The memcached protocol version this server implements and reports.
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// State shared by every connection of every front end.
pub struct Shared {
    pub kv: Arc<Kv>,
    pub config: Config,
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// One `stats` value: memcached prints both kinds the same way, JSON does not.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum StatValue {
    Int(u64),
    Text(String),
}

impl std::fmt::Display for StatValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatValue::Int(n) => write!(f, "{n}"),
            StatValue::Text(s) => f.write_str(s),
        }
    }
}

impl Shared {
    pub fn new(kv: Arc<Kv>, config: Config) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(Shared {
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

    /// The general `stats` report, in memcached's order and names.
    pub fn stats(&self) -> Vec<(&'static str, StatValue)> {
        use StatValue::{Int, Text};
        let now = expiry::now();
        let (user, system) = rusage();
        let mut out = vec![
            ("pid", Int(std::process::id() as u64)),
            ("uptime", Int(now.saturating_sub(self.kv.started()))),
            ("time", Int(now)),
            ("version", Text(PROTOCOL_VERSION.into())),
            (
                "memcached_lite_version",
                Text(env!("CARGO_PKG_VERSION").into()),
            ),
            ("pointer_size", Int(usize::BITS as u64)),
            ("rusage_user", Text(user)),
            ("rusage_system", Text(system)),
            ("max_connections", Int(self.config.max_connections as u64)),
            (
                "curr_connections",
                Int(self.curr_connections.load(Ordering::Relaxed)),
            ),
            (
                "total_connections",
                Int(self.total_connections.load(Ordering::Relaxed)),
            ),
        ];
        out.extend(
            self.kv
                .stats
                .counters()
                .into_iter()
                .map(|(k, v)| (k, Int(v))),
        );
        out.extend([
            ("limit_maxbytes", Int(self.kv.memory_limit())),
            ("threads", Int(self.config.worker_threads() as u64)),
            ("bytes", Int(self.kv.store().bytes())),
            ("curr_items", Int(self.kv.store().curr_items())),
            ("commit_syncs", Int(self.kv.commit_rounds())),
        ]);
        out
    }

    /// `stats settings`.
    pub fn settings(&self) -> Vec<(&'static str, StatValue)> {
        use StatValue::{Int, Text};
        let c = &self.config;
        let yes_no = |b: bool| Text(if b { "yes" } else { "no" }.into());
        vec![
            ("maxbytes", Int(self.kv.memory_limit())),
            ("maxconns", Int(c.max_connections as u64)),
            ("tcpport", Int(c.listen.port() as u64)),
            ("inter", Text(c.listen.ip().to_string())),
            (
                "evictions",
                on_off(c.store.eviction == crate::config::Eviction::Lru),
            ),
            ("shutdown_command", yes_no(c.enable_shutdown)),
            ("num_threads", Int(c.worker_threads() as u64)),
            ("cas_enabled", yes_no(true)),
            ("item_size_max", Int(c.store.max_item_size as u64)),
            ("idle_timeout", Int(c.security.idle_timeout)),
            ("data_dir", Text(c.store.data_dir.display().to_string())),
            ("flush_interval_ms", Int(c.store.flush_interval_ms)),
            (
                "durability",
                Text(format!("{:?}", c.store.durability).to_lowercase()),
            ),
        ]
    }
}

/// memcached prints some switches as `on`/`off`.
fn on_off(on: bool) -> StatValue {
    StatValue::Text(if on { "on" } else { "off" }.into())
}

fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let fmt = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    (fmt(ru.ru_utime), fmt(ru.ru_stime))
}

/// Fills the store's memory index on a thread of its own, so the listeners
/// open at once; until it is done, reads the index cannot answer go to sled.
fn spawn_index_loader(kv: Arc<Kv>) {
    let started = std::time::Instant::now();
    let spawned = std::thread::Builder::new()
        .name("index-loader".into())
        .spawn(move || match kv.store().load_index() {
            Ok(0) => {}
            Ok(records) => tracing::info!(
                records,
                seconds = started.elapsed().as_secs_f64(),
                "memory index loaded"
            ),
            // Reads keep going to sled for the shards not loaded: slower, still correct.
            Err(e) => tracing::error!("loading the memory index failed: {e}"),
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the index loader (reads stay on sled): {e}");
    }
}

/// Opens the store and serves until a shutdown signal; returns after the
/// final sync so that everything acknowledged before it is on disk.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store = Store::open(&config.store)
        .with_context(|| format!("opening store in {}", config.store.data_dir.display()))?;
    let mirror_path = config.mirror.path(&config.store.data_dir);
    if let Some(path) = &mirror_path {
        crate::mirror::check_target(path)?;
    }
    let kv = Arc::new(Kv::new(store, config.store.max_item_size));
    kv.set_memory_limit(config.max_bytes);
    spawn_index_loader(kv.clone());
    let listener = bind(config.listen)
        .with_context(|| format!("binding memcached listener {}", config.listen))?;
    let sec = &config.security;
    let auth = sec
        .auth_file
        .as_deref()
        .map(crate::auth::Credentials::load)
        .transpose()?
        .map(Arc::new);
    let tls = crate::tls::acceptor(sec.tls_cert.as_deref(), sec.tls_key.as_deref())?;
    warn_if_exposed(config.listen, auth.is_some());
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), auth = auth.is_some(), "memcached listener ready");
    let http_listener = if config.no_http {
        None
    } else {
        let l = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("binding HTTP listener {}", config.http_listen))?;
        warn_if_exposed(config.http_listen, sec.http_token_file.is_some());
        tracing::info!(addr = %l.local_addr()?, "HTTP listener ready (Swagger UI at /docs)");
        Some(l)
    };
    let shared = Shared::new(kv.clone(), config);
    crate::metrics::register_source(&shared);

    let sweeper = tokio::spawn(kv.clone().run_sweeper(shared.shutdown_signal()));
    let token = crate::auth::BearerToken::from_config(&shared.config.security)?;
    let http_tls = tls.clone();
    let memcache = tokio::spawn(crate::memcache::server::run(
        listener,
        shared.clone(),
        tls,
        auth,
    ));
    let http =
        http_listener.map(|l| tokio::spawn(crate::http::run(l, shared.clone(), token, http_tls)));
    let mirror = mirror_path.clone().map(|path| {
        let interval = shared.config.mirror.mirror_interval;
        tokio::spawn(crate::mirror::run(
            kv.clone(),
            path,
            interval,
            shared.shutdown_signal(),
        ))
    });

    let mut requested = shared.shutdown_signal();
    tokio::select! {
        _ = os_signal() => tracing::info!("signal received, shutting down"),
        _ = requested.changed() => tracing::info!("shutdown command received"),
    }
    shared.request_shutdown();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = memcache.await;
        if let Some(http) = http {
            if let Ok(Err(e)) = http.await {
                tracing::warn!("HTTP server failed: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy after 10s; closing anyway");
    }
    let _ = sweeper.await;
    if let Some(mirror) = mirror {
        let _ = mirror.await;
    }
    let store_kv = kv.clone();
    let sync_started = std::time::Instant::now();
    let clean = drained.is_ok();
    tokio::task::spawn_blocking(move || match clean {
        // Nothing writes any more: the next start can skip counting.
        true => store_kv.store().save_counts(),
        false => store_kv.store().sync(),
    })
    .await??;
    crate::metrics::record_sync(sync_started.elapsed());
    tracing::info!("store synced");
    if let Some(path) = mirror_path {
        // After the sync: the mirror is exact once a clean shutdown completes.
        let rows =
            tokio::task::spawn_blocking(move || crate::mirror::write_image(kv.store(), &path))
                .await??;
        tracing::info!(rows, "CSV mirror written");
    }
    tracing::info!("bye");
    Ok(())
}

/// memcached's default listen backlog (`-b`); std's 128 overflows under a
/// burst of connects, and each overflow costs the client a 1 s SYN retry.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listener with [`LISTEN_BACKLOG`] (for every front end).
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

async fn os_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
