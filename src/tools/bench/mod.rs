//! `memcached-lite bench`: a memtier_benchmark-style load generator for
//! memcached-text and RESP servers (memtier itself is not packaged here).
//!
//! The client runs on ONE thread (a tokio current-thread runtime) on
//! purpose: on a small machine client and server share the cores, and a
//! fixed, small client footprint keeps A/B comparisons fair.

pub mod client;
pub mod protocol;
pub mod report;
pub mod workload;

use std::net::SocketAddr;
use std::time::Duration;

pub use protocol::Protocol;
pub use report::Report;
pub use workload::{KeyPattern, Ratio};

/// Flags of `memcached-lite bench` (names follow memtier_benchmark's).
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Server to load: `host:port`, or `unix:/path` for a unix socket
    /// (loopback only is sensible: this is a load test).
    #[arg(long, default_value = "127.0.0.1:11211")]
    pub server: Target,

    /// Wire protocol of the server.
    #[arg(long, value_enum, default_value_t = Protocol::Memcache)]
    pub protocol: Protocol,

    /// Concurrent connections.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,

    /// Requests kept in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub pipeline: u32,

    /// SETS:GETS mix, e.g. `1:10` (one set per ten gets), `1:0` (set only).
    #[arg(long, default_value = "1:10")]
    pub ratio: Ratio,

    /// Value size of sets, in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=(64 << 20)))]
    pub data_size: u32,

    /// Number of distinct keys (`<prefix>0` .. `<prefix>N-1`).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space: u64,

    /// Key choice: random, or sequential (one pass populates a store).
    #[arg(long, value_enum, default_value_t = KeyPattern::Random)]
    pub key_pattern: KeyPattern,

    /// Prefix of every key.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,

    /// Run length in seconds (ignored with --requests).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Stop after this many requests in total instead of after --duration.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Print the report as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where `bench` connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    /// `unix:/path`: a unix socket (`serve --unix-socket`, memcached's `-s`).
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Target::Unix(path.into())),
            Some(_) => Err("unix: needs a path, e.g. unix:/tmp/mc.sock".into()),
            None => s
                .parse()
                .map(Target::Tcp)
                .map_err(|_| format!("expected host:port or unix:/path, got {s:?}")),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(addr) => addr.fmt(f),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl BenchArgs {
    /// How the run ends.
    pub fn stop(&self) -> anyhow::Result<client::Stop> {
        match self.requests {
            Some(n) => Ok(client::Stop::Requests(n)),
            None if self.duration.is_finite()
                && self.duration > 0.0
                && self.duration <= 86_400.0 =>
            {
                Ok(client::Stop::After(Duration::from_secs_f64(self.duration)))
            }
            None => anyhow::bail!("--duration must be between 0 and 86400 seconds"),
        }
    }
}

/// Runs the benchmark on a fresh single-threaded runtime and prints the report.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(client::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    if report.ops == 0 {
        anyhow::bail!("no request completed");
    }
    Ok(())
}
