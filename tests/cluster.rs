//! Replicated groups of three real server processes on loopback: the
//! group forms from `--peers`, every node takes writes of every protocol,
//! acknowledged writes survive `kill -9` of the leader, a group without
//! quorum refuses writes within the timeout, and a wiped node catches up.
//! Failure rounds: `MEMCACHED_LITE_CLUSTER_ROUNDS` (3 by default, for CI).

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::Group;
use tmpfs::Tmpfs;

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

#[test]
fn a_multi_key_get_on_a_follower_takes_one_read_index_round() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let mut writer = g.client(leader);
    let (mut command, mut expected) = (String::from("get"), String::new());
    for k in 0..100 {
        let set = format!("set many{k} 0 0 3\r\nv{k:02}\r\n");
        assert_eq!(writer.line(set.as_bytes()), "STORED\r\n");
        command.push_str(&format!(" many{k}"));
        expected.push_str(&format!("VALUE many{k} 0 3\r\nv{k:02}\r\n"));
    }
    let before = stat(&g, follower, "raft_read_index_rounds");
    // Every key was acknowledged before the command: all 100 are there,
    // though the follower may not have applied them when it arrives.
    assert_eq!(
        g.client(follower)
            .until_end(format!("{command}\r\n").as_bytes()),
        expected + "END\r\n"
    );
    let rounds = stat(&g, follower, "raft_read_index_rounds") - before;
    assert!(
        (1..=2).contains(&rounds),
        "a 100-key get on a follower took {rounds} read-index rounds"
    );
}

/// A pipeline of reads on a follower (meta `mg`s, a `get`, binary quiet
/// gets) is answered from one read-index round, not one per read, and a
/// read after a write in the same pipeline still sees the write.
#[test]
fn a_pipeline_of_reads_on_a_follower_takes_one_read_index_round() {
    const GETKQ: u8 = 0x0d;
    const NOOP: u8 = 0x0a;
    let g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let mut writer = g.client(leader);
    for k in 0..30 {
        let set = format!("set pk{k} {k} 0 3\r\nv{k:02}\r\n");
        assert_eq!(writer.line(set.as_bytes()), "STORED\r\n");
    }
    let (mut pipeline, mut expected) = (String::new(), String::new());
    for k in 0..30 {
        pipeline.push_str(&format!("mg pk{k} v f\r\n"));
        expected.push_str(&format!("VA 3 f{k}\r\nv{k:02}\r\n"));
    }
    pipeline.push_str("mg absent v\r\nget pk1 pk2\r\nmn\r\n");
    expected.push_str("EN\r\nVALUE pk1 1 3\r\nv01\r\nVALUE pk2 2 3\r\nv02\r\nEND\r\nMN\r\n");
    let before = stat(&g, follower, "raft_read_index_rounds");
    let mut c = g.client(follower);
    c.send(pipeline.as_bytes());
    assert_eq!(
        String::from_utf8(c.read_until(b"MN\r\n")).unwrap(),
        expected
    );
    let rounds = stat(&g, follower, "raft_read_index_rounds") - before;
    assert!(
        (1..=2).contains(&rounds),
        "33 pipelined reads on a follower took {rounds} read-index rounds"
    );

    // A write ends the run: the reads after it see it.
    c.send(b"mg late v\r\nmg late v\r\nset late 0 0 1\r\n1\r\nmg late v\r\nmg pk0 v\r\nmn\r\n");
    assert_eq!(
        String::from_utf8(c.read_until(b"MN\r\n")).unwrap(),
        "EN\r\nEN\r\nSTORED\r\nVA 1\r\n1\r\nVA 3\r\nv00\r\nMN\r\n"
    );

    // Binary: quiet gets and the NOOP that ends them.
    let mut pipeline = Vec::new();
    for k in 0..30u32 {
        pipeline.extend(binary_packet(
            GETKQ,
            k,
            format!("pk{k}").as_bytes(),
            &[],
            &[],
        ));
    }
    pipeline.extend(binary_packet(GETKQ, 99, b"absent", &[], &[]));
    pipeline.extend(binary_packet(NOOP, 100, &[], &[], &[]));
    let before = stat(&g, follower, "raft_read_index_rounds");
    let mut c = g.client(follower);
    c.send(&pipeline);
    let got = binary_responses(&mut c, NOOP);
    let mut want: Vec<_> = (0..30u32)
        .map(|k| {
            let value = format!("v{k:02}").into_bytes();
            (GETKQ, 0, k, format!("pk{k}").into_bytes(), value)
        })
        .collect();
    want.push((NOOP, 0, 100, vec![], vec![]));
    assert_eq!(got, want);
    let rounds = stat(&g, follower, "raft_read_index_rounds") - before;
    assert!(
        (1..=2).contains(&rounds),
        "32 pipelined binary reads on a follower took {rounds} read-index rounds"
    );
}

