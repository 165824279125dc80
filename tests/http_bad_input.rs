//! The bad-input catalogue for the HTTP front end (the memcached side is
//! `tests/bad_input.rs`): malformed requests sent as raw bytes, each on its
//! own connection, checked for the exact status and JSON error code, while
//! a memcached client and a keep-alive HTTP client keep being served and
//! the stored items (value, flags, CAS, TTL) stay exactly as they were.
//!
//! Requests hyper itself refuses before axum sees them (a malformed request
//! line or header, a non-numeric Content-Length, too many or too large
//! headers) get hyper's bare answer: the status, an empty body and
//! `connection: close`. No axum layer runs for those, so they cannot be
//! JSON; the catalogue asserts exactly that.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// What the server answered on one connection.
struct Answer {
    status: u16,
    /// Lower-cased head.
    head: String,
    body: Vec<u8>,
    took: Duration,
}

/// Sends `request` (then half-closes when `half_close`) and reads one
/// response: the head and the body its Content-Length announces.
fn send(addr: SocketAddr, request: &[u8], half_close: bool) -> Answer {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    // The server may answer and close before reading everything.
    let _ = sock.write_all(request);
    if half_close {
        sock.shutdown(Shutdown::Write).unwrap();
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = sock.read(&mut chunk).expect("an answer within 5 s");
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        if buf.len() >= end + 4 + len {
            let status = head[9..12].parse().unwrap();
            let body = buf[end + 4..end + 4 + len].to_vec();
            return Answer {
                status,
                head,
                body,
                took: start.elapsed(),
            };
        }
    }
}

