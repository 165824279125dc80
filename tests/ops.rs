//! Operations surface of the binary: `healthcheck`, `--log-format`, listen backlogs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
}

fn serve_help() -> String {
    let out = bin().args(["serve", "--help"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn healthcheck_passes_against_a_live_server() {
    let server = common::Server::start(&[]);
    let out = bin()
        .args(["healthcheck", "--listen", &server.addr.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "VERSION 1.6.18\n");

    // The container sets MEMCACHED_LITE_LISTEN=0.0.0.0:PORT; that means loopback here.
    let out = bin()
        .arg("healthcheck")
        .env(
            "MEMCACHED_LITE_LISTEN",
            format!("0.0.0.0:{}", server.addr.port()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = common::free_port();
    let out = bin()
        .args(["healthcheck", "--timeout-ms", "500", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("connecting to 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn healthcheck_fails_on_a_port_that_is_not_memcached() {
    // A listener that accepts and answers something else.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let out = bin()
        .args([
            "healthcheck",
            "--timeout-ms",
            "2000",
            "--listen",
            &addr.to_string(),
        ])
        .output()
        .unwrap();
    t.join().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected reply"));
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut cmd = bin();
    cmd.args(["serve", "--log-format", "json"]);
    if serve_help().contains("--no-http") {
        cmd.arg("--no-http");
    }
    let mut child = cmd
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .env("MEMCACHED_LITE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().expect("a log line").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(v["level"], "INFO", "{first}");
    assert!(v["fields"]["message"].is_string(), "{first}");
    assert!(v["timestamp"].is_string(), "{first}");
}

#[test]
fn unknown_log_format_is_a_usage_error() {
    let out = bin()
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'xml'"));
}

/// The listen backlog of the socket on `port`, as `ss` reports it (for a
/// listening socket, `Send-Q` is the backlog the process asked for).
fn listen_backlog(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no listener on {port}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn both_listeners_use_memcacheds_backlog_of_1024() {
    let server = common::Server::start(&[]);
    assert_eq!(
        listen_backlog(server.addr.port()),
        1024,
        "memcached listener"
    );
    let http = server.http_addr.unwrap().port();
    assert_eq!(listen_backlog(http), 1024, "HTTP listener");
}
