//! `GET /v1/watch`: the change feed ([`crate::kv::feed`]) as Server-Sent
//! Events. One event per change made by any protocol, numbered by
//! revision (the SSE `id`), so that a client reconnecting with
//! `Last-Event-ID` (browsers do it by themselves) gets what it missed while
//! the history still holds it, or `resync` when it must re-list.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use crate::http::error::{ApiError, ErrorBody};
use crate::kv::feed::{Change, ChangeKind, Ended, Filter, Refused, Subscription};
use crate::kv::Kv;
use crate::rules::{exptime, valid_key, MAX_KEY};
use crate::state::AppState;

/// How often an idle stream gets a keep-alive comment (`: keep-alive`), so
/// that proxies keep it open and a dead client is noticed.
/// (Unit tests wait a fifth of a second instead.)
pub const KEEP_ALIVE: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(15)
};

/// Query of `GET /v1/watch`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Follow the keys starting with this (default: every key). Not with `key`.
    prefix: Option<String>,
    /// Follow this one key. Not with `prefix`.
    key: Option<String>,
    /// Replay the retained changes after this revision first (the
    /// `Last-Event-ID` header, which browsers send when they reconnect,
    /// takes precedence). Older than the history: a `resync` event.
    #[param(minimum = 0)]
    since: Option<u64>,
    /// Add each value (base64) to `set` events, up to 64 KiB; larger
    /// values are left out and flagged `"value_omitted": true`.
    values: Option<bool>,
}

/// Watch changes.
///
/// A stream of Server-Sent Events (`text/event-stream`), one per change
/// made by any protocol to the keys followed:
///
/// ```text
/// id: 1048601
/// event: set
/// data: {"key":"user:42","cas":1048600,"flags":0,"ttl":null,"size":5}
/// ```
///
/// `event` is `set` (every storage command, incr/decr, and touch/gat,
/// which report the new `ttl`), `delete` (with `"evicted": true` for an
/// item evicted under `--eviction lru`), `expire` (an expired item
/// removed) or `flush` (`flush_all`; data `{"at": <unix time it takes
/// effect>}`, sent to every watcher). Keys that are not UTF-8 come with
/// `key_base64` as in the listing. `id` is the change's revision: it
/// increases with every change; in a replicated group it is the log index,
/// the same on every node. `event: resync` (data
/// `{"reason": "history"|"overflow"|"reset", "revision": n}`) says changes
/// were lost: re-list (`GET /v1/keys`). After `overflow` (this client fell
/// more than `--watch-queue` changes behind) or `reset` the stream ends.
/// A comment line is sent every 15 s while nothing changes.
#[utoipa::path(
    get,
    path = "/v1/watch",
    tag = "keys",
    operation_id = "watch",
    params(
        WatchQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last revision received; the changes after it are replayed while retained (else `resync`). Takes precedence over `since`."),
    ),
    responses(
        (status = 200, description = "The event stream; it stays open", content_type = "text/event-stream", body = String,
            example = "id: 1048601\nevent: set\ndata: {\"key\":\"user:42\",\"cas\":1048600,\"flags\":0,\"ttl\":null,\"size\":5}\n\n"),
        (status = 400, description = "Both `prefix` and `key`, a bad key or prefix, a bad `since` or `Last-Event-ID`", body = ErrorBody, example = json!({"error": "bad_request", "message": "give prefix or key, not both"})),
        (status = 503, description = "`--max-watchers` streams are open already, or the server is shutting down", body = ErrorBody, example = json!({"error": "unavailable", "message": "too many watchers (--max-watchers 1024)"})),
    )
)]
pub async fn watch(
    State(shared): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<WatchQuery>,
) -> Result<Response, ApiError> {
    let filter = match (q.prefix, q.key) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("give prefix or key, not both".into()))
        }
        (_, Some(key)) => {
            let key = key.into_bytes();
            if key.len() > MAX_KEY || !valid_key(&key) {
                return Err(ApiError::BadKey(format!(
                    "key must be 1 to {MAX_KEY} bytes with no spaces or control characters"
                )));
            }
            Filter::Key(key)
        }
        (prefix, None) => {
            let prefix = prefix.unwrap_or_default().into_bytes();
            if prefix.len() > MAX_KEY || !(prefix.is_empty() || valid_key(&prefix)) {
                return Err(ApiError::BadRequest(format!(
                    "prefix must be at most {MAX_KEY} bytes with no spaces or control characters"
                )));
            }
            Filter::Prefix(prefix)
        }
    };
    let since = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("Last-Event-ID must be a revision (an integer)".into())
                })?,
        ),
        None => q.since,
    };
    if shared.shutting_down() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    let values = q.values.unwrap_or(false);
    let sub = shared
        .kv
        .watch(filter, since, values)
        .map_err(|Refused::TooManyWatchers(n)| {
            ApiError::Unavailable(format!("too many watchers (--max-watchers {n})"))
        })?;
    let stream = events(
        shared.kv.clone(),
        sub,
        since.unwrap_or(0),
        values,
        shared.shutdown_signal(),
    );
    let keep_alive = KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive");
    Ok((
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(keep_alive),
    )
        .into_response())
}

