//! The in-memory read index against sled: a server reading from the index
//! and one reading from sled alone (`--no-memory-index`) must give the same
//! answers, including after flush_all, expiry sweeps and writers racing
//! them, and after a restart (which rebuilds the index from disk).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{Client, Server};

/// A scripted session touching every kind of write; returns the transcript.
fn script(c: &mut Client) -> String {
    let mut out = String::new();
    let mut step = |c: &mut Client, req: &str| {
        let reply = if req.starts_with("get") || req.starts_with("gets") {
            c.until_end(req.as_bytes())
        } else {
            c.line(req.as_bytes())
        };
        out.push_str(req);
        out.push_str(&reply);
    };
    step(c, "set a 1 0 3\r\none\r\n");
    step(c, "add a 0 0 1\r\nx\r\n");
    step(c, "add b 2 0 3\r\ntwo\r\n");
    step(c, "append a 0 0 4\r\n-app\r\n");
    step(c, "prepend b 0 0 4\r\npre-\r\n");
    step(c, "replace missing 0 0 1\r\nx\r\n");
    step(c, "set n 0 0 2\r\n10\r\n");
    step(c, "incr n 5\r\n");
    step(c, "decr n 100\r\n");
    step(c, "gets a b n missing\r\n");
    step(c, "cas a 0 0 1 999\r\nz\r\n");
    step(c, "cas a 0 0 1 1\r\nz\r\n");
    step(c, "touch b 3600\r\n");
    step(c, "delete n\r\n");
    step(c, "delete n\r\n");
    step(c, "set gone 0 -1 1\r\ng\r\n");
    step(c, "gets a b n gone\r\n");
    step(c, "flush_all\r\n");
    step(c, "gets a b\r\n");
    step(c, "set after 0 0 5\r\nafter\r\n");
    step(c, "gets after a\r\n");
    out
}

#[test]
fn index_and_sled_read_paths_answer_alike_before_and_after_restart() {
    let mut transcripts = Vec::new();
    for extra in [&[][..], &["--no-memory-index"][..]] {
        let mut server = Server::start(extra);
        let mut c = server.connect();
        let first = script(&mut c);
        drop(c);
        server.restart();
        let mut c = server.connect();
        let again = c.until_end(b"gets a b n after\r\n");
        transcripts.push((first, again));
    }
    assert_eq!(transcripts[0], transcripts[1]);
    assert!(
        transcripts[0].1.contains("VALUE after 0 5"),
        "{:?}",
        transcripts[0].1
    );
}

/// Every key's `gets` answer, in key order, one request per key.
fn dump(c: &mut Client, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| c.until_end(format!("gets {k}\r\n").as_bytes()))
        .collect()
}

#[test]
fn racing_writers_flushes_and_sweeps_leave_memory_and_disk_in_agreement() {
    let mut server = Server::start(&[]);
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, keys) = (stop.clone(), keys.clone());
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let k = &keys[(i * 7) % keys.len()];
                    // A third expire within a second, so the sweeper races too.
                    let ttl = if i % 3 == 0 { 1 } else { 0 };
                    // The value says whether it may expire: `t…` items may.
                    let v = format!("{}w{w}-{i}", if ttl == 1 { 't' } else { 'p' });
                    let reply =
                        c.line(format!("set {k} 0 {ttl} {}\r\n{v}\r\n", v.len()).as_bytes());
                    assert_eq!(reply, "STORED\r\n");
                    if i % 5 == 0 {
                        c.line(format!("delete {k}\r\n").as_bytes());
                    }
                    i += 4;
                }
            })
        })
        .collect();
    // Quiet keys no writer touches: set before each flush, so whatever a
    // flush leaves of them shows in the comparison.
    let quiet: Vec<String> = (0..20).map(|i| format!("quiet{i}")).collect();
    let mut flusher = server.connect();
    for round in 0..40 {
        for q in &quiet[..if round == 39 { 10 } else { 20 }] {
            assert_eq!(
                flusher.line(format!("set {q} 0 0 1\r\nq\r\n").as_bytes()),
                "STORED\r\n"
            );
        }
        if round < 39 {
            assert_eq!(flusher.line(b"flush_all\r\n"), "OK\r\n");
        }
        thread::sleep(Duration::from_millis(50));
    }
    // Let the one-second items expire and the sweeper take some of them.
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let keys: Vec<String> = keys.into_iter().chain(quiet).collect();
    let mut c = server.connect();
    let from_index = dump(&mut c, &keys);
    assert_eq!(
        from_index
            .iter()
            .filter(|r| r.starts_with("VALUE quiet"))
            .count(),
        10
    );
    assert!(
        from_index.iter().any(|r| r.starts_with("VALUE")),
        "no key survived, the comparison would prove nothing"
    );
    drop(c);
    drop(flusher);
    assert!(server.stop().success());
    let mut from_disk = Server::start_in(&server.data_dir, &["--no-memory-index"]);
    let mut c = from_disk.connect();
    let on_disk = dump(&mut c, &keys);
    // A one-second item may have expired between the two dumps; nothing
    // else may differ.
    for (k, (mem, disk)) in keys.iter().zip(from_index.iter().zip(&on_disk)) {
        let may_expire = mem.lines().nth(1).is_some_and(|v| v.starts_with('t'));
        if !(may_expire && disk == "END\r\n") {
            assert_eq!(mem, disk, "{k}: memory and disk disagree");
        }
    }
    drop(c);
    assert!(from_disk.stop().success());
}

fn stats(c: &mut Client) -> (u64, u64) {
    let text = c.until_end(b"stats\r\n");
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (get("curr_items"), get("bytes"))
}

#[test]
fn item_counts_survive_clean_restarts_and_are_recounted_after_a_crash() {
    let mut server = Server::start(&["--no-csv-mirror"]);
    let mut c = server.connect();
    for i in 0..50 {
        c.line(format!("set k{i} 0 0 {}\r\n{}\r\n", i + 1, "x".repeat(i + 1)).as_bytes());
    }
    c.line(b"delete k0\r\n");
    let before = stats(&mut c);
    assert_eq!(before.0, 49);
    drop(c);
    // Clean: the counts saved at shutdown are taken back.
    server.restart();
    let mut c = server.connect();
    assert_eq!(stats(&mut c), before);
    for i in 50..60 {
        c.line(format!("set k{i} 0 0 1\r\ny\r\n").as_bytes());
    }
    c.line(b"delete k1\r\n");
    let after = stats(&mut c);
    assert_eq!(after.0, 58);
    drop(c);
    // A crash saves nothing, so the start counts the store; stale counts
    // from the earlier clean shutdown must not come back.
    std::thread::sleep(Duration::from_millis(300)); // let sled's periodic flush run
    server.kill();
    server.restart();
    let mut c = server.connect();
    assert_eq!(stats(&mut c), after);
}
