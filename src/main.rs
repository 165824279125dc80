//! The `memcached-lite` command line: parse arguments, build the config,
//! call into the library.

use clap::{Parser, Subcommand};
use memcached_lite::config::{Config, LogFormat};
use memcached_lite::healthcheck::{self, HealthcheckArgs};

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
    Serve(Config),
    /// Exit 0 if the server answers `version` on its memcached port (for
    /// container health checks).
    Healthcheck(HealthcheckArgs),
    /// Print the HTTP API's OpenAPI document (regenerate the checked-in
    /// copy with `memcached-lite openapi > openapi/openapi.json`).
    Openapi,
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
            runtime.block_on(memcached_lite::server::serve(config))
        }
        Command::Healthcheck(args) => {
            println!("{}", healthcheck::check(&args)?);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", memcached_lite::http::openapi::to_json());
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMCACHED_LITE_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
