//! The memcached front end: a pure parser ([`text`]), one module per
//! command family, and the connection loop that ties them to a socket.

pub mod admin;
pub mod arith;
pub mod connection;
pub mod keys;
pub mod reply;
pub mod retrieval;
pub mod server;
pub mod storage;
pub mod text;

use bytes::BytesMut;

use crate::server::Shared;
use text::Request;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Flush pending replies, then close (`quit`, `shutdown`).
    Close,
}

/// Whether a request may change stored data, so that under
/// `--durability sync` its reply must wait for the group commit.
pub fn mutates(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::Store { .. }
            | Request::Delete { .. }
            | Request::Touch { .. }
            | Request::Arith { .. }
            | Request::FlushAll { .. }
            | Request::Get { touch: Some(_), .. }
    )
}

/// Runs one request, appending its reply (if any) to `out`.
pub fn execute(req: Request<'_>, shared: &Shared, out: &mut BytesMut) -> Flow {
    let kv = &*shared.kv;
    let mark = out.len();
    let noreply = match req {
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => {
            storage::execute(kv, mode, key, flags, exptime, data, out);
            noreply
        }
        Request::Get { keys, cas, touch } => {
            retrieval::execute(kv, keys, cas, touch, out);
            false
        }
        Request::Delete { key, noreply } => {
            keys::delete(kv, key, out);
            noreply
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            keys::touch(kv, key, exptime, out);
            noreply
        }
        Request::Arith {
            key,
            delta,
            incr,
            noreply,
        } => {
            arith::execute(kv, key, delta, incr, out);
            noreply
        }
        Request::FlushAll { delay, noreply } => {
            admin::flush_all(kv, delay, out);
            noreply
        }
        Request::Stats { args } => {
            admin::stats(shared, args, out);
            false
        }
        Request::Version => {
            reply::line(out, &format!("VERSION {}", crate::server::PROTOCOL_VERSION));
            false
        }
        Request::Verbosity { noreply } => {
            reply::line(out, "OK");
            noreply
        }
        Request::MetaNoop => {
            reply::line(out, "MN");
            false
        }
        Request::MemLimit { megabytes, noreply } => {
            kv.set_memory_limit(megabytes.saturating_mul(1024 * 1024));
            reply::line(out, "OK");
            noreply
        }
        Request::Quit => return Flow::Close,
        Request::Shutdown => return admin::shutdown(shared, out),
    };
    if noreply {
        out.truncate(mark);
    }
    Flow::Continue
}
