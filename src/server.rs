//! Process wiring for `serve`: opens the store, starts the listeners and the
//! expiry sweeper, and shuts everything down gracefully on SIGINT/SIGTERM
//! (or the `shutdown` command): stop accepting, let in-flight commands
//! finish, sync the store to disk.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, Durability};
use crate::kv::Kv;
use crate::memcache::listener::Listener;
use crate::net::unix::SocketFile;
use crate::net::{bind, warn_if_exposed};
use crate::state::AppState;
use crate::store::Store;

/// Fills the store's memory index on a thread of its own, so the listeners
/// open at once; until it is done, reads the index cannot answer go to sled.
fn spawn_index_loader(kv: Arc<Kv>) {
    let started = std::time::Instant::now();
    let spawned = std::thread::Builder::new()
        .name("index-loader".into())
        .spawn(move || match kv.load_index() {
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
    let mut store_config = config.store.clone();
    if config.cluster.peers.is_some() && store_config.durability == Durability::Sync {
        // In a group a write is acknowledged once its log entry is
        // fdatasynced on a majority: already more than `sync` promises. The
        // item store writes behind (a crashed node applies the log again),
        // and no group-commit round can take back a write the log holds.
        tracing::info!(
            "replicated group: the Raft log makes writes durable; the item store writes behind"
        );
        store_config.durability = Durability::Periodic;
    }
    let store = Store::open(&store_config)
        .with_context(|| format!("opening store in {}", config.store.data_dir.display()))?;
    let mirror_path = config.mirror.path(&config.store.data_dir);
    if let Some(path) = &mirror_path {
        crate::csv::mirror::check_target(path)?;
    }
    let kv = Arc::new(Kv::new(store, config.store.max_item_size));
    kv.set_memory_limit(config.max_bytes);
    kv.detail.set_delimiter(config.prefix_delimiter as u8);
    kv.feed().set_limits(crate::kv::feed::Limits {
        history: config.watch_history,
        max_watchers: config.max_watchers,
        queue: config.watch_queue as usize,
    });
    spawn_index_loader(kv.clone());
    let raft_server = match &config.cluster.peers {
        None => None,
        Some(_) => Some(join_group(&kv, &config).await?),
    };
    let sec = &config.security;
    let auth = sec
        .auth_file
        .as_deref()
        .map(crate::auth::Credentials::load)
        .transpose()?
        .map(Arc::new);
    let tls = crate::net::tls::acceptor(sec.tls_cert.as_deref(), sec.tls_key.as_deref())?;
    let (listeners, socket_file) = bind_memcached(&config, auth.is_some(), tls.is_some())?;
    let http_listener = if config.no_http {
        None
    } else {
        let l = bind(config.http_listen)
            .with_context(|| format!("binding HTTP listener {}", config.http_listen))?;
        warn_if_exposed(config.http_listen, sec.http_token_file.is_some());
        tracing::info!(addr = %l.local_addr()?, "HTTP listener ready (Swagger UI at /docs)");
        Some(l)
    };
    let shared = AppState::new(kv.clone(), config);

    let sweeper = tokio::spawn(kv.clone().run_sweeper(shared.shutdown_signal()));
    let token = crate::auth::BearerToken::from_config(&shared.config.security)?;
    let http_tls = tls.clone();
    let memcache: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            tokio::spawn(crate::memcache::listener::run(
                l,
                shared.clone(),
                tls.clone(),
                auth.clone(),
            ))
        })
        .collect();
    let http =
        http_listener.map(|l| tokio::spawn(crate::http::run(l, shared.clone(), token, http_tls)));
    let mirror = mirror_path.clone().map(|path| {
        let interval = shared.config.mirror.mirror_interval;
        tokio::spawn(crate::csv::mirror::run(
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
        for listener in memcache {
            let _ = listener.await;
        }
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
    // Nothing accepts on it any more: the next start finds no file to check.
    drop(socket_file);
    // Raft stops before the store closes: nothing applies to it after.
    kv.leave_group().await;
    if let Some(raft_server) = raft_server {
        raft_server.abort();
    }
    if let Some(mirror) = mirror {
        let _ = mirror.await;
    }
    let store_kv = kv.clone();
    let sync_started = std::time::Instant::now();
    // Drained: nothing writes any more, so the next start can skip counting.
    let clean = drained.is_ok();
    tokio::task::spawn_blocking(move || store_kv.close(clean)).await??;
    crate::metrics::record_sync(sync_started.elapsed());
    tracing::info!("store synced");
    if let Some(path) = mirror_path {
        // After the sync: the mirror is exact once a clean shutdown completes.
        let rows = tokio::task::spawn_blocking(move || crate::csv::mirror::write_image(&kv, &path))
            .await??;
        tracing::info!(rows, "CSV mirror written");
    }
    tracing::info!("bye");
    Ok(())
}

/// Binds the memcached listeners: TCP unless `--listen none`, and the unix
/// socket with `--unix-socket`. The socket file stays until the returned
/// guard is dropped.
fn bind_memcached(
    config: &Config,
    auth: bool,
    tls: bool,
) -> anyhow::Result<(Vec<Listener>, Option<SocketFile>)> {
    let mut listeners = Vec::new();
    if let Some(addr) = config.listen.addr() {
        let l = bind(addr).with_context(|| format!("binding memcached listener {addr}"))?;
        warn_if_exposed(addr, auth);
        tracing::info!(addr = %l.local_addr()?, tls, auth, "memcached listener ready");
        listeners.push(Listener::Tcp(l));
    }
    let Some(path) = &config.unix_socket else {
        anyhow::ensure!(
            !listeners.is_empty(),
            "--listen none needs --unix-socket: nothing would serve the memcached protocols"
        );
        return Ok((listeners, None));
    };
    let (l, file) = crate::net::unix::bind(path, config.unix_mask)
        .with_context(|| format!("binding unix socket {}", path.display()))?;
    tracing::info!(path = %file.path().display(), mode = format!("{:04o}", config.unix_mask), auth, "memcached unix socket ready (no TLS)");
    listeners.push(Listener::Unix(l));
    Ok((listeners, Some(file)))
}

/// Makes this node a member of its replicated group and serves Raft's
/// messages on `--raft-listen`.
async fn join_group(kv: &Arc<Kv>, config: &Config) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = config
        .cluster
        .raft_listen
        .context("--peers needs --raft-listen")?;
    let listener = bind(addr).with_context(|| format!("binding raft listener {addr}"))?;
    let router = kv
        .join_group(&config.cluster, &config.store.data_dir)
        .await?;
    tracing::info!(%addr, node_id = config.cluster.node_id, "raft listener ready");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("raft listener failed: {e}");
        }
    }))
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