struct Watching {
    kv: Arc<Kv>,
    sub: Subscription,
    replay: std::vec::IntoIter<Arc<Change>>,
    first: Option<Event>,
    /// Live changes at or below this were replayed or asked to be skipped
    /// (a node behind the one the client last talked to).
    since: u64,
    values: bool,
    stop: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

enum Next {
    Change(Option<Arc<Change>>),
    Stop,
}

/// The stream of one watcher: a `resync` first if asked for a revision the
/// history no longer holds, the replayed changes, then the live ones until
/// the client leaves, falls behind (`resync`, end) or the server stops.
fn events(
    kv: Arc<Kv>,
    mut sub: Subscription,
    since: u64,
    values: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let first = sub.resync.then(|| resync("history", sub.revision));
    let replay = std::mem::take(&mut sub.replay).into_iter();
    let state = Watching {
        kv,
        sub,
        replay,
        first,
        since,
        values,
        stop,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(event) = st.first.take() {
            return Some((Ok(event), st));
        }
        if let Some(change) = st.replay.next() {
            st.since = st.since.max(change.revision);
            let event = st.event(&change);
            return Some((Ok(event), st));
        }
        loop {
            if let Some(reason) = ended(&st.sub) {
                st.done = true;
                return Some((Ok(resync(reason, st.since)), st));
            }
            let next = tokio::select! {
                change = st.sub.rx.recv() => Next::Change(change),
                _ = st.stop.wait_for(|stopping| *stopping) => Next::Stop,
            };
            match next {
                Next::Stop => return None,
                Next::Change(Some(change)) if change.revision <= st.since => continue,
                Next::Change(Some(change)) => {
                    st.since = change.revision;
                    let event = st.event(&change);
                    return Some((Ok(event), st));
                }
                Next::Change(None) => {
                    st.done = true;
                    let reason = ended(&st.sub).unwrap_or("reset");
                    return Some((Ok(resync(reason, st.since)), st));
                }
            }
        }
    })
}

fn ended(sub: &Subscription) -> Option<&'static str> {
    match sub.ended() {
        Ended::No => None,
        Ended::Overflow => Some("overflow"),
        Ended::Reset => Some("reset"),
    }
}

fn resync(reason: &str, revision: u64) -> Event {
    Event::default()
        .event("resync")
        .data(json!({"reason": reason, "revision": revision}).to_string())
}

impl Watching {
    fn event(&self, c: &Change) -> Event {
        Event::default()
            .id(c.revision.to_string())
            .event(c.kind.name())
            .data(data(c, self.values, self.kv.now()).to_string())
    }
}

/// An event's `data`: the item's metadata (the removed item's for delete
/// and expire), and with `values` the value.
pub fn data(c: &Change, values: bool, now: u64) -> Value {
    if c.kind == ChangeKind::Flush {
        return json!({ "at": c.exptime });
    }
    let mut d = json!({
        "key": String::from_utf8_lossy(&c.key),
        "cas": c.cas,
        "flags": c.flags,
        "ttl": exptime::remaining(c.exptime, now),
        "size": c.size,
    });
    if std::str::from_utf8(&c.key).is_err() {
        d["key_base64"] = URL_SAFE_NO_PAD.encode(&c.key).into();
    }
    if c.evicted {
        d["evicted"] = true.into();
    }
    if values && c.kind == ChangeKind::Set {
        match &c.value {
            Some(v) => d["value"] = STANDARD.encode(v).into(),
            None => d["value_omitted"] = true.into(),
        }
    }
    d
}
