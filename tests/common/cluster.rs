//! Replicated groups of real server processes on loopback, for the
//! cluster tests: start, `kill -9`, SIGSTOP/SIGCONT, `GET /v1/cluster`,
//! exports; and [`Conn`], a client that never panics on a node that is
//! down or stopped but says what it knows of each request's outcome.
//!
//! Test crates include it with `#[path = "common/cluster.rs"] mod cluster;`
//! next to `mod common;` (it uses `common::free_port`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, Client};

pub struct Node {
    pub id: u64,
    pub mc: u16,
    pub http: u16,
    pub raft: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    /// SIGSTOPped (and not yet SIGCONTed).
    paused: bool,
    /// Flags of this node only (e.g. `--read-consistency local`).
    extra: Vec<String>,
}

pub struct Group {
    pub nodes: Vec<Node>,
    peers: String,
    /// The nodes' data directories and logs; kept (and named) when a test
    /// fails.
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    pub http: reqwest::blocking::Client,
}

/// Rounds of a failure test: `MEMCACHED_LITE_CLUSTER_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("MEMCACHED_LITE_CLUSTER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Group {
    pub fn start(size: u64) -> Group {
        Group::start_with(size, |_| Vec::new())
    }

    /// A group whose node `id` also gets `extra(id)` on its command line.
    ///
    /// Ports are picked free but may be taken by another process before a
    /// node binds them (tests of other files run meanwhile): a node that
    /// exits during start-up, or a port that answers as another server,
    /// starts the whole group again on new ports (up to 3 times).
    pub fn start_with(size: u64, extra: impl Fn(u64) -> Vec<String>) -> Group {
        for _ in 0..3 {
            let mut group = Group::on_new_ports(size, &extra);
            if (0..group.nodes.len()).all(|i| group.try_launch(i)) {
                return group;
            }
            eprintln!("a node did not start (a port taken?); new ports");
        }
        panic!("the group did not start after 3 attempts");
    }

    fn on_new_ports(size: u64, extra: &impl Fn(u64) -> Vec<String>) -> Group {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let nodes: Vec<Node> = (1..=size)
            .map(|id| Node {
                id,
                mc: free_port(),
                http: free_port(),
                raft: free_port(),
                dir: tmp.path().join(format!("node{id}")),
                child: None,
                paused: false,
                extra: extra(id),
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.raft))
            .collect::<Vec<_>>()
            .join(",");
        Group {
            nodes,
            peers,
            tmp: Some(tmp),
            root,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Starts (or restarts) node `i` on its ports and data directory.
    pub fn launch(&mut self, i: usize) {
        assert!(
            self.try_launch(i),
            "node {} exited during start-up",
            self.nodes[i].id
        );
    }

    /// Starts node `i`; true once it answers `GET /v1/cluster` as itself,
    /// false if it exited first.
    fn try_launch(&mut self, i: usize) -> bool {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("node{}.log", n.id)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", n.mc)])
            .args(["--http-listen", &format!("127.0.0.1:{}", n.http)])
            .arg("--data-dir")
            .arg(&n.dir)
            .args(["--node-id", &n.id.to_string()])
            .args(["--raft-listen", &format!("127.0.0.1:{}", n.raft)])
            .args(["--peers", &self.peers])
            .args(if n.extra.iter().any(|a| a == "--quorum-timeout-ms") {
                &[][..]
            } else {
                &["--quorum-timeout-ms", "1500"][..]
            })
            .args(&n.extra)
            .env("MEMCACHED_LITE_LOG", "warn,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
        n.paused = false;
        let id = n.id;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.nodes[i].child.as_mut().unwrap().try_wait() {
                eprintln!("node {id} exited during start-up: {status}");
                self.nodes[i].child = None;
                return false;
            }
            if let Some(s) = self.status(i) {
                if s["node_id"].as_u64() == Some(id) {
                    return true;
                }
            }
            assert!(Instant::now() < deadline, "node {id} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // SIGKILL ends a stopped process too.
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        let child = self.nodes[i].child.as_ref().expect("node running");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", child.id());
    }

    /// SIGSTOP: the node stops answering anyone, as a partition looks
    /// from its peers and clients (its sockets stay open).
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.nodes[i].paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT);
            self.nodes[i].paused = false;
        }
    }

    /// Nodes running and not stopped.
    pub fn alive(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some() && !n.paused)
    }

    /// `GET /v1/cluster`; None if the node does not answer within 3 s.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/v1/cluster", self.nodes[i].http);
        self.http
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The index of the node every live node agrees leads.
    pub fn wait_leader(&self) -> usize {
        self.wait_leader_within(Duration::from_secs(20))
    }

    pub fn wait_leader_within(&self, limit: Duration) -> usize {
        let alive: Vec<(usize, u64)> = self.alive().map(|(i, n)| (i, n.id)).collect();
        wait_agreed_leader(&alive, limit, |i| self.status(i))
    }

    /// The node that `among` (indexes) agree leads, when one of them does.
    pub fn wait_leader_among(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<Option<u64>> = among
                .iter()
                .map(|i| self.status(*i).and_then(|s| s["leader_id"].as_u64()))
                .collect();
            if let Some(Some(id)) = leaders.first() {
                let i = self.nodes.iter().position(|n| n.id == *id);
                if leaders.iter().all(|l| *l == Some(*id)) && i.is_some_and(|i| among.contains(&i))
                {
                    return i.unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?}: {leaders:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every live node has applied as far as the furthest.
    pub fn wait_caught_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let applied: Vec<u64> = self
                .alive()
                .map(|(i, _)| {
                    self.status(i)
                        .map_or(0, |s| s["applied_index"].as_u64().unwrap())
                })
                .collect();
            if applied.iter().all(|a| *a == applied[0]) && applied[0] > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nodes not caught up: {applied:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn mc_addr(&self, i: usize) -> SocketAddr {
        format!("127.0.0.1:{}", self.nodes[i].mc).parse().unwrap()
    }

    pub fn client(&self, i: usize) -> Client {
        Client::connect(self.mc_addr(i))
    }

    pub fn export(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/v1/export.csv", self.nodes[i].http);
        self.http.get(url).send().unwrap().text().unwrap()
    }
}

impl Drop for Group {
    /// Every node is SIGCONTed and killed, also when a test panics.
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused && self.nodes[i].child.is_some() {
                self.resume(i);
            }
            self.kill(i);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = self.root.join(format!("node{}.log", n.id));
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text
                    .lines()
                    .filter(|l| {
                        !l.contains("failure sending RaftMsg")
                            && !l.contains("RPCError err=Unreachable")
                    })
                    .rev()
                    .take(30)
                    .collect();
                eprintln!("--- node {} log (last lines) ---", n.id);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            if let Some(tmp) = self.tmp.take() {
                eprintln!("kept the nodes' logs and data in {}", tmp.keep().display());
            }
        }
    }
}

/// Items of a CSV export (`key,flags,exptime,cas,encoding,value`) by key:
/// (flags, value). For the plain keys and values the tests write.
pub fn export_items(csv: &str) -> BTreeMap<String, (String, String)> {
    csv.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.splitn(6, ',').collect();
            assert_eq!(f.len(), 6, "export row {line:?}");
            (f[0].to_string(), (f[1].to_string(), f[5].to_string()))
        })
        .collect()
}

