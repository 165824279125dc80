//! The memcached binary protocol against the real binary: every opcode the
//! issue lists, quiet variants pipelined up to a noop, CAS handling, and
//! malformed frames (truncated headers, lying body lengths) answered the
//! way memcached 1.6.18 answers them. Expected statuses and bodies were
//! compared packet by packet with a real memcached 1.6.18.

mod common;

use common::{Client, Server};

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCR: u8 = 0x05;
const DECR: u8 = 0x06;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const STAT: u8 = 0x10;
const SETQ: u8 = 0x11;
const ADDQ: u8 = 0x12;
const REPLACEQ: u8 = 0x13;
const DELETEQ: u8 = 0x14;
const INCRQ: u8 = 0x15;
const DECRQ: u8 = 0x16;
const QUITQ: u8 = 0x17;
const FLUSHQ: u8 = 0x18;
const APPENDQ: u8 = 0x19;
const PREPENDQ: u8 = 0x1a;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GATQ: u8 = 0x1e;
const GATK: u8 = 0x23;
const GATKQ: u8 = 0x24;

const OK: u16 = 0;
const ENOENT: u16 = 1;
const EEXISTS: u16 = 2;
const E2BIG: u16 = 3;
const EINVAL: u16 = 4;
const NOT_STORED: u16 = 5;
const DELTA_BADVAL: u16 = 6;
const UNKNOWN: u16 = 0x81;

/// One request packet; `bodylen` overrides the true body length (lies).
fn packet(
    op: u8,
    key: &[u8],
    extras: &[u8],
    value: &[u8],
    cas: u64,
    bodylen: Option<u32>,
) -> Vec<u8> {
    let body = bodylen.unwrap_or((extras.len() + key.len() + value.len()) as u32);
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&0xcafe_f00d_u32.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

fn req(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    packet(op, key, extras, value, 0, None)
}

fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn incr_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat()
}

