//! Raft's messages between nodes: HTTP/1.1 POSTs with postcard bodies to
//! each peer's `--raft-listen` address (`/raft/v2/append`, `.../vote`,
//! `.../snapshot`), plus `.../forward`, by which a follower hands a
//! client's write to the leader, `.../members`, by which it hands the
//! leader a membership change, and `.../applied`, the leader's applied
//! index for a follower's readiness. One pooled HTTP client per node keeps the
//! connections open; the server side is a small axum router.
//!
//! # Wire format
//!
//! postcard is not self-describing: a body encoded by one release and
//! decoded by another whose types changed can fail, or worse, decode into
//! other values. So every path carries [`WIRE_FORMAT`], and a node serves
//! only its own: a request for another format (an older release's
//! unversioned `/raft/append`, or `/raft/v3/...`) is refused with 409 and
//! a message, and logged, before anything decodes it; an older node asked
//! for `/raft/v2/...` answers 404, which the sender reports the same way.
//! A rolling update across a change of format therefore stops at its first
//! new node (it never catches up, so it never becomes ready) instead of
//! mixing formats; docs/replication.md, "Upgrading", says what to do then.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::future::BoxFuture;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::responder::OneshotResponder;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format of every message between nodes, and of what they carry
/// (log entries, forwarded writes and their answers, snapshots). Bump it
/// whenever one of those types changes its encoding. 1 was the releases
/// before formats were checked (paths without a version).
pub const WIRE_FORMAT: u32 = 2;

/// The path under which this release serves a message (`/raft/append` ->
/// `/raft/v2/append`).
fn versioned(path: &str) -> String {
    let rest = path.strip_prefix("/raft").unwrap_or(path);
    format!("/raft/v{WIRE_FORMAT}{rest}")
}

/// The node-level type configuration every part of this module assumes
/// (openraft's default responder, which its membership calls require).
pub trait Config:
    RaftTypeConfig<
    NodeId = u64,
    Node = BasicNode,
    SnapshotData = std::io::Cursor<Vec<u8>>,
    Responder = OneshotResponder<Self>,
>
{
}
impl<C> Config for C where
    C: RaftTypeConfig<
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        Responder = OneshotResponder<C>,
    >
{
}

/// How the application answers a forwarded write: the body in, the answer out.
pub type ForwardHandler =
    Arc<dyn Fn(Bytes) -> BoxFuture<'static, Result<Vec<u8>, String>> + Send + Sync>;

/// Sends raft messages to peers.
#[derive(Clone)]
pub struct Network {
    http: reqwest::Client,
}

impl Network {
    pub fn new() -> Self {
        Network {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client without TLS builds"),
        }
    }

    /// POSTs `body` to `http://<addr><path>` and returns the answer's bytes.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, PostError> {
        let path = versioned(path);
        let resp = self
            .http
            .post(format!("http://{addr}{path}"))
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    PostError::Unreachable(e.to_string())
                } else {
                    PostError::Network(e.to_string())
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PostError::Network(e.to_string()))?;
        if status == StatusCode::NOT_FOUND {
            return Err(PostError::Network(format!(
                "{addr} does not serve {path}: it runs a release with another wire format \
                 (this node speaks v{WIRE_FORMAT}; see docs/replication.md, \"Upgrading\")"
            )));
        }
        if !status.is_success() {
            return Err(PostError::Network(format!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        Ok(bytes)
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a POST to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("network: {0}")]
    Network(String),
}

/// One peer, as openraft's replication task sees it.
pub struct Peer {
    network: Network,
    target: u64,
    addr: String,
}

impl<C: Config> RaftNetworkFactory<C> for Network
where
    C::D: Serialize + DeserializeOwned,
    C::Entry: Serialize + DeserializeOwned,
{
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            network: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            postcard::to_allocvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let bytes = self
            .network
            .post(&self.addr, path, body, option.hard_ttl())
            .await
            .map_err(|e| match e {
                PostError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                PostError::Network(_) => RPCError::Network(NetworkError::new(&e)),
            })?;
        let answer: Result<Resp, RaftError<u64, E>> =
            postcard::from_bytes(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<C: Config> RaftNetwork<C> for Peer
where
    C::D: Serialize + DeserializeOwned,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("/raft/vote", &rpc, &option).await
    }
}

struct Served<C: Config> {
    raft: Raft<C>,
    forward: ForwardHandler,
    restored: super::Restored,
    /// `--quorum-timeout-ms`, for each step of a membership change.
    quorum: Duration,
}

/// The routes a node serves on `--raft-listen`; `quorum` bounds each
/// commit of a membership change the node makes as leader.
pub fn router<C: Config>(
    raft: Raft<C>,
    forward: ForwardHandler,
    restored: super::Restored,
    quorum: Duration,
) -> Router
where
    C::D: Serialize + DeserializeOwned,
    C::R: Serialize,
    C::Entry: Serialize + DeserializeOwned,
{
    Router::new()
        .route(&versioned("/raft/append"), post(append::<C>))
        .route(&versioned("/raft/vote"), post(vote::<C>))
        .route(&versioned("/raft/snapshot"), post(snapshot::<C>))
        .route(&versioned("/raft/forward"), post(forwarded::<C>))
        .route(&versioned("/raft/initialized"), post(initialized::<C>))
        .route(&versioned("/raft/read-index"), post(read_index::<C>))
        .route(&versioned("/raft/members"), post(members::<C>))
        .route(&versioned("/raft/applied"), post(applied::<C>))
        .fallback(other_format)
        .with_state(Arc::new(Served {
            raft,
            forward,
            restored,
            quorum,
        }))
}

/// Any other path: a peer of another release (or a stray client). Refused
/// before anything is decoded, and logged at most every 10 s, since the
/// peer retries every heartbeat.
async fn other_format(uri: axum::http::Uri) -> Response {
    if !uri.path().starts_with("/raft/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    static LOGGED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let message = format!(
        "wire format mismatch: this node speaks v{WIRE_FORMAT} and serves /raft/v{WIRE_FORMAT}/...; \
         a request for {} comes from a release with another format. Every node of a group \
         must run releases of one wire format: see docs/replication.md, \"Upgrading\"",
        uri.path()
    );
    {
        let mut last = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(std::time::Instant::now());
            tracing::error!("{message}");
        }
    }
    (StatusCode::CONFLICT, message).into_response()
}

