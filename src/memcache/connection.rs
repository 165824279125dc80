//! One client connection: read into a bounded buffer, parse and execute
//! every complete request in it, write all replies with one syscall, repeat.
//!
//! The read buffer is bounded by the parser: a line without `\n` may grow
//! to `frame::MAX_LINE` (or `text::parse::MAX_GET_LINE` for `get` key lists) before
//! the connection is closed, and a data block to `--max-item-size` plus its
//! line (larger ones are discarded as they arrive, never buffered). The loop
//! is generic over the stream so plain TCP and TLS share one code path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{self as auth_step, AuthFrame};
use super::batch::{Batch, Kind as BatchKind};
use super::binary::execute as binary_cmd;
use super::text::crawler::{metadump_step, Metadump};
use super::text::operator::Classes;
use super::text::{self, parse::Frame};
use super::{reply, Flow};
use crate::auth::Credentials;
use crate::kv::stats::add;
use crate::state::{AppState, ConnEntry};

/// Initial read buffer: small, so idle connections stay cheap.
const INITIAL_READ: usize = 4 * 1024;
/// Replies are written early once this much is pending, bounding memory
/// when a client pipelines many large gets.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// A buffer grown past this by a large value is released once empty.
const SHRINK_ABOVE: usize = 64 * 1024;

pub struct Connection<S> {
    socket: S,
    shared: Arc<AppState>,
    input: BytesMut,
    output: BytesMut,
    /// Bytes of a refused data block still to be discarded.
    swallow: usize,
    /// Binary protocol or text, decided by the first byte received.
    binary: Option<bool>,
    /// `Some` until the client authenticates (only with `--auth-file`).
    unauthenticated: Option<Arc<Credentials>>,
    /// A SASL PLAIN exchange awaits its `SASL_STEP`.
    sasl_pending: bool,
    /// `--idle-timeout`: close after this long without a complete command.
    idle: Option<Duration>,
    last_command: Instant,
    /// Writes since the last flush: under `--durability sync` their
    /// replies wait for the group commit (see [`super::batch`]).
    batch: Batch,
    /// An `lru_crawler metadump` being streamed: requests after it wait.
    dump: Option<(Classes, Metadump)>,
    /// This connection's row in `stats conns`.
    listed: Option<Arc<ConnEntry>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(socket: S, shared: Arc<AppState>, auth: Option<Arc<Credentials>>) -> Self {
        let idle_secs = shared.config.security.idle_timeout;
        Connection {
            socket,
            shared,
            input: BytesMut::with_capacity(INITIAL_READ),
            output: BytesMut::new(),
            swallow: 0,
            binary: None,
            unauthenticated: auth,
            sasl_pending: false,
            idle: (idle_secs > 0).then(|| Duration::from_secs(idle_secs)),
            last_command: Instant::now(),
            batch: Batch::default(),
            dump: None,
            listed: None,
        }
    }

    /// Shows this connection's state in `stats conns`.
    pub fn listed(mut self, entry: Arc<ConnEntry>) -> Self {
        self.listed = Some(entry);
        self
    }

    pub async fn run(mut self) -> std::io::Result<()> {
        let mut shutdown = self.shared.shutdown_signal();
        loop {
            self.set_busy(true);
            let flow = self.process().await;
            self.set_busy(false);
            let flow = flow?;
            self.flush().await?;
            if flow == Flow::Close {
                let _ = self.socket.shutdown().await;
                return Ok(());
            }
            if self.input.is_empty() && self.input.capacity() > SHRINK_ABOVE {
                self.input = BytesMut::with_capacity(INITIAL_READ);
            }
            if self.input.capacity() - self.input.len() < 1024 {
                self.input.reserve(INITIAL_READ);
            }
            let read = tokio::select! {
                r = self.socket.read_buf(&mut self.input) => r?,
                _ = shutdown.changed() => return Ok(()),
                _ = idle_expired(self.idle, self.last_command) => {
                    tracing::debug!("closing idle connection");
                    return Ok(());
                }
            };
            if read == 0 {
                return Ok(());
            }
            add(&self.shared.kv.stats.bytes_read, read as u64);
        }
    }

    fn set_busy(&self, busy: bool) {
        if let Some(entry) = &self.listed {
            entry.set_busy(busy, self.shared.kv.now());
        }
    }

