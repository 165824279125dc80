//! A full disk under load (issue 18), with real server processes on a
//! size-limited tmpfs: concurrent writers over the memcached text protocol
//! (one of them pipelining) and HTTP fill it, in both durability modes.
//!
//! Checked: every refusal is the clear error (`SERVER_ERROR out of disk
//! space`, HTTP 507 `insufficient_storage`) on an open connection, each
//! pipelined write answered; a key read right after its write was refused
//! holds its last acknowledged value, never the refused one; `/readyz`
//! says 503 with the reason and `storage_errors` counts; after the
//! filesystem grows (remount larger) writes resume by themselves; a
//! restart (kill -9 in sync mode) finds every acknowledged write; the CSV
//! mirror (in the data directory) is never left half-written.
//!
//! Needs root to mount tmpfs: skipped, with a message, where mounting is
//! not permitted.

mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Server};
use tmpfs::Tmpfs;

const VALUE: usize = 1000;
const KEYS_PER_WRITER: u64 = 40;

/// A value naming its writer's attempt, padded to [`VALUE`] bytes.
fn value(tag: &str) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    v.resize(VALUE, b'.');
    v
}

fn get(c: &mut Client, key: &str) -> Option<Vec<u8>> {
    let reply = c.until_end(format!("get {key}\r\n").as_bytes());
    let body = reply.strip_prefix("VALUE ")?;
    let start = body.find("\r\n").unwrap() + 2;
    Some(body.as_bytes()[start..start + VALUE].to_vec())
}

/// What one writer saw: each key's last acknowledged value, and counts.
#[derive(Default)]
struct Outcome {
    acked: HashMap<String, Vec<u8>>,
    refused: u64,
    stored: u64,
}

/// The outcome of one write, told by its reply.
enum Reply {
    Stored,
    Refused,
}

fn text_reply(line: &str) -> Reply {
    match line {
        "STORED\r\n" => Reply::Stored,
        "SERVER_ERROR out of disk space\r\n" => Reply::Refused,
        other => panic!("unexpected reply to a set: {other:?}"),
    }
}

/// Writes until `stop`, a key at a time (or `pipeline` at once), checking
/// after each refusal that the key still reads as last acknowledged.
fn text_writer(addr: std::net::SocketAddr, w: u64, pipeline: usize, stop: &AtomicBool) -> Outcome {
    let mut c = Client::connect(addr);
    let mut out = Outcome::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut req = Vec::new();
        for _ in 0..pipeline {
            i += 1;
            let key = format!("t{w}-{}", i % KEYS_PER_WRITER);
            let v = value(&format!("t{w}-{i}"));
            req.extend_from_slice(format!("set {key} 0 0 {VALUE}\r\n").as_bytes());
            req.extend_from_slice(&v);
            req.extend_from_slice(b"\r\n");
            batch.push((key, v));
        }
        c.send(&req);
        let replies: Vec<Reply> = (0..batch.len()).map(|_| text_reply(&c.line(b""))).collect();
        for ((key, v), reply) in batch.into_iter().zip(replies) {
            match reply {
                Reply::Stored => {
                    out.stored += 1;
                    out.acked.insert(key, v);
                }
                Reply::Refused => {
                    out.refused += 1;
                    let now = get(&mut c, &key);
                    assert_eq!(
                        now.as_ref(),
                        out.acked.get(&key),
                        "{key}: a refused write's key must read as last acknowledged"
                    );
                }
            }
        }
    }
    out
}

fn http_writer(server: &Server, stop: &AtomicBool) -> Outcome {
    let http = reqwest::blocking::Client::new();
    let mut c = server.connect();
    let mut out = Outcome::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("h-{}", i % KEYS_PER_WRITER);
        let v = value(&format!("h-{i}"));
        let resp = http
            .put(server.url(&format!("/v1/keys/{key}")))
            .body(v.clone())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().unwrap();
        match status {
            200..=299 => {
                out.stored += 1;
                out.acked.insert(key, v);
            }
            507 => {
                assert!(
                    body.contains("\"insufficient_storage\"") && body.contains("out of disk space"),
                    "507 body: {body}"
                );
                out.refused += 1;
                assert_eq!(get(&mut c, &key).as_ref(), out.acked.get(&key), "{key}");
            }
            other => panic!("unexpected HTTP {other}: {body}"),
        }
    }
    out
}

