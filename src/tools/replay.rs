//! `memcached-lite replay`: the client runner. Each JSON file is one
//! scripted client; all run at once, each over its own TCP connection,
//! sending its requests in order and comparing every reply with the
//! request's `expected` text.
//!
//! A request is `{"type": ..., "key": ..., "value": ..., "expected": ...}`
//! plus optional `flags`, `exptime` and `cas`; unknown fields (such as the
//! original assignment's `chunkSize`) are ignored. `value` is the data of
//! storage commands, the delta of `incr`/`decr` and the exptime of `touch`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;

/// One scripted request.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub flags: u32,
    #[serde(default)]
    pub exptime: i64,
    #[serde(default)]
    pub cas: Option<u64>,
    /// The exact reply expected (with `\r\n`s); not checked when absent.
    #[serde(default)]
    pub expected: Option<String>,
}

/// How one client's run went.
#[derive(Debug, Clone, Default)]
pub struct ClientReport {
    pub name: String,
    pub requests: usize,
    pub matched: usize,
    pub mismatched: usize,
    pub unchecked: usize,
    pub elapsed: Duration,
    /// Set when the client could not finish (connection or file trouble).
    pub error: Option<String>,
}

impl ClientReport {
    pub fn passed(&self) -> bool {
        self.mismatched == 0 && self.error.is_none()
    }
}

