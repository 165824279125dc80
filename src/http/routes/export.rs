//! `GET /v1/export.csv` (the CSV image, streamed) and `GET /metrics`.

use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::state::AppState;

/// Rows are sent to the client in chunks of about this size.
const CHUNK: usize = 64 * 1024;

/// Export every live item as CSV.
///
/// The same format as `memcached-lite export` and the CSV mirror
/// (`key,flags,exptime,cas,encoding,value`), streamed from the store's
/// ordered scan, so a store larger than memory still exports.
#[utoipa::path(
    get,
    path = "/v1/export.csv",
    tag = "server",
    operation_id = "export_csv",
    responses((status = 200, description = "CSV image of the store", content_type = "text/csv", body = String))
)]
pub async fn export_csv(State(shared): State<Arc<AppState>>) -> Response {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let kv = shared.kv.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = crate::csv::export::export(&kv, &mut out).map(|_| ());
        let result = result
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|()| out.flush());
        if let Err(e) = result {
            // The status line is gone already: abort the body so the client
            // sees a truncated transfer rather than a short, valid-looking file.
            tracing::warn!("export failed: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"store.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A blocking `Write` that hands full chunks to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// Prometheus metrics.
///
/// Per-command counters and latency histograms of both protocols, hits and
/// misses, items, bytes, connections, evictions, in the Prometheus text
/// exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "server",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(shared): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&shared),
    )
}