/// What a client knows of a request it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// The server answered.
    Done(T),
    /// Nothing was sent (no connection): the request had no effect.
    NotSent,
    /// Sent, but no answer (timeout, connection lost) or `SERVER_ERROR`:
    /// a write may or may not take effect.
    Unknown(String),
}

/// A memcached connection to one node that reconnects after a failure and
/// turns every failure into a [`Reply`] instead of a panic.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::new(),
            timeout,
        }
    }

    /// Connects if needed and sends `req`; false if nothing was sent.
    fn send(&mut self, req: &[u8]) -> bool {
        if self.stream.is_none() {
            let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
                return false;
            };
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            self.buf.clear();
            self.stream = Some(s);
        }
        if self.stream.as_mut().unwrap().write_all(req).is_err() {
            // Maybe partly sent: a write may have been taken.
            self.stream = None;
            return true;
        }
        true
    }

    /// Reads until `buf` holds at least `n` bytes; Err (and the
    /// connection dropped) on a timeout or a closed connection.
    fn fill(&mut self, n: usize, deadline: Instant) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        while self.buf.len() < n {
            let Some(s) = self.stream.as_mut() else {
                return Err("connection lost".into());
            };
            match s.read(&mut chunk) {
                Ok(0) => {
                    self.stream = None;
                    return Err("connection closed".into());
                }
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        self.stream = None;
                        return Err("timeout".into());
                    }
                }
                Err(e) => {
                    self.stream = None;
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(pos + 2);
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            let want = self.buf.len() + 1;
            self.fill(want, deadline)?;
        }
    }

    fn read_data(&mut self, len: usize, deadline: Instant) -> Result<String, String> {
        self.fill(len + 2, deadline)?;
        let data = self.take(len + 2);
        Ok(String::from_utf8_lossy(&data[..len]).into_owned())
    }

    /// Sends `req`, then reads the answer with `read`; a `SERVER_ERROR`
    /// line counts as Unknown.
    fn call<T>(
        &mut self,
        req: &[u8],
        read: impl FnOnce(&mut Conn, Instant) -> Result<T, String>,
    ) -> Reply<T> {
        if !self.send(req) {
            return Reply::NotSent;
        }
        let deadline = Instant::now() + self.timeout;
        match read(self, deadline) {
            Ok(v) => Reply::Done(v),
            Err(e) => Reply::Unknown(e),
        }
    }

    fn one_line(&mut self, req: &[u8]) -> Reply<String> {
        self.call(req, |c, d| {
            let line = c.read_line(d)?;
            if line.starts_with("SERVER_ERROR") {
                return Err(line);
            }
            Ok(line)
        })
    }

    /// `set`: the reply line (`STORED`).
    pub fn set(&mut self, key: &str, value: &str) -> Reply<String> {
        let req = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
        self.one_line(req.as_bytes())
    }

    /// `gets`: (value, cas) or None for a miss.
    pub fn gets(&mut self, key: &str) -> Reply<Option<(String, u64)>> {
        if !self.begin_gets(key) {
            return Reply::NotSent;
        }
        self.finish_gets()
    }

    /// Sends `gets key` without waiting for the answer (e.g. to a stopped
    /// node, which reads it the moment it runs again); false if not sent.
    pub fn begin_gets(&mut self, key: &str) -> bool {
        self.send(format!("gets {key}\r\n").as_bytes())
    }

    /// The answer to [`Conn::begin_gets`].
    pub fn finish_gets(&mut self) -> Reply<Option<(String, u64)>> {
        let deadline = Instant::now() + self.timeout;
        let read = |c: &mut Conn| {
            let line = c.read_line(deadline)?;
            if line == "END" {
                return Ok(None);
            }
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 5 || f[0] != "VALUE" {
                return Err(line);
            }
            let len: usize = f[3].parse().map_err(|_| line.clone())?;
            let cas: u64 = f[4].parse().map_err(|_| line.clone())?;
            let value = c.read_data(len, deadline)?;
            let end = c.read_line(deadline)?;
            if end != "END" {
                return Err(end);
            }
            Ok(Some((value, cas)))
        };
        match read(self) {
            Ok(v) => Reply::Done(v),
            Err(e) => Reply::Unknown(e),
        }
    }

    /// `cas`: the reply line (`STORED`, `EXISTS`, `NOT_FOUND`).
    pub fn cas(&mut self, key: &str, value: &str, cas: u64) -> Reply<String> {
        let req = format!("cas {key} 0 0 {} {cas}\r\n{value}\r\n", value.len());
        self.one_line(req.as_bytes())
    }

    /// `delete`: the reply line (`DELETED`, `NOT_FOUND`).
    pub fn delete(&mut self, key: &str) -> Reply<String> {
        self.one_line(format!("delete {key}\r\n").as_bytes())
    }

    /// `md key`: the reply line (`HD`, `NF`).
    pub fn meta_delete(&mut self, key: &str) -> Reply<String> {
        self.one_line(format!("md {key}\r\n").as_bytes())
    }

    /// `ms key <len> [C<cas>]`: the reply line (`HD`, `EX`, `NF`).
    pub fn meta_set(&mut self, key: &str, value: &str, cas: Option<u64>) -> Reply<String> {
        let compare = cas.map(|c| format!(" C{c}")).unwrap_or_default();
        let req = format!("ms {key} {}{compare}\r\n{value}\r\n", value.len());
        self.one_line(req.as_bytes())
    }

    /// `mg key v c`: (value, cas) or None for a miss.
    pub fn meta_get(&mut self, key: &str) -> Reply<Option<(String, u64)>> {
        self.call(format!("mg {key} v c\r\n").as_bytes(), |c, d| {
            let line = c.read_line(d)?;
            if line == "EN" {
                return Ok(None);
            }
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 3 || f[0] != "VA" || !f[2].starts_with('c') {
                return Err(line);
            }
            let len: usize = f[1].parse().map_err(|_| line.clone())?;
            let cas: u64 = f[2][1..].parse().map_err(|_| line.clone())?;
            Ok(Some((c.read_data(len, d)?, cas)))
        })
    }

    /// A binary-protocol `set`: the response status (0 = stored).
    pub fn binary_set(&mut self, key: &str, value: &str) -> Reply<u16> {
        let body_len = 8 + key.len() + value.len();
        let mut req = vec![0x80, 0x01];
        req.extend_from_slice(&(key.len() as u16).to_be_bytes());
        req.extend_from_slice(&[8, 0, 0, 0]);
        req.extend_from_slice(&(body_len as u32).to_be_bytes());
        req.extend_from_slice(&[0; 12]); // opaque, cas
        req.extend_from_slice(&[0; 8]); // flags, exptime
        req.extend_from_slice(key.as_bytes());
        req.extend_from_slice(value.as_bytes());
        self.call(&req, |c, d| {
            c.fill(24, d)?;
            let header = c.take(24);
            let status = u16::from_be_bytes([header[6], header[7]]);
            let body = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
            c.fill(body as usize, d)?;
            c.take(body as usize);
            if status == 0x86 {
                return Err("temporary failure (no quorum)".into());
            }
            Ok(status)
        })
    }
}

/// Polls `status` (`GET /v1/cluster`) of the `alive` nodes (index, node
/// id) until all of them name the same leader among them; its index.
/// Panics after `limit`.
pub fn wait_agreed_leader(
    alive: &[(usize, u64)],
    limit: Duration,
    status: impl Fn(usize) -> Option<serde_json::Value>,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let leaders: Vec<Option<u64>> = alive
            .iter()
            .map(|&(i, _)| status(i).and_then(|s| s["leader_id"].as_u64()))
            .collect();
        if let Some(Some(id)) = leaders.first() {
            if leaders.iter().all(|l| *l == Some(*id)) {
                if let Some(&(i, _)) = alive.iter().find(|(_, node)| node == id) {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
