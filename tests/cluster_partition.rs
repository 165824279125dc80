//! A partitioned leader, as its peers see it: SIGSTOP for 5 s while
//! writers on every node (text, meta and binary protocols) record each
//! acknowledged write. The other two elect a leader and keep taking
//! writes; after SIGCONT the old leader steps down (`GET /v1/cluster`:
//! follower of the new leader, in its term) and catches up; at rest the
//! three exports are identical and hold every acknowledged write.
//! Rounds: `MEMCACHED_LITE_CLUSTER_ROUNDS` (2 by default, for CI).

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{export_items, Conn, Group, Reply};

#[derive(Clone, Copy, Debug)]
enum Proto {
    Text,
    Meta,
    Binary,
}

/// What the writers saw, shared with the test's thread.
#[derive(Default)]
struct Tally {
    /// (key, value) of every acknowledged write.
    acked: Mutex<Vec<(String, String)>>,
    count: AtomicUsize,
    /// Answers no set should get (anything but stored, no quorum, timeout).
    wrong: Mutex<Vec<String>>,
    unknown: AtomicUsize,
}

/// Writes fresh keys through node `addr` until `stop`, one at a time.
fn writer(w: usize, proto: Proto, mut conn: Conn, tally: &Tally, stop: &AtomicBool) {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (key, value) = (format!("w{w}-{seq}"), format!("{proto:?}.{w}.{seq}"));
        let stored = match proto {
            Proto::Text => stored(conn.set(&key, &value), |l| l == "STORED"),
            Proto::Meta => stored(conn.meta_set(&key, &value, None), |l| l == "HD"),
            Proto::Binary => stored(conn.binary_set(&key, &value), |s| *s == 0),
        };
        match stored {
            Reply::Done(Ok(())) => {
                tally.acked.lock().unwrap().push((key, value));
                tally.count.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Done(Err(answer)) => tally
                .wrong
                .lock()
                .unwrap()
                .push(format!("{proto:?} {key}: {answer}")),
            Reply::Unknown(_) => {
                tally.unknown.fetch_add(1, Ordering::Relaxed);
            }
            Reply::NotSent => std::thread::sleep(Duration::from_millis(50)),
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Done(Ok) if the answer says stored, Done(Err(answer)) if not.
fn stored<T: std::fmt::Debug>(
    reply: Reply<T>,
    ok: impl FnOnce(&T) -> bool,
) -> Reply<Result<(), String>> {
    match reply {
        Reply::Done(v) if ok(&v) => Reply::Done(Ok(())),
        Reply::Done(v) => Reply::Done(Err(format!("{v:?}"))),
        Reply::NotSent => Reply::NotSent,
        Reply::Unknown(e) => Reply::Unknown(e),
    }
}

fn field(status: &serde_json::Value, name: &str) -> u64 {
    status[name].as_u64().unwrap_or(0)
}

#[test]
fn a_stopped_leader_steps_down_catches_up_and_loses_nothing() {
    let mut g = Group::start(3);
    g.wait_leader();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let plan = [
        (0, Proto::Text),
        (0, Proto::Meta),
        (1, Proto::Text),
        (1, Proto::Binary),
        (2, Proto::Text),
        (2, Proto::Meta),
    ];
    let writers: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(w, &(node, proto))| {
            let conn = Conn::new(g.mc_addr(node), Duration::from_secs(4));
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || writer(w, proto, conn, &tally, &stop))
        })
        .collect();
    let mut probes = Vec::new();
    let started = Instant::now();
    for round in 0..cluster::rounds(2) {
        let old = g.wait_leader();
        let old_term = field(&g.status(old).expect("leader answers"), "term");
        std::thread::sleep(Duration::from_secs(1));
        g.pause(old);
        let paused = Instant::now();
        // The other two elect a leader of their own: usually in 3-4.5 s
        // (the old leader's lease, 2 s, then an election timeout, 1-2 s);
        // a vote refused to a candidate with a shorter log adds a few
        // seconds, and a loaded machine more.
        let new = g.wait_leader_within(Duration::from_secs(20));
        let elected = paused.elapsed();
        assert_ne!(new, old);
        assert!(
            elected < Duration::from_secs(15),
            "election took {elected:?}"
        );
        // ...and take writes through both of them.
        for i in [new, 3 - old - new] {
            let key = format!("probe{round}-{i}");
            let mut c = Conn::new(g.mc_addr(i), Duration::from_secs(5));
            assert_eq!(c.set(&key, "ok"), Reply::Done("STORED".into()), "{key}");
            probes.push((key, "ok".to_string()));
        }
        // The writers on the survivors get acknowledgements again (the
        // node stays stopped at least 5 s, longer if the election was slow).
        let during = tally.count.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(8);
        while tally.count.load(Ordering::Relaxed) <= during {
            assert!(
                Instant::now() < deadline,
                "round {round}: no writer acknowledged anything while node {} was stopped",
                old + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(5).saturating_sub(paused.elapsed()));
        g.resume(old);
        let stopped_for = paused.elapsed();
        // The old leader steps down: a follower of the new one, in its term.
        let new_status = g.status(new).expect("new leader answers");
        let (new_id, new_term) = (g.nodes[new].id, field(&new_status, "term"));
        assert!(new_term > old_term, "term {old_term} -> {new_term}");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen;
        loop {
            seen = g.status(old);
            if let Some(s) = &seen {
                if s["role"] == "follower"
                    && s["leader_id"].as_u64() == Some(new_id)
                    && field(s, "term") >= new_term
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: node {} did not step down: {seen:?}",
                old + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // It catches up with what the group committed meanwhile.
        let target = field(&g.status(new).expect("leader answers"), "applied_index");
        let deadline = Instant::now() + Duration::from_secs(20);
        while g.status(old).map_or(0, |s| field(&s, "applied_index")) < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: node {} stuck behind {target}",
                old + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "round {round}: node {} stopped at {:?} for {stopped_for:?}, node {} elected in \
             {elected:?}, term {new_term}",
            old + 1,
            paused.duration_since(started),
            new + 1
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    let wrong = tally.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "writes refused: {wrong:?}");
    let mut acked = tally.acked.lock().unwrap().clone();
    for (w, (_, proto)) in plan.iter().enumerate() {
        let prefix = format!("w{w}-");
        assert!(
            acked.iter().any(|(k, _)| k.starts_with(&prefix)),
            "writer {w} ({proto:?}) got nothing acknowledged"
        );
    }
    acked.extend(probes);
    g.wait_leader();
    g.wait_caught_up();
    let exports: Vec<String> = (0..3).map(|i| g.export(i)).collect();
    assert_eq!(exports[0], exports[1], "nodes 1 and 2 diverge");
    assert_eq!(exports[1], exports[2], "nodes 2 and 3 diverge");
    let items = export_items(&exports[0]);
    for (key, value) in &acked {
        assert_eq!(
            items.get(key).map(|(_, v)| v),
            Some(value),
            "acknowledged write of {key} lost"
        );
    }
    eprintln!(
        "{} writes acknowledged, {} unknown, {} items at rest",
        acked.len(),
        tally.unknown.load(Ordering::Relaxed),
        items.len()
    );
}

/// Pipelined appends on a follower while the leader is stopped: the
/// follower's forwarded runs go unanswered, it asks the new leader again
/// from the first unanswered append on, under the same proposal ids. With
/// a quorum timeout longer than the pause every append is acknowledged,
/// and each key ends as exactly its appends in order: none applied twice
/// (the state machine answers a retried id from memory), none skipped,
/// none overtaken by a later one.
#[test]
fn pipelined_appends_retried_across_a_leader_change_apply_once_and_in_order() {
    let mut g = Group::start_with(3, |_| vec!["--quorum-timeout-ms".into(), "20000".into()]);
    let leader = g.wait_leader();
    let follower = (leader + 1) % 3;
    let addr = g.mc_addr(follower);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = common::Client::connect(addr);
            c.stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut done = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("pipe{n}");
                let mut pipeline = format!("set {key} 0 0 1\r\n.\r\n");
                let mut value = String::from(".");
                for i in 0..60u8 {
                    let ch = (b'a' + i % 26) as char;
                    pipeline.push_str(&format!("append {key} 0 0 1\r\n{ch}\r\n"));
                    value.push(ch);
                }
                let sent = Instant::now();
                c.send(pipeline.as_bytes());
                let want = "STORED\r\n".repeat(61);
                let got = String::from_utf8(c.read_exact(want.len())).unwrap();
                assert_eq!(got, want, "{key}");
                slowest = slowest.max(sent.elapsed());
                done.push((key, value));
                n += 1;
            }
            (done, slowest)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    g.pause(leader);
    std::thread::sleep(Duration::from_secs(4));
    g.resume(leader);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (done, slowest) = writer.join().expect("every append acknowledged");
    // One pipeline waited out the pause: the retry is what this tests.
    assert!(
        slowest >= Duration::from_secs(1),
        "no pipeline waited for the new leader (slowest {slowest:?})"
    );
    assert!(done.len() >= 3, "only {} pipelines got through", done.len());
    let now = g.wait_leader();
    let mut c = g.client(now);
    for (key, value) in &done {
        assert_eq!(
            c.until_end(format!("get {key}\r\n").as_bytes()),
            format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len()),
        );
    }
    eprintln!(
        "{} pipelines of 61 writes, all applied once and in order; slowest {slowest:?}",
        done.len()
    );
}