#[derive(Debug, PartialEq, Eq)]
struct Resp {
    op: u8,
    status: u16,
    cas: u64,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn read(c: &mut Client) -> Resp {
    let h = c.read_exact(24);
    assert_eq!(h[0], 0x81, "response magic");
    assert_eq!(&h[12..16], &0xcafe_f00d_u32.to_be_bytes(), "opaque echoed");
    let keylen = u16::from_be_bytes([h[2], h[3]]) as usize;
    let extlen = h[4] as usize;
    let bodylen = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
    let body = c.read_exact(bodylen);
    Resp {
        op: h[1],
        status: u16::from_be_bytes([h[6], h[7]]),
        cas: u64::from_be_bytes(h[16..24].try_into().unwrap()),
        extras: body[..extlen].to_vec(),
        key: body[extlen..extlen + keylen].to_vec(),
        value: body[extlen + keylen..].to_vec(),
    }
}

fn call(c: &mut Client, packet: Vec<u8>) -> Resp {
    c.send(&packet);
    read(c)
}

/// (status, value) of one request.
fn sv(c: &mut Client, packet: Vec<u8>) -> (u16, Vec<u8>) {
    let r = call(c, packet);
    (r.status, r.value)
}

#[test]
fn storage_and_retrieval_opcodes() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let set = call(&mut c, req(SET, b"k", &set_extras(5, 0), b"hello"));
    assert_eq!((set.op, set.status), (SET, OK));
    assert_ne!(set.cas, 0, "set returns the new CAS");
    let get = call(&mut c, req(GET, b"k", &[], &[]));
    assert_eq!(
        get,
        Resp {
            op: GET,
            status: OK,
            cas: set.cas,
            extras: 5u32.to_be_bytes().to_vec(),
            key: vec![],
            value: b"hello".to_vec()
        }
    );
    let getk = call(&mut c, req(GETK, b"k", &[], &[]));
    assert_eq!((getk.key, getk.value), (b"k".to_vec(), b"hello".to_vec()));
    assert_eq!(
        sv(&mut c, req(GET, b"none", &[], &[])),
        (ENOENT, b"Not found".to_vec())
    );
    let missk = call(&mut c, req(GETK, b"none", &[], &[]));
    assert_eq!(
        (missk.status, missk.key, missk.value),
        (ENOENT, b"none".to_vec(), vec![])
    );
    assert_eq!(
        sv(&mut c, req(ADD, b"k", &set_extras(0, 0), b"x")),
        (EEXISTS, b"Data exists for key.".to_vec())
    );
    assert_eq!(sv(&mut c, req(ADD, b"a", &set_extras(0, 0), b"x")).0, OK);
    assert_eq!(
        sv(&mut c, req(REPLACE, b"none", &set_extras(0, 0), b"x")),
        (ENOENT, b"Not found".to_vec())
    );
    assert_eq!(
        sv(&mut c, req(REPLACE, b"a", &set_extras(0, 0), b"y")).0,
        OK
    );
    assert_eq!(sv(&mut c, req(APPEND, b"k", &[], b"!!")).0, OK);
    assert_eq!(sv(&mut c, req(PREPEND, b"k", &[], b"<<")).0, OK);
    assert_eq!(
        sv(&mut c, req(APPEND, b"none", &[], b"x")),
        (NOT_STORED, b"Not stored.".to_vec())
    );
    let get = call(&mut c, req(GET, b"k", &[], &[]));
    assert_eq!(
        (get.extras, get.value),
        (5u32.to_be_bytes().to_vec(), b"<<hello!!".to_vec())
    );
    // CAS: a stale one is EEXISTS, the current one stores.
    assert_eq!(
        sv(
            &mut c,
            packet(SET, b"k", &set_extras(0, 0), b"v", get.cas + 1000, None)
        )
        .0,
        EEXISTS
    );
    assert_eq!(
        sv(
            &mut c,
            packet(APPEND, b"k", &[], b"v", get.cas + 1000, None)
        )
        .0,
        EEXISTS
    );
    assert_eq!(
        sv(
            &mut c,
            packet(SET, b"k", &set_extras(0, 0), b"v", get.cas, None)
        )
        .0,
        OK
    );
    assert_eq!(
        sv(
            &mut c,
            packet(SET, b"none", &set_extras(0, 0), b"v", 7, None)
        )
        .0,
        ENOENT
    );
}

