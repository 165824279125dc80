//! Shared harness for integration tests: runs the real `memcached-lite`
//! binary on free loopback ports with its own data directory, and speaks
//! raw bytes to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, chosen below Linux's ephemeral range
/// (32768+) so that no client socket of a parallel test can take it
/// between our check and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    loop {
        let seed = u64::from(std::process::id()) * 7919
            + SEQ.fetch_add(1, Ordering::Relaxed) * 104_729
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64;
        let port = 10_000 + (seed % 22_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running server process; killed (SIGKILL) on drop if still running.
pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    /// The HTTP API's address, when this build has one and it is enabled.
    pub http_addr: Option<SocketAddr>,
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
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut server = Server {
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: None,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            extra,
        };
        server.launch();
        server
    }

    /// Spawns the process on fresh ports, retrying when a port turns out to
    /// be taken (the process exits before it is ready).
    fn launch(&mut self) {
        for _ in 0..5 {
            self.addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let (child, http_addr) = spawn(&self.addr, &self.data_dir, &self.extra);
            self.child = Some(child);
            self.http_addr = http_addr;
            if self.wait_ready() {
                return;
            }
        }
        panic!("server did not start after 5 attempts");
    }

    /// True once both listeners accept; false if the process exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("server exited during start-up ({status}); retrying");
                self.child = None;
                return false;
            }
            let http_up = self.http_addr.is_none_or(|a| TcpStream::connect(a).is_ok());
            if TcpStream::connect(self.addr).is_ok() && http_up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server on {} did not start", self.addr);
    }

    /// `http://<http_addr><path>`; panics when HTTP is off.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr.expect("HTTP API enabled"))
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
        self.launch();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(addr: &SocketAddr, dir: &Path, extra: &[String]) -> (Child, Option<SocketAddr>) {
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
    let given = extra
        .iter()
        .position(|a| a == "--http-listen")
        .and_then(|i| extra.get(i + 1))
        .map(|a| a.parse().expect("--http-listen address"));
    let http_addr = if extra.iter().any(|a| a == "--no-http") {
        None
    } else if given.is_some() {
        given
    } else {
        let a: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        cmd.arg("--http-listen").arg(a.to_string());
        Some(a)
    };
    (cmd.spawn().expect("spawn memcached-lite"), http_addr)
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
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

/// One `read`, retried when a signal interrupts it (EINTR).
fn read_retrying(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
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
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
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
            let n = read_retrying(&mut self.stream, &mut chunk).expect("reply before timeout");
            assert!(
                n > 0,
                "connection closed; got so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut chunk = [0u8; 65536];
        while self.buf.len() < n {
            let got = read_retrying(&mut self.stream, &mut chunk).expect("reply before timeout");
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
            let n = read_retrying(&mut self.stream, &mut chunk).expect("reply before timeout");
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
            match read_retrying(&mut self.stream, &mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A self-signed certificate for localhost/127.0.0.1 made by `openssl`;
/// returns (cert.pem, key.pem) paths inside `dir`.
pub fn self_signed(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    (cert.to_str().unwrap().into(), key.to_str().unwrap().into())
}
