//! Changing a replicated group's members while it serves, with real
//! server processes on loopback and the real `memcached-lite cluster`
//! subcommand: a fourth node waits until it is added, is added through a
//! follower, takes writes that every node reads; a removed node no longer
//! counts towards the quorum. Also: the errors an operator sees, a
//! rolling restart (one node at a time, each back to `/readyz` 200 before
//! the next) that loses no acknowledged write, and peers given as DNS
//! names, one of which does not resolve.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, Client};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_memcached-lite");

struct Node {
    id: u64,
    mc: u16,
    http: u16,
    raft: u16,
    dir: PathBuf,
    /// `--peers` this node starts with.
    peers: String,
    /// More `serve` flags (`--join`, ...) and environment.
    extra: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

struct Group {
    nodes: Vec<Node>,
    tmp: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

/// `1=127.0.0.1:<raft>,...` for `nodes`.
fn peers_of(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}=127.0.0.1:{}", n.id, n.raft))
        .collect::<Vec<_>>()
        .join(",")
}

impl Group {
    /// `size` nodes, not started yet, all with the same `--peers`.
    fn new(size: u64) -> Group {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=size).map(|id| Group::node(&tmp, id)).collect();
        let peers = peers_of(&nodes);
        for n in &mut nodes {
            n.peers = peers.clone();
        }
        Group {
            nodes,
            tmp,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap(),
        }
    }

    fn node(tmp: &tempfile::TempDir, id: u64) -> Node {
        Node {
            id,
            mc: free_port(),
            http: free_port(),
            raft: free_port(),
            dir: tmp.path().join(format!("node{id}")),
            peers: String::new(),
            extra: Vec::new(),
            env: Vec::new(),
            child: None,
        }
    }

    /// A group of `size` nodes, started.
    fn start(size: u64) -> Group {
        let mut g = Group::new(size);
        for i in 0..g.nodes.len() {
            g.launch(i);
        }
        g
    }

