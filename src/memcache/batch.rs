//! The replies of a batch of requests awaiting the group commit
//! (`--durability sync`).
//!
//! A connection answers a batch of pipelined requests with one write, and
//! under `--durability sync` only after the group commit covering the
//! batch's writes. If that commit fails, the store has taken those writes
//! back (see `store::undo`), so none of their replies may say they were
//! stored, and a read later in the batch may have seen one of them: every
//! reply from the batch's first write on is replaced by the error, each
//! request still getting its own answer on the open connection, except a
//! write that an earlier, good round already made durable (a batch can
//! span two rounds: its first writes may be on disk, and readable, when a
//! later round fails): its reply stands. Replies before the first write
//! stand.
//!
//! Which writes are the batch's own comes from [`Kv::take_own_writes`],
//! taken around each request (nothing yields in between). A replicated
//! write is applied to the store by the group's apply task, not on this
//! thread: a batch with one waits for every write since it began.

use bytes::BytesMut;

use super::binary::execute::refused;
use super::reply;
use crate::kv::Kv;

/// How a request is answered, so its reply can be replaced by an error.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A text or meta request: a `SERVER_ERROR` line, unless it had no
    /// reply (`noreply`, `q` flag).
    Text,
    /// A binary request: an `ETMPFAIL` response, even to a quiet one.
    Binary { opcode: u8, opaque: u32 },
}

/// The most pipelined writes a front end proposes as one run in a group
/// (a run's writes and replies are held in memory together).
pub const MAX_RUN: usize = 64;

/// What a run of pipelined writes, or of reads, did (`text::run`,
/// `binary::run`): input bytes consumed, and each reply's range in the
/// output (empty when the request answers nothing) with how to replace it.
pub struct Run {
    pub consumed: usize,
    pub replies: Vec<((usize, usize), Kind)>,
    /// A run of writes (a run of reads writes nothing).
    pub mutating: bool,
}

/// The requests at the start of `input` that `take` accepts (given the
/// rest of the input, a request and its length, or `None` to stop), at
/// most [`MAX_RUN`], and the bytes they span: what a run covers.
pub fn leading<'a, R>(
    input: &'a [u8],
    mut take: impl FnMut(&'a [u8]) -> Option<(R, usize)>,
) -> (Vec<R>, usize) {
    let (mut reqs, mut consumed) = (Vec::new(), 0);
    while reqs.len() < MAX_RUN {
        let Some((req, len)) = take(&input[consumed..]) else {
            break;
        };
        reqs.push(req);
        consumed += len;
    }
    (reqs, consumed)
}

/// The write generations (lowest, highest) of one request's writes.
type Generations = (u64, u64);

/// The pending batch of one connection.
#[derive(Default)]
pub struct Batch {
    /// The write generation before the batch's first request.
    since: Option<u64>,
    /// Generations of this batch's writes (lowest, highest).
    own: Option<(u64, u64)>,
    /// A request that may write did so on another thread (a replicated
    /// write is applied by the group's apply task): the batch then waits
    /// for every write since `since`, as it cannot tell its own.
    elsewhere: bool,
    /// Each reply from the first write on: where it starts and ends in the
    /// output buffer, how to replace it, and the generations of its own
    /// writes (none for a read, or a write applied elsewhere).
    replies: Vec<(usize, usize, Kind, Option<Generations>)>,
}

impl Batch {
    /// Before a request: forgets writes that are not this request's.
    pub fn before(&mut self, kv: &Kv) {
        kv.take_own_writes();
        if self.since.is_none() {
            self.since = Some(kv.generation());
        }
    }

    /// After a request whose reply is `output[start..end]`; `mutating`:
    /// the request may write.
    pub fn after(&mut self, kv: &Kv, (start, end): (usize, usize), kind: Kind, mutating: bool) {
        let mine = kv.take_own_writes();
        match mine {
            Some((lo, hi)) => {
                self.own = Some(match self.own {
                    Some((l, h)) => (l.min(lo), h.max(hi)),
                    None => (lo, hi),
                });
            }
            None if mutating && kv.is_replicated() => self.elsewhere = true,
            None => {}
        }
        if self.own.is_some() || self.elsewhere {
            self.replies.push((start, end, kind, mine));
        }
    }

    /// Waits for the commit of the batch's writes (none: at once); if it
    /// failed, rewrites their replies in `output` to the error.
    pub async fn commit(&mut self, kv: &Kv, output: &mut BytesMut) {
        let since = self.since.take().unwrap_or(0);
        let own = self.own.take();
        let elsewhere = std::mem::take(&mut self.elsewhere);
        let replies = std::mem::take(&mut self.replies);
        let ticket = match (own, elsewhere) {
            (_, true) => kv.commit_ticket(None, since),
            (Some(own), false) => kv.commit_ticket(Some(own), since),
            (None, false) => return,
        };
        let Some(ticket) = ticket else {
            return;
        };
        let Err(e) = kv.wait_durable(ticket).await else {
            return;
        };
        let why = match e.storage_fault() {
            Some(f) => f.to_string(),
            None => {
                tracing::error!("memcached writes not made durable: {e}");
                "storage failure".to_owned()
            }
        };
        let Some(&(first, _, _, _)) = replies.first() else {
            return;
        };
        let last = replies.iter().map(|r| r.1).max().unwrap_or(first);
        let tail = output.split_off(first);
        for (start, end, kind, mine) in replies {
            // Asking about one write answers at once (its round is over),
            // or after the next round if it came after the failed one.
            let durable = match mine.and_then(|own| kv.commit_ticket(Some(own), since)) {
                Some(ticket) => kv.wait_durable(ticket).await.is_ok(),
                None => false,
            };
            match kind {
                _ if durable => output.extend_from_slice(&tail[start - first..end - first]),
                Kind::Text if start == end => {}
                Kind::Text => reply::line(output, &format!("SERVER_ERROR {why}")),
                Kind::Binary { opcode, opaque } => refused(output, opcode, opaque, &why),
            }
        }
        // Output after the last recorded reply (none is expected) stays.
        output.extend_from_slice(&tail[last - first..]);
    }
}
