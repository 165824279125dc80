//! The `memcached-lite` command line: parse arguments, build the config,
//! call into the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use memcached_lite::config::StoreConfig;
use memcached_lite::config::{Config, LogFormat};
use memcached_lite::kv::Kv;
use memcached_lite::store::{Store, StoreError};
use memcached_lite::tools::healthcheck::{self, HealthcheckArgs};

/// mimalloc instead of glibc malloc: sled copies and frees whole leaf nodes
/// on every write, and this allocator measured 1.33x on set-only 1 KB
/// (bench/profile.md), at the cost of a larger resident set.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "memcached-lite", version, about)]
struct Cli {
    /// Format of the log lines on stderr (level filter: MEMCACHED_LITE_LOG).
    #[arg(
        long,
        global = true,
        env = "MEMCACHED_LITE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the memcached protocol over the embedded store.
    Serve(Box<Config>),
    /// Load-test a memcached (or Redis, --protocol resp) server; one client thread.
    Bench(memcached_lite::tools::bench::BenchArgs),
    /// Exit 0 if the server answers `version` on its memcached port (for
    /// container health checks).
    Healthcheck(HealthcheckArgs),
    /// Show or change a replicated group's members through any node's
    /// HTTP API: `cluster status`, `cluster add ID RAFT_ADDR`, `cluster remove ID`.
    Cluster(memcached_lite::tools::cluster::ClusterArgs),
    /// Print the HTTP API's OpenAPI document (regenerate the checked-in
    /// copy with `memcached-lite openapi > openapi/openapi.json`).
    Openapi,
    /// Write the store as CSV (key,flags,exptime,cas,encoding,value).
    Export {
        #[command(flatten)]
        store: StoreConfig,
        /// Output file (replaced atomically), or `-` for stdout.
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Load a CSV image into a store no server is running on.
    Import {
        /// The CSV file (as written by export or the mirror).
        path: PathBuf,
        #[command(flatten)]
        store: StoreConfig,
        /// merge: keep other items, rows overwrite; replace: remove everything first.
        #[arg(long, value_enum, default_value = "merge")]
        mode: memcached_lite::csv::import::Mode,
    },
    /// Run scripted clients (one per JSON file) concurrently against a server.
    Replay {
        /// memcached address to talk to.
        #[arg(long, default_value = "127.0.0.1:11211")]
        server: String,
        /// Folder for each client's `<file stem>.out` log.
        #[arg(long, default_value = "replay-out")]
        out: PathBuf,
        /// Run only the first N files.
        #[arg(long)]
        clients: Option<usize>,
        /// Client scripts: JSON lists of {type, key, value, expected}.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Opens the store for an offline subcommand, explaining a held lock.
/// Offline work streams sled in key order, so no memory index is built,
/// and runs no group committer: nobody waits on a write, and `import`
/// syncs once at its end whatever the mode.
fn open_offline(cfg: &StoreConfig, what: &str) -> anyhow::Result<Kv> {
    let cfg = StoreConfig {
        no_memory_index: true,
        durability: memcached_lite::config::Durability::Periodic,
        ..cfg.clone()
    };
    let store = Store::open(&cfg).map_err(|e| match e {
        StoreError::Locked(dir) => anyhow::anyhow!(
            "cannot {what}: data directory {} is held by a running server; stop it first{}",
            dir.display(),
            if what == "export" {
                " (or read its CSV mirror / GET /v1/export.csv)"
            } else {
                ""
            }
        ),
        other => anyhow::Error::new(other)
            .context(format!("opening store in {}", cfg.data_dir.display())),
    })?;
    Ok(Kv::new(store, cfg.max_item_size))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(config) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads())
                .enable_all()
                .build()?;
            runtime.block_on(memcached_lite::server::serve(*config))
        }
        Command::Healthcheck(args) => {
            println!("{}", healthcheck::check(&args)?);
            Ok(())
        }
        Command::Cluster(args) => {
            print!("{}", memcached_lite::tools::cluster::run(&args)?);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", memcached_lite::http::openapi::to_json());
            Ok(())
        }
        Command::Export { store, out } => {
            let db = open_offline(&store, "export")?;
            let rows = if out.as_os_str() == "-" {
                memcached_lite::csv::export::export(&db, std::io::stdout().lock())?
            } else {
                memcached_lite::csv::mirror::replace_atomically(&out, |w| {
                    Ok(memcached_lite::csv::export::export(&db, w)?)
                })
                .with_context(|| format!("writing {}", out.display()))?
            };
            eprintln!("exported {rows} items from {}", store.data_dir.display());
            Ok(())
        }
        Command::Import { path, store, mode } => {
            std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            let db = open_offline(&store, "import")?;
            let started = std::time::Instant::now();
            let summary =
                memcached_lite::csv::import::import(&db, &path, mode, store.max_item_size, true)?;
            eprintln!(
                "{summary} from {} into {} in {:.1}s",
                path.display(),
                store.data_dir.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Replay {
            server,
            out,
            clients,
            mut files,
        } => {
            files.truncate(clients.unwrap_or(usize::MAX));
            let reports = memcached_lite::tools::replay::run(&server, &files, &out)?;
            print!("{}", memcached_lite::tools::replay::table(&reports));
            let failed = reports.iter().filter(|r| !r.passed()).count();
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} clients failed (logs in {})",
                    reports.len(),
                    out.display()
                );
            }
            println!(
                "all {} clients passed (logs in {})",
                reports.len(),
                out.display()
            );
            Ok(())
        }
        Command::Bench(args) => memcached_lite::tools::bench::main(args),
    }
}

fn init_tracing(format: LogFormat) {
    // raft-log reports every flush of its payload cache at `info`: dozens
    // of lines a second under load, nothing an operator acts on.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMCACHED_LITE_LOG")
        .unwrap_or_else(|_| "info,raft_log=warn,chunked_wal=warn".into());
    // Colour only on a terminal: a log file or pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
