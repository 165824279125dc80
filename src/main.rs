//! The `memcached-lite` command line: parse arguments, build the config,
//! call into the library.

use clap::{Parser, Subcommand};
use memcached_lite::config::Config;

/// mimalloc instead of glibc malloc: sled copies and frees whole leaf nodes
/// on every write, and this allocator measured 1.33x on set-only 1 KB
/// (bench/profile.md), at the cost of a larger resident set.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "memcached-lite", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the memcached protocol over the embedded store.
    Serve(Config),
    /// Load-test a memcached (or Redis, --protocol resp) server; one client thread.
    Bench(memcached_lite::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEMCACHED_LITE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(config) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads())
                .enable_all()
                .build()?;
            runtime.block_on(memcached_lite::server::serve(config))
        }
        Command::Bench(args) => memcached_lite::bench::main(args),
    }
}