#[test]
fn delete_arith_touch_and_admin_opcodes() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let set = call(&mut c, req(SET, b"k", &set_extras(0, 0), b"v"));
    assert_eq!(
        sv(&mut c, packet(DELETE, b"k", &[], &[], set.cas + 1, None)).0,
        EEXISTS
    );
    assert_eq!(
        sv(&mut c, packet(DELETE, b"k", &[], &[], set.cas, None)).0,
        OK
    );
    assert_eq!(
        sv(&mut c, req(DELETE, b"k", &[], &[])),
        (ENOENT, b"Not found".to_vec())
    );
    // incr creates with the initial value unless the exptime is 0xffffffff.
    assert_eq!(
        sv(&mut c, req(INCR, b"n", &incr_extras(1, 10, 0), &[])),
        (OK, 10u64.to_be_bytes().to_vec())
    );
    assert_eq!(
        sv(&mut c, req(INCR, b"n", &incr_extras(5, 10, 0), &[])),
        (OK, 15u64.to_be_bytes().to_vec())
    );
    let dec = call(&mut c, req(DECR, b"n", &incr_extras(100, 0, 0), &[]));
    assert_eq!((dec.status, dec.value), (OK, 0u64.to_be_bytes().to_vec()));
    assert_eq!(
        sv(
            &mut c,
            packet(INCR, b"n", &incr_extras(1, 0, 0), &[], dec.cas + 9, None)
        )
        .0,
        EEXISTS
    );
    assert_eq!(
        sv(&mut c, req(INCR, b"m", &incr_extras(1, 0, u32::MAX), &[])).0,
        ENOENT
    );
    call(&mut c, req(SET, b"s", &set_extras(3, 0), b"abc"));
    assert_eq!(
        sv(&mut c, req(INCR, b"s", &incr_extras(1, 0, 0), &[])),
        (
            DELTA_BADVAL,
            b"Non-numeric server-side value for incr or decr".to_vec()
        )
    );
    // touch answers the flags only; gat the value; gatk the key too.
    let ttl = 100u32.to_be_bytes();
    let touch = call(&mut c, req(TOUCH, b"s", &ttl, &[]));
    assert_eq!(
        (touch.status, touch.extras, touch.value),
        (OK, 3u32.to_be_bytes().to_vec(), vec![])
    );
    assert_eq!(sv(&mut c, req(GAT, b"s", &ttl, &[])), (OK, b"abc".to_vec()));
    let gatk = call(&mut c, req(GATK, b"s", &ttl, &[]));
    assert_eq!((gatk.key, gatk.value), (b"s".to_vec(), b"abc".to_vec()));
    assert_eq!(sv(&mut c, req(TOUCH, b"none", &ttl, &[])).0, ENOENT);
    assert_eq!(
        sv(&mut c, req(GAT, b"s", &u32::MAX.to_be_bytes()[..], &[])).0,
        OK
    );
    assert_eq!(
        sv(&mut c, req(VERSION, &[], &[], &[])),
        (OK, b"1.6.18".to_vec())
    );
    assert_eq!(sv(&mut c, req(NOOP, &[], &[], &[])), (OK, vec![]));
    // stat: one packet per statistic, then an empty terminator.
    c.send(&req(STAT, &[], &[], &[]));
    let mut names = Vec::new();
    loop {
        let r = read(&mut c);
        if r.key.is_empty() {
            break;
        }
        names.push(String::from_utf8(r.key).unwrap());
    }
    assert!(
        names.iter().any(|n| n == "curr_items") && names.iter().any(|n| n == "cmd_get"),
        "{names:?}"
    );
    assert_eq!(sv(&mut c, req(STAT, b"bogus", &[], &[])).0, ENOENT);
    assert_eq!(sv(&mut c, req(FLUSH, &[], &[], &[])).0, OK);
    assert_eq!(sv(&mut c, req(GET, b"n", &[], &[])).0, ENOENT);
    let quit = call(&mut c, req(QUIT, &[], &[], &[]));
    assert_eq!((quit.op, quit.status), (QUIT, OK));
    assert!(c.is_closed());
    let mut q = server.connect();
    q.send(&req(QUITQ, &[], &[], &[]));
    assert!(q.is_closed(), "quitq closes without a reply");
}

#[test]
fn quiet_variants_pipeline_up_to_a_noop() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let ttl = 100u32.to_be_bytes();
    let batch = [
        req(SETQ, b"a", &set_extras(1, 0), b"1"),
        req(ADDQ, b"b", &set_extras(0, 0), b"2"),
        req(ADDQ, b"a", &set_extras(0, 0), b"dup"), // fails: answered
        req(REPLACEQ, b"b", &set_extras(0, 0), b"3"),
        req(APPENDQ, b"b", &[], b"4"),
        req(PREPENDQ, b"b", &[], b"2"),
        req(INCRQ, b"n", &incr_extras(1, 7, 0), &[]),
        req(DECRQ, b"n", &incr_extras(2, 0, 0), &[]),
        req(GETQ, b"missing", &[], &[]), // miss: silent
        req(GETKQ, b"missing", &[], &[]),
        req(GATQ, b"missing", &ttl, &[]),
        req(GATKQ, b"a", &ttl, &[]), // hit: answered
        req(GETQ, b"b", &[], &[]),
        req(GETKQ, b"n", &[], &[]),
        req(DELETEQ, b"a", &[], &[]),
        req(DELETEQ, b"a", &[], &[]), // miss: answered
        req(NOOP, &[], &[], &[]),
    ]
    .concat();
    c.send(&batch);
    let mut got = Vec::new();
    loop {
        let r = read(&mut c);
        let done = r.op == NOOP;
        got.push((r.op, r.status, r.key, r.value));
        if done {
            break;
        }
    }
    assert_eq!(
        got,
        vec![
            (ADDQ, EEXISTS, vec![], b"Data exists for key.".to_vec()),
            (GATKQ, OK, b"a".to_vec(), b"1".to_vec()),
            (GETQ, OK, vec![], b"234".to_vec()),
            (GETKQ, OK, b"n".to_vec(), b"5".to_vec()),
            (DELETEQ, ENOENT, vec![], b"Not found".to_vec()),
            (NOOP, OK, vec![], vec![]),
        ]
    );
    c.send(&req(FLUSHQ, &[], &[], &[]));
    assert_eq!(
        sv(&mut c, req(GET, b"b", &[], &[])).0,
        ENOENT,
        "flushq: silent, but done"
    );
}