/// A binary response: opcode, status, opaque, key, value (none for an
/// error).
type Response = (u8, u16, u32, Vec<u8>, Vec<u8>);

/// Binary responses read from `c` up to one with opcode `last`.
fn binary_responses(c: &mut common::Client, last: u8) -> Vec<Response> {
    let mut got = Vec::new();
    loop {
        let h = c.read_exact(24);
        let (extlen, keylen) = (h[4] as usize, u16::from_be_bytes([h[2], h[3]]) as usize);
        let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let b = c.read_exact(body);
        let status = u16::from_be_bytes([h[6], h[7]]);
        let opaque = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let k = b[extlen..extlen + keylen].to_vec();
        let v = if status == 0 {
            b[extlen + keylen..].to_vec()
        } else {
            Vec::new()
        };
        got.push((h[1], status, opaque, k, v));
        if h[1] == last {
            return got;
        }
    }
}

/// A pipeline of writes (storage commands, incr/decr, touch, `gat`, delete,
/// meta `ms`), on
/// the leader and on a follower, is proposed as one ordered unit: every
/// command applies in its place (the appends build the value in order,
/// `add` sees the key the run created, `incr` the `set` before it), the
/// replies are those of the commands one by one, and the run takes a few
/// log entries instead of one commit round per command.
#[test]
fn pipelined_writes_apply_in_order_and_share_log_entries() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let commit_index = || {
        g.status(leader).expect("leader answers")["commit_index"]
            .as_u64()
            .unwrap()
    };
    for node in [leader, (leader + 1) % 3] {
        let key = format!("run{node}");
        let ctr = format!("ctr{node}");
        let mut pipeline = format!("set {key} 0 0 1\r\na\r\n");
        let mut value = String::from("a");
        let mut replies = String::from("STORED\r\n");
        for i in 0..50u8 {
            let c = (b'b' + i % 25) as char;
            pipeline.push_str(&format!("append {key} 0 0 1\r\n{c}\r\n"));
            value.push(c);
            replies.push_str("STORED\r\n");
        }
        pipeline.push_str(&format!(
            "incr {ctr} 5\r\nset {ctr} 0 0 1\r\n1\r\nincr {ctr} 5\r\ndecr {ctr} 2\r\n\
             touch {key} 1000\r\ndelete gone{node}\r\nadd {key} 0 0 1\r\nx\r\n\
             replace missing{node} 0 0 1\r\nx\r\nms meta{node} 2 F5\r\nhi\r\n\
             ms meta{node} 1 MA q\r\n!\r\nms meta{node} 1 ME q\r\nx\r\n\
             ma mc{node} N0 J10 v\r\n{}ma mc{node} MD D3 v\r\n\
             ms tmp{node} 1\r\nz\r\nmd tmp{node} q\r\nmd tmp{node}\r\n{}\
             set g{node} 0 0 1\r\n1\r\ngat 100 g{node} nokey{node}\r\n\
             set g{node} 0 0 1\r\n2\r\ngat 100 g{node}\r\n{}\
             get {key} {ctr} meta{node} mc{node}\r\nmn\r\n",
            format!("ma mc{node} q\r\n").repeat(8),
            format!("mg mc{node} T100 v\r\n").repeat(10),
            format!("gat 600 meta{node}\r\n").repeat(6)
        ));
        replies.push_str("NOT_FOUND\r\nSTORED\r\n6\r\n4\r\nTOUCHED\r\nNOT_FOUND\r\n");
        // The quiet append answers nothing; the quiet add that fails, NS.
        replies.push_str("NOT_STORED\r\nNOT_STORED\r\nHD\r\nNS\r\n");
        // A counter made at 10, 8 quiet increments, minus 3; a quiet
        // delete, then one of a key gone.
        replies.push_str("VA 2\r\n10\r\nVA 2\r\n15\r\nHD\r\nNF\r\n");
        // Ten `mg`s that touch the counter (writes, in the log).
        replies.push_str(&"VA 2\r\n15\r\n".repeat(10));
        // Each `gat` reads the item as its own touch left it, before the
        // `set` after it.
        replies.push_str(&format!(
            "STORED\r\nVALUE g{node} 0 1\r\n1\r\nEND\r\nSTORED\r\nVALUE g{node} 0 1\r\n2\r\nEND\r\n"
        ));
        replies.push_str(&format!("VALUE meta{node} 5 3\r\nhi!\r\nEND\r\n").repeat(6));
        replies.push_str(&format!(
            "VALUE {key} 0 {}\r\n{value}\r\nVALUE {ctr} 0 1\r\n4\r\n\
             VALUE meta{node} 5 3\r\nhi!\r\nVALUE mc{node} 0 2\r\n15\r\nEND\r\nMN\r\n",
            value.len()
        ));
        let before = commit_index();
        let mut c = g.client(node);
        c.send(pipeline.as_bytes());
        let got = String::from_utf8(c.read_until(b"MN\r\n")).unwrap();
        assert_eq!(got, replies, "node {node}");
        let entries = commit_index() - before;
        // Two runs take 2-4 (2 here); without runs for the ten `mg`s, 12;
        // without them for the `gat`s, 10 more.
        assert!(
            entries <= 6,
            "96 pipelined writes on node {node} took {entries} log entries"
        );
    }
}

