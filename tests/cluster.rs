//! Replicated groups of three real server processes on loopback: the
//! group forms from `--peers`, every node takes writes of every protocol,
//! acknowledged writes survive `kill -9` of the leader, a group without
//! quorum refuses writes within the timeout, and a wiped node catches up.
//! Failure rounds: `MEMCACHED_LITE_CLUSTER_ROUNDS` (3 by default, for CI).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Client};

struct Node {
    id: u64,
    mc: u16,
    http: u16,
    raft: u16,
    dir: PathBuf,
    child: Option<Child>,
}

struct Group {
    nodes: Vec<Node>,
    peers: String,
    _tmp: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Group {
    fn start(size: u64) -> Group {
        let tmp = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=size)
            .map(|id| Node {
                id,
                mc: free_port(),
                http: free_port(),
                raft: free_port(),
                dir: tmp.path().join(format!("node{id}")),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.raft))
            .collect::<Vec<_>>()
            .join(",");
        let mut group = Group {
            nodes,
            peers,
            _tmp: tmp,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        for i in 0..group.nodes.len() {
            group.launch(i);
        }
        group
    }

    fn launch(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._tmp.path().join(format!("node{}.log", n.id)))
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
            .args(["--quorum-timeout-ms", "1500"])
            .env("MEMCACHED_LITE_LOG", "warn,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", n.http)).is_err() {
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

    fn alive(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some())
    }

    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/v1/cluster", self.nodes[i].http);
        self.http.get(url).send().ok()?.json().ok()
    }

    /// The index of the node every live node agrees leads.
    fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<Option<u64>> = self
                .alive()
                .map(|(i, _)| self.status(i).and_then(|s| s["leader_id"].as_u64()))
                .collect();
            if let Some(Some(id)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*id)) {
                    if let Some((i, _)) = self.alive().find(|(_, n)| n.id == *id) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every live node has applied as far as the furthest.
    fn wait_caught_up(&self) {
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

    fn client(&self, i: usize) -> Client {
        Client::connect(format!("127.0.0.1:{}", self.nodes[i].mc).parse().unwrap())
    }

    fn export(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/v1/export.csv", self.nodes[i].http);
        self.http.get(url).send().unwrap().text().unwrap()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = self._tmp.path().join(format!("node{}.log", n.id));
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
        }
    }
}

