//! SASL PLAIN over the binary protocol with `--auth-file`, through a raw
//! binary client. The refusals are compared byte for byte with a real
//! `memcached -S` run side by side (its cyrus-sasl PLAIN; this memcached
//! build has no password file for it to accept, so the successful login is
//! checked on memcached-lite alone). pymemcache speaks no binary protocol
//! and memccapable has no SASL option, so neither can drive this.

mod common;
mod reference;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Server;
use reference::Memcached;

const VERSION: u8 = 0x0b;
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const LIST_MECHS: u8 = 0x20;
const AUTH: u8 = 0x21;
const STEP: u8 = 0x22;

fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

fn sasl(opcode: u8, mech: &[u8], message: &[u8]) -> Vec<u8> {
    packet(opcode, &[], mech, message)
}

/// One reply: (opcode, status, body); `None` once the server closed.
type Reply = Option<(u8, u16, Vec<u8>)>;

/// The replies to `requests`, sent one at a time.
fn converse(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<Reply> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for req in requests {
        let _ = s.write_all(req);
        let mut head = [0u8; 24];
        if s.read_exact(&mut head).is_err() {
            out.push(None);
            break;
        }
        assert_eq!(head[0], 0x81, "response magic");
        assert_eq!(
            &head[12..16],
            &0x1234_5678u32.to_be_bytes(),
            "opaque echoed"
        );
        let mut body = vec![0; u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize];
        s.read_exact(&mut body).unwrap();
        out.push(Some((
            head[1],
            u16::from_be_bytes([head[6], head[7]]),
            body,
        )));
    }
    out
}

/// `memcached -S` with cyrus-sasl offering PLAIN only (its config file
/// lives as long as the server).
fn sasl_memcached() -> (Memcached, tempfile::TempDir) {
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("memcached.conf"), "mech_list: plain\n").unwrap();
    let server = Memcached::start_with_env(&["-S"], &[("SASL_CONF_PATH", conf.path())]);
    (server, conf)
}

fn auth_file(dir: &std::path::Path) -> String {
    let path = dir.join("auth");
    std::fs::write(&path, "alice:s3cret\n").unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn refusals_match_memcached_with_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Server::start(&["--auth-file", &auth_file(dir.path())]);
    let (theirs, _conf) = sasl_memcached();
    let failure = |op| Some((op, 0x20, b"Auth failure.".to_vec()));
    let conversations: Vec<(Vec<Vec<u8>>, Vec<Reply>)> = vec![
        (
            vec![
                packet(VERSION, &[], &[], &[]),
                sasl(LIST_MECHS, b"", b""),
                sasl(AUTH, b"PLAIN", b"\0alice\0wrong"),
                sasl(AUTH, b"CRAM-MD5", b"x"),
                sasl(AUTH, &[b'P'; 40], b"x"),
                sasl(STEP, b"PLAIN", b"\0alice\0wrong"),
                sasl(AUTH, b"PLAIN", b""),
                sasl(STEP, b"PLAIN", b"\0nobody\0s3cret"),
                packet(GET, &[], b"k", &[]),
                packet(VERSION, &[], &[], &[]),
            ],
            vec![
                Some((VERSION, 0, b"1.6.18".to_vec())),
                Some((LIST_MECHS, 0, b"PLAIN".to_vec())),
                failure(AUTH),
                failure(AUTH),
                Some((AUTH, 0x04, b"Invalid arguments".to_vec())),
                failure(STEP),
                Some((AUTH, 0x21, Vec::new())),
                failure(STEP),
                // Anything else before authenticating: refused, closed.
                failure(GET),
                None,
            ],
        ),
        (
            vec![
                packet(SET, &[0; 8], b"k", b"v"),
                packet(VERSION, &[], &[], &[]),
            ],
            vec![failure(SET), None],
        ),
    ];
    for (requests, want) in &conversations {
        let mut theirs_got = converse(theirs.addr, requests);
        let mut ours_got = converse(ours.addr, requests);
        // Versions differ; the shape of the reply does not.
        for got in [&mut theirs_got, &mut ours_got] {
            if let Some(Some((VERSION, 0, v))) = got.first_mut() {
                assert!(!v.is_empty());
                *v = b"1.6.18".to_vec();
            }
        }
        assert_eq!(&theirs_got, want, "memcached -S itself");
        assert_eq!(&ours_got, want, "memcached-lite");
    }
}

#[test]
fn plain_login_opens_the_binary_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Server::start(&["--auth-file", &auth_file(dir.path())]);
    let ok = |op| Some((op, 0, b"Authenticated".to_vec()));
    // One step, with the authzid equal to the user.
    let got = converse(
        ours.addr,
        &[
            sasl(AUTH, b"PLAIN", b"alice\0alice\0s3cret"),
            packet(SET, &[0; 8], b"k", b"v"),
            packet(GET, &[], b"k", &[]),
        ],
    );
    assert_eq!(got[0], ok(AUTH));
    assert_eq!(got[1].as_ref().map(|r| r.1), Some(0), "set after login");
    assert_eq!(
        got[2].as_ref().map(|r| (r.1, r.2.clone())),
        Some((0, b"\0\0\0\0v".to_vec()))
    );
    // Two steps (an empty AUTH, then STEP), as cyrus-sasl clients do.
    let got = converse(
        ours.addr,
        &[
            sasl(AUTH, b"PLAIN", b""),
            sasl(STEP, b"PLAIN", b"\0alice\0s3cret"),
            packet(GET, &[], b"k", &[]),
        ],
    );
    assert_eq!(got[0], Some((AUTH, 0x21, Vec::new())));
    assert_eq!(got[1], ok(STEP));
    assert_eq!(got[2].as_ref().map(|r| r.1), Some(0));
    // Logging in on binary does not open text connections; both logins and
    // the failures count in the shared stats.
    let failed = converse(ours.addr, &[sasl(AUTH, b"PLAIN", b"\0alice\0nope")]);
    assert_eq!(failed[0].as_ref().map(|r| r.1), Some(0x20));
    let mut text = ours.connect();
    assert_eq!(text.line(b"get k\r\n"), "CLIENT_ERROR unauthenticated\r\n");
    assert_eq!(text.line(b"set a 0 0 12\r\nalice s3cret\r\n"), "STORED\r\n");
    let stats = text.until_end(b"stats\r\n");
    assert!(stats.contains("STAT auth_cmds 4\r\n"), "{stats}");
    assert!(stats.contains("STAT auth_errors 1\r\n"), "{stats}");
}

#[test]
fn sasl_opcodes_without_auth_file_are_unknown_like_memcached() {
    let ours = Server::start(&[]);
    let theirs = Memcached::start(&[]);
    let requests = [sasl(LIST_MECHS, b"", b""), sasl(AUTH, b"PLAIN", b"\0a\0b")];
    let want = vec![
        Some((LIST_MECHS, 0x81, b"Unknown command".to_vec())),
        Some((AUTH, 0x81, b"Unknown command".to_vec())),
    ];
    assert_eq!(converse(theirs.addr, &requests), want, "memcached itself");
    assert_eq!(converse(ours.addr, &requests), want);
}