/// A binary request packet with `opaque` (no CAS).
fn binary_packet(op: u8, opaque: u32, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// A binary pipeline of writes (a `SETQ`/`APPENDQ` bulk load, deletes,
/// increments), on the leader and on a follower, is one ordered unit too: the quiet
/// successes answer nothing, the errors and the loud requests answer in
/// order with their opaques, the value is the appends in order, and the
/// run takes a few log entries.
#[test]
fn pipelined_binary_writes_apply_in_order_and_share_log_entries() {
    const SET: u8 = 0x01;
    const ADD: u8 = 0x02;
    const GETK: u8 = 0x0c;
    const NOOP: u8 = 0x0a;
    const SETQ: u8 = 0x11;
    const REPLACEQ: u8 = 0x13;
    const APPENDQ: u8 = 0x19;
    const DELETE: u8 = 0x04;
    const INCREMENT: u8 = 0x05;
    const DECREMENT: u8 = 0x06;
    const DELETEQ: u8 = 0x14;
    const INCREMENTQ: u8 = 0x15;
    const TOUCH: u8 = 0x1c;
    const GATKQ: u8 = 0x24;
    let g = Group::start(3);
    let leader = g.wait_leader();
    let commit_index = || {
        g.status(leader).expect("leader answers")["commit_index"]
            .as_u64()
            .unwrap()
    };
    let extras = [0u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
    for node in [leader, (leader + 1) % 3] {
        let key = format!("bin{node}").into_bytes();
        let mut pipeline = binary_packet(SET, 0, &key, &extras, b"a");
        let mut value = b"a".to_vec();
        for i in 0..40u8 {
            let c = b'b' + i % 25;
            pipeline.extend(binary_packet(APPENDQ, 1 + i as u32, &key, &[], &[c]));
            value.push(c);
        }
        pipeline.extend(binary_packet(ADD, 41, &key, &extras, b"x"));
        pipeline.extend(binary_packet(REPLACEQ, 42, b"missing", &extras, b"x"));
        pipeline.extend(binary_packet(SETQ, 43, b"other", &extras, b"v"));
        // A counter made at 7, 8 quiet increments, minus 2; a quiet delete,
        // then one of a key gone.
        let arith = |delta: u64| [delta.to_be_bytes(), 7u64.to_be_bytes()].concat();
        let ctr = format!("n{node}").into_bytes();
        pipeline.extend(binary_packet(
            INCREMENT,
            50,
            &ctr,
            &[arith(5), vec![0; 4]].concat(),
            &[],
        ));
        for i in 0..8 {
            let extras = [arith(1), vec![0; 4]].concat();
            pipeline.extend(binary_packet(INCREMENTQ, 51 + i, &ctr, &extras, &[]));
        }
        pipeline.extend(binary_packet(
            DECREMENT,
            60,
            &ctr,
            &[arith(2), vec![0; 4]].concat(),
            &[],
        ));
        pipeline.extend(binary_packet(DELETEQ, 61, b"other", &[], &[]));
        pipeline.extend(binary_packet(DELETE, 62, b"other", &[], &[]));
        // Touches answer with the item: a TOUCH, then 8 quiet GATKs (a
        // hit answers even quiet).
        let ttl = 100u32.to_be_bytes();
        pipeline.extend(binary_packet(TOUCH, 63, &ctr, &ttl, &[]));
        for i in 0..8 {
            pipeline.extend(binary_packet(GATKQ, 64 + i, &ctr, &ttl, &[]));
        }
        pipeline.extend(binary_packet(GETK, 44, &key, &[], &[]));
        pipeline.extend(binary_packet(NOOP, 45, &[], &[], &[]));
        let before = commit_index();
        let mut c = g.client(node);
        c.send(&pipeline);
        let got = binary_responses(&mut c, NOOP);
        let mut want = vec![
            (SET, 0, 0, vec![], vec![]),
            (ADD, 2, 41, vec![], vec![]),
            (REPLACEQ, 1, 42, vec![], vec![]),
            (INCREMENT, 0, 50, vec![], 7u64.to_be_bytes().to_vec()),
            (DECREMENT, 0, 60, vec![], 13u64.to_be_bytes().to_vec()),
            (DELETE, 1, 62, vec![], vec![]),
            (TOUCH, 0, 63, vec![], vec![]),
        ];
        want.extend((0..8).map(|i| (GATKQ, 0, 64 + i, ctr.clone(), b"13".to_vec())));
        want.push((GETK, 0, 44, key.clone(), value.clone()));
        want.push((NOOP, 0, 45, vec![], vec![]));
        assert_eq!(got, want, "node {node}");
        let entries = commit_index() - before;
        // One run takes 1-3 (2 here); without runs for the touches, 10.
        assert!(
            entries <= 6,
            "64 pipelined binary writes on node {node} took {entries} log entries"
        );
    }
}

fn readyz(g: &Group, i: usize) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}/readyz", g.nodes[i].http);
    let resp = g.http.get(url).send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn a_follower_whose_disk_fills_falls_behind_and_catches_up_by_itself() {
    let mut g = Group::start(3);
    let leader = g.wait_leader();
    let full = (leader + 1) % 3;
    // The follower restarts with its data directory on a small disk (it
    // rejoins as a wiped node does).
    g.kill(full);
    let Some(disk) = Tmpfs::mount_at(&g.nodes[full].dir, 64) else {
        return;
    };
    g.launch(full);
    let mut c = g.client(leader);
    for k in 0..50 {
        let set = format!("set before{k} 0 0 4\r\nb{k:03}\r\n");
        assert_eq!(c.line(set.as_bytes()), "STORED\r\n");
    }
    g.wait_caught_up();
    let filler = disk.fill(2 << 20);

    // The group keeps committing on its other two nodes.
    let started = Instant::now();
    for k in 0..300 {
        let set = format!("set during{k} 0 0 4\r\nd{k:03}\r\n");
        assert_eq!(
            c.line(set.as_bytes()),
            "STORED\r\n",
            "write {k} with a follower's disk full"
        );
    }
    eprintln!(
        "300 writes with a full follower took {:?}",
        started.elapsed()
    );
    let (code, body) = readyz(&g, full);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("out of disk space"), "{body}");
    let behind = |g: &Group| {
        let applied = |i| {
            g.status(i)
                .map_or(0, |s| s["applied_index"].as_u64().unwrap())
        };
        (applied(full), applied(leader))
    };
    let (f, l) = behind(&g);
    assert!(f < l, "the full follower applied {f} of {l}");

    // Space returns: the follower catches up without a restart.
    std::fs::remove_file(filler).unwrap();
    let resumed = Instant::now();
    g.wait_caught_up();
    eprintln!("caught up {:?} after space returned", resumed.elapsed());
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz(&g, full).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "still not ready: {:?}",
            readyz(&g, full)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let export = g.export(full);
    assert_eq!(export.lines().count(), 1 + 350);
    assert_eq!(
        export,
        g.export(leader),
        "replicas differ after the disk came back"
    );
    drop(g);
    drop(disk);
}

