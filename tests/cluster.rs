//! Replicated groups of three real server processes on loopback: the
//! group forms from `--peers`, every node takes writes of every protocol,
//! acknowledged writes survive `kill -9` of the leader, a group without
//! quorum refuses writes within the timeout, and a wiped node catches up.
//! Failure rounds: `MEMCACHED_LITE_CLUSTER_ROUNDS` (3 by default, for CI).

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::Group;

fn rounds() -> usize {
    cluster::rounds(3)
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
