//! A store failure reaches clients as a stable error, never as sled's or
//! the OS's text, and the detail reaches the log (with the HTTP request
//! id). The failure is real: a record no build of this server can read,
//! written into the data directory before the server starts.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Client};
use memcached_lite::config::Config;
use memcached_lite::store::Store;

/// A data directory holding key `broken` with an unknown format byte.
fn store_with_a_broken_record(dir: &std::path::Path) {
    let store = Store::open(&Config::for_data_dir(dir).store).unwrap();
    let mut record = vec![9u8];
    record.extend_from_slice(&[0; 25]);
    record.extend_from_slice(b"value");
    store.insert(b"broken", record).unwrap();
    store.sync().unwrap();
}

/// Starts the server on `data` with its log in `log_path` at `level`;
/// returns it with its memcached and HTTP ports once HTTP answers.
fn serve_logged(
    data: &std::path::Path,
    log_path: &std::path::Path,
    level: &str,
    extra: &[&str],
) -> (std::process::Child, u16, u16) {
    let (port, hport) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", &format!("127.0.0.1:{hport}")])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .env("MEMCACHED_LITE_LOG", level)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", hport)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port, hport)
}

fn binary_get(key: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&(key.len() as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(key);
    p
}

#[test]
fn store_failures_get_stable_errors_and_the_detail_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    store_with_a_broken_record(&data);
    let log_path = tmp.path().join("server.log");
    let (mut child, port, hport) = serve_logged(&data, &log_path, "warn", &[]);

    // Text protocol: a stable SERVER_ERROR line, the connection stays usable.
    let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(
        c.line(b"get broken\r\n"),
        "SERVER_ERROR storage failure\r\n"
    );
    assert_eq!(c.line(b"set ok 0 0 1\r\nx\r\n"), "STORED\r\n");

    // Binary protocol: EINTERNAL (0x84) with its text, not ENOMEM.
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    b.write_all(&binary_get(b"broken")).unwrap();
    let mut header = [0u8; 24];
    b.read_exact(&mut header).unwrap();
    let status = u16::from_be_bytes([header[6], header[7]]);
    let body_len = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0; body_len];
    b.read_exact(&mut body).unwrap();
    assert_eq!(status, 0x84, "binary status");
    assert_eq!(body, b"Internal error");

    // HTTP: 500 with the JSON error body and a request id; no sled text.
    let resp = reqwest::blocking::get(format!("http://127.0.0.1:{hport}/v1/keys/broken")).unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"], "internal");
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("corrupt"), "{message}");
    assert!(message.contains("x-request-id"), "{message}");

    // SIGTERM: a clean stop, so every log line has been written.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    assert!(
        !log.contains("on_failure"),
        "the 500 was logged twice (by tower-http too):\n{log}"
    );
    let http_line = log
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line with request id {request_id}:\n{log}"));
    assert!(http_line.contains("corrupt item record"), "{http_line}");
    assert!(
        log.lines()
            .any(|l| l.contains("memcached command failed") && l.contains("corrupt")),
        "{log}"
    );
}

/// A refusal the server chose on purpose (507 at `--max-bytes`) is an
/// answer, not an operator's problem: nothing at ERROR level in the log.
#[test]
fn a_chosen_507_is_not_logged_as_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("server.log");
    let data = tmp.path().join("data");
    let (mut child, _, hport) = serve_logged(&data, &log_path, "info", &["--max-bytes", "2000"]);
    let http = reqwest::blocking::Client::new();
    let mut refused = 0;
    for i in 0..10 {
        let resp = http
            .put(format!("http://127.0.0.1:{hport}/v1/keys/k{i}"))
            .body(vec![b'v'; 500])
            .send()
            .unwrap();
        if resp.status().as_u16() == 507 {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "--max-bytes 2000 never refused a 500-byte value"
    );
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "a chosen 507 was logged as an error:\n{log}"
    );
}