#[test]
fn when_the_leaders_disk_fills_another_node_leads_and_nothing_diverges() {
    let mut g = Group::start(3);
    g.wait_leader();
    // Every node restarts onto a small disk of its own, one at a time.
    let mut disks = Vec::new();
    for i in 0..3 {
        g.kill(i);
        let Some(disk) = Tmpfs::mount_at(&g.nodes[i].dir, 64) else {
            return;
        };
        disks.push(disk);
        g.launch(i);
        let leader = g.wait_leader();
        assert_eq!(
            g.client(leader)
                .line(format!("set n{i} 0 0 1\r\n{i}\r\n").as_bytes()),
            "STORED\r\n"
        );
        g.wait_caught_up();
    }
    let old = g.wait_leader();
    let filler = disks[old].fill(2 << 20);
    // Writes sent to another node: after an election without the full
    // leader, they are committed again (within a few seconds).
    let other = (old + 1) % 3;
    let mut c = g.client(other);
    let started = Instant::now();
    let mut stored = 0;
    for k in 0..100 {
        let set = format!("set after{k} 0 0 3\r\n{k:03}\r\n");
        loop {
            let reply = c.line(set.as_bytes());
            if reply == "STORED\r\n" {
                stored += 1;
                break;
            }
            // Until the others elect a leader: a clear, bounded refusal.
            assert_eq!(reply, "SERVER_ERROR no quorum\r\n", "write {k}");
            assert!(started.elapsed() < Duration::from_secs(30), "no new leader");
        }
    }
    eprintln!(
        "100 writes {:?} after the leader's disk filled",
        started.elapsed()
    );
    assert_eq!(stored, 100);
    let new = g.wait_leader_among(&[other, (old + 2) % 3]);
    assert_ne!(new, old);
    // The full node itself cannot append: a clear refusal, in bounded time.
    let asked = Instant::now();
    assert_eq!(
        g.client(old).line(b"set stuck 0 0 1\r\nx\r\n"),
        "SERVER_ERROR no quorum\r\n"
    );
    assert!(asked.elapsed() < Duration::from_secs(10));

    std::fs::remove_file(filler).unwrap();
    g.wait_caught_up();
    let leader = g.wait_leader();
    let export = g.export(old);
    assert_eq!(export.lines().count(), 1 + 3 + 100);
    assert_eq!(
        export,
        g.export(leader),
        "the old leader differs after its disk came back"
    );
    drop(g);
    drop(disks);
}