fn encode<T: Serialize>(value: &T) -> Response {
    match postcard::to_allocvec(value) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, postcard::Error> {
    postcard::from_bytes(body)
}

fn bad_request(e: postcard::Error) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

async fn append<C: Config>(State(s): State<Arc<Served<C>>>, body: Bytes) -> Response
where
    C::D: Serialize + DeserializeOwned,
    C::Entry: Serialize + DeserializeOwned,
{
    match decode::<AppendEntriesRequest<C>>(&body) {
        Ok(req) => encode(&s.raft.append_entries(req).await),
        Err(e) => bad_request(e),
    }
}

async fn vote<C: Config>(State(s): State<Arc<Served<C>>>, body: Bytes) -> Response {
    match decode::<VoteRequest<u64>>(&body) {
        Ok(req) => encode(&s.raft.vote(req).await),
        Err(e) => bad_request(e),
    }
}

async fn snapshot<C: Config>(State(s): State<Arc<Served<C>>>, body: Bytes) -> Response
where
    C::D: Serialize + DeserializeOwned,
{
    match decode::<InstallSnapshotRequest<C>>(&body) {
        Ok(req) => encode(&s.raft.install_snapshot(req).await),
        Err(e) => bad_request(e),
    }
}

/// Whether this node belongs to a group already (asked by a node that
/// would otherwise form one).
async fn initialized<C: Config>(State(s): State<Arc<Served<C>>>) -> Response {
    match s.raft.is_initialized().await {
        Ok(yes) => encode(&yes),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The leader's side of a linearizable read on a follower: confirms its
/// leadership with a quorum and answers the log index the follower must
/// have applied before it reads (never below a restarted leader's floor,
/// see [`super::Restored`]).
async fn read_index<C: Config>(State(s): State<Arc<Served<C>>>) -> Response {
    match s.raft.ensure_linearizable().await {
        Ok(read) => encode(&read.map_or(0, |l| l.index).max(s.restored.floor(&s.raft))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn forwarded<C: Config>(State(s): State<Arc<Served<C>>>, body: Bytes) -> Response {
    match (s.forward)(body).await {
        Ok(bytes) => bytes.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

/// The leader's side of a membership change a follower forwarded: the
/// answer is the change's `Result`, encoded (a refusal is an answer too).
async fn members<C: Config>(State(s): State<Arc<Served<C>>>, body: Bytes) -> Response {
    match decode::<super::members::Change>(&body) {
        Ok(change) => encode(&super::members::on_leader(&s.raft, &change, s.quorum).await),
        Err(e) => bad_request(e),
    }
}

/// This node's applied index (asked of the leader by a follower checking
/// its readiness; no quorum round, unlike `/raft/read-index`).
async fn applied<C: Config>(State(s): State<Arc<Served<C>>>) -> Response {
    let index = s
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index);
    encode(&index)
}
