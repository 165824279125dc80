//! Shared harness for integration tests: runs the real `memcached-lite`
//! binary on free loopback ports with its own data directory, and speaks
//! raw bytes to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server process; killed (SIGKILL) on drop if still running.
pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<String>,
}

impl Server {
    /// Starts a server on a fresh temporary data dir.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir (for restart tests).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(&addr, dir, &extra);
        let server = Server {
            child: Some(child),
            addr,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            extra,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server on {} did not start", self.addr);
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_kill(child.id(), "TERM");
        wait_timeout(&mut child, Duration::from_secs(20))
    }

    /// SIGKILL, no chance to flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts on the same data dir and port arguments (new port).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            assert!(self.stop().success());
        }
        let port = free_port();
        self.addr = format!("127.0.0.1:{port}").parse().unwrap();
        self.child = Some(spawn(&self.addr, &self.data_dir, &self.extra));
        self.wait_ready();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(addr: &SocketAddr, dir: &Path, extra: &[String]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memcached-lite"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("MEMCACHED_LITE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if !extra.iter().any(|a| a == "--http-listen" || a == "--no-http") && http_supported() {
        cmd.arg("--http-listen").arg(format!("127.0.0.1:{}", free_port()));
    }
    cmd.spawn().expect("spawn memcached-lite")
}

/// Whether this build has the HTTP front end (keeps the harness usable
/// before and after it lands).
fn http_supported() -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    String::from_utf8_lossy(&out.stdout).contains("--http-listen")
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw text-protocol connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until the buffered reply ends with `terminator`; returns it all.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut chunk = [0u8; 65536];
        while !self.buf.ends_with(terminator) {
            let n = self.stream.read(&mut chunk).expect("reply before timeout");
            assert!(n > 0, "connection closed; got so far: {:?}", String::from_utf8_lossy(&self.buf));
            self.buf.extend_from_slice(&chunk[..n]);
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut chunk = [0u8; 65536];
        while self.buf.len() < n {
            let got = self.stream.read(&mut chunk).expect("reply before timeout");
            assert!(got > 0, "connection closed early");
            self.buf.extend_from_slice(&chunk[..got]);
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Sends a request and reads one reply line (`...\r\n`).
    pub fn line(&mut self, req: &[u8]) -> String {
        self.send(req);
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let rest = self.buf.split_off(pos + 2);
                let line = std::mem::replace(&mut self.buf, rest);
                return String::from_utf8_lossy(&line).into_owned();
            }
            let n = self.stream.read(&mut chunk).expect("reply before timeout");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request and reads the reply up to and including `END\r\n`.
    pub fn until_end(&mut self, req: &[u8]) -> String {
        self.send(req);
        String::from_utf8_lossy(&self.read_until(b"END\r\n")).into_owned()
    }

    /// True once the server has closed the connection (within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}