#[test]
fn truncated_headers_wait_for_the_rest() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let p = req(SET, b"k", &set_extras(0, 0), b"value");
    for chunk in [&p[..1], &p[1..10], &p[10..24], &p[24..30], &p[30..]] {
        c.send(chunk);
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    assert_eq!(read(&mut c).status, OK);
    assert_eq!(
        sv(&mut c, req(GET, b"k", &[], &[])),
        (OK, b"value".to_vec())
    );
}

#[test]
fn lying_lengths_get_memcached_answers() {
    let server = Server::start(&["--max-item-size", "1024"]);
    // A value over the item size: E2BIG, its bytes skipped as they arrive,
    // the old value dropped (set), and the connection keeps going.
    let mut c = server.connect();
    call(&mut c, req(SET, b"big", &set_extras(0, 0), b"old"));
    // Only the header, extras and key: the refusal must not wait for the body.
    let r = call(
        &mut c,
        packet(SET, b"big", &set_extras(0, 0), &[], 0, Some(8 + 3 + 5000)),
    );
    assert_eq!((r.status, r.value), (E2BIG, b"Too large.".to_vec()));
    c.send(&[b'x'; 5000]);
    assert_eq!(sv(&mut c, req(GET, b"big", &[], &[])).0, ENOENT);
    // An unknown opcode: answered, its body skipped, connection kept.
    c.send(&req(0x55, &[], &[], b"junk"));
    assert_eq!(read(&mut c).status, UNKNOWN);
    assert_eq!(sv(&mut c, req(NOOP, &[], &[], &[])).0, OK);
    // A get whose body is longer than its key: EINVAL, then closed.
    c.send(&packet(GET, b"k", &[], &[], 0, Some(4_000_000_000)));
    assert_eq!(
        read(&mut c),
        Resp {
            op: GET,
            status: EINVAL,
            cas: 0,
            extras: vec![],
            key: vec![],
            value: b"Invalid arguments".to_vec()
        }
    );
    assert!(c.is_closed());
    // A key longer than the whole body: UNKNOWN_COMMAND, then closed.
    let mut c = server.connect();
    c.send(&packet(GET, b"key", &[], &[], 0, Some(2)));
    assert_eq!(read(&mut c).status, UNKNOWN);
    assert!(c.is_closed());
    // Keys over 250 bytes: EINVAL, then closed.
    let mut c = server.connect();
    c.send(&req(GET, &[b'k'; 251], &[], &[]));
    assert_eq!(read(&mut c).status, EINVAL);
    assert!(c.is_closed());
    // A bad magic byte after the first request: closed without a reply.
    let mut c = server.connect();
    assert_eq!(sv(&mut c, req(NOOP, &[], &[], &[])).0, OK);
    // (memcached reads a whole 24-byte header before it looks at the magic)
    c.send(b"get a_key_of_some_length\r\n");
    assert!(c.is_closed());
    // Text clients are unaffected on the same port.
    let mut t = server.connect();
    assert_eq!(t.line(b"set t 0 0 1\r\nx\r\n"), "STORED\r\n");
}
