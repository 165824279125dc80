//! The one configuration shared by every front end and the store.
//!
//! It is a clap argument group so that `serve`, `export`, `import` and
//! friends all read the same flags, and every flag is also an environment
//! variable (`MEMCACHED_LITE_<FLAG>`), which is how containers configure it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of the store (used by every subcommand that opens the data dir).
#[derive(clap::Args, Clone, Debug)]
pub struct StoreConfig {
    /// Directory holding the sled database.
    #[arg(long, env = "MEMCACHED_LITE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Largest value accepted, in bytes (memcached's `-I`).
    #[arg(long, env = "MEMCACHED_LITE_MAX_ITEM_SIZE", default_value_t = 1024 * 1024)]
    pub max_item_size: usize,

    /// sled page-cache size in MiB (sled's own default is 1 GiB).
    #[arg(long, env = "MEMCACHED_LITE_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,

    /// How often sled flushes dirty pages to disk, in milliseconds.
    #[arg(long, env = "MEMCACHED_LITE_FLUSH_INTERVAL_MS", default_value_t = 100)]
    pub flush_interval_ms: u64,

    /// When a write is acknowledged: `periodic` (flushed every
    /// --flush-interval-ms) or `sync` (only once it is on disk; group commit).
    #[arg(long, env = "MEMCACHED_LITE_DURABILITY", value_enum, default_value_t = Durability::Periodic)]
    pub durability: Durability,

    /// What a store does over --max-bytes: `noeviction` refuses it
    /// (SERVER_ERROR out of memory), `lru` evicts least recently used items.
    #[arg(long, env = "MEMCACHED_LITE_EVICTION", value_enum, default_value_t = Eviction::Noeviction)]
    pub eviction: Eviction,
}

/// When a write is acknowledged (see README, "Durability").
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge at once; sled writes to disk every --flush-interval-ms.
    #[default]
    Periodic,
    /// Acknowledge only after the write is fdatasync'ed (group commit).
    Sync,
}

/// What happens to a store that would exceed --max-bytes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Refuse it: `SERVER_ERROR out of memory storing object` (HTTP 507).
    #[default]
    Noeviction,
    /// Evict approximately least recently used items until it fits.
    Lru,
}

/// Everything `memcached-lite serve` needs.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    #[command(flatten)]
    pub store: StoreConfig,

    /// Address of the memcached (TCP) listener.
    #[arg(long, env = "MEMCACHED_LITE_LISTEN", default_value = "127.0.0.1:11211")]
    pub listen: SocketAddr,

    /// Most simultaneous memcached connections (memcached's `-c`).
    #[arg(long, env = "MEMCACHED_LITE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, env = "MEMCACHED_LITE_THREADS")]
    pub threads: Option<usize>,

    /// Capacity limit in bytes reported as `limit_maxbytes` (0 = unlimited).
    #[arg(long, env = "MEMCACHED_LITE_MAX_BYTES", default_value_t = 0)]
    pub max_bytes: u64,

    /// Allow the `shutdown` command (memcached's `-A`).
    #[arg(long, env = "MEMCACHED_LITE_ENABLE_SHUTDOWN")]
    pub enable_shutdown: bool,
}

impl Config {
    /// A configuration for tests and embedding: loopback, ephemeral port.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            store: StoreConfig {
                data_dir: data_dir.into(),
                max_item_size: 1024 * 1024,
                cache_mb: 64,
                flush_interval_ms: 100,
                durability: Durability::Periodic,
                eviction: Eviction::Noeviction,
            },
            listen: "127.0.0.1:0".parse().expect("valid literal"),
            max_connections: 1024,
            threads: None,
            max_bytes: 0,
            enable_shutdown: false,
        }
    }

    /// Worker threads the runtime will use.
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        })
    }
}
