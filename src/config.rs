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

    /// sled page-cache size in MiB (sled's own default, 1 GiB). With the
    /// memory index, which serves every read, the cache serves only writes
    /// and holds a second copy of recently written items: `--cache-mb 16`
    /// saves about 200 MiB per 10^6 items of 100 B, but made set-only
    /// writes and workload 1 at 10^7 keys about 25% slower in the
    /// benchmark (see bench/profile.md, session 6).
    #[arg(long, env = "MEMCACHED_LITE_CACHE_MB", default_value_t = 1024)]
    pub cache_mb: u64,

    /// How often queued writes are handed to sled and flushed to disk, in
    /// milliseconds: periodic mode's loss window on a crash.
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

    /// Serve reads from sled alone, without the in-memory index of every
    /// record (which makes reads cost the same at any store size, for a
    /// copy of every item in memory: about 300 MiB per 10^6 items of 100 B
    /// with the index and `--cache-mb 16`, 137 without). For stores larger than RAM.
    #[arg(long, env = "MEMCACHED_LITE_NO_MEMORY_INDEX")]
    pub no_memory_index: bool,
}

/// When a write is acknowledged (see docs/durability.md, "Durability").
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

    /// Address of the memcached (TCP) listener; `none` for no TCP listener
    /// (then --unix-socket is required).
    #[arg(long, env = "MEMCACHED_LITE_LISTEN", default_value = "127.0.0.1:11211")]
    pub listen: Listen,

    /// Also serve the memcached protocols on this unix socket (memcached's
    /// `-s`). Same limits and auth as TCP; never TLS (see docs/unix-socket.md).
    #[arg(long, env = "MEMCACHED_LITE_UNIX_SOCKET", value_name = "PATH")]
    pub unix_socket: Option<PathBuf>,

    /// Permission bits of the --unix-socket file, octal (memcached's `-a`).
    #[arg(long, env = "MEMCACHED_LITE_UNIX_MASK", value_name = "MODE", default_value = "0700", value_parser = parse_mode)]
    pub unix_mask: u32,

    /// Most simultaneous memcached connections (memcached's `-c`).
    #[arg(long, env = "MEMCACHED_LITE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Worker threads of the async runtime (default: one per core but one,
    /// at least one: the write-behind thread, sled's I/O and the kernel's
    /// network processing need a core too).
    #[arg(long, env = "MEMCACHED_LITE_THREADS")]
    pub threads: Option<usize>,

    /// Capacity limit in bytes reported as `limit_maxbytes` (0 = unlimited).
    #[arg(long, env = "MEMCACHED_LITE_MAX_BYTES", default_value_t = 0)]
    pub max_bytes: u64,

    /// What ends a key's prefix in `stats detail` (memcached's `-D`).
    #[arg(long, env = "MEMCACHED_LITE_PREFIX_DELIMITER", default_value_t = ':', value_parser = parse_delimiter)]
    pub prefix_delimiter: char,

    /// Allow the `shutdown` command (memcached's `-A`).
    #[arg(long, env = "MEMCACHED_LITE_ENABLE_SHUTDOWN")]
    pub enable_shutdown: bool,

    /// Address of the HTTP/JSON API (and Swagger UI at /docs).
    #[arg(
        long,
        env = "MEMCACHED_LITE_HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub http_listen: SocketAddr,

    /// Do not start the HTTP API.
    #[arg(long, env = "MEMCACHED_LITE_NO_HTTP")]
    pub no_http: bool,

    /// Longest an HTTP request may take, body upload included (then 408).
    #[arg(long, env = "MEMCACHED_LITE_HTTP_TIMEOUT_SECS", default_value_t = 30)]
    pub http_timeout_secs: u64,

    /// Changes kept for `GET /v1/watch` clients that reconnect
    /// (`Last-Event-ID`); an older revision gets `resync`.
    #[arg(long, env = "MEMCACHED_LITE_WATCH_HISTORY", default_value_t = 10_000)]
    pub watch_history: usize,

    /// Most simultaneous `GET /v1/watch` streams (then 503).
    #[arg(long, env = "MEMCACHED_LITE_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,

    /// Changes queued for one watcher that is not reading; when full, the
    /// watcher gets `resync` and its stream ends (writers never wait).
    #[arg(long, env = "MEMCACHED_LITE_WATCH_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub watch_queue: u32,
    #[command(flatten)]
    pub mirror: MirrorConfig,

    #[command(flatten)]
    pub security: SecurityConfig,

    #[command(flatten)]
    pub cluster: ClusterConfig,
}

