//! Reference tables that must match the binary: the metrics table in
//! docs/operations.md lists exactly the metric families `GET /metrics`
//! serves, and the flags table in docs/configuration.md exactly the flags
//! `serve --help` prints. A metric or flag added without a row, or a row
//! for one that no longer exists, fails here.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Server;

/// Families that exist but that a running server cannot show yet, each
/// with the reason (checked to be documented all the same).
const ONLY_AFTER_SHUTDOWN: &[&str] = &[
    // Recorded by the final sync, once the listeners are closed.
    "memcached_lite_store_sync_duration_seconds",
];

fn documented() -> BTreeSet<String> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    page.lines()
        .filter_map(|l| l.strip_prefix("| `memcached_lite_"))
        .map(|rest| format!("memcached_lite_{}", &rest[..rest.find('`').unwrap()]))
        .collect()
}

/// Family names from the `# TYPE` lines of an exposition.
fn served(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_metrics_table_lists_exactly_what_metrics_serves() {
    // A short mirror interval so the mirror histogram has a sample.
    let server = Server::start(&["--mirror-interval", "100ms"]);
    let mut c = server.connect();
    assert_eq!(c.line(b"set k 0 0 1\r\nx\r\n"), "STORED\r\n");
    c.until_end(b"get k nope\r\n");
    c.line(b"bogus\r\n");
    let http = reqwest::blocking::Client::new();
    http.get(server.url("/v1/keys/k")).send().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = http
            .get(server.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if text.contains("memcached_lite_mirror_write_duration_seconds_count")
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let served = served(&text);
    let documented = documented();
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/operations.md: {missing:?}"
    );
    let stale: Vec<_> = documented
        .difference(&served)
        .filter(|m| !ONLY_AFTER_SHUTDOWN.contains(&m.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "in docs/operations.md but not served: {stale:?}"
    );
    for m in ONLY_AFTER_SHUTDOWN {
        assert!(documented.contains(*m), "{m} is not documented");
    }
}

/// Every `--flag` named in a text.
fn flags(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_flags_table_lists_exactly_what_serve_accepts() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let mut accepted = flags(&String::from_utf8_lossy(&help.stdout));
    accepted.remove("--help");
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let rows: String = page
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| l.split(" | ").next().unwrap().to_owned() + "\n")
        .collect();
    let documented = flags(&rows);
    let missing: Vec<_> = accepted.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "serve flags without a row in docs/configuration.md: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        stale.is_empty(),
        "rows in docs/configuration.md for no flag: {stale:?}"
    );
}
