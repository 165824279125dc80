//! The bad-input catalogue for the memcached front end: every malformed
//! request we could think of, each on its own connection, checked against
//! the exact answer, against what a real memcached 1.6 answers, that a
//! bystander client keeps being served, and that stored data is unchanged.
//!
//! (The HTTP front end's catalogue is `tests/http_bad_input.rs`.)

mod common;
mod reference;

use common::Server;
use reference::{exchange, Memcached};

/// What real memcached answers to a case.
enum Reference {
    /// Exactly what memcached-lite answers.
    Same,
    /// A documented difference (docs/protocol.md "Protocol notes"/"Limits").
    Differs(&'static [u8], &'static str),
}
use Reference::{Differs, Same};

/// Bytes sent (then the write side is closed), memcached-lite's complete
/// answer before it closes, and memcached's.
fn catalogue() -> Vec<(&'static str, Vec<u8>, Vec<u8>, Reference)> {
    let b = |s: &[u8]| s.to_vec();
    let long_key = "k".repeat(251);
    vec![
        // Truncated commands: nothing is answered, nothing stored.
        ("truncated data block", b(b"set sentinel 0 0 5\r\nab"), b(b""), Same),
        ("truncated command line", b(b"set sentinel 0 0"), b(b""), Same),
        ("data block without its \\r", b(b"set sentinel 0 0 5\r\nabcde\n"), b(b""), Same),
        ("too few tokens", b(b"set sentinel 0 0\r\n"), b(b"ERROR\r\n"), Same),
        ("get without keys", b(b"get\r\n"), b(b"ERROR\r\n"), Same),
        ("gets without keys", b(b"gets\r\n"), b(b"ERROR\r\n"), Same),
        ("too many tokens", b(b"set sentinel 0 0 1 2 3 4 5 6\r\nx\r\n"), b(b"ERROR\r\nERROR\r\n"), Same),
        ("incr with extra token", b(b"incr counter 1 noreply extra\r\n"), b(b"ERROR\r\n"), Same),
        ("delete with four arguments", b(b"delete sentinel 0 0 0\r\n"), b(b"ERROR\r\n"), Same),
        // Huge lengths.
        (
            "declared 1 GB value",
            b(b"set big 0 0 1073741824\r\n"),
            b(b"SERVER_ERROR object too large for cache\r\n"),
            // memcached answers only after swallowing the whole gigabyte.
            Differs(b"", "replies before discarding the data, not after"),
        ),
        ("length beyond u64", b(b"set sentinel 0 0 99999999999999999999\r\n"), b(b"CLIENT_ERROR bad command line format\r\n"), Same),
        ("length u64::MAX", b(b"set sentinel 0 0 18446744073709551615\r\n"), b(b"CLIENT_ERROR bad command line format\r\n"), Same),
        ("delta beyond u64", b(b"incr counter 18446744073709551616\r\n"), b(b"CLIENT_ERROR invalid numeric delta argument\r\n"), Same),
        ("huge delta digits", b(b"decr counter 99999999999999999999999\r\n"), b(b"CLIENT_ERROR invalid numeric delta argument\r\n"), Same),
        (
            "flags beyond u32",
            b(b"set other 4294967296 0 1\r\nx\r\n"),
            b(b"CLIENT_ERROR bad command line format\r\nERROR\r\n"),
            Differs(b"STORED\r\n", "memcached truncates the flags"),
        ),
        // Negative numbers.
        ("negative length", b(b"set sentinel 0 0 -1\r\n"), b(b"CLIENT_ERROR bad command line format\r\n"), Same),
        ("negative flags", b(b"set sentinel -1 0 1\r\nx\r\n"), b(b"CLIENT_ERROR bad command line format\r\nERROR\r\n"), Same),
        ("negative cas", b(b"cas sentinel 0 0 1 -5\r\nx\r\n"), b(b"CLIENT_ERROR bad command line format\r\nERROR\r\n"), Same),
        ("negative delta", b(b"incr counter -1\r\n"), b(b"CLIENT_ERROR invalid numeric delta argument\r\n"), Same),
        ("negative memlimit", b(b"cache_memlimit -5\r\n"), b(b"ERROR\r\n"), Same),
        ("negative touch of a missing key", b(b"touch missing -5\r\n"), b(b"NOT_FOUND\r\n"), Same),
        ("negative gat of a missing key", b(b"gat -5 missing\r\n"), b(b"END\r\n"), Same),
        // Not numbers at all.
        ("non-numeric exptime", b(b"set sentinel 0 abc 1\r\nx\r\n"), b(b"CLIENT_ERROR bad command line format\r\nERROR\r\n"), Same),
        ("non-numeric delta", b(b"incr counter abc\r\n"), b(b"CLIENT_ERROR invalid numeric delta argument\r\n"), Same),
        ("non-numeric touch", b(b"touch sentinel abc\r\n"), b(b"CLIENT_ERROR invalid exptime argument\r\n"), Same),
        ("non-numeric gat", b(b"gat abc sentinel\r\n"), b(b"CLIENT_ERROR invalid exptime argument\r\n"), Same),
        ("non-numeric flush delay", b(b"flush_all abc\r\n"), b(b"CLIENT_ERROR invalid exptime argument\r\n"), Same),
        ("delete with hold time", b(b"delete sentinel 5\r\n"), b(b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"), Same),
        // Data blocks that do not match their length.
        ("data longer than declared", b(b"set sentinel 0 0 5\r\nabcdefg\r\n"), b(b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"), Same),
        ("data longer than declared, noreply", b(b"set sentinel 0 0 5 noreply\r\nabcdefg\r\n"), b(b"ERROR\r\n"), Same),
        // NUL bytes and control characters.
        ("only NUL bytes", b(b"\x00\x00\x00\r\n"), b(b"ERROR\r\n"), Same),
        (
            "NUL inside a get key",
            b(b"get sent\x00inel\r\n"),
            b(b"CLIENT_ERROR bad command line format\r\n"),
            Differs(b"END\r\n", "memcached ends the key at the NUL"),
        ),
        (
            "NUL inside a set key",
            b(b"set sent\x00inel 0 0 1\r\nx\r\n"),
            b(b"CLIENT_ERROR bad command line format\r\nERROR\r\n"),
            Differs(b"ERROR\r\nERROR\r\n", "memcached ends the line at the NUL"),
        ),
        ("tab is not a separator", b(b"set k\t0 0 1\r\nx\r\n"), b(b"ERROR\r\nERROR\r\n"), Same),
        // Keys: invalid UTF-8 is a valid memcached key (keys are bytes).
        (
            "invalid UTF-8 key and value",
            b(b"set \xff\xfe\x80 0 0 3\r\n\xc3\x28\xa0\r\nget \xff\xfe\x80\r\ndelete \xff\xfe\x80\r\n"),
            b(b"STORED\r\nVALUE \xff\xfe\x80 0 3\r\n\xc3\x28\xa0\r\nEND\r\nDELETED\r\n"),
            Same,
        ),
        ("251-byte get key", format!("get {long_key}\r\n").into_bytes(), b(b"CLIENT_ERROR bad command line format\r\n"), Same),
        ("251-byte set key", format!("set {long_key} 0 0 1\r\nx\r\n").into_bytes(), b(b"CLIENT_ERROR bad command line format\r\nERROR\r\n"), Same),
        ("251-byte delete key", format!("delete {long_key}\r\n").into_bytes(), b(b"CLIENT_ERROR bad command line format\r\n"), Same),
        // Lines: empty, blank, wrong case, over-long.
        ("empty line", b(b"\r\n"), b(b"ERROR\r\n"), Same),
        ("bare newline", b(b"\n"), b(b"ERROR\r\n"), Same),
        ("blank line", b(b"   \r\n"), b(b"ERROR\r\n"), Same),
        ("upper-case command", b(b"GET sentinel\r\n"), b(b"ERROR\r\n"), Same),
        ("unknown stats group", b(b"stats nosuch\r\n"), b(b"ERROR\r\n"), Same),
        ("verbosity without level", b(b"verbosity\r\n"), b(b"ERROR\r\n"), Same),
        ("shutdown when not enabled", b(b"shutdown\r\n"), b(b"ERROR: shutdown not enabled\r\n"), Same),
        ("3000 bytes without newline: closed", vec![b'x'; 3000], b(b""), Same),
        ("1.2 MB get line without newline: closed", b"get ".iter().chain(&b"k ".repeat(600_000)).copied().collect(), b(b""), Same),
        // Other protocols and garbage.
        ("HTTP request: closed", b(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), b(b""), Same),
        ("POST request: closed", b(b"POST /v1/keys HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), b(b""), Same),
        (
            "TLS ClientHello on the plain port",
            [&b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..], &[b'r'; 32], b"\r\n"].concat(),
            b(b"ERROR\r\n"),
            Same,
        ),
        (
            "5000 bytes of binary garbage without newline: closed",
            (0..5000u32).map(|i| (i * 7919 + 13) as u8).filter(|&c| c != b'\n' && c != 0x80).collect(),
            b(b""),
            Same,
        ),
    ]
}

const SEED: &[u8] = b"set sentinel 7 0 5\r\nhello\r\nset counter 0 0 2\r\n10\r\n";
const SEEDED: &[u8] = b"STORED\r\nSTORED\r\n";
const CHECK: &[u8] = b"get sentinel counter\r\n";
const CHECKED: &str = "VALUE sentinel 7 5\r\nhello\r\nVALUE counter 0 2\r\n10\r\nEND\r\n";

#[test]
fn memcached_front_end_survives_the_catalogue() {
    let ours = Server::start(&[]);
    let theirs = Memcached::start(&[]);
    assert_eq!(exchange(ours.addr, SEED), SEEDED);
    assert_eq!(exchange(theirs.addr, SEED), SEEDED);
    let mut bystander = ours.connect();
    let before = bystander.until_end(b"gets sentinel counter\r\n");

    for (name, req, want, reference) in catalogue() {
        let got = exchange(ours.addr, &req);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "memcached-lite's answer to: {name}"
        );
        let theirs_got = exchange(theirs.addr, &req);
        let theirs_want = match reference {
            Same => &want[..],
            Differs(answer, _why) => answer,
        };
        assert_eq!(
            String::from_utf8_lossy(&theirs_got),
            String::from_utf8_lossy(theirs_want),
            "memcached's answer to: {name}"
        );
        // Another client is served throughout, and sees the same data.
        assert_eq!(
            bystander.until_end(CHECK),
            CHECKED,
            "bystander after: {name}"
        );
    }
    // Nothing stored changed, not even the cas values.
    assert_eq!(bystander.until_end(b"gets sentinel counter\r\n"), before);
    assert_eq!(
        exchange(theirs.addr, CHECK),
        CHECKED.as_bytes(),
        "memcached's data unchanged"
    );
    assert_eq!(bystander.until_end(b"get big other\r\n"), "END\r\n");
    // And the server still takes new connections and writes.
    let mut fresh = ours.connect();
    assert_eq!(fresh.line(b"set after 0 0 2\r\nok\r\n"), "STORED\r\n");
}