    /// Handles every complete frame in the input buffer.
    async fn process(&mut self) -> std::io::Result<Flow> {
        let max_item = self.shared.kv.max_item_size();
        loop {
            if let Some((classes, dump)) = &mut self.dump {
                let kv = &self.shared.kv;
                if metadump_step(kv, *classes, dump, &mut self.output) {
                    self.dump = None;
                }
                if self.output.len() >= WRITE_HIGH_WATER {
                    self.flush().await?;
                }
                // A long dump shares the worker with the other connections.
                tokio::task::yield_now().await;
                continue;
            }
            if self.swallow > 0 {
                let n = self.swallow.min(self.input.len());
                self.input.advance(n);
                self.swallow -= n;
                if self.swallow > 0 {
                    return Ok(Flow::Continue);
                }
            }
            if self.unauthenticated.is_some() {
                let gate = if self.is_binary() {
                    self.sasl_gate().await
                } else {
                    self.authenticate()
                };
                match gate {
                    Some(Flow::Continue | Flow::Dump(_)) => continue,
                    Some(Flow::Close) => return Ok(Flow::Close),
                    None => return Ok(Flow::Continue),
                }
            }
            if self.is_binary() {
                self.batch.before(&self.shared.kv);
                // In a group, pipelined writes share commit rounds, and
                // pipelined reads one read index. A single node has no
                // runs, and skips building their futures.
                if self.shared.kv.is_replicated() {
                    let run =
                        super::binary::run::write_run(&self.input, &self.shared, &mut self.output);
                    if let Some(run) = run.await {
                        self.ran(run).await?;
                        continue;
                    }
                    let run =
                        super::binary::run::read_run(&self.input, &self.shared, &mut self.output);
                    if let Some(run) = run.await {
                        self.ran(run).await?;
                        continue;
                    }
                }
                let start = self.output.len();
                let kind = binary_kind(&self.input);
                let (flow, len) =
                    match binary_cmd::step(&self.input, &self.shared, &mut self.output).await {
                        binary_cmd::Step::Incomplete { need } => {
                            if need > self.input.capacity() {
                                self.input.reserve(need - self.input.len());
                            }
                            return Ok(Flow::Continue);
                        }
                        binary_cmd::Step::Done { flow, len, skip } => {
                            let end = self.output.len();
                            // Any binary frame may write.
                            self.batch.after(&self.shared.kv, (start, end), kind, true);
                            self.swallow = skip;
                            (flow, len)
                        }
                    };
                self.input.advance(len);
                self.last_command = Instant::now();
                if flow == Flow::Close {
                    return Ok(flow);
                }
                if self.output.len() >= WRITE_HIGH_WATER {
                    self.flush().await?;
                }
                continue;
            }
            self.batch.before(&self.shared.kv);
            // In a group, pipelined writes share commit rounds, and
            // pipelined reads one read index (a single node: see above).
            if self.shared.kv.is_replicated() {
                let run =
                    text::run::write_run(&self.input, max_item, &self.shared, &mut self.output);
                if let Some(run) = run.await {
                    self.ran(run).await?;
                    continue;
                }
                let run =
                    text::run::read_run(&self.input, max_item, &self.shared, &mut self.output);
                if let Some(run) = run.await {
                    self.ran(run).await?;
                    continue;
                }
            }
            let start = self.output.len();
            let mut mutating = false;
            let (flow, consumed) = match text::parse::parse(&self.input, max_item) {
                Frame::Incomplete { need } => {
                    // Size for the whole frame only once half of it has
                    // arrived: memory follows bytes received, not declared.
                    if need > self.input.capacity() && self.input.len() >= need / 2 {
                        self.input.reserve(need - self.input.len());
                    }
                    return Ok(Flow::Continue);
                }
                Frame::Close => return Ok(Flow::Close),
                Frame::Request { req, len } => {
                    mutating = text::mutates(&req);
                    (
                        text::execute(req, &self.shared, &mut self.output).await,
                        len,
                    )
                }
                Frame::Error { msg, noreply, len } => {
                    text::METRICS.error();
                    if !noreply {
                        reply::line(&mut self.output, msg);
                    }
                    (Flow::Continue, len)
                }
                Frame::Swallow {
                    msg,
                    noreply,
                    len,
                    skip,
                    discard,
                } => {
                    text::METRICS.error();
                    if let Some(key) = discard {
                        mutating = true;
                        if let Err(e) = self.shared.kv.discard(key) {
                            tracing::warn!("dropping oversized key's old value failed: {e}");
                        }
                    }
                    if !noreply {
                        reply::line(&mut self.output, msg);
                    }
                    self.swallow = skip;
                    (Flow::Continue, len)
                }
            };
            let end = self.output.len();
            self.batch
                .after(&self.shared.kv, (start, end), BatchKind::Text, mutating);
            self.input.advance(consumed);
            self.last_command = Instant::now();
            match flow {
                Flow::Close => return Ok(flow),
                Flow::Dump(classes) => self.dump = Some((classes, Metadump::default())),
                Flow::Continue => {}
            }
            if self.output.len() >= WRITE_HIGH_WATER {
                self.flush().await?;
            }
        }
    }

