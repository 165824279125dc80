//! Authentication (`--auth-file`, memcached's `-Y`), TLS and the idle
//! timeout, against the real binary; auth replies are checked against a
//! real `memcached -Y` run side by side.

mod common;
mod reference;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{self_signed, Server};
use reference::{exchange, Memcached};

fn auth_file(dir: &std::path::Path) -> String {
    let path = dir.join("auth");
    std::fs::write(&path, "alice:s3cret\nbob:pa ss:word\n").unwrap();
    path.to_str().unwrap().to_owned()
}

/// One connection's conversation: (request bytes, expected reply).
const CONVERSATION: &[(&[u8], &str)] = &[
    (b"get k\r\n", "CLIENT_ERROR unauthenticated\r\n"),
    (b"version\r\n", "CLIENT_ERROR unauthenticated\r\n"),
    (b"add a 0 0 12\r\n", "CLIENT_ERROR unauthenticated\r\n"),
    (b"set a 0 0 -1\r\n", "CLIENT_ERROR unauthenticated\r\n"),
    (
        b"set a 0 0 11\r\nalice wrong\r\n",
        "CLIENT_ERROR authentication failure\r\n",
    ),
    (
        b"set a 0 0 12\r\nAlice s3cret\r\n",
        "CLIENT_ERROR authentication failure\r\n",
    ),
    (
        b"set a 0 0 5\r\nalice\r\n",
        "CLIENT_ERROR bad authentication token format\r\n",
    ),
    (
        b"set a 0 0 12\r\nalice s3cretXX",
        "CLIENT_ERROR bad command line termination\r\n",
    ),
    (b"get k\r\n", "CLIENT_ERROR unauthenticated\r\n"),
    (b"set a 5 100 12 noreply\r\nalice s3cret\r\n", "STORED\r\n"),
    (b"set k 0 0 1\r\nv\r\n", "STORED\r\n"),
    (b"get a k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n"),
];

fn converse(addr: std::net::SocketAddr) -> Vec<String> {
    let mut c = common::Client::connect(addr);
    CONVERSATION
        .iter()
        .map(|(req, want)| {
            c.send(req);
            String::from_utf8_lossy(&c.read_exact(want.len())).into_owned()
        })
        .collect()
}

#[test]
fn auth_file_gate_matches_memcached() {
    let dir = tempfile::tempdir().unwrap();
    let file = auth_file(dir.path());
    let ours = Server::start(&["--auth-file", &file]);
    let theirs = Memcached::start(&["-Y", &file]);
    let want: Vec<&str> = CONVERSATION.iter().map(|(_, w)| *w).collect();
    assert_eq!(converse(theirs.addr), want, "memcached itself");
    assert_eq!(converse(ours.addr), want, "memcached-lite");

    // A second user, whose password holds a space: memcached splits the
    // block at spaces, so only "pa" is ever presented and it fails.
    let mut c = ours.connect();
    assert_eq!(
        c.line(b"set x 0 0 14\r\nbob pa ss:word\r\n"),
        "CLIENT_ERROR authentication failure\r\n"
    );
    // Authenticating on one connection does not authenticate others.
    assert_eq!(c.line(b"get k\r\n"), "CLIENT_ERROR unauthenticated\r\n");

    // Deliberate difference: a huge declared token is refused, not read.
    let got = exchange(ours.addr, b"set a 0 0 1073741824\r\n");
    assert_eq!(got, b"CLIENT_ERROR unauthenticated\r\n");
    let mut c = ours.connect();
    c.send(b"set a 0 0 1073741824\r\n");
    c.read_exact(30);
    assert!(c.is_closed(), "connection closed after a huge auth token");
}

#[test]
fn bad_auth_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth");
    std::fs::write(&path, "no-colon-here\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--auth-file")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected user:password"));
}

#[test]
fn non_loopback_bind_without_auth_warns() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args([
            "serve",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("MEMCACHED_LITE_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("without authentication") {
                break;
            }
        }
        seen
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = reader.join().unwrap();
    assert!(
        seen.contains("WARN") && seen.contains("without authentication"),
        "stderr: {seen}"
    );
}

#[test]
fn tls_listener_serves_openssl_s_client() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let server = Server::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-servername",
            "localhost",
        ])
        .args(["-connect", &server.addr.to_string(), "-CAfile", &cert])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"set greeting 3 0 5\r\nhello\r\nget greeting\r\nquit\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "STORED\r\nVALUE greeting 3 5\r\nhello\r\nEND\r\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify return:1"));

    // Plain text on the TLS port gets no memcached answer, only a close.
    let got = exchange(server.addr, b"get greeting\r\n");
    assert!(!String::from_utf8_lossy(&got).contains("VALUE"), "{got:?}");

    // The value really is stored: a fresh TLS session reads it back.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &server.addr.to_string(),
            "-CAfile",
            &cert,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"get greeting\r\nquit\r\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "VALUE greeting 3 5\r\nhello\r\nEND\r\n"
    );
}

#[test]
fn tls_flags_must_come_together_and_parse() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--tls-cert", "/nonexistent.pem"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let out = run(&[
        "--tls-cert",
        junk.to_str().unwrap(),
        "--tls-key",
        junk.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
}

#[test]
fn idle_clients_are_closed_busy_ones_kept() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut idle = server.connect();
    assert_eq!(idle.line(b"set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    // A slow client that never finishes its command counts as idle too.
    let mut trickler = server.connect();
    let mut busy = server.connect();
    let start = Instant::now();
    for (i, b) in b"get kkkkkkkkkkkkkkkkkkkk".iter().enumerate() {
        // Ignore errors: the server may already have closed it.
        let _ = trickler.stream.write_all(&[*b]);
        if i % 4 == 0 {
            assert_eq!(busy.until_end(b"get k\r\n"), "VALUE k 0 1\r\nv\r\nEND\r\n");
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_millis(2500) {
            break;
        }
    }
    assert!(start.elapsed() > Duration::from_millis(1500));
    assert!(idle.is_closed(), "idle client closed");
    assert!(trickler.is_closed(), "trickling client closed");
    assert_eq!(busy.until_end(b"get k\r\n"), "VALUE k 0 1\r\nv\r\nEND\r\n");
}

#[test]
fn clients_that_stop_reading_are_cut_off() {
    use std::io::Read;
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut c = server.connect();
    let value = vec![b'v'; 1_000_000];
    c.send(b"set big 0 0 1000000\r\n");
    c.send(&value);
    assert_eq!(c.line(b"\r\n"), "STORED\r\n");
    // Ask for ~64 MB of replies and read none of them for a while.
    c.send(&b"get big\r\n".repeat(64));
    std::thread::sleep(Duration::from_millis(2500));
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("expected the server to close the stalled connection: {e}"),
        }
    }
    assert!(
        total < 64 * 1_000_000,
        "read {total} bytes; the stalled write was not cut off"
    );
    let mut other = server.connect();
    assert_eq!(other.line(b"version\r\n"), "VERSION 1.6.18\r\n");
}
