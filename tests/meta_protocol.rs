//! The meta protocol (`mg ms md ma me mn`) against the real binary: every
//! flag the issue lists, pipelined quiet commands closed by `mn`, and bad
//! input answered with memcached 1.6.18's errors while the connection
//! keeps working. Expected bytes were checked against a real memcached
//! 1.6.18 (see tests/clients/test_meta_side_by_side.py for the live diff).

mod common;

use common::{Client, Server};

/// Sends `req` and returns everything up to and including `end`.
fn ask(c: &mut Client, req: &str, end: &str) -> String {
    c.send(req.as_bytes());
    String::from_utf8_lossy(&c.read_until(end.as_bytes())).into_owned()
}

/// One-line answer.
fn one(c: &mut Client, req: &str) -> String {
    c.line(req.as_bytes())
}

/// Rounds a `t<ttl>` one second short of `full` up to it: a clock tick
/// between storing and reading is not what these tests are about.
fn ttl(reply: String, full: u64) -> String {
    reply
        .replace(&format!(" t{} ", full - 1), &format!(" t{full} "))
        .replace(&format!(" t{}\r", full - 1), &format!(" t{full}\r"))
}

/// The number after ` <flag>` in a reply line.
fn field(line: &str, flag: char) -> u64 {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(flag).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no {flag} in {line:?}"))
}

#[test]
fn get_flags_report_item_fields_in_request_order() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(one(&mut c, "ms foo 2 T90 F5\r\nhi\r\n"), "HD\r\n");
    // l (seconds since the last access) may likewise have ticked to 1.
    let reply =
        ttl(ask(&mut c, "mg foo s v t f c k O123 h l\r\n", "hi\r\n"), 90).replace(" l1\r", " l0\r");
    let cas = field(&reply, 'c');
    assert_eq!(
        reply,
        format!("VA 2 s2 t90 f5 c{cas} kfoo O123 h0 l0\r\nhi\r\n")
    );
    // h: now fetched; l: seconds since that access.
    assert_eq!(
        one(&mut c, "mg foo h l\r\n").replace(" l1\r", " l0\r"),
        "HD h1 l0\r\n"
    );
    // u: read without recording the access.
    assert_eq!(one(&mut c, "ms u 1\r\nx\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "mg u h u\r\n"), "HD h0\r\n");
    assert_eq!(one(&mut c, "mg u h\r\n"), "HD h0\r\n");
    assert_eq!(one(&mut c, "mg u h\r\n"), "HD h1\r\n");
    // A classic get counts as a hit too.
    assert_eq!(one(&mut c, "ms g 1\r\nx\r\n"), "HD\r\n");
    assert_eq!(
        ask(&mut c, "get g\r\n", "END\r\n"),
        "VALUE g 0 1\r\nx\r\nEND\r\n"
    );
    assert_eq!(one(&mut c, "mg g h\r\n"), "HD h1\r\n");
    // Misses: EN with opaque and key echoed.
    assert_eq!(one(&mut c, "mg missing v k O1 s\r\n"), "EN kmissing O1\r\n");
    // t for an immortal item, T to change the TTL (t reports as of its place).
    assert_eq!(one(&mut c, "mg u t T100\r\n"), "HD t-1\r\n");
    assert_eq!(ttl(one(&mut c, "mg u t\r\n"), 100), "HD t100\r\n");
}

#[test]
fn base64_keys_round_trip() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    // "Zm9v" is base64 for "foo"; the item remembers its key was binary.
    let set = one(&mut c, "ms Zm9v 2 b c k\r\nhi\r\n");
    assert_eq!(set, format!("HD c{} kZm9v b\r\n", field(&set, 'c')));
    assert_eq!(
        ask(&mut c, "mg foo k v\r\n", "hi\r\n"),
        "VA 2 kZm9v b\r\nhi\r\n"
    );
    assert_eq!(
        ask(&mut c, "get foo\r\n", "END\r\n"),
        "VALUE foo 0 2\r\nhi\r\nEND\r\n"
    );
    // A binary key that is no text key at all.
    assert_eq!(one(&mut c, "ms AAEC 1 b\r\nz\r\n"), "HD\r\n");
    assert_eq!(
        ask(&mut c, "mg AAEC b v k\r\n", "z\r\n"),
        "VA 1 kAAEC b\r\nz\r\n"
    );
    assert_eq!(one(&mut c, "md AAEC b q\r\nmn\r\n"), "MN\r\n");
    assert_eq!(one(&mut c, "mg AAEC b v\r\n"), "EN\r\n");
}