#[test]
fn meta_reads_that_write_go_through_the_log_and_agree_on_every_node() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let (mut ca, mut cb) = (g.client(a), g.client(b));
    // Vivify on a follower: this client wins the token to fill the key;
    // a client of another node then sees the token as taken (Z).
    let first = ca.line(b"mg fill N30 v c\r\n");
    assert!(
        first.starts_with("VA 0 ") && first.contains(" W"),
        "{first:?}"
    );
    assert_eq!(ca.line(b""), "\r\n");
    let second = cb.line(b"mg fill N30 v\r\n");
    assert!(
        second.contains(" Z") && !second.contains(" W"),
        "{second:?}"
    );
    assert_eq!(cb.line(b""), "\r\n");
    // Touch on one node: the same absolute expiry on every node.
    assert_eq!(ca.line(b"set t 0 0 1\r\nx\r\n"), "STORED\r\n");
    let touched = cb.line(b"mg t T100 t\r\n");
    assert!(touched.starts_with("HD t"), "{touched:?}");
    // Invalidate on one node: the next reader anywhere gets X and W.
    assert_eq!(ca.line(b"md t I\r\n"), "HD\r\n");
    let stale = cb.line(b"mg t c\r\n");
    assert!(stale.contains(" X") && stale.contains(" W"), "{stale:?}");
    // Hit-before and last-access are answered (from the replicated bits).
    let hl = ca.line(b"mg t h l\r\n");
    assert!(hl.starts_with("HD ") && hl.contains(" h"), "{hl:?}");
    g.wait_caught_up();
    let leader_export = g.export(leader);
    assert!(leader_export.contains("fill"), "{leader_export}");
    for i in [a, b] {
        assert_eq!(g.export(i), leader_export, "node {i} differs");
    }
}

