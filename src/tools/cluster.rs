//! `memcached-lite cluster status|add|remove`: the operator's client for a
//! replicated group's HTTP API (`GET /v1/cluster`, `POST
//! /v1/cluster/members`, `DELETE /v1/cluster/members/{id}`). Any node of
//! the group takes every command. It reads the server's own
//! `MEMCACHED_LITE_HTTP_LISTEN` and `MEMCACHED_LITE_HTTP_TOKEN_FILE`, so
//! inside a pod or container `memcached-lite cluster status` needs no flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Arguments of `memcached-lite cluster`.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Any node's HTTP API: `host:port` (a wildcard such as 0.0.0.0 means
    /// this host) or an `http://` URL.
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
    let base = base_url(&args.http)?;
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
    let (status, body) = runtime.block_on(call(&base, token.as_deref(), &args.action, timeout))?;
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

/// `http://host:port` from `host:port` or a URL; wildcards become loopback.
fn base_url(given: &str) -> anyhow::Result<String> {
    if given.starts_with("https://") {
        bail!("--http {given}: this client speaks plain HTTP only; reach the node through a plain listener or a local port-forward");
    }
    let hostport = given
        .strip_prefix("http://")
        .unwrap_or(given)
        .trim_end_matches('/');
    let Some((host, port)) = hostport.rsplit_once(':') else {
        bail!("--http {given:?}: expected host:port or http://host:port");
    };
    if host.is_empty() || port.parse::<u16>().is_err() || hostport.contains('/') {
        bail!("--http {given:?}: expected host:port or http://host:port");
    }
    let host = match host {
        "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("http://{host}:{port}"))
}

async fn call(
    base: &str,
    token: Option<&str>,
    action: &Action,
    timeout: Duration,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()?;
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
    let resp = req
        .send()
        .await
        .with_context(|| format!("no answer from {base}"))?;
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
        assert_eq!(base_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base_url("0.0.0.0:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base_url("http://node-1:80/").unwrap(), "http://node-1:80");
        for bad in [
            "8080",
            "host",
            "host:x",
            "https://h:1",
            "http://h:1/v1",
            ":80",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
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