#[test]
fn set_modes_cas_and_invalidation() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(one(&mut c, "ms k 1 MA\r\nx\r\n"), "NS\r\n");
    assert_eq!(one(&mut c, "ms k 1 MR\r\nx\r\n"), "NS\r\n");
    assert_eq!(one(&mut c, "ms k 1 ME\r\nb\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "ms k 1 ME\r\nb\r\n"), "NS\r\n");
    assert_eq!(one(&mut c, "ms k 1 MA\r\nc\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "ms k 1 MP\r\na\r\n"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg k v\r\n", "abc\r\n"), "VA 3\r\nabc\r\n");
    assert_eq!(one(&mut c, "ms k 1 MR F3 T0\r\nz\r\n"), "HD\r\n");
    let cas = field(&one(&mut c, "mg k c f\r\n"), 'c');
    assert_eq!(one(&mut c, "ms k 1 MS\r\ny\r\n"), "HD\r\n");
    // C: compare-and-set; a stale CAS is EX, a missing key NF.
    assert_eq!(one(&mut c, &format!("ms k 1 C{cas}\r\nw\r\n")), "EX\r\n");
    assert_eq!(one(&mut c, "ms nope 1 C1\r\nw\r\n"), "NF\r\n");
    let now = field(&one(&mut c, "mg k c\r\n"), 'c');
    assert_eq!(one(&mut c, &format!("ms k 1 C{now} MA\r\n!\r\n")), "HD\r\n");
    // E: the client picks the new CAS (memcached >= 1.6.21 flag).
    assert_eq!(one(&mut c, "ms k 1 E424242 c\r\nv\r\n"), "HD c424242\r\n");
    assert_eq!(one(&mut c, "mg k c\r\n"), "HD c424242\r\n");
    // I with an older CAS: stored anyway, but stale; first reader wins (W).
    assert_eq!(one(&mut c, "ms k 1 C1 I\r\ns\r\n"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg k v\r\n", "s\r\n"), "VA 1 X W\r\ns\r\n");
    assert_eq!(ask(&mut c, "mg k v\r\n", "s\r\n"), "VA 1 Z X\r\ns\r\n");
    // A normal set clears the stale state.
    assert_eq!(one(&mut c, "ms k 1\r\nn\r\n"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg k v\r\n", "n\r\n"), "VA 1\r\nn\r\n");
}

#[test]
fn delete_and_stale_while_revalidate() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(one(&mut c, "md k\r\n"), "NF\r\n");
    assert_eq!(one(&mut c, "ms k 1\r\nv\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "md k C99999 O9 k\r\n"), "EX O9 kk\r\n");
    // I + T: keep the item as stale for 30s, the next reader refreshes it.
    assert_eq!(one(&mut c, "md k I T30\r\n"), "HD\r\n");
    assert_eq!(
        ttl(ask(&mut c, "mg k v t\r\n", "v\r\n"), 30),
        "VA 1 t30 X W\r\nv\r\n"
    );
    assert_eq!(
        ttl(ask(&mut c, "mg k v t\r\n", "v\r\n"), 30),
        "VA 1 t30 Z X\r\nv\r\n"
    );
    assert_eq!(one(&mut c, "md k\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "mg k\r\n"), "EN\r\n");
    // N: vivify on miss; the creator wins, later readers see Z.
    assert_eq!(one(&mut c, "mg v N30 s t\r\n"), "HD s0 t30 W\r\n");
    assert_eq!(ttl(one(&mut c, "mg v N30 s t\r\n"), 30), "HD s0 t30 Z\r\n");
    // R: win the recache token once the TTL drops below the threshold.
    assert_eq!(one(&mut c, "ms r 1 T60\r\nx\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "mg r R30\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "mg r R100\r\n"), "HD W\r\n");
    assert_eq!(one(&mut c, "mg r R100\r\n"), "HD Z\r\n");
}

#[test]
fn arithmetic_flags() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(one(&mut c, "ma n\r\n"), "NF\r\n");
    assert_eq!(ask(&mut c, "ma n N0 J10 v\r\n", "10\r\n"), "VA 2\r\n10\r\n");
    assert_eq!(ask(&mut c, "ma n v D5\r\n", "15\r\n"), "VA 2\r\n15\r\n");
    assert_eq!(ask(&mut c, "ma n v MD D100\r\n", "0\r\n"), "VA 1\r\n0\r\n");
    assert_eq!(
        ttl(ask(&mut c, "ma n v M+ D7 T100 t\r\n", "7\r\n"), 100),
        "VA 1 t100\r\n7\r\n"
    );
    let cas = field(&one(&mut c, "ma n c M-\r\n"), 'c');
    assert_eq!(one(&mut c, "ma n C1\r\n"), "EX\r\n");
    assert_eq!(
        one(&mut c, &format!("ma n C{cas} E99 c k O5\r\n")),
        "HD c99 kn O5\r\n"
    );
    assert_eq!(one(&mut c, "ms s 1\r\nx\r\n"), "HD\r\n");
    assert_eq!(
        one(&mut c, "ma s\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    );
    assert_eq!(one(&mut c, "me missing\r\n"), "EN\r\n");
    let me = one(&mut c, "me n\r\n");
    assert!(
        me.starts_with("ME n exp=") && me.contains(" cas=99 fetch=no cls=1 size=2\r\n"),
        "{me}"
    );
}

#[test]
fn quiet_commands_pipeline_until_mn() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    // q hides HD (and EN for mg); failures still answer; mn ends the batch.
    let batch = "ms a 1 q\r\n1\r\nms b 1 q\r\n2\r\nms a 1 q ME\r\n3\r\nmg a v q\r\nmg zz v q k\r\n\
                 md b q\r\nmd b q\r\nma c q N0 J4\r\nma c q\r\nmg b q\r\nmn\r\n";
    assert_eq!(
        ask(&mut c, batch, "MN\r\n"),
        "NS\r\nVA 1\r\n1\r\nNF\r\nHD\r\nMN\r\n"
    );
    assert_eq!(ask(&mut c, "mg c v\r\n", "5\r\n"), "VA 1\r\n5\r\n");
}

#[test]
fn bad_input_gets_memcached_errors_and_the_connection_survives() {
    let server = Server::start(&["--max-item-size", "1024"]);
    let mut c = server.connect();
    for (req, want) in [
        ("mg\r\n", "ERROR"),
        ("mq foo\r\n", "ERROR"),
        ("mg foo zz\r\n", "CLIENT_ERROR invalid flag"),
        ("mg foo v v\r\n", "CLIENT_ERROR duplicate flag"),
        ("mg foo b\r\n", "CLIENT_ERROR error decoding key"),
        ("mg Zm9v= b\r\n", "CLIENT_ERROR error decoding key"),
        ("md !!!! b\r\n", "CLIENT_ERROR invalid or duplicate flag"),
        (
            "mg foo Tabc\r\n",
            "CLIENT_ERROR bad token in command line format",
        ),
        (
            "mg foo O123456789012345678901234567890123\r\n",
            "CLIENT_ERROR opaque token too long",
        ),
        (
            "mg foo a b c d e f g h i j k l m n o p q r s\r\n",
            "CLIENT_ERROR options flags are too long",
        ),
        ("ma foo MX\r\n", "CLIENT_ERROR invalid mode for ma M token"),
        ("ma foo Dx\r\n", "CLIENT_ERROR invalid or duplicate flag"),
        ("ms foo\r\n", "CLIENT_ERROR bad command line format"),
        ("ms foo abc\r\n", "CLIENT_ERROR bad command line format"),
        // The data block of a refused ms is swallowed, not run as commands.
        (
            "ms foo 2 MZ\r\nmn\r\n",
            "CLIENT_ERROR invalid mode for ms M token",
        ),
        ("ms foo 2 zz\r\nmn\r\n", "CLIENT_ERROR invalid flag"),
        (
            "ms foo 2 F-1\r\nmn\r\n",
            "CLIENT_ERROR bad command line format",
        ),
    ] {
        assert_eq!(one(&mut c, req), format!("{want}\r\n"), "for {req:?}");
        assert_eq!(one(&mut c, "mn\r\n"), "MN\r\n", "after {req:?}");
    }
    // A bad chunk consumes exactly <datalen>+2 bytes, as memcached does:
    // the rest of the line is then an (empty) command of its own.
    assert_eq!(
        one(&mut c, "ms foo 2\r\nhiya\r\n"),
        "CLIENT_ERROR bad data chunk\r\n"
    );
    assert_eq!(one(&mut c, ""), "ERROR\r\n");
    assert_eq!(one(&mut c, "mn\r\n"), "MN\r\n");
    // Too large: refused, the block (arriving later) swallowed, old value dropped.
    assert_eq!(one(&mut c, "ms big 1\r\nx\r\n"), "HD\r\n");
    c.send(b"ms big 2000 T0\r\n");
    assert_eq!(
        one(&mut c, ""),
        "SERVER_ERROR object too large for cache\r\n"
    );
    c.send(&vec![b'z'; 2000]);
    assert_eq!(one(&mut c, "\r\nmg big v\r\n"), "EN\r\n");
    assert_eq!(one(&mut c, "ms ok 2\r\nhi\r\n"), "HD\r\n");
}

#[test]
fn item_state_survives_a_restart() {
    let mut server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(one(&mut c, "ms k 1\r\nv\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "mg k h\r\n"), "HD h0\r\n");
    assert_eq!(one(&mut c, "ms s 1\r\nv\r\n"), "HD\r\n");
    assert_eq!(one(&mut c, "md s I\r\n"), "HD\r\n");
    drop(c);
    server.restart();
    let mut c = server.connect();
    assert_eq!(one(&mut c, "mg k h\r\n"), "HD h1\r\n");
    assert_eq!(one(&mut c, "mg s\r\n"), "HD X W\r\n");
    assert_eq!(one(&mut c, "mg s\r\n"), "HD Z X\r\n");
}
