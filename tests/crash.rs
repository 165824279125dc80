//! Crash harness: runs the real binary, drives concurrent writers recording
//! every acknowledged write, SIGKILLs the server at a random moment,
//! restarts it on the same data directory and checks what survived:
//!
//! - `--durability sync`: every acknowledged write is there with its value;
//! - `--durability periodic`: nothing acknowledged longer than the loss
//!   window before the kill is missing;
//! - always: no item is corrupt or half-written (values are self-checking),
//!   no item is newer than what was sent, and CAS values never go backwards.
//!
//! CI runs 10 rounds per mode; `CRASH_ROUNDS=100 cargo test --test crash`
//! runs 100. `CRASH_SEED=<n>` replays a reported seed.
//!
//! Writers speak the memcached protocol and HTTP: PUT
//! `/v1/keys/{key}` (acknowledged by 201/204), POST `/v1/keys/{key}/incr`,
//! GET with the CAS as `ETag`. Verification reads through memcached; the
//! checks are protocol-neutral.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Server;

/// Writers per protocol.
const WRITERS: usize = 4;
const KEYS_PER_WRITER: u64 = 24;
/// Periodic mode's flush interval in these tests.
const PERIODIC_FLUSH_MS: u64 = 20;
/// Scheduling slack on top of the flush interval (a loaded 2-core CI box
/// can delay sled's flusher thread).
const PERIODIC_SLACK: Duration = Duration::from_millis(750);

/// The tests of this file one at a time: the large-value test writes
/// hundreds of MB, and beside it the periodic test's flush window (20 ms
/// plus slack) was missed once in CI.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rounds() -> u64 {
    std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// xorshift64*: reproducible from the printed seed, no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The value stored for `key` at `version`: `key:version:` then filler
/// derived from both, so a torn or mixed-up value never passes [`check`].
fn value_for(key: &str, version: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}:{version}:").into_bytes();
    let mut x = version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key.len() as u64;
    while v.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push(b'a' + (x >> 59) as u8 % 26);
    }
    v
}

/// Sizes: mostly small; sometimes large enough that sled stores a blob.
/// `Values::Large`: every value a few hundred KB, so a sync-mode run of a
/// second or two writes enough write-ahead log to close files and start
/// new ones on spares (recycled or prepared files, `src/store/wal/spares.rs`).
fn value_len(rng: &mut Rng, values: Values) -> usize {
    match (values, rng.below(20)) {
        (Values::Large, _) => 100_000 + rng.below(200_000) as usize,
        (Values::Mixed, 0) => 40_000 + rng.below(40_000) as usize,
        (Values::Mixed, _) => 24 + rng.below(300) as usize,
    }
}

/// What sizes the writers' values have (see [`value_len`]).
#[derive(Clone, Copy, PartialEq)]
enum Values {
    Mixed,
    Large,
}

/// Parses and fully verifies a stored value; returns its version.
fn check(key: &str, value: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(value);
    let mut parts = text.splitn(3, ':');
    let (k, ver) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Keys contain no ':' (see key names below).
    assert_eq!(k, key, "value of {key} belongs to another key: {text:.80}");
    let version: u64 = ver
        .parse()
        .unwrap_or_else(|_| panic!("corrupt value for {key}: {text:.80}"));
    assert!(
        value == value_for(key, version, value.len()).as_slice(),
        "corrupt/half-written value for {key} version {version}"
    );
    version
}

/// One protocol's write path as the harness needs it.
trait Writer {
    /// Stores `value`; Ok only when the server acknowledged it.
    fn set(&mut self, key: &str, value: &[u8]) -> std::io::Result<()>;
    /// Increments a counter; the new value on acknowledgement.
    fn incr(&mut self, key: &str) -> std::io::Result<u64>;
    /// `gets`: value and cas.
    fn gets(&mut self, key: &str) -> std::io::Result<Option<(Vec<u8>, u64)>>;
}

/// A memcached text-protocol writer that reports errors instead of
/// panicking (the server is killed under it).
struct Memcache {
    out: TcpStream,
    inp: BufReader<TcpStream>,
}

