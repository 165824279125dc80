//! `memcached-lite healthcheck`: connects to the memcached port and asks
//! `version`. Container health checks use it because the slim runtime
//! image has no curl and the memcached port is always on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// Arguments of `memcached-lite healthcheck`.
#[derive(clap::Args, Clone, Debug)]
pub struct HealthcheckArgs {
    /// The server's memcached address (`0.0.0.0` / `::` mean this host).
    #[arg(long, env = "MEMCACHED_LITE_LISTEN", default_value = "127.0.0.1:11211")]
    pub listen: SocketAddr,

    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Asks the server at `args.listen` for its version; returns the reply line.
pub fn check(args: &HealthcheckArgs) -> anyhow::Result<String> {
    let addr = reachable(args.listen);
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"version\r\n")?;
    let mut line = String::new();
    BufReader::new((&stream).take(256))
        .read_line(&mut line)
        .with_context(|| format!("reading the reply of {addr}"))?;
    let line = line.trim_end();
    if !line.starts_with("VERSION ") {
        bail!("unexpected reply from {addr}: {line:?}");
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