/// A replicated group (`--peers`): every write is committed on a majority
/// of the group's nodes before it is acknowledged. Without `--peers` the
/// server is a single node.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterConfig {
    /// This node's id in `--peers`, or `auto`: the ordinal at the end of
    /// the host name plus one (a StatefulSet pod `memcached-lite-2` is node
    /// 3), so every pod of a StatefulSet takes the same settings.
    #[arg(long, env = "MEMCACHED_LITE_NODE_ID", requires = "peers", value_parser = parse_node_id)]
    pub node_id: Option<u64>,

    /// Where this node talks Raft with its peers (its own entry in --peers).
    #[arg(long, env = "MEMCACHED_LITE_RAFT_LISTEN", requires = "peers")]
    pub raft_listen: Option<SocketAddr>,

    /// The whole group, the same on every node: `1=host:port,2=host:port,...`
    /// (Raft addresses; hosts may be DNS names). Starting every node with
    /// the same list forms the group.
    #[arg(long, env = "MEMCACHED_LITE_PEERS", value_parser = parse_peers, requires_all = ["node_id", "raft_listen"])]
    pub peers: Option<Peers>,

    /// Join an existing group: never form one, wait until a member adds
    /// this node (`memcached-lite cluster add`). Without it, only the node
    /// with the smallest id in --peers may form a group, and only when no
    /// peer answers that it belongs to one.
    #[arg(long, env = "MEMCACHED_LITE_JOIN", requires = "peers")]
    pub join: bool,

    /// How long a write waits for a quorum before `SERVER_ERROR no quorum`.
    #[arg(long, env = "MEMCACHED_LITE_QUORUM_TIMEOUT_MS", default_value_t = 2000)]
    pub quorum_timeout_ms: u64,

    /// Reads in a group: `linearizable` sees every write acknowledged
    /// before it (the leader confirms it still leads, and the node waits to
    /// have applied that far); `local` reads this node's items at once.
    #[arg(long, env = "MEMCACHED_LITE_READ_CONSISTENCY", value_enum, default_value_t = ReadConsistency::Linearizable)]
    pub read_consistency: ReadConsistency,
}

/// How reads are served in a replicated group.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Every read sees every write acknowledged before it started.
    #[default]
    Linearizable,
    /// This node's items as they are: may be a few milliseconds behind.
    Local,
}

/// The members of a group: id -> Raft address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers(pub std::collections::BTreeMap<u64, String>);

/// `--node-id`: a number, or `auto` (from the host name, see
/// [`node_id_from_hostname`]).
fn parse_node_id(s: &str) -> Result<u64, String> {
    if !s.eq_ignore_ascii_case("auto") {
        return s
            .parse()
            .map_err(|_| format!("expected a node id (a number) or auto, got {s:?}"));
    }
    // Kubernetes sets HOSTNAME to the pod's name; elsewhere ask the kernel.
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    node_id_from_hostname(host.trim())
}

/// A StatefulSet pod's node id: its ordinal (the digits after the last
/// `-`) plus one, so the pods `name-0`, `name-1`, `name-2` are nodes 1, 2, 3.
pub fn node_id_from_hostname(host: &str) -> Result<u64, String> {
    // A fully qualified name: the pod name is its first label.
    let pod = host.split('.').next().unwrap_or_default();
    pod.rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .and_then(|ordinal| ordinal.checked_add(1))
        .ok_or_else(|| {
            format!(
                "--node-id auto: the host name {host:?} does not end in -<ordinal> \
                 (a StatefulSet pod's name does); give the node id instead"
            )
        })
}

fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = std::collections::BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected <id>=<host:port>"))?;
        let id: u64 = id.parse().map_err(|_| format!("{id:?} is not a node id"))?;
        if !addr.contains(':') {
            return Err(format!("{addr:?}: expected host:port"));
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(Peers(peers))
}

/// The CSV mirror of `serve` (see [`crate::csv::mirror`]).
#[derive(clap::Args, Clone, Debug)]
pub struct MirrorConfig {
    /// CSV image of the store kept up to date (default: <data-dir>/store.csv).
    #[arg(long, env = "MEMCACHED_LITE_CSV_MIRROR", value_name = "PATH")]
    pub csv_mirror: Option<PathBuf>,

    /// Do not keep a CSV mirror.
    #[arg(
        long,
        env = "MEMCACHED_LITE_NO_CSV_MIRROR",
        conflicts_with = "csv_mirror"
    )]
    pub no_csv_mirror: bool,

    /// Longest the mirror lags behind writes: `1s`, `250ms`, or plain seconds.
    #[arg(long, env = "MEMCACHED_LITE_MIRROR_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    pub mirror_interval: std::time::Duration,
}

impl MirrorConfig {
    /// Where the mirror goes, `None` when it is off.
    pub fn path(&self, data_dir: &std::path::Path) -> Option<PathBuf> {
        (!self.no_csv_mirror).then(|| {
            self.csv_mirror
                .clone()
                .unwrap_or_else(|| data_dir.join("store.csv"))
        })
    }
}