impl Memcache {
    fn connect(addr: SocketAddr) -> std::io::Result<Memcache> {
        let out = TcpStream::connect(addr)?;
        out.set_read_timeout(Some(Duration::from_secs(20)))?;
        out.set_nodelay(true)?;
        Ok(Memcache {
            inp: BufReader::new(out.try_clone()?),
            out,
        })
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.inp.read_line(&mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(l)
    }
}

fn protocol_error(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

impl Writer for Memcache {
    fn set(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.out.write_all(&req)?;
        match self.line()?.as_str() {
            "STORED\r\n" => Ok(()),
            other => Err(protocol_error(format!("set {key}: {other:?}"))),
        }
    }

    fn incr(&mut self, key: &str) -> std::io::Result<u64> {
        self.out.write_all(format!("incr {key} 1\r\n").as_bytes())?;
        let l = self.line()?;
        l.trim_end()
            .parse()
            .map_err(|_| protocol_error(format!("incr {key}: {l:?}")))
    }

    fn gets(&mut self, key: &str) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        self.out.write_all(format!("gets {key}\r\n").as_bytes())?;
        let head = self.line()?;
        if head == "END\r\n" {
            return Ok(None);
        }
        let f: Vec<&str> = head.split_whitespace().collect();
        if f.len() != 5 || f[0] != "VALUE" {
            return Err(protocol_error(format!("gets {key}: {head:?}")));
        }
        let len: usize = f[3].parse().map_err(|_| protocol_error(head.clone()))?;
        let cas: u64 = f[4].parse().map_err(|_| protocol_error(head.clone()))?;
        let mut data = vec![0; len + 2];
        std::io::Read::read_exact(&mut self.inp, &mut data)?;
        data.truncate(len);
        match self.line()?.as_str() {
            "END\r\n" => Ok(Some((data, cas))),
            other => Err(protocol_error(format!("gets {key} tail: {other:?}"))),
        }
    }
}

/// The HTTP front end's write path (used when the build has one).
struct Http {
    client: reqwest::blocking::Client,
    base: String,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("reqwest client");
        Http {
            client,
            base: format!("http://{addr}/v1/keys/"),
        }
    }
}

fn http_error(e: reqwest::Error) -> std::io::Error {
    // A killed server shows up as a connect/request error: a disconnect.
    if e.is_connect() || e.is_request() || e.is_body() {
        std::io::Error::new(std::io::ErrorKind::ConnectionReset, e)
    } else {
        std::io::Error::other(e)
    }
}

impl Writer for Http {
    fn set(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        let r = self
            .client
            .put(format!("{}{key}", self.base))
            .body(value.to_vec())
            .send()
            .map_err(http_error)?;
        match r.status().as_u16() {
            201 | 204 => Ok(()),
            s => Err(protocol_error(format!("PUT {key}: {s}"))),
        }
    }

    fn incr(&mut self, key: &str) -> std::io::Result<u64> {
        let r = self
            .client
            .post(format!("{}{key}/incr", self.base))
            .json(&serde_json::json!({ "by": 1 }))
            .send()
            .map_err(http_error)?;
        if r.status() != 200 {
            return Err(protocol_error(format!("incr {key}: {}", r.status())));
        }
        let body: serde_json::Value = r.json().map_err(http_error)?;
        body["value"]
            .as_u64()
            .ok_or_else(|| protocol_error(format!("incr {key}: {body}")))
    }

    fn gets(&mut self, key: &str) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        let r = self
            .client
            .get(format!("{}{key}", self.base))
            .send()
            .map_err(http_error)?;
        match r.status().as_u16() {
            404 => Ok(None),
            200 => {
                let cas = r
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim_matches('"').parse().ok())
                    .ok_or_else(|| protocol_error(format!("GET {key}: no ETag")))?;
                Ok(Some((r.bytes().map_err(http_error)?.to_vec(), cas)))
            }
            s => Err(protocol_error(format!("GET {key}: {s}"))),
        }
    }
}

/// What one round learned about one key before the kill.
#[derive(Default, Clone)]
struct History {
    /// Highest version (or counter value) sent, acknowledged or not.
    sent: u64,
    /// Acknowledged versions with the moment of acknowledgement.
    acked: Vec<(u64, Instant)>,
    /// CAS observed (via gets) for a version.
    cas_of: HashMap<u64, u64>,
}

