//! `memcached-lite healthcheck`: connects to the memcached port (or the
//! unix socket) and asks `version`. Container health checks use it because
//! the slim runtime image has no curl. It reads the server's own
//! `MEMCACHED_LITE_LISTEN` / `MEMCACHED_LITE_UNIX_SOCKET`, so a container
//! configured with either checks what it serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

/// Arguments of `memcached-lite healthcheck`.
#[derive(clap::Args, Clone, Debug)]
pub struct HealthcheckArgs {
    /// The server's memcached address (`0.0.0.0` / `::` mean this host;
    /// `none`: check --unix-socket instead).
    #[arg(long, env = "MEMCACHED_LITE_LISTEN", default_value = "127.0.0.1:11211", value_parser = parse_listen)]
    pub listen: Listen,

    /// Check the server's unix socket (used when given).
    #[arg(long, env = "MEMCACHED_LITE_UNIX_SOCKET", value_name = "PATH")]
    pub unix_socket: Option<PathBuf>,

    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// `host:port` or `none` (`None`), as `serve --listen` takes it.
#[derive(Clone, Copy, Debug)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("expected host:port or none, got {s:?}"))
}

/// Asks the server for its version; returns the reply line.
pub fn check(args: &HealthcheckArgs) -> anyhow::Result<String> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    if let Some(path) = &args.unix_socket {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        return ask_version(stream, &path.display().to_string());
    }
    let Listen(Some(listen)) = args.listen else {
        bail!("--listen none and no --unix-socket: nothing to check");
    };
    let addr = reachable(listen);
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    ask_version(stream, &addr.to_string())
}

fn ask_version<S: Read + Write>(mut stream: S, name: &str) -> anyhow::Result<String> {
    stream.write_all(b"version\r\n")?;
    let mut line = String::new();
    BufReader::new(stream.take(256))
        .read_line(&mut line)
        .with_context(|| format!("reading the reply of {name}"))?;
    let line = line.trim_end();
    if !line.starts_with("VERSION ") {
        bail!("unexpected reply from {name}: {line:?}");
    }
    Ok(line.to_string())
}

/// A wildcard listen address is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
