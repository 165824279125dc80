//! `--max-bytes` with `--eviction noeviction|lru`, over the real binary.

mod common;

use common::{Client, Server};

const OOM: &str = "SERVER_ERROR out of memory storing object\r\n";

fn set(c: &mut Client, key: &str, len: usize) -> String {
    let mut req = format!("set {key} 0 0 {len}\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'v', len));
    req.extend_from_slice(b"\r\n");
    c.line(&req)
}

fn stat(c: &mut Client, name: &str) -> u64 {
    let report = c.until_end(b"stats\r\n");
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .unwrap_or_else(|| panic!("no stat {name} in {report}"))
        .parse()
        .unwrap()
}

fn present(c: &mut Client, key: &str) -> bool {
    c.until_end(format!("get {key}\r\n").as_bytes())
        .starts_with("VALUE")
}

#[test]
fn noeviction_refuses_stores_over_the_limit_like_memcached_minus_m() {
    let server = Server::start(&["--max-bytes", "20000", "--eviction", "noeviction"]);
    let mut c = server.connect();
    let replies: Vec<String> = (0..150)
        .map(|i| set(&mut c, &format!("k{i}"), 200))
        .collect();
    let stored = replies.iter().take_while(|r| *r == "STORED\r\n").count();
    assert!(
        (50..100).contains(&stored),
        "stored {stored} items of ~220 bytes under 20000"
    );
    assert!(
        replies[stored..].iter().all(|r| r == OOM),
        "{:?}",
        &replies[stored..stored + 3]
    );
    assert!(stat(&mut c, "bytes") <= 20000);
    assert_eq!(stat(&mut c, "evictions"), 0);
    assert!(stat(&mut c, "store_no_memory") >= 150 - stored as u64);
    // Nothing was dropped to make room; the first item is intact.
    assert_eq!(
        c.until_end(b"get k0\r\n"),
        format!("VALUE k0 0 200\r\n{}\r\nEND\r\n", "v".repeat(200))
    );
    // Rewriting an item at its size still works when full; growing it does not.
    assert_eq!(set(&mut c, "k1", 200), "STORED\r\n");
    assert_eq!(set(&mut c, "k1", 2000), OOM);
    // Deleting makes room again.
    assert_eq!(c.line(b"delete k2\r\n"), "DELETED\r\n");
    assert_eq!(set(&mut c, "fresh", 150), "STORED\r\n");
}

#[test]
fn lru_evicts_least_recently_used_items_and_counts_them() {
    let mut server = Server::start(&["--max-bytes", "20000", "--eviction", "lru"]);
    let mut c = server.connect();
    assert!(c
        .until_end(b"stats settings\r\n")
        .contains("STAT evictions on\r\n"));
    let hot: Vec<String> = (0..8).map(|i| format!("hot{i}")).collect();
    for k in &hot {
        assert_eq!(set(&mut c, k, 200), "STORED\r\n");
    }
    // 400 items of ~220 bytes through a ~90-item cache, reading the hot
    // keys every few stores: every store succeeds by evicting cold items.
    for i in 0..400 {
        assert_eq!(
            set(&mut c, &format!("cold{i}"), 200),
            "STORED\r\n",
            "store {i}"
        );
        if i % 10 == 0 {
            for k in &hot {
                assert!(present(&mut c, k), "hot key {k} evicted at store {i}");
            }
        }
    }
    let evictions = stat(&mut c, "evictions");
    assert!(evictions >= 300, "evictions {evictions}");
    assert!(stat(&mut c, "bytes") <= 20000);
    // The most recent stores survive; most early cold items are gone.
    for i in 390..400 {
        assert!(
            present(&mut c, &format!("cold{i}")),
            "recent cold{i} evicted"
        );
    }
    let early = (0..100)
        .filter(|i| present(&mut c, &format!("cold{i}")))
        .count();
    assert!(early < 10, "{early} of the first 100 cold items survived");
    // Evictions are persistent deletions: a restart keeps the cache within bounds.
    server.restart();
    let mut c = server.connect();
    assert!(stat(&mut c, "bytes") <= 20000);
    assert!(present(&mut c, "hot0"));
}

#[test]
fn an_item_larger_than_the_whole_limit_is_refused_without_evicting() {
    let server = Server::start(&["--max-bytes", "5000", "--eviction", "lru"]);
    let mut c = server.connect();
    assert_eq!(set(&mut c, "small", 100), "STORED\r\n");
    assert_eq!(set(&mut c, "huge", 6000), OOM);
    assert!(present(&mut c, "small"));
    assert_eq!(stat(&mut c, "evictions"), 0);
}

#[test]
fn cache_memlimit_applies_the_limit_at_runtime() {
    let server = Server::start(&["--eviction", "noeviction"]);
    let mut c = server.connect();
    // 8 MiB is the smallest limit memcached's cache_memlimit accepts.
    for i in 0..8 {
        assert_eq!(set(&mut c, &format!("big{i}"), 1_000_000), "STORED\r\n");
    }
    assert_eq!(c.line(b"cache_memlimit 8\r\n"), "OK\r\n");
    assert_eq!(stat(&mut c, "limit_maxbytes"), 8 * 1024 * 1024);
    assert_eq!(set(&mut c, "big8", 1_000_000), OOM);
    // Shrinking an item is always allowed, even over the limit.
    assert_eq!(set(&mut c, "big0", 10), "STORED\r\n");
}

#[test]
fn http_put_over_the_limit_is_507_with_a_json_body() {
    let server = Server::start(&["--max-bytes", "20000", "--eviction", "noeviction"]);
    let http = reqwest::blocking::Client::new();
    let mut statuses = Vec::new();
    for i in 0..150 {
        let resp = http
            .put(server.url(&format!("/v1/keys/h{i}")))
            .body("v".repeat(200))
            .send()
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 507 {
            let body: serde_json::Value = resp.json().unwrap();
            assert_eq!(body["error"], "insufficient_storage", "{body}");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&507), "{statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|&s| s == 201));
    // The memcached side sees the same full store.
    let mut c = server.connect();
    assert_eq!(set(&mut c, "more", 200), OOM);
}
