//! One store, two protocols: what the memcached protocol writes, HTTP reads
//! with the same bytes, flags and CAS, and the other way round; both go
//! through the same lock manager, so concurrent increments never get lost.
//! The memcached side uses the `memcache` crate (a real client) where it can.

mod common;

use std::time::Duration;

use common::Server;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn mc(s: &Server) -> memcache::Client {
    let c = memcache::Client::connect(format!("memcache://{}?protocol=ascii", s.addr)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// `gets` over memcached: (value, flags, cas).
fn gets(c: &memcache::Client, key: &str) -> Option<(Vec<u8>, u32, u64)> {
    let mut found = c.gets::<(Vec<u8>, u32, Option<u64>)>(&[key]).unwrap();
    found
        .remove(key)
        .map(|(v, f, cas)| (v, f, cas.expect("gets returns a cas")))
}

#[test]
fn memcached_writes_are_read_over_http() {
    let s = Server::start(&[]);
    let mut raw = s.connect();
    assert_eq!(
        raw.line(b"set shared 123456 300 14\r\nbinary\x00\r\nvalue\r\n"),
        "STORED\r\n"
    );
    let (value, flags, cas) = gets(&mc(&s), "shared").unwrap();
    assert_eq!(
        (value.as_slice(), flags),
        (&b"binary\x00\r\nvalue"[..], 123456)
    );

    let got = http().get(s.url("/v1/keys/shared")).send().unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["etag"], format!("\"{cas}\"").as_str());
    assert_eq!(got.headers()["x-flags"], "123456");
    let ttl: u64 = got.headers()["x-ttl"].to_str().unwrap().parse().unwrap();
    assert!((298..=300).contains(&ttl));
    assert_eq!(got.bytes().unwrap().as_ref(), b"binary\x00\r\nvalue");

    // Deleted over memcached: gone over HTTP.
    assert!(mc(&s).delete("shared").unwrap());
    assert_eq!(
        http()
            .get(s.url("/v1/keys/shared"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn http_writes_are_read_over_memcached() {
    let s = Server::start(&[]);
    let put = http()
        .put(s.url("/v1/keys/from-http?flags=77"))
        .body(&b"over\r\nhttp"[..])
        .send()
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let tag = put.headers()["etag"].to_str().unwrap().to_owned();
    let (value, flags, cas) = gets(&mc(&s), "from-http").unwrap();
    assert_eq!((value.as_slice(), flags), (&b"over\r\nhttp"[..], 77));
    assert_eq!(tag, format!("\"{cas}\""));

    // An HTTP touch shows up as memcached expiry; an HTTP delete as a miss.
    let r = http()
        .post(s.url("/v1/keys/from-http/touch"))
        .json(&json!({"ttl": -1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(gets(&mc(&s), "from-http").is_none());
    http()
        .put(s.url("/v1/keys/again"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(
        http()
            .delete(s.url("/v1/keys/again"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(mc(&s).get::<Vec<u8>>("again").unwrap(), None);
}

#[test]
fn gets_cas_works_as_if_match_and_back() {
    let s = Server::start(&[]);
    let m = mc(&s);
    m.set("doc", "v1", 0).unwrap();
    let (_, _, cas1) = gets(&m, "doc").unwrap();

    // The memcached CAS is the HTTP ETag.
    let r = http()
        .put(s.url("/v1/keys/doc"))
        .header("if-match", format!("\"{cas1}\""))
        .body("v2")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let tag2 = r.headers()["etag"].to_str().unwrap().to_owned();
    // The old CAS is now stale on both protocols.
    let stale = http()
        .put(s.url("/v1/keys/doc"))
        .header("if-match", format!("\"{cas1}\""))
        .body("v3")
        .send()
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert!(!m.cas("doc", "v3", 0, cas1).unwrap());
    // The HTTP ETag works as a memcached cas unique.
    let cas2: u64 = tag2.trim_matches('"').parse().unwrap();
    assert!(m.cas("doc", "v4", 0, cas2).unwrap());
    let (value, _, cas3) = gets(&m, "doc").unwrap();
    assert_eq!(value, b"v4");
    let del = http()
        .delete(s.url("/v1/keys/doc"))
        .header("if-match", format!("\"{cas2}\""))
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::PRECONDITION_FAILED);
    let del = http()
        .delete(s.url("/v1/keys/doc"))
        .header("if-match", format!("\"{cas3}\""))
        .send()
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    // add over HTTP conflicts with an item added over memcached.
    m.add("taken", "mc", 0).unwrap();
    let add = http()
        .put(s.url("/v1/keys/taken"))
        .header("if-none-match", "*")
        .body("http")
        .send()
        .unwrap();
    assert_eq!(add.status(), StatusCode::PRECONDITION_FAILED);
}

#[test]
fn concurrent_increments_from_both_protocols_are_exact() {
    const CLIENTS: u64 = 20;
    const EACH: u64 = 50;
    let s = Server::start(&[]);
    mc(&s).set("hits", "0", 0).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            let m = mc(&s);
            scope.spawn(move || {
                for _ in 0..EACH {
                    m.increment("hits", 1).unwrap();
                }
            });
            let url = s.url("/v1/keys/hits/incr");
            scope.spawn(move || {
                let c = http();
                for _ in 0..EACH {
                    let r = c.post(&url).json(&json!({"by": 1})).send().unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                }
            });
        }
    });
    let total = 2 * CLIENTS * EACH;
    let (value, _, _) = gets(&mc(&s), "hits").unwrap();
    assert_eq!(String::from_utf8(value).unwrap(), total.to_string());
    let body = http()
        .get(s.url("/v1/keys/hits"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, total.to_string());
    // Both protocols count in the same stats.
    let stats: Value = http()
        .get(s.url("/v1/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(stats["incr_hits"], total);
}