fn value_text(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The wire bytes of a request, and whether its reply is a retrieval
/// (`VALUE ... END`) rather than one line.
pub fn encode(req: &Request) -> anyhow::Result<(Vec<u8>, bool)> {
    let key = &req.key;
    if req.kind != "flush_all" && req.kind != "version" && key.is_empty() {
        bail!("{} request without a key", req.kind);
    }
    let value = value_text(&req.value);
    let line = match req.kind.as_str() {
        "set" | "add" | "replace" | "append" | "prepend" => {
            let head = format!(
                "{} {key} {} {} {}\r\n",
                req.kind,
                req.flags,
                req.exptime,
                value.len()
            );
            return Ok(([head.as_bytes(), value.as_bytes(), b"\r\n"].concat(), false));
        }
        "cas" => {
            let cas = req.cas.context("cas request without a \"cas\" field")?;
            let head = format!(
                "cas {key} {} {} {} {cas}\r\n",
                req.flags,
                req.exptime,
                value.len()
            );
            return Ok(([head.as_bytes(), value.as_bytes(), b"\r\n"].concat(), false));
        }
        "get" | "gets" => return Ok((format!("{} {key}\r\n", req.kind).into_bytes(), true)),
        "gat" | "gats" => {
            return Ok((
                format!("{} {} {key}\r\n", req.kind, req.exptime).into_bytes(),
                true,
            ))
        }
        "delete" => format!("delete {key}"),
        "incr" | "decr" => format!(
            "{} {key} {}",
            req.kind,
            if value.is_empty() { "1" } else { &value }
        ),
        "touch" => format!(
            "touch {key} {}",
            if value.is_empty() {
                req.exptime.to_string()
            } else {
                value
            }
        ),
        "flush_all" | "version" => req.kind.clone(),
        other => bail!("unknown request type {other:?}"),
    };
    Ok((format!("{line}\r\n").into_bytes(), false))
}

/// Reads one complete reply: a line, or `VALUE` blocks up to `END`.
fn read_reply(r: &mut impl BufRead, retrieval: bool) -> anyhow::Result<String> {
    let mut reply = Vec::new();
    loop {
        let start = reply.len();
        if r.read_until(b'\n', &mut reply)? == 0 {
            bail!("server closed the connection");
        }
        let line = &reply[start..];
        if !retrieval || !line.starts_with(b"VALUE ") {
            break;
        }
        let bytes: usize = std::str::from_utf8(line)?
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .context("malformed VALUE line")?;
        let mut data = vec![0; bytes + 2];
        r.read_exact(&mut data)?;
        reply.extend_from_slice(&data);
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Runs one client file against `server`, writing its log to `out_dir`.
pub fn run_client(server: &str, file: &Path, out_dir: &Path) -> ClientReport {
    let name = file
        .file_stem()
        .map_or_else(|| "client".into(), |s| s.to_string_lossy().into_owned());
    let mut report = ClientReport {
        name: name.clone(),
        ..Default::default()
    };
    let started = Instant::now();
    let mut log = String::new();
    if let Err(e) = run_requests(server, file, &mut report, &mut log) {
        report.error = Some(format!("{e:#}"));
        let _ = writeln!(log, "===== ERROR\n{e:#}");
    }
    report.elapsed = started.elapsed();
    if let Err(e) = std::fs::write(out_dir.join(format!("{name}.out")), log) {
        report.error.get_or_insert(format!("writing output: {e}"));
    }
    report
}

fn run_requests(
    server: &str,
    file: &Path,
    report: &mut ClientReport,
    log: &mut String,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let requests: Vec<Request> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON list of requests", file.display()))?;
    let stream = TcpStream::connect(server).with_context(|| format!("connecting to {server}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    for (i, req) in requests.iter().enumerate() {
        let (bytes, retrieval) = encode(req).with_context(|| format!("request #{}", i + 1))?;
        writer.write_all(&bytes)?;
        let reply =
            read_reply(&mut reader, retrieval).with_context(|| format!("request #{}", i + 1))?;
        report.requests += 1;
        let verdict = match &req.expected {
            None => {
                report.unchecked += 1;
                "unchecked"
            }
            Some(want) if *want == reply => {
                report.matched += 1;
                "ok"
            }
            Some(_) => {
                report.mismatched += 1;
                "MISMATCH"
            }
        };
        let _ = writeln!(log, "===== #{} {} {} [{verdict}]", i + 1, req.kind, req.key);
        log.push_str(&reply);
        if let (Some(want), "MISMATCH") = (&req.expected, verdict) {
            let _ = writeln!(log, "----- expected\n{want}");
        }
    }
    Ok(())
}

/// Runs every file as its own concurrent client; returns reports in file order.
pub fn run(server: &str, files: &[PathBuf], out_dir: &Path) -> anyhow::Result<Vec<ClientReport>> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let reports = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| scope.spawn(move || run_client(server, f, out_dir)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    Ok(reports)
}

/// The summary table printed at the end.
pub fn table(reports: &[ClientReport]) -> String {
    let mut out = format!(
        "{:<20} {:>8} {:>8} {:>10} {:>9} {:>9}  {}\n",
        "client", "requests", "ok", "mismatch", "unchecked", "ms", "result"
    );
    for r in reports {
        let result = match (&r.error, r.mismatched) {
            (Some(e), _) => format!("ERROR: {e}"),
            (None, 0) => "PASS".into(),
            (None, _) => "FAIL".into(),
        };
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>10} {:>9} {:>9}  {result}",
            r.name,
            r.requests,
            r.matched,
            r.mismatched,
            r.unchecked,
            r.elapsed.as_millis()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Request {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn encodes_requests_like_a_memcached_client() {
        let set = req(
            r#"{"type":"set","key":"name","value":"Jenil","chunkSize":"1024","expected":"STORED\r\n"}"#,
        );
        assert_eq!(
            encode(&set).unwrap(),
            (b"set name 0 0 5\r\nJenil\r\n".to_vec(), false)
        );
        assert_eq!(
            encode(&req(r#"{"type":"get","key":"a"}"#)).unwrap(),
            (b"get a\r\n".to_vec(), true)
        );
        assert_eq!(
            encode(&req(r#"{"type":"incr","key":"n","value":5}"#))
                .unwrap()
                .0,
            b"incr n 5\r\n"
        );
        assert!(encode(&req(r#"{"type":"frobnicate","key":"a"}"#)).is_err());
        assert!(encode(&req(r#"{"type":"get"}"#)).is_err());
    }

    #[test]
    fn reads_values_containing_end_markers() {
        let wire = b"VALUE k 0 7\r\nEND\r\nx\r\nEND\r\nSTORED\r\n";
        let mut r = BufReader::new(&wire[..]);
        assert_eq!(
            read_reply(&mut r, true).unwrap(),
            "VALUE k 0 7\r\nEND\r\nx\r\nEND\r\n"
        );
        assert_eq!(read_reply(&mut r, false).unwrap(), "STORED\r\n");
    }
}
