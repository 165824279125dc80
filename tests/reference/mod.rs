//! The reference implementation: a real memcached 1.6 process on a free
//! loopback port, so tests can assert that memcached-lite answers exactly
//! what memcached answers.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Memcached {
    child: Child,
    pub addr: SocketAddr,
}

impl Memcached {
    /// Starts `memcached -U 0 -l 127.0.0.1 -u root <extra>` (installed by
    /// tests/run-all.sh).
    pub fn start(extra: &[&str]) -> Memcached {
        Self::start_with_env(extra, &[])
    }

    /// [`Memcached::start`] with extra environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &std::path::Path)]) -> Memcached {
        let port = super::common::free_port();
        let child = Command::new("memcached")
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-l",
                "127.0.0.1",
                "-u",
                "root",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("memcached is installed (tests/run-all.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "memcached did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Memcached { child, addr }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `bytes`, half-closes, and returns everything the server sent
/// before closing (a reset counts as the end).
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server that closes early may reset the rest of a long write.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "no EOF within 10s ({e}); got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}
