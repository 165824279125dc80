//! `GET /v1/watch` against the real server on loopback: a watcher sees
//! the changes made over the memcached text, meta and binary protocols and
//! HTTP, in order, with increasing revisions; filters; delete, expire and
//! flush events; resuming by `Last-Event-ID`; `resync` when the history no
//! longer reaches back; a watcher that stops reading is dropped with
//! `resync` without slowing writers; `--max-watchers`; the bearer token;
//! and 100 watchers under a write load.
//!
//! The watchers speak HTTP/1.0 over a raw socket (the body is then simply
//! the stream until the server closes it), so a test can also not read.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Server};
use serde_json::Value;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Ev {
    id: Option<u64>,
    event: String,
    data: Value,
}

impl Ev {
    fn key(&self) -> &str {
        self.data["key"].as_str().unwrap_or("")
    }
}

/// A watcher on a raw socket.
struct Watcher {
    reader: BufReader<TcpStream>,
    status: u16,
    /// The head's lines (status line and headers) and, for an error, its body.
    head: String,
}

impl Watcher {
    fn open(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Watcher {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut req = format!("GET /v1/watch{query} HTTP/1.0\r\nHost: x\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let status = head[9..12].parse().unwrap();
        let mut w = Watcher {
            reader,
            status,
            head,
        };
        if status != 200 {
            let mut body = String::new();
            let _ = w.reader.read_to_string(&mut body);
            w.head.push_str(&body);
        }
        w
    }

    fn set_timeout(&self, t: Duration) {
        self.reader.get_ref().set_read_timeout(Some(t)).unwrap();
    }

    /// The next event; `None` when the stream ended (or nothing came within
    /// the read timeout).
    fn next(&mut self) -> Option<Ev> {
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        let mut any = false;
        // Keep-alive comments must not keep a stalled stream waiting forever.
        let timeout = self.reader.get_ref().read_timeout().unwrap().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() > deadline {
                return None;
            }
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any {
                    let data = serde_json::from_str(&data).unwrap_or(Value::Null);
                    return Some(Ev { id, event, data });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            any = true;
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "id" => id = Some(value.parse().unwrap()),
                "event" => event = value.to_owned(),
                "data" => data.push_str(value),
                _ => {}
            }
        }
    }

    /// The next `n` events, failing if the stream ends or stalls first.
    fn take(&mut self, n: usize) -> Vec<Ev> {
        (0..n)
            .map(|i| {
                self.next()
                    .unwrap_or_else(|| panic!("stream ended after {i} of {n} events"))
            })
            .collect()
    }

    /// Whether the stream ends within `t` with no other event.
    fn quiet_for(&mut self, t: Duration) -> Option<Ev> {
        self.set_timeout(t);
        let got = self.next();
        self.set_timeout(Duration::from_secs(20));
        got
    }
}

fn http_addr(s: &Server) -> SocketAddr {
    s.http_addr.unwrap()
}

fn stat(c: &mut Client, name: &str) -> u64 {
    let text = c.until_end(b"stats\r\n");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no {name} in stats"))
        .trim()
        .parse()
        .unwrap()
}

/// A binary-protocol set (opcode 0x01) of `key` = `value`.
fn binary_set(c: &mut Client, key: &[u8], value: &[u8], flags: u32) {
    let body_len = 8 + key.len() + value.len();
    let mut p = vec![0x80, 0x01];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[8, 0, 0, 0]);
    p.extend_from_slice(&(body_len as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    c.send(&p);
    let head = c.read_exact(24);
    assert_eq!(&head[6..8], &[0, 0], "binary set failed: {head:?}");
    let body = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
    c.read_exact(body);
}

fn assert_increasing(events: &[Ev]) {
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
}

#[test]
fn a_watcher_sees_every_protocol_in_order() {
    let server = Server::start(&[]);
    let http = reqwest::blocking::Client::new();
    let mut w = Watcher::open(http_addr(&server), "?prefix=w:", &[]);
    assert_eq!(w.status, 200, "{}", w.head);
    assert!(w.head.contains("text/event-stream"), "{}", w.head);
    let mut c = server.connect();
    // memcached text protocol: every storage command, counters, touch, gat.
    assert_eq!(c.line(b"set w:a 1 0 2\r\nhi\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"set other 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"add w:n 0 0 1\r\n5\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"replace w:a 2 0 2\r\nho\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"append w:a 0 0 1\r\n!\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"prepend w:a 0 0 1\r\n<\r\n"), "STORED\r\n");
    let gets = c.until_end(b"gets w:a\r\n");
    let cas: u64 = gets.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert_eq!(
        c.line(format!("cas w:a 3 0 1 {cas}\r\nc\r\n").as_bytes()),
        "STORED\r\n"
    );
    assert_eq!(c.line(b"incr w:n 10\r\n"), "15\r\n");
    assert_eq!(c.line(b"decr w:n 1\r\n"), "14\r\n");
    assert_eq!(c.line(b"touch w:n 300\r\n"), "TOUCHED\r\n");
    c.until_end(b"gat 600 w:a\r\n");
    assert_eq!(c.line(b"delete w:n\r\n"), "DELETED\r\n");
    // Misses change nothing and send nothing.
    assert_eq!(c.line(b"delete w:nope\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.line(b"add w:a 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    // meta protocol
    assert_eq!(c.line(b"ms w:m 2 F7\r\nmm\r\n"), "HD\r\n");
    assert_eq!(c.line(b"ma w:m2 N0 J3\r\n"), "HD\r\n");
    assert_eq!(c.line(b"md w:m\r\n"), "HD\r\n");
    // binary protocol (a connection speaks one protocol: its first byte says which)
    binary_set(&mut server.connect(), b"w:b", b"bin", 9);
    // HTTP
    let put = http.put(server.url("/v1/keys/w:h")).body("via http").send();
    assert!(put.unwrap().status().is_success());
    let del = http.delete(server.url("/v1/keys/w:h")).send();
    assert!(del.unwrap().status().is_success());

    let want = [
        ("set", "w:a"),
        ("set", "w:n"),
        ("set", "w:a"),
        ("set", "w:a"),
        ("set", "w:a"),
        ("set", "w:a"),
        ("set", "w:n"),
        ("set", "w:n"),
        ("set", "w:n"),
        ("set", "w:a"),
        ("delete", "w:n"),
        ("set", "w:m"),
        ("set", "w:m2"),
        ("delete", "w:m"),
        ("set", "w:b"),
        ("set", "w:h"),
        ("delete", "w:h"),
    ];
    let events = w.take(want.len());
    let got: Vec<(&str, &str)> = events.iter().map(|e| (e.event.as_str(), e.key())).collect();
    assert_eq!(got, want);
    assert_increasing(&events);
    // The data: flags, size, TTL, CAS as the protocols report them.
    assert_eq!(events[0].data["flags"], 1);
    assert_eq!(events[0].data["size"], 2);
    assert_eq!(events[0].data["ttl"], Value::Null);
    assert_eq!(events[4].data["size"], 4, "<ho! after append and prepend");
    assert_eq!(events[5].data["flags"], 3, "the cas");
    let cas_now: u64 = c
        .until_end(b"gets w:b\r\n")
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(events[14].data["cas"], cas_now);
    assert_eq!(events[14].data["flags"], 9);
    assert_eq!(events[8].data["ttl"], 300, "touch reports the new ttl");
    assert!(events[9].data["ttl"].as_u64().unwrap() > 590, "gat too");
    assert!(
        events[0].data.get("value").is_none(),
        "no values unless asked"
    );
    assert!(w.quiet_for(Duration::from_millis(500)).is_none());
}

#[test]
fn key_filter_values_and_non_utf8_keys() {
    let server = Server::start(&[]);
    let addr = http_addr(&server);
    let mut one = Watcher::open(addr, "?key=k1&values=true", &[]);
    let all = Watcher::open(addr, "?values=1", &[]);
    assert_eq!(all.status, 400, "values takes true or false: {}", all.head);
    let mut all = Watcher::open(addr, "?values=true", &[]);
    let mut c = server.connect();
    c.line(b"set k1 0 0 5\r\nhello\r\n");
    c.line(b"set k10 0 0 1\r\nx\r\n");
    c.line(b"set k\xff 0 0 1\r\ny\r\n");
    let big = vec![b'b'; 70 * 1024];
    let mut cmd = format!("set k1 0 0 {}\r\n", big.len()).into_bytes();
    cmd.extend_from_slice(&big);
    cmd.extend_from_slice(b"\r\n");
    assert_eq!(c.line(&cmd), "STORED\r\n");
    let mine = one.take(2);
    assert_eq!(mine[0].data["value"], "aGVsbG8=");
    assert_eq!(mine[1].data["value_omitted"], true, "over 64 KiB");
    assert_eq!(mine[1].data["size"], 70 * 1024);
    assert!(one.quiet_for(Duration::from_millis(300)).is_none());
    let every = all.take(4);
    assert_eq!(every[1].key(), "k10");
    assert_eq!(
        every[2].data["key_base64"], "a_8",
        "base64url as in the listing"
    );
    assert_eq!(every[2].data["key"], "k\u{fffd}");
}

#[test]
fn bad_watch_requests_get_json_errors() {
    let server = Server::start(&[]);
    let addr = http_addr(&server);
    for (query, headers) in [
        ("?prefix=a&key=b", vec![]),
        ("?since=abc", vec![]),
        ("?since=-1", vec![]),
        ("?key=has%20space", vec![]),
        ("?key=", vec![]),
        ("?prefix=a%0Ab", vec![]),
        ("", vec![("Last-Event-ID", "x1")]),
    ] {
        let w = Watcher::open(addr, query, &headers);
        assert_eq!(w.status, 400, "{query} {headers:?}: {}", w.head);
        let body = &w.head[w.head.find("{").unwrap()..];
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    }
    let long = "a".repeat(251);
    let w = Watcher::open(addr, &format!("?prefix={long}"), &[]);
    assert_eq!(w.status, 400);
}

#[test]
fn delete_expire_and_flush_events() {
    let server = Server::start(&[]);
    let mut w = Watcher::open(http_addr(&server), "", &[]);
    let mut c = server.connect();
    c.line(b"set read 0 1 1\r\nr\r\n");
    c.line(b"set swept 0 1 1\r\ns\r\n");
    c.line(b"set d 0 0 1\r\nd\r\n");
    c.line(b"delete d\r\n");
    let first = w.take(4);
    assert_eq!(first[3].event, "delete");
    assert_eq!(first[3].data["size"], 1);
    std::thread::sleep(Duration::from_millis(2100));
    // Found expired by a read: one expire event, however often it is read.
    c.until_end(b"get read\r\n");
    c.until_end(b"get read\r\n");
    // The other one is reclaimed by the sweeper (a pass a second).
    let mut expired: Vec<String> = w
        .take(2)
        .iter()
        .map(|e| {
            assert_eq!(e.event, "expire", "{e:?}");
            e.key().to_owned()
        })
        .collect();
    expired.sort();
    assert_eq!(expired, ["read", "swept"]);
    c.line(b"set x 0 0 1\r\nx\r\n");
    assert_eq!(c.line(b"flush_all\r\n"), "OK\r\n");
    let last = w.take(2);
    assert_eq!(last[1].event, "flush");
    assert!(last[1].data["at"].as_u64().unwrap() > 1_700_000_000);
    assert_increasing(&[first, last].concat());
    assert!(w.quiet_for(Duration::from_millis(500)).is_none());
}

#[test]
fn resuming_by_last_event_id_loses_nothing_within_the_history() {
    let server = Server::start(&[]);
    let addr = http_addr(&server);
    let mut w = Watcher::open(addr, "?prefix=r", &[]);
    let mut c = server.connect();
    for i in 0..3 {
        c.line(format!("set r{i} 0 0 1\r\nx\r\n").as_bytes());
    }
    let seen = w.take(3);
    drop(w);
    for i in 3..40 {
        c.line(format!("set r{i} 0 0 1\r\nx\r\n").as_bytes());
        c.line(format!("set q{i} 0 0 1\r\nx\r\n").as_bytes());
    }
    let last = seen[2].id.unwrap().to_string();
    let mut again = Watcher::open(addr, "?prefix=r", &[("Last-Event-ID", &last)]);
    c.line(b"set r40 0 0 1\r\nx\r\n");
    let rest = again.take(38);
    let keys: Vec<String> = rest.iter().map(|e| e.key().to_owned()).collect();
    let want: Vec<String> = (3..=40).map(|i| format!("r{i}")).collect();
    assert_eq!(keys, want);
    assert_increasing(&[seen.clone(), rest.clone()].concat());
    // `since` does the same; Last-Event-ID wins over it (a browser
    // reconnects to the same URL with the header).
    let mid = rest[30].id.unwrap();
    let mut since = Watcher::open(addr, &format!("?prefix=r&since={mid}"), &[]);
    assert_eq!(since.take(7)[0].key(), "r34");
    let mut both = Watcher::open(
        addr,
        "?prefix=r&since=1",
        &[("Last-Event-ID", &mid.to_string())],
    );
    assert_eq!(both.take(7)[0].key(), "r34");
    // A revision from the future (another node, not yet applied here):
    // nothing replayed, nothing at or below it sent.
    let mut ahead = Watcher::open(addr, &format!("?since={}", mid + 1_000_000), &[]);
    c.line(b"set r41 0 0 1\r\nx\r\n");
    assert!(ahead.quiet_for(Duration::from_millis(500)).is_none());
}

#[test]
fn a_revision_older_than_the_history_gets_resync_then_live_changes() {
    let server = Server::start(&["--watch-history", "5"]);
    let addr = http_addr(&server);
    let mut w = Watcher::open(addr, "", &[]);
    let mut c = server.connect();
    c.line(b"set a 0 0 1\r\nx\r\n");
    let first = w.take(1)[0].id.unwrap();
    for i in 0..20 {
        c.line(format!("set b{i} 0 0 1\r\nx\r\n").as_bytes());
    }
    let mut late = Watcher::open(addr, &format!("?since={first}"), &[]);
    let resync = late.take(1).remove(0);
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.data["reason"], "history");
    assert!(resync.id.is_none());
    c.line(b"set live 0 0 1\r\nx\r\n");
    assert_eq!(
        late.take(1)[0].key(),
        "live",
        "then it follows live changes"
    );
    // A revision still within the history replays.
    // The history now holds b16..b19 and live: after b15 replays.
    let rest = w.take(21);
    assert_eq!(rest[15].key(), "b15");
    let recent = rest[15].id.unwrap();
    let mut ok = Watcher::open(addr, &format!("?since={recent}"), &[]);
    assert_eq!(ok.take(1)[0].key(), "b16");
}

#[test]
fn revisions_keep_increasing_across_a_restart() {
    let mut server = Server::start(&[]);
    let mut w = Watcher::open(http_addr(&server), "", &[]);
    server.connect().line(b"set a 0 0 1\r\nx\r\n");
    let before = w.take(1)[0].id.unwrap();
    drop(w);
    server.restart();
    let mut w = Watcher::open(http_addr(&server), &format!("?since={before}"), &[]);
    let resync = w.take(1).remove(0);
    assert_eq!(resync.event, "resync", "the history is in memory only");
    server.connect().line(b"set a 0 0 1\r\ny\r\n");
    let after = w.take(1)[0].id.unwrap();
    assert!(after > before, "{after} after {before}");
}

#[test]
fn a_watcher_that_stops_reading_gets_resync_and_writers_are_not_slowed() {
    let server = Server::start(&["--watch-queue", "8"]);
    let addr = http_addr(&server);
    // Values make the stream large, so the socket buffers fill quickly.
    let mut stuck = Watcher::open(addr, "?values=true", &[]);
    let mut fine = Watcher::open(addr, "?key=last", &[]);
    let mut c = server.connect();
    let value = vec![b'v'; 60 * 1024];
    let mut cmd = Vec::new();
    let writes = 600;
    let started = Instant::now();
    for i in 0..writes {
        cmd.clear();
        cmd.extend_from_slice(format!("set big{i} 0 0 {}\r\n", value.len()).as_bytes());
        cmd.extend_from_slice(&value);
        cmd.extend_from_slice(b"\r\n");
        assert_eq!(c.line(&cmd), "STORED\r\n");
    }
    c.line(b"set last 0 0 1\r\nx\r\n");
    let took = started.elapsed();
    // 36 MB through a watcher that reads nothing: writes went on.
    assert!(took < Duration::from_secs(60), "writes took {took:?}");
    assert_eq!(fine.take(1)[0].key(), "last", "other watchers unaffected");
    assert!(stat(&mut c, "watch_overflows") >= 1);
    // The stuck one reads what was queued, then resync, then the end.
    let mut n = 0;
    let last = loop {
        let ev = stuck.next().expect("the stream ends with resync");
        if ev.event != "set" {
            break ev;
        }
        n += 1;
    };
    assert!(n < writes, "{n} events before the resync");
    assert_eq!(last.event, "resync");
    assert_eq!(last.data["reason"], "overflow");
    assert!(stuck.next().is_none(), "the stream is closed");
    assert_eq!(stat(&mut c, "watchers"), 1);
}

#[test]
fn max_watchers_refuses_with_503() {
    let server = Server::start(&["--max-watchers", "2"]);
    let addr = http_addr(&server);
    let a = Watcher::open(addr, "", &[]);
    let _b = Watcher::open(addr, "", &[]);
    let c = Watcher::open(addr, "", &[]);
    assert_eq!(c.status, 503, "{}", c.head);
    assert!(c.head.contains("application/json"), "{}", c.head);
    assert!(c.head.contains("--max-watchers"), "{}", c.head);
    let mut mc = server.connect();
    assert_eq!(stat(&mut mc, "watchers"), 2);
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("memcached_lite_watchers 2"), "{metrics}");
    // A watcher that leaves frees its place (noticed when its stream is
    // next written to).
    drop(a);
    mc.line(b"set poke 0 0 1\r\nx\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = Watcher::open(addr, "", &[]);
        if d.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the place was not freed");
        std::thread::sleep(Duration::from_millis(100));
        mc.line(b"set poke 0 0 1\r\nx\r\n");
    }
}

#[test]
fn the_bearer_token_applies() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let server = Server::start(&["--http-token-file", token_file.to_str().unwrap()]);
    let addr = http_addr(&server);
    let w = Watcher::open(addr, "", &[]);
    assert_eq!(w.status, 401, "{}", w.head);
    let w = Watcher::open(addr, "", &[("Authorization", "Bearer wrong")]);
    assert_eq!(w.status, 401);
    let mut w = Watcher::open(addr, "", &[("Authorization", "Bearer s3cret")]);
    assert_eq!(w.status, 200);
    server.connect().line(b"set k 0 0 1\r\nx\r\n");
    assert_eq!(w.take(1)[0].key(), "k");
}

#[test]
fn streams_outlive_the_http_request_timeout() {
    let server = Server::start(&["--http-timeout-secs", "1"]);
    let mut w = Watcher::open(http_addr(&server), "", &[]);
    std::thread::sleep(Duration::from_millis(2500));
    server.connect().line(b"set k 0 0 1\r\nx\r\n");
    assert_eq!(w.take(1)[0].key(), "k");
}

#[test]
fn a_hundred_watchers_under_a_write_load_each_get_every_event_of_their_prefix() {
    const PREFIXES: usize = 10;
    const PER_PREFIX_WATCHERS: usize = 10;
    const WRITES: usize = 60;
    let server = Server::start(&[]);
    let addr = http_addr(&server);
    let watchers: Vec<(usize, Watcher)> = (0..PREFIXES * PER_PREFIX_WATCHERS)
        .map(|i| {
            let p = i % PREFIXES;
            let w = Watcher::open(addr, &format!("?prefix=p{p}:"), &[]);
            assert_eq!(w.status, 200);
            (p, w)
        })
        .collect();
    assert_eq!(stat(&mut server.connect(), "watchers"), 100);
    let readers: Vec<_> = watchers
        .into_iter()
        .map(|(p, mut w)| {
            std::thread::spawn(move || {
                let events = w.take(WRITES);
                (p, events)
            })
        })
        .collect();
    // Four writers, each over its own connection, interleaving prefixes.
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let mc = server.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(mc);
                for n in (t..WRITES * PREFIXES).step_by(4) {
                    let (p, i) = (n % PREFIXES, n / PREFIXES);
                    let cmd = format!("set p{p}:{i} 0 0 1\r\nx\r\n");
                    assert_eq!(c.line(cmd.as_bytes()), "STORED\r\n");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for r in readers {
        let (p, events) = r.join().unwrap();
        assert_increasing(&events);
        let mut keys: Vec<String> = events.iter().map(|e| e.key().to_owned()).collect();
        keys.sort();
        let mut want: Vec<String> = (0..WRITES).map(|i| format!("p{p}:{i}")).collect();
        want.sort();
        assert_eq!(keys, want, "watcher of p{p}:");
    }
}