fn rounds() -> usize {
    std::env::var("MEMCACHED_LITE_CLUSTER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[test]
fn every_node_takes_writes_of_every_protocol_and_replicas_agree() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let mut c = g.client(follower);
    assert_eq!(c.line(b"set a 0 0 5\r\nhello\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"add a 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line(b"set n 7 0 1\r\n5\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"incr n 10\r\n"), "15\r\n");
    assert_eq!(c.line(b"ms m 2 T0\r\nhi\r\n"), "HD\r\n");
    let put = g
        .http
        .put(format!(
            "http://127.0.0.1:{}/v1/keys/h",
            g.nodes[(leader + 2) % 3].http
        ))
        .body("from http")
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    assert_eq!(c.line(b"delete nope\r\n"), "NOT_FOUND\r\n");
    g.wait_caught_up();
    let mut views = BTreeMap::new();
    for i in 0..3 {
        let view = g.client(i).until_end(b"gets a n m h\r\n");
        assert!(view.contains("VALUE n 7 2"), "{view}");
        assert!(view.contains("from http"), "{view}");
        views.insert(i, view);
    }
    // Same values and the same CAS on every node.
    assert_eq!(views[&0], views[&1]);
    assert_eq!(views[&1], views[&2]);
    assert_eq!(g.export(0), g.export(1));
    assert_eq!(g.export(1), g.export(2));
    // stats carry the group's figures.
    let stats = g.client(leader).until_end(b"stats\r\n");
    assert!(stats.contains("STAT raft_role leader"), "{stats}");
    assert!(stats.contains("STAT raft_members 3"), "{stats}");
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write() {
    let mut g = Group::start(3);
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..rounds() {
        let leader = g.wait_leader();
        // Writers on every live node; the leader dies in the middle.
        let targets: Vec<usize> = g.alive().map(|(i, _)| i).collect();
        for (w, &i) in targets.iter().enumerate() {
            let mut c = g.client(i);
            for k in 0..20 {
                let (key, value) = (format!("r{round}w{w}k{k}"), format!("v{round}.{w}.{k}"));
                let reply =
                    c.line(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
                if reply == "STORED\r\n" {
                    acked.insert(key, value);
                }
            }
        }
        g.kill(leader);
        let started = Instant::now();
        let new_leader = g.wait_leader();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "election took {:?}",
            started.elapsed()
        );
        let mut c = g.client(new_leader);
        let key = format!("after{round}");
        assert_eq!(
            c.line(format!("set {key} 0 0 2\r\nok\r\n").as_bytes()),
            "STORED\r\n"
        );
        acked.insert(key, "ok".into());
        g.launch(leader);
    }
    g.wait_leader();
    g.wait_caught_up();
    for i in 0..3 {
        let mut c = g.client(i);
        for (key, value) in &acked {
            let got = c.until_end(format!("get {key}\r\n").as_bytes());
            assert_eq!(
                got,
                format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()),
                "node {} lost {key}",
                i + 1
            );
        }
    }
    assert_eq!(g.export(0), g.export(1));
    assert_eq!(g.export(1), g.export(2));
}

#[test]
fn without_a_quorum_writes_fail_clearly_and_in_time() {
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let survivor = (leader + 1) % 3;
    g.kill(leader);
    g.kill((leader + 2) % 3);
    let mut c = g.client(survivor);
    let started = Instant::now();
    assert_eq!(
        c.line(b"set k 0 0 1\r\nx\r\n"),
        "SERVER_ERROR no quorum\r\n"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let put = g
        .http
        .put(format!(
            "http://127.0.0.1:{}/v1/keys/k",
            g.nodes[survivor].http
        ))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 503);
    let body: serde_json::Value = put.json().unwrap();
    assert_eq!(body["message"], "no quorum");
    // A linearizable read cannot confirm a leader either.
    assert_eq!(c.line(b"get k\r\n"), "SERVER_ERROR no quorum\r\n");
}

#[test]
fn a_wiped_node_catches_up_and_holds_the_same_items() {
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let mut c = g.client(leader);
    for k in 0..200 {
        assert_eq!(
            c.line(format!("set key{k} {k} 0 3\r\nv{:02}\r\n", k % 100).as_bytes()),
            "STORED\r\n"
        );
    }
    let wiped = (leader + 1) % 3;
    g.kill(wiped);
    std::fs::remove_dir_all(&g.nodes[wiped].dir).unwrap();
    assert_eq!(c.line(b"set late 0 0 1\r\nx\r\n"), "STORED\r\n");
    g.launch(wiped);
    g.wait_caught_up();
    let export = g.export(wiped);
    assert_eq!(
        export.lines().count(),
        1 + 201,
        "{}",
        &export[..200.min(export.len())]
    );
    assert_eq!(export, g.export(leader));
}

#[test]
fn a_follower_reads_every_write_acknowledged_before_it() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let (mut writer, mut reader) = (g.client(leader), g.client((leader + 1) % 3));
    for k in 0..100 {
        let set = format!("set fresh{k} 0 0 2\r\nv{}\r\n", k % 10);
        assert_eq!(writer.line(set.as_bytes()), "STORED\r\n");
        // Linearizable reads (the default): no waiting for the follower
        // to catch up; the read itself waits for the leader's read index.
        assert_eq!(
            reader.until_end(format!("get fresh{k}\r\n").as_bytes()),
            format!("VALUE fresh{k} 0 2\r\nv{}\r\nEND\r\n", k % 10),
            "the follower missed an acknowledged write"
        );
    }
}

/// `GET /v1/watch` on node `i` over HTTP/1.0 (the body is the raw event
/// stream); returns a reader positioned after the response head.
fn watch(g: &Group, i: usize, query: &str) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", g.nodes[i].http)).unwrap();
    s.write_all(format!("GET /v1/watch{query} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.0 200"), "{line}");
    while line != "\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    r
}

/// The next `n` events of a watch stream as (id, event, key).
fn events(r: &mut std::io::BufReader<std::net::TcpStream>, n: usize) -> Vec<(u64, String, String)> {
    use std::io::BufRead;
    let mut out = Vec::new();
    let (mut id, mut event, mut key) = (0, String::new(), String::new());
    while out.len() < n {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "stream ended after {out:?}"
        );
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            let data: serde_json::Value = serde_json::from_str(v).unwrap();
            key = data["key"].as_str().unwrap_or("").to_owned();
        } else if line.is_empty() && !event.is_empty() {
            out.push((id, std::mem::take(&mut event), std::mem::take(&mut key)));
        }
    }
    out
}

#[test]
fn watchers_on_two_nodes_see_the_same_events_with_the_same_revisions() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let mut on_leader = watch(&g, leader, "?prefix=w");
    let mut on_follower = watch(&g, follower, "?prefix=w");
    // The third node's history starts with its first watcher.
    let _armed = watch(&g, (leader + 2) % 3, "?prefix=nothing");
    let mut c = g.client(follower);
    let mut l = g.client(leader);
    assert_eq!(c.line(b"set w1 0 0 1\r\na\r\n"), "STORED\r\n");
    assert_eq!(l.line(b"set other 0 0 1\r\nb\r\n"), "STORED\r\n");
    assert_eq!(l.line(b"set w2 0 0 1\r\n5\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"incr w2 1\r\n"), "6\r\n");
    assert_eq!(c.line(b"touch w1 100\r\n"), "TOUCHED\r\n");
    assert_eq!(l.line(b"delete w1\r\n"), "DELETED\r\n");
    assert_eq!(c.line(b"flush_all\r\n"), "OK\r\n");
    let a = events(&mut on_leader, 6);
    let b = events(&mut on_follower, 6);
    assert_eq!(
        a, b,
        "the same events with the same revisions on both nodes"
    );
    let kinds: Vec<(&str, &str)> = a.iter().map(|(_, e, k)| (e.as_str(), k.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("set", "w1"),
            ("set", "w2"),
            ("set", "w2"),
            ("set", "w1"),
            ("delete", "w1"),
            ("flush", "")
        ]
    );
    assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "{a:?}");
    // A set's revision is its log index, which is also the item's CAS.
    assert_eq!(c.line(b"set w3 0 0 1\r\nz\r\n"), "STORED\r\n");
    let (rev, _, _) = events(&mut on_follower, 1).remove(0);
    let gets = c.until_end(b"gets w3\r\n");
    assert!(
        gets.starts_with(&format!("VALUE w3 0 1 {rev}\r\n")),
        "{gets} vs {rev}"
    );
    // Resuming on the other node from a revision seen here replays the rest.
    let mut third = watch(&g, (leader + 2) % 3, &format!("?prefix=w&since={}", a[2].0));
    let rest = events(&mut third, 4);
    assert_eq!(rest[..3], a[3..]);
    assert_eq!(rest[3].0, rev);
}