/// `--listen`: a TCP address, or `none` for no memcached TCP listener (a
/// server reached only through `--unix-socket`). Parses and prints as the
/// address itself, so `--listen 127.0.0.1:11211` reads as it always did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl Listen {
    /// The TCP address, `None` for `--listen none`.
    pub fn addr(self) -> Option<SocketAddr> {
        self.0
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Listen(None));
        }
        s.parse()
            .map(|a| Listen(Some(a)))
            .map_err(|_| format!("expected host:port (an IP address) or none, got {s:?}"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Octal permission bits such as `0700` or `660` (at most `0777`).
fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.strip_prefix("0o").unwrap_or(s), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("expected octal permission bits like 0700, got {s:?}"))
}

/// One printable ASCII character (a key byte memcached could split on).
fn parse_delimiter(s: &str) -> Result<char, String> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_graphic() => Ok(c),
        _ => Err(format!("expected one printable ASCII character, got {s:?}")),
    }
}

/// `250ms`, `2s` or a plain number of seconds; at least 1ms.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let (num, scale) = match s.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    let secs = num
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
        .ok_or_else(|| format!("expected a duration like 1s or 250ms, got {s:?}"))?;
    Ok(std::time::Duration::from_secs_f64(
        secs.clamp(0.001, 86_400.0),
    ))
}

/// Connection limits, authentication and TLS (issue 6).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecurityConfig {
    /// Close a client that sent no complete command for this many seconds
    /// (memcached's `-o idle_timeout`; 0 = never).
    #[arg(long, env = "MEMCACHED_LITE_IDLE_TIMEOUT", default_value_t = 0)]
    pub idle_timeout: u64,

    /// memcached text-protocol auth (memcached's `-Y`): a file of
    /// `user:password` lines; clients must first send
    /// `set <any> <flags> <exptime> <len>` carrying `<user> <password>`.
    #[arg(long, env = "MEMCACHED_LITE_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// File holding the bearer token every HTTP route but the health
    /// checks and docs requires (`Authorization: Bearer <token>`).
    #[arg(long, env = "MEMCACHED_LITE_HTTP_TOKEN_FILE")]
    pub http_token_file: Option<PathBuf>,

    /// PEM certificate chain; with `--tls-key`, the TCP listeners speak TLS
    /// only (a --unix-socket stays plain, as memcached's does).
    #[arg(long, env = "MEMCACHED_LITE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "MEMCACHED_LITE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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
                no_memory_index: false,
            },
            listen: "127.0.0.1:0".parse().expect("valid literal"),
            unix_socket: None,
            unix_mask: 0o700,
            max_connections: 1024,
            threads: None,
            max_bytes: 0,
            prefix_delimiter: ':',
            enable_shutdown: false,
            http_listen: "127.0.0.1:0".parse().expect("valid literal"),
            no_http: false,
            http_timeout_secs: 30,
            watch_history: 10_000,
            max_watchers: 1024,
            watch_queue: 1024,
            mirror: MirrorConfig {
                csv_mirror: None,
                no_csv_mirror: true,
                mirror_interval: std::time::Duration::from_secs(1),
            },
            security: SecurityConfig::default(),
            cluster: ClusterConfig {
                quorum_timeout_ms: 2000,
                ..ClusterConfig::default()
            },
        }
    }

    /// Worker threads the runtime will use. The default leaves one core to
    /// the threads outside the runtime; on the 2-core benchmark machine one
    /// worker served workloads 1, 3 and 4 faster than two (see
    /// `bench/profile.md`).
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        })
    }
}

/// How tracing output is written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_none() {
        let l: Listen = "127.0.0.1:11211".parse().unwrap();
        assert_eq!(l.addr(), Some("127.0.0.1:11211".parse().unwrap()));
        assert_eq!(l.to_string(), "127.0.0.1:11211");
        let none: Listen = "none".parse().unwrap();
        assert_eq!(none.addr(), None);
        assert_eq!(none.to_string(), "none");
        assert!("localhost:11211".parse::<Listen>().is_err());
    }

    #[test]
    fn auto_node_ids_come_from_the_pod_ordinal() {
        assert_eq!(node_id_from_hostname("memcached-lite-0"), Ok(1));
        assert_eq!(node_id_from_hostname("memcached-lite-2"), Ok(3));
        assert_eq!(
            node_id_from_hostname("shard-b-memcached-lite-11.x.svc"),
            Ok(12)
        );
        for bad in [
            "",
            "memcached-lite",
            "memcached-lite-",
            "memcached-lite-x",
            "host",
        ] {
            assert!(node_id_from_hostname(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_node_id("7"), Ok(7));
        assert!(parse_node_id("seven").is_err());
    }

    #[test]
    fn unix_mask_is_octal() {
        assert_eq!(parse_mode("0700"), Ok(0o700));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o777"), Ok(0o777));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