#[derive(Default)]
struct Log {
    keys: HashMap<String, History>,
    counters: HashMap<String, History>,
    max_cas: u64,
}

/// Which front end a writer drives.
#[derive(Clone, Copy)]
enum Front {
    Memcache(SocketAddr),
    Http(SocketAddr),
}

fn writer_loop(
    front: Front,
    id: usize,
    round: u64,
    seed: u64,
    values: Values,
    stop: &AtomicBool,
    log: &Mutex<Log>,
) {
    let (mut w, tag): (Box<dyn Writer>, &str) = match front {
        Front::Memcache(addr) => match Memcache::connect(addr) {
            Ok(m) => (Box::new(m), "w"),
            Err(_) => return,
        },
        Front::Http(addr) => (Box::new(Http::new(addr)), "h"),
    };
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9) ^ tag.as_bytes()[0] as u64);
    let counter = format!("r{round}{tag}{id}ctr");
    if w.set(&counter, b"0").is_err() {
        return;
    }
    log.lock()
        .unwrap()
        .counters
        .entry(counter.clone())
        .or_default()
        .acked
        .push((0, Instant::now()));
    let mut versions = vec![0u64; KEYS_PER_WRITER as usize];
    while !stop.load(Ordering::Relaxed) {
        let slot = rng.below(KEYS_PER_WRITER) as usize;
        let key = format!("r{round}{tag}{id}k{slot}");
        let result = match rng.below(10) {
            0 => {
                log.lock()
                    .unwrap()
                    .counters
                    .entry(counter.clone())
                    .or_default()
                    .sent += 1;
                w.incr(&counter).map(|n| {
                    let mut l = log.lock().unwrap();
                    l.counters
                        .get_mut(&counter)
                        .unwrap()
                        .acked
                        .push((n, Instant::now()));
                })
            }
            1 => w.gets(&key).map(|found| {
                if let Some((value, cas)) = found {
                    let version = check(&key, &value);
                    let mut l = log.lock().unwrap();
                    l.max_cas = l.max_cas.max(cas);
                    l.keys.get_mut(&key).unwrap().cas_of.insert(version, cas);
                }
            }),
            _ => {
                versions[slot] += 1;
                let version = versions[slot];
                log.lock()
                    .unwrap()
                    .keys
                    .entry(key.clone())
                    .or_default()
                    .sent = version;
                let value = value_for(&key, version, value_len(&mut rng, values));
                w.set(&key, &value).map(|()| {
                    let mut l = log.lock().unwrap();
                    l.keys
                        .get_mut(&key)
                        .unwrap()
                        .acked
                        .push((version, Instant::now()));
                })
            }
        };
        if let Err(e) = result {
            // Only the kill may end a writer.
            assert!(
                stop.load(Ordering::Relaxed) || is_disconnect(&e),
                "writer {id} failed before the kill: {e}"
            );
            return;
        }
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted | ConnectionRefused
    )
}

/// The newest version that must have survived: in sync mode the last
/// acknowledged one; in periodic mode the last acknowledged at least
/// `window` before the kill.
fn required(h: &History, killed: Instant, window: Option<Duration>) -> u64 {
    h.acked
        .iter()
        .filter(|(_, at)| window.is_none_or(|w| *at + w <= killed))
        .map(|(v, _)| *v)
        .max()
        .unwrap_or(0)
}

