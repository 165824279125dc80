//! One client connection: read into a bounded buffer, parse and execute
//! every complete request in it, write all replies with one syscall, repeat.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::text::{self, Frame};
use super::{execute, reply, Flow};
use crate::server::Shared;
use crate::stats::add;

/// Initial read buffer: small, so idle connections stay cheap.
const INITIAL_READ: usize = 4 * 1024;
/// Replies are written early once this much is pending, bounding memory
/// when a client pipelines many large gets.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// A buffer grown past this by a large value is released once empty.
const SHRINK_ABOVE: usize = 64 * 1024;

pub struct Connection {
    socket: TcpStream,
    shared: Arc<Shared>,
    input: BytesMut,
    output: BytesMut,
    /// Bytes of a refused data block still to be discarded.
    swallow: usize,
    /// A write ran since the last flush: under `--durability sync` its
    /// reply waits for the group commit.
    uncommitted: bool,
}

impl Connection {
    pub fn new(socket: TcpStream, shared: Arc<Shared>) -> Self {
        Connection {
            socket,
            shared,
            input: BytesMut::with_capacity(INITIAL_READ),
            output: BytesMut::new(),
            swallow: 0,
            uncommitted: false,
        }
    }

    pub async fn run(mut self) -> std::io::Result<()> {
        let mut shutdown = self.shared.shutdown_signal();
        loop {
            let flow = self.process().await?;
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
            };
            if read == 0 {
                return Ok(());
            }
            add(&self.shared.kv.stats.bytes_read, read as u64);
        }
    }

    /// Handles every complete frame in the input buffer.
    async fn process(&mut self) -> std::io::Result<Flow> {
        let max_item = self.shared.kv.max_item_size();
        loop {
            if self.swallow > 0 {
                let n = self.swallow.min(self.input.len());
                self.input.advance(n);
                self.swallow -= n;
                if self.swallow > 0 {
                    return Ok(Flow::Continue);
                }
            }
            let (flow, consumed) = match text::parse(&self.input, max_item) {
                Frame::Incomplete { need } => {
                    if need > self.input.capacity() {
                        self.input.reserve(need - self.input.len());
                    }
                    return Ok(Flow::Continue);
                }
                Frame::Close => return Ok(Flow::Close),
                Frame::Request { req, len } => {
                    self.uncommitted |= super::mutates(&req);
                    (execute(req, &self.shared, &mut self.output), len)
                }
                Frame::Error { msg, noreply, len } => {
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
                    if let Some(key) = discard {
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
            self.input.advance(consumed);
            if flow == Flow::Close {
                return Ok(flow);
            }
            if self.output.len() >= WRITE_HIGH_WATER {
                self.flush().await?;
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.uncommitted) {
            // One wait per batch: every write of the batch is acknowledged
            // by the same group commit. If it fails, close without replying.
            if let Some(ticket) = self.shared.kv.commit_ticket() {
                self.shared
                    .kv
                    .wait_durable(ticket)
                    .await
                    .map_err(std::io::Error::other)?;
            }
        }
        if !self.output.is_empty() {
            self.socket.write_all(&self.output).await?;
            add(&self.shared.kv.stats.bytes_written, self.output.len() as u64);
            self.output.clear();
            if self.output.capacity() > SHRINK_ABOVE {
                self.output = BytesMut::new();
            }
        }
        Ok(())
    }
}
