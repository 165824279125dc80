//! `memcached-lite bench` run briefly against the real binary (memcache
//! text) and a real redis-server (RESP): the report must parse and show
//! the work done. Each run is bounded to about a second.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use memcached_lite::tools::bench::Report;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .arg("bench")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run bench")
}

fn report(args: &[&str]) -> Report {
    let out = bench(args);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON report on stdout")
}

#[test]
fn populate_then_mixed_load_against_memcached_lite() {
    let server = common::Server::start(&[]);
    let addr = server.addr.to_string();
    let fill = report(&[
        "--server",
        &addr,
        "--json",
        "--connections",
        "4",
        "--pipeline",
        "8",
        "--ratio",
        "1:0",
        "--key-pattern",
        "sequential",
        "--key-space",
        "500",
        "--requests",
        "500",
    ]);
    assert_eq!((fill.sets, fill.gets, fill.errors), (500, 0, 0));
    assert_eq!(fill.client_threads, 1);

    let run = report(&[
        "--server",
        &addr,
        "--json",
        "--connections",
        "4",
        "--pipeline",
        "2",
        "--ratio",
        "1:10",
        "--key-space",
        "500",
        "--duration",
        "1",
    ]);
    assert!(run.ops > 0 && run.sets > 0 && run.gets > 0, "{run:?}");
    assert_eq!(run.ops, run.sets + run.gets);
    assert_eq!(run.errors, 0);
    // Every key was populated, so every get hits.
    assert_eq!((run.hits, run.misses), (run.gets, 0));
    assert!(run.seconds >= 1.0 && run.seconds < 5.0, "{}", run.seconds);
    assert!(run.p50_ms > 0.0 && run.p50_ms <= run.p99_ms && run.p99_ms <= run.p999_ms);
    // The server agrees on how many sets it saw.
    let stats = server.connect().until_end(b"stats\r\n");
    let cmd_set: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT cmd_set "))
        .expect("cmd_set stat")
        .parse()
        .unwrap();
    assert_eq!(cmd_set, fill.sets + run.sets);
}

#[test]
fn text_report_names_the_single_client_thread() {
    let server = common::Server::start(&[]);
    let out = bench(&[
        "--server",
        &server.addr.to_string(),
        "--connections",
        "2",
        "--requests",
        "100",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("client: 1 thread"), "{text}");
    assert!(text.contains("100 ops in"), "{text}");
}

#[test]
fn resp_load_against_a_real_redis_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed by tests/run-all.sh");
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = report(&[
        "--server",
        &addr,
        "--protocol",
        "resp",
        "--json",
        "--connections",
        "4",
        "--ratio",
        "1:1",
        "--key-space",
        "10",
        "--requests",
        "2000",
        "--pipeline",
        "4",
    ]);
    let _ = redis.kill();
    let _ = redis.wait();
    assert_eq!((run.ops, run.errors), (2000, 0));
    assert_eq!((run.sets, run.gets), (1000, 1000));
    assert!(run.hits > 0, "{run:?}");
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let port = common::free_port();
    let out = bench(&["--server", &format!("127.0.0.1:{port}"), "--requests", "10"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to 127.0.0.1"), "{err}");
}

#[test]
fn bad_ratio_is_refused_by_the_parser() {
    let out = bench(&["--ratio", "0:0", "--requests", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0:0"));
}