/// One round: write, kill at a random moment, restart, verify.
fn round(
    server: &mut Server,
    http: SocketAddr,
    round: u64,
    seed: u64,
    window: Option<Duration>,
    run_ms: (u64, u64),
    values: Values,
) {
    let mut rng = Rng(seed | 1);
    let stop = AtomicBool::new(false);
    let log = Mutex::new(Log::default());
    let addr = server.addr;
    let killed = std::thread::scope(|s| {
        let fronts = [Front::Memcache(addr), Front::Http(http)].into_iter();
        for front in fronts {
            for id in 0..WRITERS {
                let (stop, log) = (&stop, &log);
                s.spawn(move || writer_loop(front, id, round, seed, values, stop, log));
            }
        }
        // The random moment counts from the first acknowledgement: on a
        // busy machine the first sync round alone can take longer than
        // the shortest run, and a round with nothing acknowledged checks
        // nothing.
        let first_ack = Instant::now() + Duration::from_secs(20);
        while log
            .lock()
            .unwrap()
            .keys
            .values()
            .all(|h| h.acked.is_empty())
        {
            assert!(
                Instant::now() < first_ack,
                "round {round}: no write acknowledged in 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(
            run_ms.0 + rng.below(run_ms.1 - run_ms.0),
        ));
        let killed = Instant::now();
        server.kill();
        stop.store(true, Ordering::Relaxed);
        killed
    });
    if values == Values::Large {
        // The write-ahead log had moved past its first file: later files
        // start on spares, so the crash and replay below met them.
        let files = wal_files(&server.data_dir.join("wal"));
        eprintln!("round {round}: write-ahead log files at the kill: {files:?}");
        assert!(
            files.iter().any(|(f, _)| f.ends_with(".wal")
                && !f.starts_with("spare")
                && f != "00000000000000000000.wal"),
            "round {round}: the log never left its first file: {files:?}"
        );
    }
    server.restart();
    let log = log.into_inner().unwrap();
    let acked: usize = log.keys.values().map(|h| h.acked.len()).sum();
    assert!(
        acked > 0,
        "round {round}: no write was acknowledged before the kill"
    );
    let mut c = Memcache::connect(server.addr).unwrap();
    let mut lost_unsynced = 0;
    for (key, h) in &log.keys {
        let need = required(h, killed, window);
        match c.gets(key).unwrap() {
            None => assert_eq!(
                need, 0,
                "round {round}: acknowledged {key} v{need} lost (seed {seed})"
            ),
            Some((value, cas)) => {
                let v = check(key, &value);
                assert!(v >= need, "round {round}: {key} went back to v{v}, v{need} was acknowledged (seed {seed})");
                assert!(v <= h.sent, "round {round}: {key} has v{v}, never sent");
                if let Some(&seen) = h.cas_of.get(&v) {
                    assert_eq!(cas, seen, "round {round}: {key} v{v} changed cas");
                }
                lost_unsynced += (v < h.acked.last().map_or(0, |a| a.0)) as usize;
            }
        }
    }
    for (key, h) in &log.counters {
        let need = required(h, killed, window);
        let (value, _) = c
            .gets(key)
            .unwrap()
            .unwrap_or_else(|| panic!("counter {key} lost"));
        let n: u64 = String::from_utf8(value)
            .unwrap()
            .parse()
            .expect("counter is digits");
        assert!(
            n >= need && n <= h.sent,
            "round {round}: counter {key} = {n}, acked {need}, sent {}",
            h.sent
        );
    }
    // CAS never goes backwards: a new write gets a CAS above all seen.
    c.set("probe", b"p").unwrap();
    let (_, cas) = c.gets("probe").unwrap().unwrap();
    assert!(
        cas > log.max_cas,
        "round {round}: cas {cas} after restart <= {} seen before",
        log.max_cas
    );
    eprintln!(
        "round {round}: {acked} acked writes, {} keys, {lost_unsynced} newest-acked lost (allowed: {})",
        log.keys.len(),
        if window.is_some() { "periodic" } else { "none" }
    );
    if window.is_none() {
        assert_eq!(lost_unsynced, 0);
    }
}

fn run(
    mode_args: &[&str],
    window: Option<Duration>,
    run_ms: (u64, u64),
    values: Values,
    rounds: u64,
) {
    let base = seed();
    eprintln!("crash harness seed {base} (CRASH_SEED={base} to replay)");
    let mut args: Vec<String> = mode_args.iter().map(|s| s.to_string()).collect();
    // A fixed HTTP port, kept across restarts (the listener sets SO_REUSEADDR).
    let http: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    args.extend(["--http-listen".into(), http.to_string()]);
    eprintln!("writers: memcached + HTTP");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&args);
    for r in 0..rounds {
        let seed = base.wrapping_add(r);
        round(&mut server, http, r, seed, window, run_ms, values);
    }
    // A clean stop and restart after all the crashes still serves the data.
    server.restart();
    assert_eq!(
        server.connect().line(b"get probe\r\n"),
        "VALUE probe 0 1\r\n"
    );
}

