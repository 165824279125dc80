//! `memcached-lite cluster status|add|remove`: the operator's client for a
//! replicated group's HTTP API (`GET /v1/cluster`, `POST
//! /v1/cluster/members`, `DELETE /v1/cluster/members/{id}`). Any node of
//! the group takes every command. It reads the server's own
//! `MEMCACHED_LITE_HTTP_LISTEN`, `MEMCACHED_LITE_HTTP_TOKEN_FILE` and
//! `MEMCACHED_LITE_TLS_CERT`, so inside a pod or container
//! `memcached-lite cluster status` needs no flags, TLS or not.
//!
//! TLS: an `https://` address, or a bare `host:port` when a certificate
//! to trust is known (`--tls-ca`, else the server's own `--tls-cert`
//! chain from its environment), is reached over TLS (rustls), trusting
//! only those certificates (see `trust`): a self-signed server
//! certificate is the common case, and no public root list is built in.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Arguments of `memcached-lite cluster`.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Any node's HTTP API: `host:port` (a wildcard such as 0.0.0.0 means
    /// this host) or an `http://` or `https://` URL.
    #[arg(
        long,
        global = true,
        env = "MEMCACHED_LITE_HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub http: String,

    /// File holding the bearer token of a server started with
    /// `--http-token-file` (the same file, or a copy).
    #[arg(long, global = true, env = "MEMCACHED_LITE_HTTP_TOKEN_FILE")]
    pub http_token_file: Option<PathBuf>,

    /// PEM certificate(s) to trust for a node whose HTTP API serves TLS
    /// (its `--tls-cert`, or the CA that signed it). Default: the file in
    /// `MEMCACHED_LITE_TLS_CERT`, the server's own, when that is set.
    #[arg(long, global = true, env = "MEMCACHED_LITE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Check the node's certificate against this name instead of the
    /// host of `--http` (which is still where it connects): for a
    /// certificate made out to the Service's DNS name, reached at
    /// 127.0.0.1 inside the pod.
    #[arg(long, global = true, requires = "tls_ca")]
    pub tls_server_name: Option<String>,

    /// Print the server's JSON answer (also for errors) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up waiting for the answer after this many seconds (adding a
    /// member waits for it to catch up, up to 20 s).
    #[arg(long, global = true, default_value_t = 60)]
    pub timeout_secs: u64,

    #[command(subcommand)]
    pub action: Action,
}

/// What to do.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Action {
    /// Show the group as the node sees it: role, leader, term, members.
    Status,
    /// Add node ID, reached for Raft at RAFT_ADDR (host:port), as a voter:
    /// first as a learner, promoted once it has caught up.
    Add {
        id: u64,
        /// The new node's Raft address as the group reaches it.
        raft_addr: String,
    },
    /// Remove node ID from the group.
    Remove { id: u64 },
}

/// Runs the command; what to print on success (the error says what failed).
pub fn run(args: &ClusterArgs) -> anyhow::Result<String> {
    let ca = args.tls_ca.clone().or_else(|| {
        std::env::var_os("MEMCACHED_LITE_TLS_CERT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let target = Target::of(&args.http, ca.is_some(), args.tls_server_name.as_deref())?;
    let base = target.base.clone();
    let token = match &args.http_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let http = client(&target, ca.as_deref(), timeout)?;
    let (status, body) = runtime.block_on(call(&http, &base, token.as_deref(), &args.action))?;
    let json: Value = serde_json::from_str(&body).with_context(|| {
        format!("{base} answered {status} with something that is not JSON: {body:.200}")
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&json)?;
        if status.is_success() {
            return Ok(text);
        }
        println!("{text}");
        bail!("HTTP {status}");
    }
    if !status.is_success() {
        let message = json["message"].as_str().unwrap_or("(no message)");
        bail!("{message} (HTTP {status} from {base})");
    }
    Ok(match &args.action {
        Action::Status => status_text(&json),
        Action::Add { id, .. } => format!("node {id} added as a voter\n{}", members_text(&json)),
        Action::Remove { id } => format!("node {id} removed\n{}", members_text(&json)),
    })
}

/// Where requests go: the base URL, and with `--tls-server-name` the
/// address that name stands for.
#[derive(Debug, PartialEq)]
struct Target {
    base: String,
    tls: bool,
    /// (name, host:port it connects to) for `--tls-server-name`.
    named: Option<(String, String)>,
}

impl Target {
    /// From `--http` (`host:port` or a URL; wildcards become loopback): a
    /// bare address is TLS when a certificate to trust is known.
    fn of(given: &str, trust_known: bool, server_name: Option<&str>) -> anyhow::Result<Target> {
        let (tls, hostport) = match given.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some(_) => bail!("--http {given:?}: expected host:port, http:// or https://"),
            None => (trust_known, given),
        };
        let hostport = hostport.trim_end_matches('/');
        let bad = || anyhow::anyhow!("--http {given:?}: expected host:port or a URL of one");
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() || hostport.contains('/') {
            return Err(bad());
        }
        let host = match host {
            "0.0.0.0" => "127.0.0.1",
            "[::]" => "[::1]",
            other => other,
        };
        let scheme = if tls { "https" } else { "http" };
        Ok(match server_name {
            Some(name) if tls => Target {
                base: format!("{scheme}://{name}:{port}"),
                tls,
                named: Some((name.to_owned(), format!("{host}:{port}"))),
            },
            Some(_) => bail!("--tls-server-name applies to an https:// address only"),
            None => Target {
                base: format!("{scheme}://{host}:{port}"),
                tls,
                named: None,
            },
        })
    }
}

/// The HTTP client for `target`: over TLS it trusts exactly the
/// certificates in `ca`.
fn client(
    target: &Target,
    ca: Option<&std::path::Path>,
    timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    if target.tls {
        let Some(ca) = ca else {
            bail!(
                "{}: give --tls-ca FILE, the PEM certificate(s) to trust (the node's \
                 --tls-cert, or the CA that signed it)",
                target.base
            );
        };
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let tls = super::trust::client_config(&pem)
            .with_context(|| format!("--tls-ca {}", ca.display()))?;
        builder = builder.use_preconfigured_tls(tls);
    }
    if let Some((name, addr)) = &target.named {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .with_context(|| format!("resolving {addr}"))?
            .next()
            .with_context(|| format!("{addr} resolves to no address"))?;
        builder = builder.resolve(name, addr);
    }
    Ok(builder.build()?)
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    action: &Action,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let mut req = match action {
        Action::Status => http.get(format!("{base}/v1/cluster")),
        Action::Add { id, raft_addr } => http
            .post(format!("{base}/v1/cluster/members"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"id": id, "raft_addr": raft_addr}).to_string()),
        Action::Remove { id } => http.delete(format!("{base}/v1/cluster/members/{id}")),
    };
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|e| {
        // reqwest's own message is only "error sending request": the
        // cause (refused, a certificate not trusted) is in its sources.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        anyhow::anyhow!("no answer from {base}: {why}")
    })?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of {base}"))?;
    Ok((status, body))
}

