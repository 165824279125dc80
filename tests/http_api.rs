//! The HTTP/JSON API against the real binary with a real HTTP client
//! (reqwest): every route and status code, conditional writes, pagination,
//! the 400/413/408 paths, and the checked-in OpenAPI document.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Asserts a JSON error response with this status and code.
fn assert_error(resp: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"], code, "{body}");
    let message = body["message"].as_str().expect("message").to_owned();
    assert!(!message.is_empty());
    message
}

fn etag(resp: &Response) -> String {
    resp.headers()["etag"].to_str().unwrap().to_owned()
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn put_get_head_delete_round_trip() {
    let s = Server::start(&[]);
    let c = client();
    let url = s.url("/v1/keys/greeting");
    let value: Vec<u8> = (0..=255u8).chain(*b"\r\nEND\r\n").collect();

    let created = c
        .put(format!("{url}?flags=42&ttl=100"))
        .body(value.clone())
        .send()
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(header(&created, "location"), Some("/v1/keys/greeting"));
    let first = etag(&created);
    assert!(first.starts_with('"') && first.ends_with('"'), "{first}");

    let got = c.get(&url).send().unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        header(&got, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(etag(&got), first);
    assert_eq!(header(&got, "x-flags"), Some("42"));
    let ttl: u64 = header(&got, "x-ttl").unwrap().parse().unwrap();
    assert!((98..=100).contains(&ttl), "{ttl}");
    assert_eq!(got.bytes().unwrap().as_ref(), &value[..]);

    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(etag(&head), first);
    assert_eq!(header(&head, "x-flags"), Some("42"));
    assert_eq!(
        header(&head, "content-length"),
        Some(value.len().to_string().as_str())
    );
    assert!(head.bytes().unwrap().is_empty());

    // A plain PUT replaces: 204, a new ETag, flags back to 0, no TTL.
    let replaced = c.put(&url).body("").send().unwrap();
    assert_eq!(replaced.status(), StatusCode::NO_CONTENT);
    assert_ne!(etag(&replaced), first);
    let got = c.get(&url).send().unwrap();
    assert_eq!(
        (header(&got, "x-flags"), header(&got, "x-ttl")),
        (Some("0"), None)
    );
    assert_eq!(etag(&got), etag(&replaced));
    assert!(got.bytes().unwrap().is_empty());

    assert_eq!(
        c.delete(&url).send().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        c.get(&url).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let head = c.head(&url).send().unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert!(head.bytes().unwrap().is_empty());
    assert_error(
        c.delete(&url).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // A negative ttl is already expired (memcached exptime rules).
    let gone = c.put(format!("{url}?ttl=-1")).body("x").send().unwrap();
    assert!(gone.status().is_success());
    assert_error(
        c.get(&url).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Bad query values are 400.
    assert_error(
        c.put(format!("{url}?ttl=soon")).body("x").send().unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        c.put(format!("{url}?flags=4294967296"))
            .body("x")
            .send()
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

#[test]
fn conditional_writes_map_to_add_cas_and_replace() {
    let s = Server::start(&[]);
    let c = client();
    let url = s.url("/v1/keys/cond");

    // If-Match on a missing key: 404 (cas / replace on nothing).
    assert_error(
        c.put(&url)
            .header("if-match", "\"1\"")
            .body("v")
            .send()
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        c.put(&url)
            .header("if-match", "*")
            .body("v")
            .send()
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // If-None-Match: * is add.
    let added = c
        .put(&url)
        .header("if-none-match", "*")
        .body("one")
        .send()
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let tag1 = etag(&added);
    assert_error(
        c.put(&url)
            .header("if-none-match", "*")
            .body("two")
            .send()
            .unwrap(),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    );
    assert_eq!(c.get(&url).send().unwrap().text().unwrap(), "one");

    // If-Match: "<cas>" is cas.
    let swapped = c
        .put(&url)
        .header("if-match", tag1.as_str())
        .body("two")
        .send()
        .unwrap();
    assert_eq!(swapped.status(), StatusCode::NO_CONTENT);
    let tag2 = etag(&swapped);
    assert_error(
        c.put(&url)
            .header("if-match", tag1.as_str())
            .body("stale")
            .send()
            .unwrap(),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    );
    assert_eq!(c.get(&url).send().unwrap().text().unwrap(), "two");

    // If-Match: * is replace.
    assert_eq!(
        c.put(&url)
            .header("if-match", "*")
            .body("three")
            .send()
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let tag3 = etag(&c.head(&url).send().unwrap());
    assert_ne!(tag3, tag2);

    // Malformed conditions are 400.
    for (name, value) in [
        ("if-match", "\"abc\""),
        ("if-match", "\"1\", \"2\""),
        ("if-none-match", "\"5\""),
    ] {
        assert_error(
            c.put(&url).header(name, value).body("x").send().unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
    // Both headers are each well formed, but the item would have to exist
    // and not exist: a condition that never holds (the document says 412).
    assert_error(
        c.put(&url)
            .header("if-match", "*")
            .header("if-none-match", "*")
            .body("x")
            .send()
            .unwrap(),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    );

    // DELETE with If-Match.
    assert_error(
        c.delete(&url)
            .header("if-match", tag2.as_str())
            .send()
            .unwrap(),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    );
    assert_eq!(c.get(&url).send().unwrap().text().unwrap(), "three");
    assert_eq!(
        c.delete(&url)
            .header("if-match", tag3.as_str())
            .send()
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        c.delete(&url)
            .header("if-match", tag3.as_str())
            .send()
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[test]
fn counters_and_touch() {
    let s = Server::start(&[]);
    let c = client();
    let key = s.url("/v1/keys/n");
    let post = |action: &str, body: Value| {
        c.post(format!("{key}/{action}"))
            .json(&body)
            .send()
            .unwrap()
    };

    assert_error(
        post("incr", json!({"by": 1})),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    c.put(&key).body("10").send().unwrap();
    let r = post("incr", json!({"by": 5}));
    assert_eq!(r.status(), StatusCode::OK);
    let tag = etag(&r);
    assert_eq!(r.json::<Value>().unwrap(), json!({"value": 15}));
    assert_eq!(etag(&c.head(&key).send().unwrap()), tag);
    assert_eq!(c.get(&key).send().unwrap().text().unwrap(), "15");
    // decr stops at 0; incr wraps at 2^64.
    assert_eq!(
        post("decr", json!({"by": 100})).json::<Value>().unwrap(),
        json!({"value": 0})
    );
    c.put(&key).body("18446744073709551615").send().unwrap();
    assert_eq!(
        post("incr", json!({"by": 2})).json::<Value>().unwrap(),
        json!({"value": 1})
    );

    c.put(&key).body("ten").send().unwrap();
    assert_error(
        post("incr", json!({"by": 1})),
        StatusCode::CONFLICT,
        "non_numeric",
    );
    assert_error(
        post("decr", json!({"by": 1})),
        StatusCode::CONFLICT,
        "non_numeric",
    );
    assert_error(
        post("incr", json!({"by": -1})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_error(
        post("incr", json!({})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    let r = c
        .post(format!("{key}/incr"))
        .header("content-type", "application/json")
        .body("{by:")
        .send()
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request");
    let r = c
        .post(format!("{key}/incr"))
        .body("{\"by\": 1}")
        .send()
        .unwrap();
    assert_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // touch: new TTL, same value and CAS.
    let before = etag(&c.head(&key).send().unwrap());
    assert_eq!(
        post("touch", json!({"ttl": 500})).status(),
        StatusCode::NO_CONTENT
    );
    let after = c.get(&key).send().unwrap();
    assert_eq!(etag(&after), before);
    let ttl: u64 = header(&after, "x-ttl").unwrap().parse().unwrap();
    assert!((498..=500).contains(&ttl));
    assert_eq!(after.text().unwrap(), "ten");
    assert_eq!(
        post("touch", json!({"ttl": 0})).status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(header(&c.head(&key).send().unwrap(), "x-ttl"), None);
    assert_eq!(
        post("touch", json!({"ttl": -1})).status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        c.get(&key).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        post("touch", json!({"ttl": 5})),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        post("touch", json!({"ttl": "soon"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
}

#[test]
fn listing_paginates_in_key_order() {
    let s = Server::start(&[]);
    let c = client();
    let mut expected = Vec::new();
    for i in 0..23 {
        let key = format!("user:{i:03}");
        c.put(s.url(&format!("/v1/keys/{key}?flags={i}")))
            .body("x".repeat(i))
            .send()
            .unwrap();
        expected.push(key);
    }
    for other in ["admin", "zebra", "user"] {
        c.put(s.url(&format!("/v1/keys/{other}")))
            .body("o")
            .send()
            .unwrap();
    }
    c.put(s.url("/v1/keys/user:expired?ttl=-1"))
        .body("gone")
        .send()
        .unwrap();
    c.put(s.url("/v1/keys/user:ttl?ttl=1000"))
        .body("t")
        .send()
        .unwrap();
    expected.push("user:ttl".into());

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = s.url("/v1/keys?prefix=user%3A&limit=7");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = c.get(url).send().unwrap().json().unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        for item in items {
            let key = item["key"].as_str().unwrap().to_owned();
            let got = c.get(s.url(&format!("/v1/keys/{key}"))).send().unwrap();
            assert_eq!(format!("\"{}\"", item["cas"]), etag(&got), "{item}");
            assert_eq!(item["flags"].to_string(), header(&got, "x-flags").unwrap());
            assert_eq!(
                item["size"].as_u64().unwrap() as usize,
                got.bytes().unwrap().len()
            );
            if key == "user:ttl" {
                assert!((998..=1000).contains(&item["ttl"].as_u64().unwrap()));
            } else {
                assert!(item["ttl"].is_null());
            }
            seen.push(key);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 4, "24 items at 7 a page");
    assert_eq!(seen, expected);

    let all: Value = c.get(s.url("/v1/keys")).send().unwrap().json().unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 27);
    assert!(all["next_cursor"].is_null());
    let none: Value = c
        .get(s.url("/v1/keys?prefix=nobody"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(none, json!({"items": [], "next_cursor": null}));

    for bad in ["limit=0", "limit=1001", "limit=ten", "cursor=%21%21"] {
        assert_error(
            c.get(s.url(&format!("/v1/keys?{bad}"))).send().unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }
}

#[test]
fn stats_flush_and_health() {
    let s = Server::start(&[]);
    let c = client();
    c.put(s.url("/v1/keys/a")).body("1").send().unwrap();
    c.get(s.url("/v1/keys/a")).send().unwrap();
    c.get(s.url("/v1/keys/missing")).send().unwrap();
    let stats: Value = c.get(s.url("/v1/stats")).send().unwrap().json().unwrap();
    assert_eq!(stats["curr_items"], 1);
    assert_eq!(stats["cmd_set"], 1);
    assert_eq!(
        (stats["get_hits"].as_u64(), stats["get_misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["version"], "1.6.18");
    assert!(stats["uptime"].is_u64() && stats["pid"].is_u64());

    assert_eq!(
        c.post(s.url("/v1/flush")).send().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        c.get(s.url("/v1/keys/a")).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let stats: Value = c.get(s.url("/v1/stats")).send().unwrap().json().unwrap();
    assert_eq!(
        (stats["curr_items"].as_u64(), stats["cmd_flush"].as_u64()),
        (Some(0), Some(1))
    );

    // A delayed flush leaves items readable until it is due (when it is
    // due is tested on a manual clock in src/http/tests.rs).
    c.put(s.url("/v1/keys/b")).body("2").send().unwrap();
    assert_eq!(
        c.post(s.url("/v1/flush?delay=100"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(s.url("/v1/keys/b")).send().unwrap().status(),
        StatusCode::OK
    );
    assert_error(
        c.post(s.url("/v1/flush?delay=later")).send().unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let h = c.get(s.url("/healthz")).send().unwrap();
    assert_eq!(h.status(), StatusCode::OK);
    assert_eq!(h.json::<Value>().unwrap(), json!({"status": "ok"}));
    let r = c.get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap(), json!({"status": "ready"}));
}

#[test]
fn bad_keys_and_routes_are_json_errors() {
    let s = Server::start(&[]);
    let c = client();
    let long = "k".repeat(250);
    assert_eq!(
        c.put(s.url(&format!("/v1/keys/{long}")))
            .body("ok")
            .send()
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        c.get(s.url(&format!("/v1/keys/{long}")))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok"
    );
    let msg = assert_error(
        c.get(s.url(&format!("/v1/keys/{long}k"))).send().unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_key",
    );
    assert!(msg.contains("251"), "{msg}");
    for bad in [
        "a%20b", "tab%09", "nl%0A", "nul%00", "del%7F", "pct%zz", "end%", "half%4",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let r = c
                .request(method.parse().unwrap(), s.url(&format!("/v1/keys/{bad}")))
                .body("v")
                .send()
                .unwrap();
            assert_error(r, StatusCode::BAD_REQUEST, "bad_key");
        }
        let r = c
            .post(s.url(&format!("/v1/keys/{bad}/incr")))
            .json(&json!({"by": 1}))
            .send()
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "bad_key");
    }
    // Percent-encoded bytes that are legal in keys round-trip exactly.
    let r = c
        .put(s.url("/v1/keys/a%2Fb%25c%C3%A9%FF"))
        .body("odd")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), Some("/v1/keys/a%2Fb%25c%C3%A9%FF"));
    let mut conn = s.connect();
    conn.send(b"get a/b%c\xc3\xa9\xff\r\n");
    assert_eq!(
        conn.read_until(b"END\r\n"),
        b"VALUE a/b%c\xc3\xa9\xff 0 3\r\nodd\r\nEND\r\n"
    );
    let listed: Value = c
        .get(s.url("/v1/keys?prefix=a"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["items"][0]["key_base64"], "YS9iJWPDqf8");

    assert_error(
        c.get(s.url("/v2/nothing")).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = c.patch(s.url("/v1/keys/a")).send().unwrap();
    assert_eq!(header(&r, "allow"), Some("GET,HEAD,PUT,DELETE"));
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_error(
        c.get(s.url("/v1/keys/a/incr")).send().unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Every response carries a request id; a client's own is echoed.
    let r = c.get(s.url("/healthz")).send().unwrap();
    assert!(header(&r, "x-request-id").is_some_and(|id| id.len() >= 32));
    let r = c
        .get(s.url("/healthz"))
        .header("x-request-id", "trace-me-1")
        .send()
        .unwrap();
    assert_eq!(header(&r, "x-request-id"), Some("trace-me-1"));
}

/// Sends raw request bytes and returns the response head and body once the
/// server has answered (reads until the declared body length arrives).
fn raw_exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
    wait: Duration,
) -> (String, Value, Duration) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let start = Instant::now();
    sock.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock
            .read(&mut chunk)
            .expect("a response before the read timeout");
        assert!(
            n > 0,
            "closed without a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                return (head, body, start.elapsed());
            }
        }
    }
}

#[test]
fn oversized_bodies_are_413_without_being_read() {
    let s = Server::start(&["--max-item-size", "1000"]);
    let c = client();
    let url = s.url("/v1/keys/big");
    assert_eq!(
        c.put(&url).body(vec![b'x'; 1000]).send().unwrap().status(),
        StatusCode::CREATED
    );
    assert_error(
        c.put(&url).body(vec![b'y'; 1001]).send().unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    // The refused value did not replace the stored one.
    assert_eq!(c.get(&url).send().unwrap().bytes().unwrap().len(), 1000);

    let addr = s.http_addr.unwrap();
    // 100 MB announced, only headers sent: refused at once, from the header.
    let req =
        b"PUT /v1/keys/huge HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n0123456789";
    let (head, body, took) = raw_exchange(addr, req, Duration::from_secs(5));
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert_eq!(body["error"], "too_large");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Chunked (no length up front): refused once the limit is crossed,
    // while the client is still sending.
    let mut req =
        b"PUT /v1/keys/huge HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'z'; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    let (head, body, _) = raw_exchange(addr, &req, Duration::from_secs(5));
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert_eq!(body["error"], "too_large");
    assert_error(
        c.get(s.url("/v1/keys/huge")).send().unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[test]
fn slow_requests_time_out_with_408() {
    let s = Server::start(&["--http-timeout-secs", "1"]);
    let req = b"PUT /v1/keys/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc";
    let (head, body, took) = raw_exchange(s.http_addr.unwrap(), req, Duration::from_secs(5));
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert_eq!(body["error"], "timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(
        client()
            .get(s.url("/v1/keys/slow"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn no_http_flag_and_graceful_restart() {
    let port = common::free_port();
    let off = Server::start(&["--no-http", "--http-listen", &format!("127.0.0.1:{port}")]);
    assert!(off.http_addr.is_none());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let mut conn = off.connect();
    assert_eq!(conn.line(b"set k 0 0 1\r\nv\r\n"), "STORED\r\n");

    let mut s = Server::start(&[]);
    let c = client();
    c.put(s.url("/v1/keys/kept?flags=3"))
        .body("durable")
        .send()
        .unwrap();
    // SIGTERM stops both listeners and exits cleanly; the item survives.
    assert!(s.stop().success());
    s.restart();
    let got = c.get(s.url("/v1/keys/kept")).send().unwrap();
    assert_eq!(header(&got, "x-flags"), Some("3"));
    assert_eq!(got.text().unwrap(), "durable");
}

#[test]
fn openapi_document_is_served_and_checked_in() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(generated.status.success());
    let generated = String::from_utf8(generated.stdout).unwrap();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi/openapi.json is stale; regenerate it with \
         `cargo run -- openapi > openapi/openapi.json` (or UPDATE_OPENAPI=1 cargo test --test http_api)"
    );

    let s = Server::start(&[]);
    let c = client();
    let served: Value = c
        .get(s.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(served, doc);
    let expected = [
        ("/v1/keys", "get"),
        ("/v1/watch", "get"),
        ("/v1/keys/{key}", "get"),
        ("/v1/keys/{key}", "head"),
        ("/v1/keys/{key}", "put"),
        ("/v1/keys/{key}", "delete"),
        ("/v1/keys/{key}/incr", "post"),
        ("/v1/keys/{key}/decr", "post"),
        ("/v1/keys/{key}/touch", "post"),
        ("/v1/stats", "get"),
        ("/v1/cluster", "get"),
        ("/v1/cluster/members", "post"),
        ("/v1/cluster/members/{id}", "delete"),
        ("/v1/flush", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/export.csv", "get"),
        ("/metrics", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(ops, expected.len(), "every operation is listed here");
    for (p, method) in expected {
        let op = &doc["paths"][p][method];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {p}"
        );
        assert!(op["summary"].is_string(), "{method} {p} has a summary");
    }
    let put = &doc["paths"]["/v1/keys/{key}"]["put"];
    let params: Vec<&str> = put["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["key", "ttl", "flags", "If-Match", "If-None-Match"]);
    for status in ["201", "204", "400", "404", "412", "413"] {
        assert!(
            put["responses"][status].is_object(),
            "PUT documents {status}"
        );
    }
    assert!(
        doc["paths"]["/v1/keys/{key}"]["get"]["responses"]["200"]["headers"]["ETag"].is_object()
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let watch = &doc["paths"]["/v1/watch"]["get"]["responses"];
    assert!(watch["200"]["content"]["text/event-stream"].is_object());
    assert!(watch["503"].is_object() && watch["400"].is_object());

    // Swagger UI comes from the binary itself.
    let docs = c.get(s.url("/docs")).send().unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().unwrap().contains("swagger-ui"));
    let init = c
        .get(s.url("/docs/swagger-initializer.js"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}