#[test]
fn sync_mode_keeps_every_acknowledged_write() {
    let _serial = serial();
    run(
        &["--durability", "sync"],
        None,
        (100, 500),
        Values::Mixed,
        rounds(),
    );
}

/// As above with values of a few hundred KB, so each round's log closes
/// files and writes the next ones into spares (recycled files, or files
/// filled with zeros ahead), whose old bytes replay must not take for
/// frames. A fifth of the rounds of the test above: each writes hundreds
/// of MB.
#[test]
fn sync_mode_keeps_every_acknowledged_write_across_log_files() {
    let _serial = serial();
    let rounds = rounds().div_ceil(5);
    run(
        &["--durability", "sync"],
        None,
        (1500, 2500),
        Values::Large,
        rounds,
    );
}

#[test]
fn periodic_mode_loses_at_most_the_flush_window() {
    let _serial = serial();
    let interval = PERIODIC_FLUSH_MS.to_string();
    run(
        &["--durability", "periodic", "--flush-interval-ms", &interval],
        Some(Duration::from_millis(PERIODIC_FLUSH_MS) + PERIODIC_SLACK),
        (900, 1500),
        Values::Mixed,
        rounds(),
    );
}

#[test]
fn sync_mode_groups_concurrent_writes_into_few_disk_syncs() {
    let _serial = serial();
    let server = Server::start(&["--durability", "sync"]);
    let done = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for id in 0..32 {
            let done = &done;
            let addr = server.addr;
            s.spawn(move || {
                let mut w = Memcache::connect(addr).unwrap();
                for i in 0..100 {
                    w.set(&format!("g{id}:{i}"), b"value").unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let elapsed = t.elapsed();
    let mut c = server.connect();
    let stats = c.until_end(b"stats\r\n");
    let syncs: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT commit_syncs "))
        .expect("commit_syncs stat")
        .trim()
        .parse()
        .unwrap();
    let writes = done.load(Ordering::Relaxed);
    eprintln!("{writes} acked sync writes in {elapsed:?} with {syncs} disk syncs");
    assert_eq!(writes, 3200);
    assert!(syncs > 0, "sync mode never synced");
    assert!(
        syncs * 2 < writes,
        "no group commit: {syncs} syncs for {writes} writes"
    );
    assert!(c
        .until_end(b"stats settings\r\n")
        .contains("STAT durability sync\r\n"));
}

/// Every acknowledged sync-mode write waited for a real `fdatasync` of
/// the write-ahead log, counted by `strace` attached to the server: one
/// client setting keys one after another (so no two writes can share a
/// round) sees at least one `fdatasync` of a `wal/` file per `STORED`.
#[test]
fn each_acknowledged_sync_write_waits_for_its_own_fdatasync() {
    let _serial = serial();
    const WRITES: usize = 100;
    let server = Server::start(&["--durability", "sync"]);
    let pid = server.child.as_ref().expect("running").id();
    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fdatasync", "-o"])
        .arg(trace.path())
        .args(["-p", &pid.to_string()])
        .spawn()
        .expect("strace (Debian package strace; tests/run-all.sh installs it)");
    // Attached once every thread of the server has a tracer.
    let traced = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .all(|t| {
                std::fs::read_to_string(t.unwrap().path().join("status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
            })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !traced() {
        assert!(Instant::now() < deadline, "strace never attached");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = server.connect();
    for i in 0..WRITES {
        assert_eq!(
            c.line(format!("set fsync:{i} 0 0 5\r\nvalue\r\n").as_bytes()),
            "STORED\r\n"
        );
    }
    // SIGINT: strace detaches and writes out what it saw.
    unsafe_sigint(strace.id());
    strace.wait().unwrap();
    let text = std::fs::read_to_string(trace.path()).unwrap();
    let synced = text
        .lines()
        .filter(|l| {
            l.contains("fdatasync(") && l.contains("/wal/") && l.trim_end().ends_with("= 0")
        })
        .count();
    eprintln!("{WRITES} acknowledged sets, {synced} fdatasyncs of the write-ahead log");
    assert!(
        synced >= WRITES,
        "{WRITES} acknowledged sets but only {synced} fdatasyncs of the log:\n{text}"
    );
}

/// A round that overwrites a prepared log file sends about its own bytes
/// to the disk: one client setting 1 KB values one by one (a round each)
/// once the log has moved onto a spare writes well under 64 KB per set
/// (`write_bytes` in `/proc/<pid>/io`). A spare filled with 1 MiB writes
/// sat in the page cache in 1 MiB folios (ext4, Linux 6.18), and each round's
/// overwrite dirtied, and `fdatasync` wrote back, a whole one: about
/// 1 MiB per set here.
#[test]
fn a_round_on_a_prepared_log_file_writes_about_its_own_bytes() {
    let _serial = serial();
    // No CSV mirror: its snapshot file, rewritten every second, would count.
    let server = Server::start(&["--durability", "sync", "--no-csv-mirror"]);
    let pid = server.child.as_ref().expect("running").id();
    let wal = server.data_dir.join("wal");
    let files = || wal_files(&wal);
    // The current segment (highest number) started on a spare: spares are
    // written whole ahead (33 MiB), a segment that grew is smaller.
    let on_spare = || {
        let segs = files();
        let mut segs = segs.iter().filter(|f| !f.0.starts_with("spare"));
        segs.next_back().is_some_and(|s| s.1 > 32 << 20)
    };
    let written = || {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .expect("write_bytes in /proc/<pid>/io")
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let mut c = server.connect();
    let value = "v".repeat(1024);
    let mut set = |i: usize| {
        assert_eq!(
            c.line(format!("set io:{i} 0 0 1024\r\n{value}\r\n").as_bytes()),
            "STORED\r\n"
        );
    };
    // Past the log's first megabyte spares are prepared, and the next
    // round after one is ready moves the log onto it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !on_spare() {
        assert!(
            Instant::now() < deadline,
            "the log never moved onto a spare"
        );
        set(i % 1000);
        i += 1;
    }
    // The spare thread then fills the next spare (its zeros would count):
    // measure once it has.
    let ready = || {
        let files = files();
        files.iter().any(|f| f.0.starts_with("spare-")) && !files.iter().any(|f| f.0 == "spare.tmp")
    };
    while !ready() {
        assert!(Instant::now() < deadline, "no next spare was prepared");
        std::thread::sleep(Duration::from_millis(20));
    }
    const SETS: u64 = 300;
    let before = written();
    for j in 0..SETS as usize {
        set(j);
    }
    let per_set = (written() - before) / SETS;
    eprintln!("{per_set} bytes sent to the disk per 1 KB set on a prepared log file");
    assert!(
        per_set < 64 << 10,
        "{per_set} bytes written to the disk per 1 KB set"
    );
}

/// The files of a write-ahead log directory, sorted by name, with their
/// lengths (none if it does not exist).
fn wal_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                Some((e.file_name().into_string().ok()?, len))
            })
            .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn unsafe_sigint(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The nice value of the server's thread named `name` (`/proc`).
fn thread_nice(pid: u32, name: &str) -> Option<i64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .find_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the parenthesised name; nice is the 19th field.
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
}

/// With the write-ahead log no acknowledgement waits for the write-behind
/// thread, so in sync mode it yields the CPU (nice 19); in periodic mode
/// its rounds are the durability window and it keeps the normal priority.
#[test]
fn the_write_behind_yields_the_cpu_only_where_nothing_waits_for_it() {
    let _serial = serial();
    for (mode, want) in [("sync", 19), ("periodic", 0)] {
        let server = Server::start(&["--durability", mode]);
        let pid = server.child.as_ref().expect("running").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let nice = loop {
            let nice = thread_nice(pid, "write-behind");
            if nice == Some(want) || Instant::now() > deadline {
                break nice;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(nice, Some(want), "--durability {mode}");
    }
}