    /// Adds a node (not started) whose `--peers` is the group's plus itself.
    fn push_node(&mut self) -> usize {
        let id = self.nodes.len() as u64 + 1;
        let mut n = Group::node(&self.tmp, id);
        n.peers = format!("{},{id}=127.0.0.1:{}", self.nodes[0].peers, n.raft);
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn launch(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join(format!("node{}.log", n.id)))
            .unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", n.mc)])
            .args(["--http-listen", &format!("127.0.0.1:{}", n.http)])
            .arg("--data-dir")
            .arg(&n.dir)
            .args(["--raft-listen", &format!("127.0.0.1:{}", n.raft)])
            .args(["--peers", &n.peers])
            .args(["--quorum-timeout-ms", "3000"])
            .args(&n.extra)
            .env_remove("HOSTNAME")
            .envs(n.env.iter().cloned())
            .env("MEMCACHED_LITE_LOG", "warn,openraft=error")
            .args(if n.extra.iter().any(|a| a == "--node-id") {
                vec![]
            } else {
                vec!["--node-id".to_string(), n.id.to_string()]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", n.http)).is_err() {
            assert!(Instant::now() < deadline, "node {} did not start", n.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits for the exit.
    fn stop(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "node {} did not stop", i + 1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some())
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.nodes[i].http)
    }

    fn status(&self, i: usize) -> Option<Value> {
        self.http
            .get(self.url(i, "/v1/cluster"))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The index of the node every live node agrees leads.
    fn wait_leader(&self) -> usize {
        let alive: Vec<(usize, u64)> = self.alive().map(|(i, n)| (i, n.id)).collect();
        cluster::wait_agreed_leader(&alive, Duration::from_secs(30), |i| self.status(i))
    }

    /// Waits for `/readyz` 200 on node `i`; how long it took.
    fn wait_ready(&self, i: usize) -> Duration {
        let started = Instant::now();
        loop {
            let answer = self.http.get(self.url(i, "/readyz")).send();
            match answer {
                Ok(r) if r.status() == 200 => return started.elapsed(),
                other => assert!(
                    started.elapsed() < Duration::from_secs(40),
                    "node {} not ready: {:?}",
                    i + 1,
                    other.map(|r| r.text().unwrap_or_default())
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client(&self, i: usize) -> Client {
        Client::connect(format!("127.0.0.1:{}", self.nodes[i].mc).parse().unwrap())
    }

    /// Runs `memcached-lite cluster <args>` against node `i`'s HTTP API.
    fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("cluster")
            .args(args)
            .args(["--http", &format!("127.0.0.1:{}", self.nodes[i].http)])
            .env_remove("MEMCACHED_LITE_HTTP_LISTEN")
            .env_remove("MEMCACHED_LITE_HTTP_TOKEN_FILE")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    }

    /// The member ids node `i` reports, with whether each votes.
    fn members(&self, i: usize) -> BTreeMap<u64, bool> {
        let s = self.status(i).expect("a status");
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), m["voter"].as_bool().unwrap()))
            .collect()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = self.tmp.path().join(format!("node{}.log", n.id));
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                eprintln!("--- node {} log (last lines) ---", n.id);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn voters(ids: &[u64]) -> BTreeMap<u64, bool> {
    ids.iter().map(|id| (*id, true)).collect()
}

#[test]
fn a_fourth_node_is_added_takes_writes_and_a_removed_node_stops_counting() {
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let mut c = g.client(leader);
    for k in 0..50 {
        let set = format!("set before{k} 0 0 2\r\nb{}\r\n", k % 10);
        assert_eq!(c.line(set.as_bytes()), "STORED\r\n");
    }

    // Started with --peers naming the group and itself, node 4 does not
    // form a group of its own: it waits, not ready, until it is added.
    let four = g.push_node();
    g.launch(four);
    std::thread::sleep(Duration::from_millis(500));
    let alone = g.status(four).unwrap();
    assert_eq!(alone["leader_id"], Value::Null, "{alone}");
    assert_eq!(alone["members"], serde_json::json!([]), "{alone}");
    let ready = g.http.get(g.url(four, "/readyz")).send().unwrap();
    assert_eq!(ready.status(), 503);

    // Added through a follower, which hands the change to the leader.
    let follower = (leader + 1) % 3;
    let raft4 = format!("127.0.0.1:{}", g.nodes[four].raft);
    let started = Instant::now();
    let out = g.cli(follower, &["add", "4", &raft4]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("node 4 added as a voter\n"), "{stdout}");
    assert!(stdout.contains("members (4):"), "{stdout}");
    assert!(stdout.contains(&raft4), "{stdout}");
    eprintln!("adding node 4 took {:?}", started.elapsed());
    assert_eq!(g.members(leader), voters(&[1, 2, 3, 4]));

    // The new node holds what was written before it joined, takes writes
    // on the memcached protocol, and every node reads them.
    g.wait_ready(four);
    let mut c4 = g.client(four);
    assert_eq!(
        c4.until_end(b"get before7\r\n"),
        "VALUE before7 0 2\r\nb7\r\nEND\r\n"
    );
    assert_eq!(c4.line(b"set joined 5 0 6\r\nfrom 4\r\n"), "STORED\r\n");
    for i in 0..4 {
        assert_eq!(
            g.client(i).until_end(b"get joined\r\n"),
            "VALUE joined 5 6\r\nfrom 4\r\nEND\r\n",
            "node {}",
            i + 1
        );
    }
    let json = g.cli(four, &["status", "--json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let status: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(status["node_id"], 4);
    assert!(status["leader_id"].is_u64(), "{status}");
    assert_eq!(status["members"].as_array().unwrap().len(), 4);

    // Remove a node that is not the leader, asking node 4, then stop it.
    let gone = (0..3).find(|i| *i != leader).unwrap();
    let gone_id = gone as u64 + 1;
    let out = g.cli(four, &["remove", &gone_id.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!("node {gone_id} removed\nmembers (3):")),
        "{}",
        text(&out.stdout)
    );
    g.kill(gone);
    let mut left: Vec<u64> = vec![1, 2, 3, 4];
    left.retain(|id| *id != gone_id);
    for (i, _) in g.alive() {
        assert_eq!(g.members(i), voters(&left), "node {}", i + 1);
    }
    let out = g.cli(leader, &["status"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("members (3):"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("127.0.0.1:{} ", g.nodes[gone].raft)),
        "{stdout}"
    );

    // With the removed node not counted, the group is three voters: one
    // more down still leaves a majority (of four it would not).
    let down = g.alive().map(|(i, _)| i).find(|i| *i != leader).unwrap();
    g.kill(down);
    let mut c = g.client(leader);
    assert_eq!(c.line(b"set after 0 0 2\r\nok\r\n"), "STORED\r\n");
    let last = g.alive().map(|(i, _)| i).find(|i| *i != leader).unwrap();
    assert_eq!(
        g.client(last).until_end(b"get after joined\r\n"),
        "VALUE after 0 2\r\nok\r\nVALUE joined 5 6\r\nfrom 4\r\nEND\r\n"
    );
}

/// An error answer: (status, the JSON body's `error`, its `message`).
fn error_of(resp: reqwest::blocking::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().expect("a JSON error body");
    (
        status,
        body["error"].as_str().unwrap().to_owned(),
        body["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn membership_errors_are_clear() {
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let post = |body: &str| {
        g.http
            .post(g.url(follower, "/v1/cluster/members"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    // Ids already present, ids absent: 409, from a follower too.
    let (status, code, message) = error_of(post(r#"{"id": 2, "raft_addr": "127.0.0.1:1"}"#));
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert_eq!(message, "node 2 is already a member of the group");
    let gone = g
        .http
        .delete(g.url(follower, "/v1/cluster/members/9"))
        .send()
        .unwrap();
    assert_eq!(
        error_of(gone),
        (
            409,
            "conflict".into(),
            "node 9 is not a member of the group".into()
        )
    );
    // The subcommand says the same, and fails.
    let out = g.cli(leader, &["add", "3", "127.0.0.1:1"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("node 3 is already a member of the group (HTTP 409"),
        "{stderr}"
    );
    let out = g.cli(leader, &["remove", "7", "--json"]);
    assert!(!out.status.success());
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"], "conflict");

    // Bad bodies: 400 for what is not JSON or not host:port, 422 for JSON
    // of the wrong shape (as every JSON body of the API), 415 without JSON.
    for (body, status, code) in [
        ("{", 400, "bad_request"),
        (r#"{"id": 5, "raft_addr": "no-port"}"#, 400, "bad_request"),
        (
            r#"{"id": 5, "raft_addr": "http://h:1/x"}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"id": "5", "raft_addr": "127.0.0.1:1"}"#,
            422,
            "invalid_body",
        ),
        (r#"{"id": 5}"#, 422, "invalid_body"),
        (
            r#"{"id": -1, "raft_addr": "127.0.0.1:1"}"#,
            422,
            "invalid_body",
        ),
        (
            r#"{"id": 5, "raft_addr": "127.0.0.1:1", "x": 1}"#,
            422,
            "invalid_body",
        ),
    ] {
        let (got, got_code, _) = error_of(post(body));
        assert_eq!((got, got_code.as_str()), (status, code), "{body}");
    }
    let plain = g
        .http
        .post(g.url(follower, "/v1/cluster/members"))
        .body(r#"{"id": 5, "raft_addr": "127.0.0.1:1"}"#)
        .send()
        .unwrap();
    assert_eq!(error_of(plain).0, 415);
    let bad_id = g
        .http
        .delete(g.url(follower, "/v1/cluster/members/x"))
        .send()
        .unwrap();
    assert_eq!(error_of(bad_id).0, 400);
    // Nothing changed.
    assert_eq!(g.members(leader), voters(&[1, 2, 3]));

    // A single node is no group: 404 with the JSON error body.
    let single = common::Server::start(&[]);
    let resp = g
        .http
        .post(single.url("/v1/cluster/members"))
        .header("content-type", "application/json")
        .body(r#"{"id": 4, "raft_addr": "127.0.0.1:7004"}"#)
        .send()
        .unwrap();
    let (status, code, message) = error_of(resp);
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(message.contains("single node"), "{message}");
    let resp = g
        .http
        .delete(single.url("/v1/cluster/members/1"))
        .send()
        .unwrap();
    assert_eq!(error_of(resp).0, 404);
    let out = Command::new(BIN)
        .args(["cluster", "status", "--http"])
        .arg(single.http_addr.unwrap().to_string())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("single node"),
        "{}",
        text(&out.stderr)
    );
    // And readiness on a single node is what it was: 200.
    let ready = g.http.get(single.url("/readyz")).send().unwrap();
    assert_eq!(ready.status(), 200);

    // Without a quorum a change fails within its bounds: 503, no hang.
    let survivor = g.wait_leader();
    for i in (0..3).filter(|i| *i != survivor) {
        g.kill(i);
    }
    let started = Instant::now();
    let resp = g
        .http
        .delete(g.url(
            survivor,
            &format!("/v1/cluster/members/{}", (survivor + 1) % 3 + 1),
        ))
        .send()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        error_of(resp),
        (503, "unavailable".into(), "no quorum".into())
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    let ready = g.http.get(g.url(survivor, "/readyz")).send().unwrap();
    assert_eq!(ready.status(), 503);
}

/// Sets keys in a loop on the memcached protocol, moving to the next node
/// whenever its node does not answer; records every acknowledged write.
fn writer(
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let (mut seq, mut failures, mut node) = (0u64, 0u64, 0usize);
        let mut conn: Option<TcpStream> = None;
        while !stop.load(Ordering::Relaxed) {
            let stream = match conn.take() {
                Some(s) => s,
                None => match TcpStream::connect(("127.0.0.1", ports[node])) {
                    Ok(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        s
                    }
                    Err(_) => {
                        node = (node + 1) % ports.len();
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                },
            };
            let (key, value) = (format!("roll{seq}"), format!("v{seq}.{node}"));
            seq += 1;
            let req = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
            let mut s = stream;
            let mut reply = [0u8; 64];
            let answered = s.write_all(req.as_bytes()).is_ok()
                && matches!(s.read(&mut reply), Ok(n) if n > 0 && reply[..n].ends_with(b"\r\n"));
            if answered && reply.starts_with(b"STORED\r\n") {
                acked.lock().unwrap().insert(key, value);
                conn = Some(s);
            } else {
                // A node going down (or without quorum for a moment): the
                // write was not acknowledged; try the next node.
                failures += 1;
                node = (node + 1) % ports.len();
            }
        }
        failures
    })
}

#[test]
fn a_rolling_restart_loses_no_acknowledged_write() {
    let mut g = Group::start(3);
    g.wait_leader();
    for i in 0..3 {
        g.wait_ready(i);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let ports = g.nodes.iter().map(|n| n.mc).collect();
    let writing = writer(ports, stop.clone(), acked.clone());
    std::thread::sleep(Duration::from_millis(500));
    // As a StatefulSet rolls: highest ordinal first, one pod at a time,
    // the next only once the restarted one is ready again.
    for i in (0..3).rev() {
        let before = acked.lock().unwrap().len();
        g.stop(i);
        std::thread::sleep(Duration::from_millis(300));
        g.launch(i);
        let took = g.wait_ready(i);
        // Some writes between two restarts, as between two pods' rollouts.
        std::thread::sleep(Duration::from_millis(500));
        let during = acked.lock().unwrap().len() - before;
        eprintln!(
            "node {} restarted, ready after {took:?}; {during} writes acknowledged \
             from its stop to 0.5 s after it was ready",
            i + 1
        );
        assert!(
            during > 0,
            "the group took no writes around node {}'s restart",
            i + 1
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let failures = writing.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} writes acknowledged, {failures} not", acked.len());
    assert!(acked.len() > 50, "too few writes to tell: {}", acked.len());
    g.wait_leader();
    for i in 0..3 {
        let mut c = g.client(i);
        for (key, value) in &acked {
            assert_eq!(
                c.until_end(format!("get {key}\r\n").as_bytes()),
                format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()),
                "node {} lost {key}",
                i + 1
            );
        }
    }
}

#[test]
fn peers_may_be_dns_names_and_an_unresolvable_one_is_not_fatal() {
    // Nodes 1 and 2 name each other `localhost`; node 3's name does not
    // resolve (a pod not scheduled yet). 1 and 2 still form the group and
    // have a majority. Node 1 takes its id from its host name, as a
    // StatefulSet pod does (`--node-id auto`).
    let mut g = Group::new(2);
    let peers = format!(
        "1=localhost:{},2=localhost:{},3=memcached-lite-2.no-such-service.invalid:7000",
        g.nodes[0].raft, g.nodes[1].raft
    );
    for n in &mut g.nodes {
        n.peers = peers.clone();
    }
    g.nodes[0].extra = vec!["--node-id".into(), "auto".into()];
    g.nodes[0].env = vec![("HOSTNAME".into(), "memcached-lite-0".into())];
    g.launch(0);
    g.launch(1);
    let leader = g.wait_leader();
    assert_eq!(g.status(0).unwrap()["node_id"], 1);
    let mut c = g.client((leader + 1) % 2);
    assert_eq!(c.line(b"set dns 0 0 2\r\nok\r\n"), "STORED\r\n");
    assert_eq!(
        g.client(leader).until_end(b"get dns\r\n"),
        "VALUE dns 0 2\r\nok\r\nEND\r\n"
    );
    assert_eq!(g.members(leader), voters(&[1, 2, 3]));
    for i in 0..2 {
        g.wait_ready(i);
    }
}

#[test]
fn removing_the_leader_hands_over_to_the_others() {
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let mut c = g.client(follower);
    assert_eq!(c.line(b"set kept 0 0 4\r\nkept\r\n"), "STORED\r\n");
    let out = g.cli(
        follower,
        &["remove", &(leader as u64 + 1).to_string(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["members"].as_array().unwrap().len(), 2, "{answer}");
    // The old leader steps down; the two left elect one of themselves.
    g.kill(leader);
    let started = Instant::now();
    let new_leader = g.wait_leader();
    eprintln!("new leader after {:?}", started.elapsed());
    assert_ne!(new_leader, leader);
    let left: Vec<u64> = (1..=3).filter(|id| *id != leader as u64 + 1).collect();
    for (i, _) in g.alive() {
        assert_eq!(g.members(i), voters(&left), "node {}", i + 1);
    }
    assert_eq!(c.line(b"set next 0 0 4\r\nnext\r\n"), "STORED\r\n");
    let other = (leader + 2) % 3;
    assert_eq!(
        g.client(other).until_end(b"get kept next\r\n"),
        "VALUE kept 0 4\r\nkept\r\nVALUE next 0 4\r\nnext\r\nEND\r\n"
    );
}

#[test]
fn a_node_that_never_catches_up_stays_a_learner_until_removed() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    // Nothing listens there: the learner is added, never catches up.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = g.cli(follower, &["add", "5", &nowhere]);
    let took = started.elapsed();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("node 5 did not catch up within 20 s; it stays a learner")
            && stderr.contains("HTTP 503"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(19) && took < Duration::from_secs(40),
        "{took:?}"
    );
    let mut expected = voters(&[1, 2, 3]);
    expected.insert(5, false);
    assert_eq!(g.members(leader), expected);
    // A learner does not count towards the majority: writes go on.
    assert_eq!(
        g.client(follower).line(b"set k 0 0 1\r\nv\r\n"),
        "STORED\r\n"
    );
    // The same id at another address is refused; removing it works.
    let out = g.cli(leader, &["add", "5", "127.0.0.1:1"]);
    assert!(
        text(&out.stderr).contains("already a learner of the group at"),
        "{}",
        text(&out.stderr)
    );
    let out = g.cli(follower, &["remove", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(g.members(leader), voters(&[1, 2, 3]));
}

#[test]
fn a_joining_node_never_forms_a_group_and_the_subcommand_sends_the_token() {
    // Alone in its --peers, a node would form a group of one and lead it;
    // with --join it waits to be added, unready.
    let mut g = Group::new(1);
    let token = g.tmp.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    g.nodes[0].extra = vec![
        "--join".into(),
        "--http-token-file".into(),
        token.to_str().unwrap().into(),
    ];
    g.launch(0);
    std::thread::sleep(Duration::from_millis(2500)); // past an election timeout
    let http = format!("127.0.0.1:{}", g.nodes[0].http);
    let cli = |token_file: Option<&std::path::Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["cluster", "status", "--json", "--http", &http])
            .env_remove("MEMCACHED_LITE_HTTP_TOKEN_FILE")
            .env_remove("RUST_BACKTRACE");
        if let Some(file) = token_file {
            cmd.env("MEMCACHED_LITE_HTTP_TOKEN_FILE", file);
        }
        cmd.output().unwrap()
    };
    let refused = cli(None);
    assert!(!refused.status.success());
    let body: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(body["error"], "unauthorized");
    let out = cli(Some(&token));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["leader_id"], Value::Null, "{status}");
    assert_eq!(status["members"], serde_json::json!([]), "{status}");
    let ready = g.http.get(g.url(0, "/readyz")).send().unwrap();
    let (code, _, message) = error_of(ready);
    assert_eq!(code, 503);
    assert!(message.contains("waiting to be added"), "{message}");
}

#[test]
fn a_node_whose_data_is_gone_is_removed_wiped_and_added_back() {
    // docs/kubernetes.md's procedure for a pod whose volume is gone.
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let mut c = g.client(leader);
    for k in 0..100 {
        let set = format!("set item{k} {k} 0 3\r\nv{:02}\r\n", k % 100);
        assert_eq!(c.line(set.as_bytes()), "STORED\r\n");
    }
    let lost = (leader + 1) % 3;
    let lost_id = (lost + 1).to_string();
    let out = g.cli(leader, &["remove", &lost_id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    g.kill(lost);
    std::fs::remove_dir_all(&g.nodes[lost].dir).unwrap();
    assert_eq!(c.line(b"set late 0 0 1\r\nx\r\n"), "STORED\r\n");
    // Back with the same id and settings on an empty directory: it waits.
    g.launch(lost);
    std::thread::sleep(Duration::from_millis(1500));
    let waiting = g.status(lost).unwrap();
    assert_eq!(waiting["members"], serde_json::json!([]), "{waiting}");
    assert_eq!(
        g.http.get(g.url(lost, "/readyz")).send().unwrap().status(),
        503
    );
    let raft = format!("127.0.0.1:{}", g.nodes[lost].raft);
    let out = g.cli((leader + 2) % 3, &["add", &lost_id, &raft]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(g.members(leader), voters(&[1, 2, 3]));
    g.wait_ready(lost);
    let export = |i: usize| {
        g.http
            .get(g.url(i, "/v1/export.csv"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while export(lost) != export(leader) {
        assert!(Instant::now() < deadline, "the re-added node differs");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(export(lost).lines().count(), 1 + 101);
}

/// `memcached-lite cluster` reaches a node whose HTTP API serves TLS: with
/// `--tls-ca`, or with no flag at all in the server's own environment
/// (its `MEMCACHED_LITE_TLS_CERT`, as in a pod); it refuses a certificate
/// it was not told to trust, or made out to another name, and says why.
#[test]
fn the_cluster_subcommand_reaches_a_node_over_tls() {
    let mut g = Group::new(1);
    let (cert, key) = common::self_signed(g.tmp.path());
    let other = g.tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_cert, _) = common::self_signed(&other);
    g.nodes[0].extra = vec!["--tls-cert".into(), cert.clone(), "--tls-key".into(), key];
    g.launch(0);
    let port = g.nodes[0].http;
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(["cluster", "status"])
            .args(args)
            .env_remove("MEMCACHED_LITE_HTTP_LISTEN")
            .env_remove("MEMCACHED_LITE_TLS_CERT")
            .env_remove("MEMCACHED_LITE_TLS_CA")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let https = format!("https://127.0.0.1:{port}");
    // A group of one leads itself shortly after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (ok, out, err) = cli(&["--http", &https, "--tls-ca", &cert], &[]);
        if ok && out.contains("leader 1") {
            break out;
        }
        assert!(Instant::now() < deadline, "no leader over TLS: {out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.starts_with("node 1: leader"), "{status}");

    // In the server's environment: the address and certificate it uses.
    let listen = format!("0.0.0.0:{port}");
    let env = [
        ("MEMCACHED_LITE_HTTP_LISTEN", &listen[..]),
        ("MEMCACHED_LITE_TLS_CERT", &cert[..]),
    ];
    let (ok, out, err) = cli(&["--json"], &env);
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["node_id"], 1, "{json}");

    // The certificate names localhost too: checked against that name.
    let named = [
        "--http",
        &https,
        "--tls-ca",
        &cert,
        "--tls-server-name",
        "localhost",
    ];
    assert!(cli(&named, &[]).0);

    let refusals: [(&[&str], &str); 4] = [
        (&["--http", &https], "--tls-ca"),
        (&["--http", &https, "--tls-ca", &other_cert], "certificate"),
        (
            &[
                "--http",
                &https,
                "--tls-ca",
                &cert,
                "--tls-server-name",
                "kv.example",
            ],
            "certificate",
        ),
        // Plain HTTP to the TLS port gets no answer it can read.
        (
            &["--http", &format!("http://127.0.0.1:{port}")],
            "127.0.0.1",
        ),
    ];
    for (args, says) in refusals {
        let (ok, out, err) = cli(args, &[]);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A peer of another release (another wire format: an older release's
/// unversioned `/raft/append`, or a later `/raft/v3/...`) is refused
/// before anything decodes its body, with a message saying why, and the
/// node logs it; `GET /v1/cluster` names the format this node speaks.
#[test]
fn a_peer_of_another_wire_format_is_refused_clearly() {
    let g = Group::start(1);
    g.wait_leader();
    let status = g.status(0).expect("status");
    assert_eq!(status["wire_format"], 2, "{status}");
    let raft = g.nodes[0].raft;
    for path in ["/raft/append", "/raft/v1/vote", "/raft/v3/append"] {
        let resp = g
            .http
            .post(format!("http://127.0.0.1:{raft}{path}"))
            .body(vec![0u8, 1, 2, 3])
            .send()
            .unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().unwrap();
        assert_eq!(code, 409, "{path}: {text}");
        assert!(
            text.contains("wire format mismatch: this node speaks v2")
                && text.contains(path)
                && text.contains("Upgrading"),
            "{path}: {text}"
        );
    }
    // Not a peer at all: nothing to explain.
    let resp = g
        .http
        .get(format!("http://127.0.0.1:{raft}/"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let log_path = g.nodes[0].dir.parent().unwrap().join("node1.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        log.matches("wire format mismatch").count(),
        1,
        "logged once in 10 s: {log}"
    );
    // The node still serves its group.
    let mut c = g.client(0);
    assert_eq!(c.line(b"set k 0 0 1\r\nv\r\n"), "STORED\r\n");
}