/// `GET /v1/cluster` as a few lines.
fn status_text(s: &Value) -> String {
    let id = s["node_id"].as_u64().unwrap_or(0);
    let leader = s["leader_id"]
        .as_u64()
        .map_or("none".to_owned(), |l| l.to_string());
    let mut out = format!(
        "node {id}: {}, leader {leader}, term {}\nlog index {}, commit index {}, applied index {}\n",
        s["role"].as_str().unwrap_or("?"),
        s["term"],
        s["last_log_index"],
        s["commit_index"],
        s["applied_index"],
    );
    out.push_str(&members_text(s));
    out
}

/// The `members` of an answer, one a line, marking the leader and this node.
fn members_text(s: &Value) -> String {
    let members = s["members"].as_array().cloned().unwrap_or_default();
    let mut out = format!("members ({}):\n", members.len());
    for m in &members {
        let id = m["id"].as_u64().unwrap_or(0);
        let mut notes = Vec::new();
        if s["leader_id"].as_u64() == Some(id) {
            notes.push("leader");
        }
        if s["node_id"].as_u64() == Some(id) {
            notes.push("this node");
        }
        out.push_str(&format!(
            "  {id:<4} {:<28} {:<8}{}\n",
            m["raft_addr"].as_str().unwrap_or("?"),
            if m["voter"] == Value::Bool(true) {
                "voter"
            } else {
                "learner"
            },
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_addresses_become_base_urls() {
        let base = |given, trust| Target::of(given, trust, None).map(|t| (t.base, t.tls));
        let plain = |url: &str| Ok::<_, ()>((url.to_owned(), false));
        assert_eq!(
            base("127.0.0.1:8080", false).ok(),
            plain("http://127.0.0.1:8080").ok()
        );
        assert_eq!(
            base("0.0.0.0:8080", false).ok(),
            plain("http://127.0.0.1:8080").ok()
        );
        assert_eq!(
            base("http://node-1:80/", true).ok(),
            plain("http://node-1:80").ok()
        );
        let tls = Some(("https://127.0.0.1:8443".to_owned(), true));
        assert_eq!(base("0.0.0.0:8443", true).ok(), tls);
        assert_eq!(base("https://127.0.0.1:8443", false).ok(), tls);
        for bad in [
            "8080",
            "host",
            "host:x",
            "ftp://h:1",
            "http://h:1/v1",
            ":80",
        ] {
            assert!(base(bad, false).is_err(), "{bad}");
        }
        let named = Target::of("0.0.0.0:8443", true, Some("kv.default.svc")).unwrap();
        assert_eq!(named.base, "https://kv.default.svc:8443");
        assert_eq!(
            named.named,
            Some(("kv.default.svc".into(), "127.0.0.1:8443".into()))
        );
        assert!(Target::of("http://h:1", true, Some("n")).is_err());
    }

    #[test]
    fn members_are_listed_with_their_role() {
        let s = serde_json::json!({"node_id": 2, "leader_id": 1, "members": [
            {"id": 1, "raft_addr": "a:1", "voter": true},
            {"id": 2, "raft_addr": "b:2", "voter": false}]});
        let text = members_text(&s);
        assert!(text.starts_with("members (2):\n"), "{text}");
        assert!(text.contains("a:1") && text.contains("(leader)"), "{text}");
        assert!(text.contains("learner  (this node)"), "{text}");
    }
}