/// A request with a body and the headers it needs.
fn req(method: &str, path: &[u8], headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: test\r\n");
    out.extend_from_slice(headers.as_bytes());
    if !body.is_empty() {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn json_post(path: &str, body: &str) -> Vec<u8> {
    req(
        "POST",
        path.as_bytes(),
        "content-type: application/json\r\n",
        body.as_bytes(),
    )
}

/// How a case must be answered.
enum Want {
    /// This status with a JSON `{"error": code, "message": ...}` body.
    Json(u16, &'static str),
    /// hyper's own refusal: this status, no body, connection closed.
    Bare(u16),
}
use Want::{Bare, Json};

fn catalogue() -> Vec<(&'static str, Vec<u8>, Want)> {
    let get = |path: &[u8]| req("GET", path, "", b"");
    let put = |path: &[u8]| req("PUT", path, "", b"new");
    let k251 = format!("/v1/keys/{}", "k".repeat(251));
    let many_headers: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_header = format!("x-big: {}\r\n", "a".repeat(600_000));
    vec![
        // Keys: percent-encoding and memcached's key rule.
        (
            "bad percent-encoding",
            put(b"/v1/keys/sentinel%zz"),
            Json(400, "bad_key"),
        ),
        (
            "lone percent",
            put(b"/v1/keys/sentinel%"),
            Json(400, "bad_key"),
        ),
        ("half escape", get(b"/v1/keys/a%4"), Json(400, "bad_key")),
        (
            "escaped NUL",
            put(b"/v1/keys/sent%00inel"),
            Json(400, "bad_key"),
        ),
        (
            "escaped CR LF",
            put(b"/v1/keys/sentinel%0D%0A"),
            Json(400, "bad_key"),
        ),
        ("escaped tab", get(b"/v1/keys/a%09b"), Json(400, "bad_key")),
        ("escaped DEL", get(b"/v1/keys/a%7F"), Json(400, "bad_key")),
        (
            "escaped space",
            put(b"/v1/keys/sentinel%20x"),
            Json(400, "bad_key"),
        ),
        ("251-byte key", put(k251.as_bytes()), Json(400, "bad_key")),
        (
            "251 escaped bytes",
            get(format!("/v1/keys/{}", "%41".repeat(251)).as_bytes()),
            Json(400, "bad_key"),
        ),
        // memcached allows any byte above space but DEL: invalid UTF-8 is
        // a valid key (missing here), as `get \xff\xfe` is on the text side.
        (
            "invalid UTF-8, escaped",
            get(b"/v1/keys/%FF%FE"),
            Json(404, "not_found"),
        ),
        (
            "250-byte key",
            get(format!("/v1/keys/{}", "k".repeat(250)).as_bytes()),
            Json(404, "not_found"),
        ),
        // Raw bytes the HTTP grammar forbids in a request target.
        ("raw space in path", get(b"/v1/keys/a b"), Bare(400)),
        (
            "raw control byte in path",
            get(b"/v1/keys/a\x01b"),
            Bare(400),
        ),
        (
            "raw invalid UTF-8 in path",
            get(b"/v1/keys/a\xff\xfe"),
            Bare(400),
        ),
        (
            "binary garbage",
            b"\x00\x01\x02\x80garbage\r\n\r\n".to_vec(),
            Bare(400),
        ),
        // Query parameters.
        (
            "non-numeric ttl",
            put(b"/v1/keys/sentinel?ttl=abc"),
            Json(400, "bad_request"),
        ),
        (
            "ttl beyond i64",
            put(b"/v1/keys/sentinel?ttl=99999999999999999999"),
            Json(400, "bad_request"),
        ),
        (
            "negative flags",
            put(b"/v1/keys/sentinel?flags=-1"),
            Json(400, "bad_request"),
        ),
        (
            "flags beyond u32",
            put(b"/v1/keys/sentinel?flags=4294967296"),
            Json(400, "bad_request"),
        ),
        (
            "non-numeric flags",
            put(b"/v1/keys/sentinel?flags=0x10"),
            Json(400, "bad_request"),
        ),
        // Lengths and bodies.
        (
            "declared 1 GB body",
            req(
                "PUT",
                b"/v1/keys/sentinel",
                "content-length: 1073741824\r\n",
                b"",
            )
            .into_iter()
            .chain(*b"xx")
            .collect(),
            Json(413, "too_large"),
        ),
        (
            "value over --max-item-size",
            req("PUT", b"/v1/keys/sentinel", "", &[b'x'; 1001]),
            Json(413, "too_large"),
        ),
        (
            "Content-Length beyond u64",
            req(
                "PUT",
                b"/v1/keys/sentinel",
                "content-length: 99999999999999999999999\r\n",
                b"",
            ),
            Bare(400),
        ),
        (
            "negative Content-Length",
            req("PUT", b"/v1/keys/sentinel", "content-length: -1\r\n", b""),
            Bare(400),
        ),
        (
            "two Content-Lengths",
            req(
                "PUT",
                b"/v1/keys/sentinel",
                "content-length: 1\r\ncontent-length: 2\r\n",
                b"",
            ),
            Bare(400),
        ),
        // Headers.
        (
            "120 headers",
            req("GET", b"/v1/keys/sentinel", &many_headers, b""),
            Bare(431),
        ),
        (
            "600 KB header",
            req("GET", b"/v1/keys/sentinel", &huge_header, b""),
            Bare(431),
        ),
        (
            "header without colon",
            req("GET", b"/v1/keys/sentinel", "no-colon-here\r\n", b""),
            Bare(400),
        ),
        (
            "bad If-Match",
            req("PUT", b"/v1/keys/sentinel", "if-match: \"12x\"\r\n", b"new"),
            Json(400, "bad_request"),
        ),
        (
            "If-None-Match on an existing key",
            req("PUT", b"/v1/keys/sentinel", "if-none-match: *\r\n", b"new"),
            Json(412, "precondition_failed"),
        ),
        // Methods and routes.
        (
            "PATCH an item",
            req("PATCH", b"/v1/keys/sentinel", "", b"new"),
            Json(405, "method_not_allowed"),
        ),
        (
            "POST an item",
            req("POST", b"/v1/keys/sentinel", "", b"new"),
            Json(405, "method_not_allowed"),
        ),
        (
            "GET incr",
            get(b"/v1/keys/counter/incr"),
            Json(405, "method_not_allowed"),
        ),
        (
            "DELETE stats",
            req("DELETE", b"/v1/stats", "", b""),
            Json(405, "method_not_allowed"),
        ),
        (
            "GET flush",
            get(b"/v1/flush"),
            Json(405, "method_not_allowed"),
        ),
        (
            "unknown route",
            get(b"/v1/key/sentinel"),
            Json(404, "not_found"),
        ),
        // JSON bodies of incr/decr/touch.
        (
            "incr: truncated JSON",
            json_post("/v1/keys/counter/incr", "{\"by\":"),
            Json(400, "bad_request"),
        ),
        (
            "incr: not JSON",
            json_post("/v1/keys/counter/incr", "by=1"),
            Json(400, "bad_request"),
        ),
        (
            "incr: negative by",
            json_post("/v1/keys/counter/incr", "{\"by\":-1}"),
            Json(422, "invalid_body"),
        ),
        (
            "incr: by beyond u64",
            json_post("/v1/keys/counter/incr", "{\"by\":18446744073709551616}"),
            Json(422, "invalid_body"),
        ),
        (
            "incr: by as a string",
            json_post("/v1/keys/counter/incr", "{\"by\":\"1\"}"),
            Json(422, "invalid_body"),
        ),
        (
            "decr: missing by",
            json_post("/v1/keys/counter/decr", "{}"),
            Json(422, "invalid_body"),
        ),
        (
            "decr: null body",
            json_post("/v1/keys/counter/decr", "null"),
            Json(422, "invalid_body"),
        ),
        (
            "incr: no content type",
            req("POST", b"/v1/keys/counter/incr", "", b"{\"by\":1}"),
            Json(415, "unsupported_media_type"),
        ),
        (
            "incr: non-numeric value",
            json_post("/v1/keys/sentinel/incr", "{\"by\":1}"),
            Json(409, "non_numeric"),
        ),
        (
            "touch: ttl as a string",
            json_post("/v1/keys/sentinel/touch", "{\"ttl\":\"x\"}"),
            Json(422, "invalid_body"),
        ),
        (
            "touch: ttl beyond i64",
            json_post("/v1/keys/sentinel/touch", "{\"ttl\":9223372036854775808}"),
            Json(422, "invalid_body"),
        ),
        (
            "touch: empty body",
            req(
                "POST",
                b"/v1/keys/sentinel/touch",
                "content-type: application/json\r\ncontent-length: 0\r\n",
                b"",
            ),
            Json(400, "bad_request"),
        ),
    ]
}

/// Everything stored, as the listing reports it (keys, sizes, flags, CAS,
/// TTL), and each value.
fn snapshot(server: &Server, http: &reqwest::blocking::Client) -> (Value, Vec<Vec<u8>>) {
    let listing: Value = http
        .get(server.url("/v1/keys?limit=100"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let values = ["sentinel", "counter"]
        .iter()
        .map(|k| {
            http.get(server.url(&format!("/v1/keys/{k}")))
                .send()
                .unwrap()
                .bytes()
                .unwrap()
                .to_vec()
        })
        .collect();
    (listing, values)
}

#[test]
fn http_bad_input_catalogue() {
    let server = Server::start(&["--max-item-size", "1000"]);
    let addr = server.http_addr.unwrap();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let put = |path: &str, body: &str| {
        http.put(server.url(path))
            .body(body.to_owned())
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(put("/v1/keys/sentinel?flags=7", "keep me"), 201);
    assert_eq!(put("/v1/keys/counter", "41"), 201);
    let before = snapshot(&server, &http);
    assert_eq!(
        before.0["items"].as_array().unwrap().len(),
        2,
        "{}",
        before.0
    );
    // Bystanders on both protocols, each on one connection for the whole run.
    let mut memcached = server.connect();
    let mut failures = Vec::new();
    for (name, request, want) in catalogue() {
        let a = send(addr, &request, false);
        let ok = match want {
            Json(status, code) => {
                let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                a.status == status
                    && a.head.contains("content-type: application/json")
                    && body["error"] == code
                    && body["message"].as_str().is_some_and(|m| !m.is_empty())
            }
            Bare(status) => {
                a.status == status && a.body.is_empty() && a.head.contains("connection: close")
            }
        };
        if !ok || a.took > Duration::from_secs(2) {
            failures.push(format!(
                "{name}: {} in {:?}: {}",
                a.head.lines().next().unwrap_or(""),
                a.took,
                String::from_utf8_lossy(&a.body)
            ));
        }
        assert_eq!(
            memcached.line(b"get sentinel\r\n"),
            "VALUE sentinel 7 7\r\n",
            "after {name}"
        );
        assert_eq!(
            memcached.read_until(b"END\r\n"),
            b"keep me\r\nEND\r\n",
            "after {name}"
        );
        let r = http.get(server.url("/v1/keys/counter")).send().unwrap();
        assert_eq!(
            (r.status().as_u16(), r.text().unwrap()),
            (200, "41".to_owned()),
            "after {name}"
        );
    }
    assert!(
        failures.is_empty(),
        "unexpected answers:\n{}",
        failures.join("\n")
    );

    // Bodies cut short by the client (it half-closes): refused, nothing
    // stored, nothing counted.
    for (name, cut) in [
        ("value", &b"PUT /v1/keys/truncated HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nabc"[..]),
        (
            "incr JSON",
            b"POST /v1/keys/counter/incr HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{\"by\"",
        ),
    ] {
        let a = send(addr, cut, true);
        let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        assert_eq!((a.status, body["error"].as_str()), (400, Some("bad_request")), "{name}: {}", a.head);
    }

    assert_eq!(snapshot(&server, &http), before, "stored data changed");
    assert_eq!(memcached.line(b"get truncated\r\n"), "END\r\n");
}