    /// Books a run of pipelined writes (text or binary) that went as one
    /// unit: each reply in the batch, the input it consumed.
    async fn ran(&mut self, run: super::batch::Run) -> std::io::Result<()> {
        for (reply, kind) in run.replies {
            self.batch.after(&self.shared.kv, reply, kind, run.mutating);
        }
        self.input.advance(run.consumed);
        self.last_command = Instant::now();
        if self.output.len() >= WRITE_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    /// memcached's rule: a connection whose first byte is the binary
    /// request magic speaks binary from then on; anything else is text.
    fn is_binary(&mut self) -> bool {
        match (self.binary, self.input.first()) {
            (Some(binary), _) => binary,
            (None, Some(&first)) => *self
                .binary
                .insert(first == super::binary::parse::REQUEST_MAGIC),
            (None, None) => false,
        }
    }

    /// One step of the `--auth-file` gate of a binary connection (SASL
    /// PLAIN); `None` when more bytes are needed, or when the request is
    /// one served before authentication (it then runs as usual).
    async fn sasl_gate(&mut self) -> Option<Flow> {
        let creds = self.unauthenticated.as_ref()?;
        let max_item = self.shared.kv.max_item_size();
        let gate = super::binary::sasl::step(
            &self.input,
            max_item,
            creds,
            &mut self.sasl_pending,
            &mut self.output,
        );
        let (len, close, checked) = match gate {
            super::binary::sasl::Gate::Incomplete { need } => {
                if need > self.input.capacity() {
                    self.input.reserve(need - self.input.len());
                }
                return None;
            }
            super::binary::sasl::Gate::Pass => {
                // Run this one request through the normal binary path,
                // then gate again.
                return match binary_cmd::step(&self.input, &self.shared, &mut self.output).await {
                    binary_cmd::Step::Incomplete { .. } => None,
                    binary_cmd::Step::Done { flow, len, skip } => {
                        self.swallow = skip;
                        self.input.advance(len);
                        self.last_command = Instant::now();
                        Some(flow)
                    }
                };
            }
            super::binary::sasl::Gate::Replied {
                len,
                close,
                checked,
            } => (len, close, checked),
        };
        if let Some(ok) = checked {
            crate::kv::stats::bump(&self.shared.kv.stats.auth_cmds);
            if ok {
                self.unauthenticated = None;
            } else {
                crate::kv::stats::bump(&self.shared.kv.stats.auth_errors);
                tracing::debug!("memcached SASL authentication failure");
            }
        }
        self.input.advance(len);
        self.last_command = Instant::now();
        Some(if close { Flow::Close } else { Flow::Continue })
    }

    /// One step of the `--auth-file` gate; `None` when more bytes are needed.
    fn authenticate(&mut self) -> Option<Flow> {
        let creds = self.unauthenticated.as_ref()?;
        let (msg, len, flow) = match auth_step::parse(&self.input) {
            AuthFrame::Incomplete { .. } => return None,
            AuthFrame::Reply { msg, len, close } => {
                (msg, len, if close { Flow::Close } else { Flow::Continue })
            }
            AuthFrame::Attempt {
                user,
                password,
                len,
            } => {
                // Counted as memcached counts its `-Y` checks: every
                // credential check, and each failed one.
                crate::kv::stats::bump(&self.shared.kv.stats.auth_cmds);
                if creds.verify(user, password) {
                    self.unauthenticated = None;
                    ("STORED", len, Flow::Continue)
                } else {
                    crate::kv::stats::bump(&self.shared.kv.stats.auth_errors);
                    tracing::debug!("memcached authentication failure");
                    (auth_step::ERR_FAILURE, len, Flow::Continue)
                }
            }
        };
        reply::line(&mut self.output, msg);
        self.input.advance(len);
        self.last_command = Instant::now();
        Some(flow)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        // One wait per batch: every write of the batch is acknowledged by
        // the same group commit; if it fails, each of their replies
        // becomes the error.
        self.batch.commit(&self.shared.kv, &mut self.output).await;
        if !self.output.is_empty() {
            // `flush` pushes out what TLS still buffers (a no-op for TCP).
            let write = async {
                self.socket.write_all(&self.output).await?;
                self.socket.flush().await
            };
            // A client that stops reading must not pin the connection forever.
            match self.idle {
                Some(limit) => tokio::time::timeout(limit, write).await.map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write stalled")
                })??,
                None => write.await?,
            }
            add(
                &self.shared.kv.stats.bytes_written,
                self.output.len() as u64,
            );
            self.output.clear();
            if self.output.capacity() > SHRINK_ABOVE {
                self.output = BytesMut::new();
            }
        }
        Ok(())
    }
}

/// How a binary request at the start of `input` is answered, for
/// [`Batch`] (a frame shorter than its header is not executed yet).
fn binary_kind(input: &[u8]) -> BatchKind {
    match input.get(..16) {
        Some(h) => BatchKind::Binary {
            opcode: h[1],
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        },
        None => BatchKind::Binary {
            opcode: 0,
            opaque: 0,
        },
    }
}

/// Resolves when a connection idle since `since` has used up `limit`.
async fn idle_expired(limit: Option<Duration>, since: Instant) {
    match limit {
        Some(limit) => tokio::time::sleep_until((since + limit).into()).await,
        None => std::future::pending().await,
    }
}
