//! `--unix-socket` / `--unix-mask` (memcached's `-s` / `-a`) with real
//! processes: the text and binary protocols over the socket, one
//! `--max-connections` count for TCP and unix, `--auth-file` (text and
//! SASL), a stale socket file replaced, a live one refused, the mode,
//! removal at shutdown, and `--listen none`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

const TOO_MANY: &str = "ERROR Too many open connections\r\n";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memcached-lite"))
}

/// A raw connection to the socket.
struct Unix(UnixStream);

impl Unix {
    fn connect(path: &Path) -> Unix {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Unix(s)
    }

    /// Sends `req` and reads until the reply ends with `end`.
    fn ask(&mut self, req: &[u8], end: &str) -> String {
        self.0.write_all(req).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.ends_with(end.as_bytes()) {
            let n = self.0.read(&mut chunk).unwrap();
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    /// Sends one binary request and reads one response: (status, value).
    fn binary(&mut self, req: &[u8]) -> (u16, Vec<u8>) {
        self.0.write_all(req).unwrap();
        let mut head = [0u8; 24];
        self.0.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0x81, "response magic");
        let status = u16::from_be_bytes([head[6], head[7]]);
        let body = u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize;
        let skip = head[4] as usize + u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut rest = vec![0u8; body];
        self.0.read_exact(&mut rest).unwrap();
        (status, rest[skip..].to_vec())
    }
}

/// A binary request (memcached's binary protocol header, then the body).
fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend((key.len() as u16).to_be_bytes());
    p.extend([extras.len() as u8, 0, 0, 0]);
    p.extend(((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend([0u8; 12]); // opaque, cas
    p.extend(extras);
    p.extend(key);
    p.extend(value);
    p
}

fn wait_for_socket(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(path).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited during start-up: {status}");
        }
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve` with the given flags on a fresh data dir, stderr captured.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    bin()
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--no-csv-mirror"])
        .args(args)
        .env("MEMCACHED_LITE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sock(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mc.sock")
}

/// A server on the unix socket `path` alone (no TCP, no HTTP), ready.
fn socket_only(dir: &std::path::Path, path: &std::path::Path) -> std::process::Child {
    let mut child = spawn(
        dir,
        &[
            "--listen",
            "none",
            "--no-http",
            "--unix-socket",
            path.to_str().unwrap(),
        ],
    );
    wait_for_socket(path, &mut child);
    child
}

#[test]
fn text_and_binary_commands_over_the_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    let server = Server::start(&["--unix-socket", path.to_str().unwrap()]);
    let mut c = Unix::connect(&path);
    assert_eq!(c.ask(b"set k 5 0 2\r\nhi\r\n", "\r\n"), "STORED\r\n");
    assert_eq!(
        c.ask(b"get k\r\n", "END\r\n"),
        "VALUE k 5 2\r\nhi\r\nEND\r\n"
    );
    assert_eq!(c.ask(b"mg k v\r\n", "hi\r\n"), "VA 2\r\nhi\r\n");
    // The same store as TCP.
    let mut tcp = server.connect();
    assert_eq!(tcp.line(b"get k\r\n"), "VALUE k 5 2\r\n");

    let mut b = Unix::connect(&path);
    let extras = [0, 0, 0, 7, 0, 0, 0, 0]; // flags 7, exptime 0
    assert_eq!(b.binary(&packet(0x01, &extras, b"bk", b"bin")).0, 0);
    assert_eq!(
        b.binary(&packet(0x00, &[], b"bk", b"")),
        (0, b"bin".to_vec())
    );
    assert_eq!(b.binary(&packet(0x00, &[], b"missing", b"")).0, 1);

    let settings = c.ask(b"stats settings\r\n", "END\r\n");
    assert!(
        settings.contains(&format!("STAT domain_socket {}\r\n", path.display())),
        "{settings}"
    );
    assert!(settings.contains("STAT umask 700\r\n"), "{settings}");
    assert!(
        settings.contains(&format!("STAT tcpport {}\r\n", server.addr.port())),
        "{settings}"
    );
    let conns = c.ask(b"stats conns\r\n", "END\r\n");
    assert!(
        conns.contains(&format!("listen_addr unix:{}\r\n", path.display())),
        "{conns}"
    );
}

#[test]
fn max_connections_counts_tcp_and_unix_together() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    let server = Server::start(&[
        "--unix-socket",
        path.to_str().unwrap(),
        "--max-connections",
        "2",
    ]);
    // The harness's readiness probe connected over TCP; let it close.
    std::thread::sleep(Duration::from_millis(200));
    let mut tcp = server.connect();
    assert!(tcp.line(b"version\r\n").starts_with("VERSION"));
    let mut unix = Unix::connect(&path);
    assert!(unix.ask(b"version\r\n", "\r\n").starts_with("VERSION"));
    // Both slots taken: a third connection is refused on either listener.
    let mut more = Unix::connect(&path);
    let mut refusal = String::new();
    more.0.read_to_string(&mut refusal).unwrap();
    assert_eq!(refusal, TOO_MANY);
    let mut more_tcp = server.connect();
    assert_eq!(more_tcp.line(b"version\r\n"), TOO_MANY);
    // A slot freed on TCP serves a unix client.
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Unix::connect(&path);
        let reply = again.ask(b"version\r\n", "\r\n");
        if reply.starts_with("VERSION") {
            break;
        }
        assert_eq!(reply, TOO_MANY);
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both refusals counted (and any the retry loop above met).
    let stats = unix.ask(b"stats\r\n", "END\r\n");
    let rejected: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT rejected_connections "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rejected >= 2, "{stats}");
}

#[test]
fn auth_file_applies_to_the_socket_text_and_sasl() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    let auth = tmp.path().join("auth");
    std::fs::write(&auth, "alice:s3cret\n").unwrap();
    let _server = Server::start(&[
        "--unix-socket",
        path.to_str().unwrap(),
        "--auth-file",
        auth.to_str().unwrap(),
    ]);
    let mut c = Unix::connect(&path);
    assert_eq!(
        c.ask(b"get k\r\n", "\r\n"),
        "CLIENT_ERROR unauthenticated\r\n"
    );
    let mut c = Unix::connect(&path);
    assert_eq!(
        c.ask(b"set a 0 0 11\r\nalice wrong\r\n", "\r\n"),
        "CLIENT_ERROR authentication failure\r\n"
    );
    assert_eq!(
        c.ask(b"set a 0 0 12\r\nalice s3cret\r\n", "\r\n"),
        "STORED\r\n"
    );
    assert_eq!(c.ask(b"set k 0 0 1\r\nv\r\n", "\r\n"), "STORED\r\n");

    // Binary: refused before SASL PLAIN, served after it.
    let mut b = Unix::connect(&path);
    assert_eq!(b.binary(&packet(0x00, &[], b"k", b"")).0, 0x20);
    let mut b = Unix::connect(&path);
    let (status, _) = b.binary(&packet(0x21, &[], b"PLAIN", b"\0alice\0s3cret"));
    assert_eq!(status, 0, "SASL PLAIN accepted");
    assert_eq!(b.binary(&packet(0x00, &[], b"k", b"")), (0, b"v".to_vec()));
}

#[test]
fn stale_socket_is_replaced_and_removed_at_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    // What a crash leaves: the file, nobody accepting on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    // A server another test spawns at this moment holds a copy of the
    // listener between its fork and exec (the descriptor is closed on
    // exec), so the socket may accept for an instant after the drop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(&path).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the dropped listener still accepts"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let child = socket_only(tmp.path(), &path);
    let mut c = Unix::connect(&path);
    assert!(c.ask(b"version\r\n", "\r\n").starts_with("VERSION"));
    drop(c);
    assert!(terminate(child).success());
    assert!(!path.exists(), "socket file left after a clean shutdown");
}

#[test]
fn a_path_held_by_a_live_server_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    let first = socket_only(tmp.path(), &path);

    let other = tempfile::tempdir().unwrap();
    let second = spawn(
        other.path(),
        &[
            "--listen",
            "none",
            "--no-http",
            "--unix-socket",
            path.to_str().unwrap(),
        ],
    );
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "another server is listening on {}",
            path.display()
        )),
        "{err}"
    );
    // The first server still owns and serves the socket.
    let mut c = Unix::connect(&path);
    assert!(c.ask(b"version\r\n", "\r\n").starts_with("VERSION"));

    // Something that is not a socket is never replaced either.
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, "keep me").unwrap();
    let out = spawn(
        other.path(),
        &[
            "--listen",
            "none",
            "--no-http",
            "--unix-socket",
            plain.to_str().unwrap(),
        ],
    )
    .wait_with_output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");
    assert!(terminate(first).success());
}

#[test]
fn unix_mask_sets_the_file_mode() {
    for (mask, want, shown) in [
        (None, 0o700, "700"),
        (Some("0660"), 0o660, "660"),
        (Some("777"), 0o777, "777"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let path = sock(&tmp);
        let mut args = vec![
            "--listen",
            "none",
            "--no-http",
            "--unix-socket",
            path.to_str().unwrap(),
        ];
        if let Some(mask) = mask {
            args.extend(["--unix-mask", mask]);
        }
        let mut child = spawn(tmp.path(), &args);
        wait_for_socket(&path, &mut child);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "--unix-mask {mask:?}");
        let settings = Unix::connect(&path).ask(b"stats settings\r\n", "END\r\n");
        assert!(
            settings.contains(&format!("STAT umask {shown}\r\n")),
            "{settings}"
        );
        assert!(terminate(child).success());
    }
    let out = bin()
        .args(["serve", "--unix-mask", "0800"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("octal"));
}

/// The TCP ports `pid` listens on (its sockets in /proc/net/tcp{,6}).
fn tcp_listen_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[test]
fn listen_none_leaves_no_memcached_tcp_port() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    let http = common::free_port();
    let http_addr = format!("127.0.0.1:{http}");
    let mut child = spawn(
        tmp.path(),
        &[
            "--listen",
            "none",
            "--http-listen",
            &http_addr,
            "--unix-socket",
            path.to_str().unwrap(),
        ],
    );
    wait_for_socket(&path, &mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&http_addr).is_err() {
        assert!(Instant::now() < deadline, "HTTP listener never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only the HTTP API listens on TCP.
    assert_eq!(tcp_listen_ports(child.id()), BTreeSet::from([http]));
    let settings = Unix::connect(&path).ask(b"stats settings\r\n", "END\r\n");
    assert!(settings.contains("STAT tcpport 0\r\n"), "{settings}");
    assert!(settings.contains("STAT inter NULL\r\n"), "{settings}");
    // The healthcheck reads the same variables as serve.
    let out = bin()
        .arg("healthcheck")
        .env("MEMCACHED_LITE_LISTEN", "none")
        .env("MEMCACHED_LITE_UNIX_SOCKET", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(terminate(child).success());

    // Nothing at all to serve memcached on is refused.
    let out = spawn(tmp.path(), &["--listen", "none", "--no-http"])
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen none needs --unix-socket"));
}

#[test]
fn bench_loads_a_unix_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sock(&tmp);
    let child = socket_only(tmp.path(), &path);
    let target = format!("unix:{}", path.display());
    let out = bin()
        .args(["bench", "--json", "--server", &target, "--connections", "4"])
        .args(["--requests", "400", "--ratio", "1:1", "--key-space", "50"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("\"server\":\"{target}\"")),
        "{report}"
    );
    assert!(report.contains("\"ops\":400"), "{report}");
    assert!(report.contains("\"errors\":0"), "{report}");
    assert!(terminate(child).success());
}
