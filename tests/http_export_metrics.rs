//! `GET /v1/export.csv` and `GET /metrics` against the real binary: the
//! streamed export is the same CSV image `memcached-lite export` writes, and
//! the metrics count what both protocols did.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of the unlabelled sample `name` in `GET /metrics`, if present.
fn metric(server: &Server, name: &str) -> Option<f64> {
    let text = http()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn http_export_streams_the_same_csv_as_the_export_command() {
    let mut server = Server::start(&[]);
    let mut c = server.connect();
    // Enough rows for several 64 KiB chunks, with awkward values.
    for i in 0..3000 {
        let value = format!("v{i},\"quoted\"\r\nline {}", "x".repeat(i % 97));
        let line = format!("set key:{i:05} {i} 0 {}\r\n{value}\r\n", value.len());
        assert_eq!(c.line(line.as_bytes()), "STORED\r\n");
    }
    c.send(b"set bin 0 0 3\r\n\xff\x00\xfe\r\n");
    c.read_until(b"STORED\r\n");

    let resp = http().get(server.url("/v1/export.csv")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let streamed = resp.bytes().unwrap();
    assert!(
        streamed.len() > 3 * 64 * 1024,
        "several chunks: {}",
        streamed.len()
    );

    assert!(server.stop().success());
    let out = Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(["export", "--out", "-", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&streamed),
        String::from_utf8_lossy(&out.stdout)
    );
    let mut rows = csv::Reader::from_reader(&streamed[..]);
    assert_eq!(rows.records().count(), 3001);
}

#[test]
fn metrics_count_both_protocols() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.line(b"set a 0 0 1\r\n1\r\n"), "STORED\r\n");
    c.until_end(b"get a\r\n");
    c.until_end(b"get missing\r\n");
    let h = http();
    assert_eq!(
        h.put(server.url("/v1/keys/b"))
            .body("2")
            .send()
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        h.get(server.url("/v1/keys/b")).send().unwrap().status(),
        200
    );
    assert_eq!(
        h.get(server.url("/v1/keys/nope")).send().unwrap().status(),
        404
    );

    let resp = h.get(server.url("/metrics")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().unwrap();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"memcached_lite_commands_total{protocol="memcache",command="set"}"#),
        1.0
    );
    assert_eq!(
        value(r#"memcached_lite_commands_total{protocol="memcache",command="get"}"#),
        2.0
    );
    assert_eq!(
        value(r#"memcached_lite_commands_total{protocol="http",command="put"}"#),
        1.0
    );
    assert_eq!(
        value(r#"memcached_lite_commands_total{protocol="http",command="get"}"#),
        2.0
    );
    assert_eq!(
        value(r#"memcached_lite_get_hits_total{protocol="http"}"#),
        1.0
    );
    assert_eq!(
        value(r#"memcached_lite_get_misses_total{protocol="http"}"#),
        1.0
    );
    assert_eq!(
        value(r#"memcached_lite_get_hits_total{protocol="memcache"}"#),
        1.0
    );
    assert_eq!(value("memcached_lite_items "), 2.0);
    assert!(text.contains(
        r#"memcached_lite_command_duration_seconds_bucket{protocol="http",command="put""#
    ));
}

#[test]
fn mirror_writes_are_timed_in_metrics() {
    let server = Server::start(&["--mirror-interval", "50ms"]);
    let mirror_writes = || {
        metric(
            &server,
            "memcached_lite_mirror_write_duration_seconds_count",
        )
        .unwrap_or(0.0)
    };
    let wait_for_images = |n: f64, which: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while mirror_writes() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no {which} image timed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The start-up image first: a write made before it would be in it, and
    // then no second image would follow (the store did not change since).
    wait_for_images(1.0, "start-up");
    let mut c = server.connect();
    assert_eq!(c.line(b"set m 0 0 1\r\n1\r\n"), "STORED\r\n");
    wait_for_images(2.0, "second");
}

/// The write-behind queue is visible to operators: writes wait in it for up
/// to `--flush-interval-ms`, and a listing (which scans sled) hands them
/// over first, so it lists them and the gauge drops to zero.
#[test]
fn unsaved_writes_are_a_gauge_and_a_listing_hands_them_to_sled() {
    let server = Server::start(&["--flush-interval-ms", "600000"]);
    let mut c = server.connect();
    for k in ["a", "b", "c"] {
        assert_eq!(
            c.line(format!("set {k} 0 0 1\r\nx\r\n").as_bytes()),
            "STORED\r\n"
        );
    }
    assert_eq!(c.line(b"delete a\r\n"), "DELETED\r\n");
    let unsaved = || {
        metric(&server, "memcached_lite_unsaved_writes")
            .expect("an unsaved_writes gauge in /metrics")
    };
    // `a` was written and removed: one queued key whatever its history.
    assert_eq!(unsaved(), 3.0);
    let list: serde_json::Value = http()
        .get(server.url("/v1/keys"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let keys: Vec<&str> = list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {list}"))
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!(unsaved(), 0.0);
}