/// A `stats` figure of node `i`.
fn stat(g: &Group, i: usize, name: &str) -> u64 {
    let text = g.client(i).until_end(b"stats\r\n");
    let prefix = format!("STAT {name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_command_is_counted_in_stats_by_the_node_that_served_it() {
    let g = Group::start(3);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let mut c = g.client(follower);
    for k in 0..5 {
        let set = format!("set counted{k} 0 0 1\r\nx\r\n");
        assert_eq!(c.line(set.as_bytes()), "STORED\r\n");
    }
    g.wait_caught_up();
    assert_eq!(stat(&g, follower, "cmd_set"), 5);
    for other in [leader, (leader + 2) % 3] {
        assert_eq!(
            stat(&g, other, "cmd_set"),
            0,
            "node {other} counted another node's sets"
        );
        // Every replica holds the items all the same.
        assert_eq!(stat(&g, other, "curr_items"), 5);
    }
}

#[test]
fn lru_eviction_in_a_group_drops_the_same_keys_on_every_node() {
    // 512 KiB for items of about 1 KiB: a few hundred fit.
    let g = Group::start_with(3, |_| {
        ["--max-bytes", "524288", "--eviction", "lru"]
            .map(String::from)
            .to_vec()
    });
    let leader = g.wait_leader();
    let value = "v".repeat(1000);
    // Writers on every node at once, so that proposals in flight compete
    // for victims.
    std::thread::scope(|s| {
        for i in 0..3 {
            let (g, value) = (&g, &value);
            s.spawn(move || {
                let mut c = g.client(i);
                for k in 0..300 {
                    let set = format!("set n{i}k{k} 0 0 1000\r\n{value}\r\n");
                    assert_eq!(c.line(set.as_bytes()), "STORED\r\n", "node {i} key {k}");
                }
            });
        }
    });
    g.wait_caught_up();
    let items = stat(&g, leader, "curr_items");
    let evictions: u64 = (0..3).map(|i| stat(&g, i, "evictions")).sum();
    assert!(items < 900 && items > 300, "{items} items left");
    assert_eq!(
        items + evictions,
        900,
        "every set stored, then kept or evicted once"
    );
    assert!(stat(&g, leader, "bytes") <= 524288);
    let export = g.export(leader);
    for i in 0..3 {
        assert_eq!(g.export(i), export, "node {i} evicted other keys");
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

/// With no `MEMCACHED_LITE_LOG`, a node's log holds what an operator acts
/// on, not a line per write: the Raft log's crate reports every flush at
/// `info` once its WAL has a second chunk (16 MiB in), about 50 lines a
/// second under load before the default filter quieted it.
#[test]
fn a_busy_node_logs_nothing_per_write_by_default() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("node.log");
    let (mc, raft) = (common::free_port(), common::free_port());
    let bin = env!("CARGO_BIN_EXE_memcached-lite");
    let mut node = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{mc}")])
        .args(["--no-http", "--no-csv-mirror", "--node-id", "1"])
        .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
        .args(["--peers", &format!("1=127.0.0.1:{raft}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("MEMCACHED_LITE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{mc}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the node never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A group of one: 24 MiB of sets takes its log past the first chunk.
    let load = Command::new(bin)
        .args(["bench", "--server", &addr.to_string(), "--ratio", "1:0"])
        .args([
            "--connections",
            "4",
            "--pipeline",
            "16",
            "--data-size",
            "1024",
        ])
        .args(["--key-space", "1000", "--requests", "24000", "--json"])
        .output()
        .unwrap();
    let _ = node.kill();
    let _ = node.wait();
    let report: serde_json::Value = serde_json::from_slice(&load.stdout)
        .unwrap_or_else(|e| panic!("bench output: {e}: {load:?}"));
    assert_eq!(report["errors"], 0, "{report}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("memcached listener ready"),
        "info lines are still logged:\n{log}"
    );
    let lines = log.lines().count();
    assert!(
        lines < 100,
        "{lines} log lines for 24,000 writes; the last:\n{}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
}
