//! The memcached text protocol against the real binary on a loopback port:
//! every classic command, bad input, pipelining, expiry, restart
//! persistence and concurrency. Replies are compared byte for byte with
//! what memcached 1.6 sends (tests/clients/test_side_by_side.py checks the
//! same against a real memcached).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, Server};

const TOO_MANY: &str = "ERROR Too many open connections\r\n";
const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";

fn stats(c: &mut Client, args: &str) -> HashMap<String, String> {
    let raw = c.until_end(format!("stats{args}\r\n").as_bytes());
    raw.lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("STAT name value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn stat(c: &mut Client, name: &str) -> u64 {
    stats(c, "")[name].parse().expect("numeric stat")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The CAS value of `key` from a `gets`.
fn cas_of(c: &mut Client, key: &str) -> u64 {
    let reply = c.until_end(format!("gets {key}\r\n").as_bytes());
    let header = reply.lines().next().unwrap();
    header
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no cas in {reply:?}"))
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn storage_commands_with_and_without_noreply() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.line(b"set a 5 0 3\r\nabc\r\n"), "STORED\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "VALUE a 5 3\r\nabc\r\nEND\r\n");
    assert_eq!(c.line(b"set a 4294967295 0 0\r\n\r\n"), "STORED\r\n");
    assert_eq!(
        c.until_end(b"get a\r\n"),
        "VALUE a 4294967295 0\r\n\r\nEND\r\n"
    );

    assert_eq!(c.line(b"add a 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line(b"add b 1 0 1\r\nb\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"replace nope 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line(b"replace b 2 0 2\r\nbb\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"append nope 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line(b"prepend nope 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    // append/prepend keep the item's flags.
    assert_eq!(c.line(b"append b 9 0 2\r\n>>\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"prepend b 9 0 2\r\n<<\r\n"), "STORED\r\n");
    assert_eq!(
        c.until_end(b"get b\r\n"),
        "VALUE b 2 6\r\n<<bb>>\r\nEND\r\n"
    );

    let cas = cas_of(&mut c, "b");
    assert_eq!(
        c.line(format!("cas b 3 0 1 {}\r\nX\r\n", cas + 1).as_bytes()),
        "EXISTS\r\n"
    );
    assert_eq!(
        c.line(format!("cas b 3 0 1 {cas}\r\nX\r\n").as_bytes()),
        "STORED\r\n"
    );
    assert_eq!(
        c.line(format!("cas b 3 0 1 {cas}\r\nY\r\n").as_bytes()),
        "EXISTS\r\n"
    );
    assert_eq!(c.line(b"cas nope 0 0 1 1\r\nx\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.until_end(b"get b\r\n"), "VALUE b 3 1\r\nX\r\nEND\r\n");

    // noreply: nothing comes back, the effect is there. The get's reply must
    // be the first bytes on the wire.
    let cas = cas_of(&mut c, "b");
    c.send(
        b"set n1 1 0 1 noreply\r\n1\r\nadd n1 0 0 1 noreply\r\nx\r\nadd n2 2 0 1 noreply\r\n2\r\n",
    );
    c.send(b"replace n2 3 0 2 noreply\r\n22\r\nappend n2 0 0 1 noreply\r\n+\r\nprepend n2 0 0 1 noreply\r\n-\r\n");
    c.send(
        format!("cas b 7 0 2 {cas} noreply\r\nC1\r\ncas b 7 0 2 {cas} noreply\r\nC2\r\n")
            .as_bytes(),
    );
    c.send(b"replace nope 0 0 1 noreply\r\nx\r\ncas nope 0 0 1 1 noreply\r\nx\r\n");
    assert_eq!(
        c.until_end(b"get n1 n2 b nope\r\n"),
        "VALUE n1 1 1\r\n1\r\nVALUE n2 3 4\r\n-22+\r\nVALUE b 7 2\r\nC1\r\nEND\r\n"
    );
}

#[test]
fn get_and_gets_many_keys() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    for i in 0..20 {
        assert_eq!(
            c.line(format!("set k{i} {i} 0 {}\r\nv{i}\r\n", format!("v{i}").len()).as_bytes()),
            "STORED\r\n"
        );
    }
    let keys: Vec<String> = (0..25).map(|i| format!("k{i}")).collect();
    let reply = c.until_end(format!("get {}\r\n", keys.join(" ")).as_bytes());
    let want: String = (0..20)
        .map(|i| format!("VALUE k{i} {i} {}\r\nv{i}\r\n", format!("v{i}").len()))
        .collect();
    assert_eq!(reply, want + "END\r\n");
    // Repeated keys are answered each time, in request order.
    assert_eq!(
        c.until_end(b"get k1 k0 k1\r\n"),
        "VALUE k1 1 2\r\nv1\r\nVALUE k0 0 2\r\nv0\r\nVALUE k1 1 2\r\nv1\r\nEND\r\n"
    );
    assert_eq!(c.until_end(b"get missing\r\n"), "END\r\n");

    // gets: a CAS per item, all distinct and in write order.
    let reply = c.until_end(format!("gets {}\r\n", keys.join(" ")).as_bytes());
    let cases: Vec<u64> = reply
        .lines()
        .filter(|l| l.starts_with("VALUE "))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(cases.len(), 20);
    assert!(cases.windows(2).all(|w| w[0] < w[1]), "{cases:?}");
    assert_eq!(c.line(b"get\r\n"), "ERROR\r\n");
}

#[test]
fn gat_and_gats_fetch_and_touch() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.line(b"set a 3 2 1\r\nx\r\n"), "STORED\r\n");
    let cas = cas_of(&mut c, "a");
    assert_eq!(
        c.until_end(b"gat 0 a missing\r\n"),
        "VALUE a 3 1\r\nx\r\nEND\r\n"
    );
    assert_eq!(
        c.until_end(b"gats 0 a\r\n"),
        format!("VALUE a 3 1 {cas}\r\nx\r\nEND\r\n")
    );
    assert_eq!(c.until_end(b"gat 0 missing\r\n"), "END\r\n");
    assert_eq!(
        c.line(b"gat abc a\r\n"),
        "CLIENT_ERROR invalid exptime argument\r\n"
    );
    // gat 0 removed the 2 s ttl: still there after it would have expired.
    thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.until_end(b"get a\r\n"), "VALUE a 3 1\r\nx\r\nEND\r\n");
    // A negative exptime returns the item one last time.
    assert_eq!(c.until_end(b"gat -1 a\r\n"), "VALUE a 3 1\r\nx\r\nEND\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "END\r\n");
    let s = stats(&mut c, "");
    assert_eq!(
        (
            s["touch_hits"].as_str(),
            s["touch_misses"].as_str(),
            s["cmd_touch"].as_str()
        ),
        ("3", "2", "5")
    );
}

#[test]
fn delete_and_touch() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.line(b"set a 0 0 1\r\nx\r\n");
    assert_eq!(c.line(b"delete a\r\n"), "DELETED\r\n");
    assert_eq!(c.line(b"delete a\r\n"), "NOT_FOUND\r\n");
    c.line(b"set a 0 0 1\r\nx\r\n");
    assert_eq!(c.line(b"delete a 0\r\n"), "DELETED\r\n");
    assert_eq!(
        c.line(b"delete a 10\r\n"),
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    );
    c.line(b"set a 0 0 1\r\nx\r\n");
    c.send(b"delete a noreply\r\ndelete a noreply\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "END\r\n");

    c.line(b"set t 0 2 1\r\nx\r\n");
    assert_eq!(c.line(b"touch t 100\r\n"), "TOUCHED\r\n");
    assert_eq!(c.line(b"touch missing 100\r\n"), "NOT_FOUND\r\n");
    assert_eq!(
        c.line(b"touch t abc\r\n"),
        "CLIENT_ERROR invalid exptime argument\r\n"
    );
    c.send(b"touch missing 1 noreply\r\n");
    thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        c.until_end(b"get t\r\n"),
        "VALUE t 0 1\r\nx\r\nEND\r\n",
        "touch extended the ttl"
    );
    c.send(b"touch t -1 noreply\r\n");
    assert_eq!(c.until_end(b"get t\r\n"), "END\r\n");
    let s = stats(&mut c, "");
    assert_eq!(
        (s["delete_hits"].as_str(), s["delete_misses"].as_str()),
        ("3", "2")
    );
    assert_eq!(
        (s["touch_hits"].as_str(), s["touch_misses"].as_str()),
        ("2", "2")
    );
}

#[test]
fn incr_and_decr() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.line(b"set n 5 0 2\r\n10\r\n");
    assert_eq!(c.line(b"incr n 5\r\n"), "15\r\n");
    assert_eq!(c.line(b"decr n 3\r\n"), "12\r\n");
    assert_eq!(
        c.until_end(b"get n\r\n"),
        "VALUE n 5 2\r\n12\r\nEND\r\n",
        "flags kept"
    );
    // decr floors at 0.
    assert_eq!(c.line(b"decr n 100\r\n"), "0\r\n");
    assert_eq!(c.line(b"decr n 1\r\n"), "0\r\n");
    // incr wraps at 2^64.
    c.line(b"set n 0 0 20\r\n18446744073709551615\r\n");
    assert_eq!(c.line(b"incr n 1\r\n"), "0\r\n");
    c.line(b"set n 0 0 20\r\n18446744073709551610\r\n");
    assert_eq!(c.line(b"incr n 10\r\n"), "4\r\n");
    assert_eq!(c.line(b"incr n 18446744073709551615\r\n"), "3\r\n");
    // Misses, non-numeric values and bad deltas.
    assert_eq!(c.line(b"incr missing 1\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.line(b"decr missing 1\r\n"), "NOT_FOUND\r\n");
    c.line(b"set t 0 0 4\r\ntext\r\n");
    let non_numeric = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    assert_eq!(c.line(b"incr t 1\r\n"), non_numeric);
    assert_eq!(c.line(b"decr t 1\r\n"), non_numeric);
    c.line(b"set t 0 0 21\r\n123456789012345678901\r\n");
    assert_eq!(c.line(b"incr t 1\r\n"), non_numeric, "more than 64 bits");
    let bad_delta = "CLIENT_ERROR invalid numeric delta argument\r\n";
    assert_eq!(c.line(b"incr n abc\r\n"), bad_delta);
    assert_eq!(c.line(b"incr n -1\r\n"), bad_delta);
    assert_eq!(c.line(b"decr n 18446744073709551616\r\n"), bad_delta);
    assert_eq!(c.line(b"incr n\r\n"), "ERROR\r\n");
    // noreply.
    c.line(b"set n 0 0 1\r\n7\r\n");
    c.send(b"incr n 10 noreply\r\ndecr n 2 noreply\r\nincr missing 1 noreply\r\n");
    assert_eq!(c.until_end(b"get n\r\n"), "VALUE n 0 2\r\n15\r\nEND\r\n");
    let s = stats(&mut c, "");
    assert_eq!(
        (s["incr_hits"].as_str(), s["incr_misses"].as_str()),
        ("5", "2")
    );
    assert_eq!(
        (s["decr_hits"].as_str(), s["decr_misses"].as_str()),
        ("4", "1")
    );
}

#[test]
fn flush_all_now_noreply_and_delayed() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.line(b"set a 0 0 1\r\nx\r\n");
    assert_eq!(c.line(b"flush_all\r\n"), "OK\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "END\r\n");
    c.line(b"set a 0 0 1\r\nx\r\n");
    c.send(b"flush_all noreply\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "END\r\n");
    c.line(b"set a 0 0 1\r\nx\r\n");
    assert_eq!(c.line(b"flush_all 0\r\n"), "OK\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "END\r\n");
    assert_eq!(
        c.line(b"flush_all abc\r\n"),
        "CLIENT_ERROR invalid exptime argument\r\n"
    );
    // memcached's deadline is one second before the delay: 1 is at once.
    c.line(b"set a 0 0 1\r\nx\r\n");
    assert_eq!(c.line(b"flush_all 1\r\n"), "OK\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "END\r\n");

    // A 3 s delay (memcached's deadline: 2 s, to the clock's second): still
    // there now, gone in time; a later flush_all replaces a pending one.
    c.line(b"set a 0 0 1\r\nx\r\n");
    let start = Instant::now();
    c.send(b"flush_all 3 noreply\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "VALUE a 0 1\r\nx\r\nEND\r\n");
    assert_eq!(c.line(b"flush_all 3\r\n"), "OK\r\n");
    assert_eq!(c.until_end(b"get a\r\n"), "VALUE a 0 1\r\nx\r\nEND\r\n");
    let gone = eventually(Duration::from_secs(5), || {
        c.until_end(b"get a\r\n") == "END\r\n"
    });
    let took = start.elapsed();
    assert!(
        gone && took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "flushed after {took:?}"
    );
    // Items stored after the deadline survive it.
    c.line(b"set b 0 0 1\r\ny\r\n");
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.until_end(b"get b\r\n"), "VALUE b 0 1\r\ny\r\nEND\r\n");
    assert_eq!(stat(&mut c, "cmd_flush"), 6);
}

#[test]
fn version_verbosity_quit() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.line(b"version\r\n"), "VERSION 1.6.18\r\n");
    assert_eq!(c.line(b"verbosity 1\r\n"), "OK\r\n");
    c.send(b"verbosity 0 noreply\r\n");
    assert_eq!(c.line(b"verbosity\r\n"), "ERROR\r\n");
    assert_eq!(c.line(b"verbosity x\r\n"), BAD_FORMAT);
    c.send(b"quit\r\n");
    assert!(c.is_closed(), "quit closes the connection");
    // Even with commands pipelined after it.
    let mut c = server.connect();
    c.send(b"quit\r\nversion\r\n");
    assert!(c.is_closed());
    assert_eq!(server.connect().line(b"version\r\n"), "VERSION 1.6.18\r\n");
}

#[test]
fn stats_reports_every_field_of_the_issue() {
    let server = Server::start(&[
        "--max-item-size",
        "4096",
        "--max-connections",
        "77",
        "--threads",
        "2",
    ]);
    let mut c = server.connect();
    c.line(b"set a 0 0 1\r\nx\r\n");
    c.until_end(b"get a b\r\n");
    let s = stats(&mut c, "");
    for field in
        "pid uptime time version pointer_size curr_connections total_connections cmd_get cmd_set \
         cmd_flush cmd_touch get_hits get_misses get_expired delete_hits delete_misses incr_hits \
         incr_misses decr_hits decr_misses cas_hits cas_misses cas_badval touch_hits touch_misses \
         curr_items total_items bytes limit_maxbytes threads rejected_connections"
            .split_whitespace()
    {
        assert!(s.contains_key(field), "stats lacks {field}: {s:?}");
    }
    assert_eq!(s["pid"], server.child.as_ref().unwrap().id().to_string());
    assert_eq!(s["version"], "1.6.18");
    assert_eq!(s["pointer_size"], "64");
    assert_eq!(s["threads"], "2");
    assert_eq!(
        (
            s["cmd_get"].as_str(),
            s["get_hits"].as_str(),
            s["get_misses"].as_str()
        ),
        ("2", "1", "1")
    );
    assert_eq!(
        (
            s["cmd_set"].as_str(),
            s["curr_items"].as_str(),
            s["total_items"].as_str()
        ),
        ("1", "1", "1")
    );
    assert_eq!(s["curr_connections"], "1");
    assert!(s["bytes"].parse::<u64>().unwrap() > 0);
    let time: u64 = s["time"].parse().unwrap();
    assert!(time.abs_diff(unix_now()) <= 2);

    let settings = stats(&mut c, " settings");
    assert_eq!(settings["maxconns"], "77");
    assert_eq!(settings["item_size_max"], "4096");
    assert_eq!(settings["tcpport"], server.addr.port().to_string());
    assert_eq!(settings["num_threads"], "2");
    assert_eq!(settings["shutdown_command"], "no");
    assert_eq!(c.line(b"stats nonsense\r\n"), "ERROR\r\n");
    // Like memcached, only the first argument picks the report.
    assert_eq!(stats(&mut c, " settings please")["maxconns"], "77");
    assert_eq!(c.line(b"stats reset\r\n"), "RESET\r\n");
    assert_eq!(stat(&mut c, "cmd_get"), 0);
}

#[test]
fn shutdown_only_when_enabled() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    assert_eq!(c.line(b"shutdown\r\n"), "ERROR: shutdown not enabled\r\n");
    assert_eq!(c.line(b"version\r\n"), "VERSION 1.6.18\r\n");

    let mut server = Server::start(&["--enable-shutdown"]);
    let mut c = server.connect();
    c.line(b"set kept 0 0 1\r\nx\r\n");
    assert_eq!(
        c.line(b"shutdown now\r\n"),
        "CLIENT_ERROR invalid shutdown mode\r\n"
    );
    c.send(b"shutdown graceful\r\n");
    assert!(c.is_closed());
    let mut child = server.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server still running after shutdown"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    server.restart();
    assert_eq!(
        server.connect().until_end(b"get kept\r\n"),
        "VALUE kept 0 1\r\nx\r\nEND\r\n"
    );
}

#[test]
fn bad_keys_and_bad_numbers() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let long = "k".repeat(251);
    let ok = "k".repeat(250);
    // The refused line's data block is then read as a command: ERROR.
    assert_eq!(
        c.line(format!("set {long} 0 0 1\r\n").as_bytes()),
        BAD_FORMAT
    );
    assert_eq!(c.line(b"x\r\n"), "ERROR\r\n");
    assert_eq!(c.line(format!("get {long}\r\n").as_bytes()), BAD_FORMAT);
    assert_eq!(c.line(format!("get a {long}\r\n").as_bytes()), BAD_FORMAT);
    assert_eq!(c.line(format!("delete {long}\r\n").as_bytes()), BAD_FORMAT);
    assert_eq!(c.line(format!("incr {long} 1\r\n").as_bytes()), BAD_FORMAT);
    assert_eq!(c.line(format!("touch {long} 1\r\n").as_bytes()), BAD_FORMAT);
    assert_eq!(
        c.line(format!("set {ok} 0 0 1\r\nx\r\n").as_bytes()),
        "STORED\r\n"
    );
    assert_eq!(
        c.until_end(format!("get {ok}\r\n").as_bytes()),
        format!("VALUE {ok} 0 1\r\nx\r\nEND\r\n")
    );
    // Control characters in keys (a deliberate difference, see docs/protocol.md).
    assert_eq!(c.line(b"set a\x01b 0 0 1\r\n"), BAD_FORMAT);
    assert_eq!(c.line(b"x\r\n"), "ERROR\r\n");
    assert_eq!(c.line(b"get a\x7fb\r\n"), BAD_FORMAT);
    // Bad numbers.
    for line in [
        "set k abc 0 1",
        "set k 0 abc 1",
        "set k 0 0 abc",
        "set k 0 0 -1",
        "set k -1 0 1",
        "set k 4294967296 0 1",
    ] {
        assert_eq!(
            c.line(format!("{line}\r\n").as_bytes()),
            BAD_FORMAT,
            "{line}"
        );
    }
    assert_eq!(c.line(b"cas k 0 0 1 abc\r\n"), BAD_FORMAT);
    // Wrong arity and unknown commands.
    for line in [
        "set k 0 0",
        "cas k 0 0 1",
        "bogus",
        "GET k",
        "",
        "flush_all 1 2 3",
    ] {
        assert_eq!(
            c.line(format!("{line}\r\n").as_bytes()),
            "ERROR\r\n",
            "{line:?}"
        );
    }
    // A bad data chunk, with and without noreply.
    assert_eq!(
        c.line(b"set bc 0 0 3\r\nabcde\r\n"),
        "CLIENT_ERROR bad data chunk\r\n"
    );
    assert_eq!(
        c.line(b""),
        "ERROR\r\n",
        "the rest of the line is read as a command"
    );
    c.send(b"set bc 0 0 3 noreply\r\nabcd\r\n");
    assert_eq!(c.line(b""), "ERROR\r\n");
    assert_eq!(c.until_end(b"get bc\r\n"), "END\r\n");
    // The connection is still fine.
    assert_eq!(c.line(b"version\r\n"), "VERSION 1.6.18\r\n");
}

#[test]
fn oversized_values_are_swallowed_and_drop_the_old_value() {
    let server = Server::start(&["--max-item-size", "1024"]);
    let mut c = server.connect();
    let too_large = "SERVER_ERROR object too large for cache\r\n";
    assert_eq!(
        c.line(format!("set max 0 0 1024\r\n{}\r\n", "m".repeat(1024)).as_bytes()),
        "STORED\r\n"
    );
    c.line(b"set k 0 0 3\r\nold\r\n");
    // The data block is full of commands: none of them may run.
    let block = "set a 0 0 1\r\nX\r\n".repeat(100);
    assert_eq!(
        c.line(format!("set k 0 0 {}\r\n{block}\r\n", block.len()).as_bytes()),
        too_large
    );
    assert_eq!(
        c.until_end(b"get k a\r\n"),
        "END\r\n",
        "old value deleted, block not parsed"
    );
    // Split across writes, with noreply.
    c.line(b"set k 0 0 3\r\nold\r\n");
    c.send(b"set k 0 0 1025 noreply\r\n");
    c.send(&block.as_bytes()[..700]);
    thread::sleep(Duration::from_millis(50));
    c.send(format!("{}\r\n", &block[..325]).as_bytes());
    assert_eq!(c.until_end(b"get k a\r\n"), "END\r\n");
    // add/replace/append refuse the same way.
    c.line(b"set k 0 0 3\r\nold\r\n");
    assert_eq!(
        c.line(format!("add k 0 0 2000\r\n{}\r\n", "y".repeat(2000)).as_bytes()),
        too_large
    );
    assert_eq!(
        c.line(format!("append k 0 0 2000\r\n{}\r\n", "y".repeat(2000)).as_bytes()),
        too_large
    );
    // append past the limit.
    assert_eq!(
        c.line(b"append max 0 0 1\r\nx\r\n"),
        "SERVER_ERROR out of memory storing object\r\n"
    );
    assert_eq!(c.line(b"version\r\n"), "VERSION 1.6.18\r\n");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_declared_gigabyte_does_not_grow_memory() {
    let server = Server::start(&["--max-item-size", "1024"]);
    let pid = server.child.as_ref().unwrap().id();
    let mut c = server.connect();
    c.line(b"set warm 0 0 1\r\nx\r\n");
    let before = rss_kib(pid);
    assert_eq!(
        c.line(b"set huge 0 0 1000000000\r\n"),
        "SERVER_ERROR object too large for cache\r\n"
    );
    // Stream 64 MiB of the promised gigabyte.
    let chunk = vec![b'z'; 1 << 20];
    for _ in 0..64 {
        c.stream.write_all(&chunk).unwrap();
    }
    let mut other = server.connect();
    assert_eq!(other.line(b"version\r\n"), "VERSION 1.6.18\r\n");
    let after = rss_kib(pid);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Memory stays bounded when the client gives up halfway, too.
    drop(c);
    assert_eq!(
        other.until_end(b"get huge warm\r\n"),
        "VALUE warm 0 1\r\nx\r\nEND\r\n"
    );
}

#[test]
fn overlong_lines_close_only_their_connection() {
    let server = Server::start(&[]);
    let mut bystander = server.connect();
    bystander.line(b"set a 0 0 1\r\nx\r\n");
    let mut c = server.connect();
    c.send(&[b'x'; 3000]);
    assert!(c.is_closed(), "a 3000-byte line without newline closes");
    let mut c = server.connect();
    c.send(format!("set k 0 0 1 {}", " ".repeat(3000)).as_bytes());
    assert!(c.is_closed(), "even a storage command");
    assert_eq!(
        bystander.until_end(b"get a\r\n"),
        "VALUE a 0 1\r\nx\r\nEND\r\n"
    );

    // A long get key list is fine: 400 keys, about 3.6 KB.
    let keys: Vec<String> = (0..400).map(|i| format!("key{i:05}")).collect();
    for k in keys.iter().step_by(100) {
        bystander.line(format!("set {k} 0 0 2\r\nhi\r\n").as_bytes());
    }
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > 2048);
    let want: String = keys
        .iter()
        .step_by(100)
        .map(|k| format!("VALUE {k} 0 2\r\nhi\r\n"))
        .collect();
    let mut c = server.connect();
    // Sent in pieces so the server sees an incomplete line over 2048 bytes.
    c.send(&line.as_bytes()[..2500]);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        c.until_end(&line.as_bytes()[2500..]),
        want.clone() + "END\r\n"
    );
    assert_eq!(
        c.until_end(line.replacen("get", "gets", 1).as_bytes())
            .matches("VALUE")
            .count(),
        4
    );
}

#[test]
fn max_connections_refuses_the_next_one() {
    let server = Server::start(&["--max-connections", "3"]);
    let mut first = server.connect();
    // The harness's readiness probe may still count for a moment.
    assert!(eventually(Duration::from_secs(5), || stat(
        &mut first,
        "curr_connections"
    ) == 1));
    let mut open = vec![first, server.connect(), server.connect()];
    for c in &mut open {
        assert_eq!(c.line(b"version\r\n"), "VERSION 1.6.18\r\n");
    }
    let mut fourth = server.connect();
    let mut got = Vec::new();
    use std::io::Read;
    fourth.stream.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        TOO_MANY,
        "refused and closed"
    );
    assert_eq!(stat(&mut open[0], "rejected_connections"), 1);
    assert_eq!(stat(&mut open[0], "curr_connections"), 3);
    // Once one leaves, a new client gets in.
    drop(open.pop());
    assert!(eventually(Duration::from_secs(5), || stat(
        &mut open[0],
        "curr_connections"
    ) == 2));
    assert_eq!(server.connect().line(b"version\r\n"), "VERSION 1.6.18\r\n");
}

#[test]
fn pipelined_commands_answer_in_order() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let mut req = Vec::new();
    let mut want = String::new();
    for i in 0..200 {
        req.extend(format!("set p{i} {i} 0 {}\r\n{i}\r\n", i.to_string().len()).bytes());
        want += "STORED\r\n";
        req.extend(format!("get p{i} nope\r\nincr p{i} 1\r\n").bytes());
        want += &format!(
            "VALUE p{i} {i} {}\r\n{i}\r\nEND\r\n{}\r\n",
            i.to_string().len(),
            i + 1
        );
        req.extend(format!("delete p{i}\r\nbogus\r\ntouch p{i} 1\r\n").bytes());
        want += "DELETED\r\nERROR\r\nNOT_FOUND\r\n";
    }
    req.extend(b"version\r\n");
    want += "VERSION 1.6.18\r\n";
    c.send(&req);
    assert_eq!(String::from_utf8(c.read_exact(want.len())).unwrap(), want);
}

#[test]
fn commands_and_values_split_across_writes() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    // One byte per write.
    let req = b"set split 7 0 11\r\nhello world\r\nget split\r\nincr nope 1\r\n";
    for b in req {
        c.send(&[*b]);
        thread::sleep(Duration::from_millis(1));
    }
    let want = "STORED\r\nVALUE split 7 11\r\nhello world\r\nEND\r\nNOT_FOUND\r\n";
    assert_eq!(String::from_utf8(c.read_exact(want.len())).unwrap(), want);
    // A large value in uneven pieces, the terminator split too.
    let value: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    req.extend(&value);
    req.extend(b"\r\nget big\r\n");
    for piece in req.chunks(65_537) {
        c.send(piece);
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(c.line(b""), "STORED\r\n");
    let reply = c.read_until(b"END\r\n");
    assert_eq!(&reply[..22], b"VALUE big 0 300000\r\nab");
    assert_eq!(&reply[20..20 + value.len()], &value[..]);
    c.send(b"set s 0 0 2\r\nab\r");
    thread::sleep(Duration::from_millis(50));
    assert_eq!(c.line(b"\n"), "STORED\r\n");
}

#[test]
fn expiry_follows_memcached_rules() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let now = unix_now();
    // Negative: expired at once, though stored (memcached counts it as expired).
    c.send(b"set neg 0 -1 1\r\nx\r\nget neg\r\n");
    assert_eq!(c.until_end(b""), "STORED\r\nEND\r\n");
    assert_eq!(stat(&mut c, "get_expired"), 1);
    // Absolute unix times.
    c.line(format!("set past 0 {} 1\r\nx\r\n", now - 10).as_bytes());
    c.line(format!("set future 0 {} 1\r\nx\r\n", now + 3600).as_bytes());
    assert_eq!(
        c.until_end(b"get past future\r\n"),
        "VALUE future 0 1\r\nx\r\nEND\r\n"
    );
    // Relative: visible now, invisible after its 2 s (to the clock's second).
    let start = Instant::now();
    c.line(b"set rel 0 2 1\r\nx\r\n");
    c.line(b"add gone 0 -1 1\r\nx\r\n");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(c.until_end(b"get rel\r\n"), "VALUE rel 0 1\r\nx\r\nEND\r\n");
    assert!(eventually(Duration::from_secs(4), || c
        .until_end(b"get rel\r\n")
        == "END\r\n"));
    assert!(start.elapsed() < Duration::from_secs(3));
    // Expired items are gone for every command.
    assert_eq!(c.line(b"add rel 0 0 1\r\ny\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"replace gone 0 0 1\r\ny\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.line(b"incr gone 1\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.line(b"touch gone 0\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.line(b"delete gone\r\n"), "NOT_FOUND\r\n");
}

#[test]
fn the_sweeper_reclaims_expired_items_unasked() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let mut req = Vec::new();
    for i in 0..300 {
        req.extend(format!("set t{i} 0 2 1 noreply\r\nx\r\n").bytes());
    }
    c.send(&req);
    c.line(b"set keep 0 0 1\r\nx\r\n");
    assert_eq!(stat(&mut c, "curr_items"), 301);
    // Only `stats` from here on: nothing touches the expired keys.
    assert!(
        eventually(Duration::from_secs(6), || stat(&mut c, "curr_items") == 1),
        "curr_items stayed at {}",
        stat(&mut c, "curr_items")
    );
    assert_eq!(
        c.until_end(b"get keep\r\n"),
        "VALUE keep 0 1\r\nx\r\nEND\r\n"
    );
    assert_eq!(stat(&mut c, "reclaimed"), 300);
}

#[test]
fn restart_keeps_every_item_and_cas_keeps_growing() {
    let mut server = Server::start(&[]);
    let mut c = server.connect();
    let mut req = Vec::new();
    for i in 0..500 {
        let v = format!("value-{i}-{}", "v".repeat(i % 50));
        req.extend(format!("set r{i} {i} 0 {}\r\n{v}\r\n", v.len()).bytes());
    }
    c.send(&req);
    assert_eq!(c.read_exact(500 * 8), "STORED\r\n".repeat(500).as_bytes());
    c.line(b"set ttl 0 3600 1\r\nt\r\n");
    c.line(b"set n 0 0 1\r\n1\r\n");
    assert_eq!(c.line(b"incr n 41\r\n"), "42\r\n");
    let keys: Vec<String> = (0..500).map(|i| format!("r{i}")).collect();
    let before = c.until_end(format!("gets {} ttl n\r\n", keys.join(" ")).as_bytes());
    let max_cas = before
        .lines()
        .filter(|l| l.starts_with("VALUE "))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap();
    drop(c);
    let status = server.stop();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    server.restart();
    let mut c = server.connect();
    let after = c.until_end(format!("gets {} ttl n\r\n", keys.join(" ")).as_bytes());
    assert!(
        after == before,
        "after restart:\n{}\nbefore:\n{}",
        &after[..after.len().min(500)],
        &before[..before.len().min(500)]
    );
    assert_eq!(stat(&mut c, "curr_items"), 502);
    for _ in 0..3 {
        c.line(b"set fresh 0 0 1\r\nf\r\n");
        assert!(cas_of(&mut c, "fresh") > max_cas);
    }
    c.line(b"incr n 1\r\n");
    assert!(cas_of(&mut c, "n") > max_cas);
}

#[test]
fn fifty_connections_times_a_thousand_incr() {
    let server = Server::start(&[]);
    server.connect().line(b"set counter 0 0 1\r\n0\r\n");
    let addr = server.addr;
    let workers: Vec<_> = (0..50)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut seen = Vec::with_capacity(1000);
                // Pipelined in batches of 50 to keep the test quick.
                for _ in 0..20 {
                    c.send("incr counter 1\r\n".repeat(50).as_bytes());
                    for _ in 0..50 {
                        let line = c.line(b"");
                        seen.push(
                            line.trim_end()
                                .parse::<u64>()
                                .unwrap_or_else(|_| panic!("{line:?}")),
                        );
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = HashSet::new();
    for w in workers {
        for v in w.join().unwrap() {
            assert!(all.insert(v), "{v} returned twice: an update was lost");
        }
    }
    assert_eq!(all, (1..=50_000).collect::<HashSet<u64>>());
    assert_eq!(
        server.connect().until_end(b"get counter\r\n"),
        "VALUE counter 0 5\r\n50000\r\nEND\r\n"
    );
}

#[test]
fn concurrent_cas_has_exactly_one_winner() {
    let server = Server::start(&[]);
    let addr = server.addr;
    server.connect().line(b"set contested 0 0 1\r\n0\r\n");
    for round in 0..5 {
        let barrier = Arc::new(Barrier::new(20));
        let racers: Vec<_> = (0..20)
            .map(|i| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let cas = cas_of(&mut c, "contested");
                    barrier.wait(); // everyone holds the same CAS value
                    let v = format!("r{round}-{i}");
                    let reply = c
                        .line(format!("cas contested 0 0 {} {cas}\r\n{v}\r\n", v.len()).as_bytes());
                    (reply, v)
                })
            })
            .collect();
        let results: Vec<(String, String)> =
            racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<&String> = results
            .iter()
            .filter(|(r, _)| r == "STORED\r\n")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(
            results.iter().filter(|(r, _)| r == "EXISTS\r\n").count(),
            19
        );
        let got = server.connect().until_end(b"get contested\r\n");
        assert_eq!(
            got,
            format!(
                "VALUE contested 0 {}\r\n{}\r\nEND\r\n",
                winners[0].len(),
                winners[0]
            )
        );
    }
}

#[test]
fn concurrent_appends_are_all_present() {
    let server = Server::start(&[]);
    let addr = server.addr;
    server.connect().line(b"set log 0 0 0\r\n\r\n");
    let writers: Vec<_> = (0..20)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..50 {
                    let piece = format!("{t}.{i};");
                    let cmd = if i % 2 == 0 { "append" } else { "prepend" };
                    assert_eq!(
                        c.line(format!("{cmd} log 0 0 {}\r\n{piece}\r\n", piece.len()).as_bytes()),
                        "STORED\r\n"
                    );
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    let reply = server.connect().until_end(b"get log\r\n");
    let value = reply.lines().nth(1).unwrap();
    let pieces: Vec<&str> = value.split(';').filter(|p| !p.is_empty()).collect();
    assert_eq!(pieces.len(), 1000, "every append and prepend is there");
    let unique: HashSet<&str> = pieces.iter().copied().collect();
    let want: HashSet<String> = (0..20)
        .flat_map(|t| (0..50).map(move |i| format!("{t}.{i}")))
        .collect();
    assert_eq!(unique, want.iter().map(String::as_str).collect());
}