fn stat(c: &mut Client, name: &str) -> u64 {
    let stats = c.until_end(b"stats\r\n");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no {name} stat"))
        .parse()
        .unwrap()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fill_and_recover(mode: &str) {
    let Some(fs) = Tmpfs::mount(&format!("faults-{mode}"), 30) else {
        return;
    };
    let data = fs.path().join("data");
    let mut args = vec!["--durability", mode];
    if mode == "periodic" {
        args.extend(["--flush-interval-ms", "50"]);
    }
    let mut server = Server::start_in(&data, &args);
    // Leave about 6 MiB free: the store refuses below 4 MiB.
    let ballast = fs.path().join("ballast");
    let size = fs.free().saturating_sub(6 << 20);
    std::fs::write(&ballast, vec![0u8; size as usize]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (addr, started) = (server.addr, Instant::now());
    let outcomes = std::thread::scope(|s| {
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let stop = stop.clone();
                // Writer 0 pipelines five sets at a time.
                let pipeline = if w == 0 { 5 } else { 1 };
                s.spawn(move || text_writer(addr, w, pipeline, &stop))
            })
            .collect();
        let http = {
            let (stop, server) = (stop.clone(), &server);
            s.spawn(move || http_writer(server, &stop))
        };
        // Until the disk is full: readyz says why.
        let http_client = reqwest::blocking::Client::new();
        wait_until("writes are refused", Duration::from_secs(20), || {
            let r = http_client.get(server.url("/readyz")).send().unwrap();
            r.status().as_u16() == 503 && r.text().unwrap().contains("out of disk space")
        });
        // Binary protocol: ETMPFAIL with the reason, connection open.
        binary_set_is_refused(&server);
        // Some more refusals under load, then more room.
        std::thread::sleep(Duration::from_millis(500));
        let mut c = server.connect();
        assert!(stat(&mut c, "storage_errors") > 0);
        let metrics = http_client
            .get(server.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(metrics.contains("memcached_lite_storage_errors_total"));
        fs.grow(60);
        wait_until(
            "the store accepts writes again",
            Duration::from_secs(10),
            || {
                http_client
                    .get(server.url("/readyz"))
                    .send()
                    .unwrap()
                    .status()
                    .is_success()
            },
        );
        // Every writer gets writes through again.
        let resumed_at = writers_stored_after(&server, 5);
        stop.store(true, Ordering::Relaxed);
        let mut outcomes: Vec<Outcome> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        outcomes.push(http.join().unwrap());
        eprintln!("{mode}: writes resumed {resumed_at:?} after the remount");
        outcomes
    });
    let refused: u64 = outcomes.iter().map(|o| o.refused).sum();
    let stored: u64 = outcomes.iter().map(|o| o.stored).sum();
    eprintln!(
        "{mode}: {stored} writes stored, {refused} refused in {:?}",
        started.elapsed()
    );
    assert!(refused > 0, "the disk never filled");

    // A restart finds every acknowledged write (sync: even after kill -9).
    if mode == "sync" {
        server.kill();
    } else {
        assert!(server.stop().success());
    }
    server.restart();
    let mut c = server.connect();
    for o in &outcomes {
        for (key, v) in &o.acked {
            assert_eq!(get(&mut c, key).as_ref(), Some(v), "{mode}: {key} lost");
        }
    }
    // The mirror image in the data directory is whole (ends with a row).
    if let Ok(csv) = std::fs::read(data.join("store.csv")) {
        assert!(csv.is_empty() || csv.ends_with(b"\n"), "a torn CSV mirror");
    }
    drop(server);
}

/// A binary SET while the disk is full gets ETMPFAIL (0x86) with the
/// reason as its body (or, in a moment of room, success), on one open
/// connection.
fn binary_set_is_refused(server: &Server) {
    use std::io::{Read, Write};
    let mut b = std::net::TcpStream::connect(server.addr).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for attempt in 0..100u32 {
        let (key, v) = (b"bin", value(&format!("bin-{attempt}")));
        let mut p = vec![0x80, 0x01];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.extend_from_slice(&[8, 0, 0, 0]);
        p.extend_from_slice(&((8 + key.len() + v.len()) as u32).to_be_bytes());
        p.extend_from_slice(&attempt.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(key);
        p.extend_from_slice(&v);
        b.write_all(&p).unwrap();
        let mut header = [0u8; 24];
        b.read_exact(&mut header).unwrap();
        let status = u16::from_be_bytes([header[6], header[7]]);
        let len = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
        let mut body = vec![0; len];
        b.read_exact(&mut body).unwrap();
        assert_eq!(&header[12..16], &attempt.to_be_bytes(), "opaque");
        match status {
            0x86 => {
                assert_eq!(body, b"out of disk space");
                return;
            }
            0 => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("binary set: status {other:#x} {body:?}"),
        }
    }
    panic!("no binary set was refused");
}

/// Waits until a fresh write succeeds `n` times in a row over memcached;
/// returns how long that took.
fn writers_stored_after(server: &Server, n: u32) -> Duration {
    let started = Instant::now();
    let mut c = server.connect();
    let mut ok = 0;
    wait_until("a write is stored again", Duration::from_secs(10), || {
        let mut req = format!("set resume 0 0 {VALUE}\r\n").into_bytes();
        req.extend_from_slice(&value("resume"));
        req.extend_from_slice(b"\r\n");
        match text_reply(&c.line(&req)) {
            Reply::Stored => ok += 1,
            Reply::Refused => ok = 0,
        }
        ok >= n
    });
    started.elapsed()
}

#[test]
fn a_full_disk_in_sync_mode_refuses_clearly_and_resumes() {
    fill_and_recover("sync");
}

#[test]
fn a_full_disk_in_periodic_mode_refuses_clearly_and_resumes() {
    fill_and_recover("periodic");
}

/// The CSV mirror on a disk of its own that fills: serving goes on (every
/// write stored, `/readyz` ready), the failure is counted, and the mirror
/// keeps its last whole image until there is room again.
#[test]
fn a_full_mirror_disk_does_not_affect_serving() {
    let Some(fs) = Tmpfs::mount("mirror", 1) else {
        return;
    };
    let mirror = fs.path().join("store.csv");
    let mirror_arg = mirror.to_str().unwrap().to_owned();
    let server = Server::start(&["--csv-mirror", &mirror_arg, "--mirror-interval", "100ms"]);
    let mut c = server.connect();
    let set = |c: &mut Client, key: &str| {
        let mut req = format!("set {key} 0 0 {VALUE}\r\n").into_bytes();
        req.extend_from_slice(&value(key));
        req.extend_from_slice(b"\r\n");
        assert_eq!(c.line(&req), "STORED\r\n", "{key}");
    };
    set(&mut c, "first");
    wait_until(
        "the first image is written",
        Duration::from_secs(10),
        || std::fs::read(&mirror).is_ok_and(|b| String::from_utf8_lossy(&b).contains("first")),
    );
    // About 2 MB of values: an image of them cannot fit in 1 MB.
    for i in 0..2000 {
        set(&mut c, &format!("big{i}"));
    }
    wait_until(
        "the mirror failure is counted",
        Duration::from_secs(10),
        || stat(&mut c, "storage_errors") > 0,
    );
    let image = std::fs::read(&mirror).unwrap();
    assert!(
        image.starts_with(b"key,") && image.ends_with(b"\n"),
        "the last image is whole"
    );
    set(&mut c, "after");
    let ready = reqwest::blocking::get(server.url("/readyz")).unwrap();
    assert!(
        ready.status().is_success(),
        "a full mirror disk is not a store fault"
    );
    std::thread::sleep(Duration::from_millis(500));
    let now = std::fs::read(&mirror).unwrap();
    assert!(
        now == image,
        "the old image stays as it was while the disk is full"
    );
    // Room again: the next image has everything.
    fs.grow(8);
    wait_until("the mirror catches up", Duration::from_secs(10), || {
        std::fs::read(&mirror).is_ok_and(|b| String::from_utf8_lossy(&b).contains("after"))
    });
    drop(server);
}
