//! The HTTP/JSON front end (axum): the same `Kv` as the memcached listener,
//! so both protocols share items, CAS values, locks and counters.
//!
//! Routes are declared with utoipa-axum, which builds the router and the
//! OpenAPI document from the same handler attributes, so the document
//! cannot drift from what is served.

pub mod error;
pub mod json;
pub mod key;
pub mod middleware;
pub mod openapi;
pub mod routes;

use middleware::{durable, observe};
use routes::{admin, cluster, export, items, list, watch};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use tokio_rustls::TlsAcceptor;

use crate::auth::BearerToken;
use crate::state::AppState;

/// Smallest request-body limit, so small JSON bodies pass even with a tiny
/// `--max-item-size` (values are still held to it by `Kv`).
const MIN_BODY_LIMIT: usize = 4096;

/// Every documented route, without state, layers or Swagger UI.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(list::list_items))
        .routes(routes!(watch::watch))
        .routes(routes!(
            items::get_item,
            items::head_item,
            items::put_item,
            items::delete_item
        ))
        .routes(routes!(items::incr_item))
        .routes(routes!(items::decr_item))
        .routes(routes!(items::touch_item))
        .routes(routes!(admin::stats))
        .routes(routes!(cluster::cluster))
        .routes(routes!(cluster::add_member))
        .routes(routes!(cluster::remove_member))
        .routes(routes!(admin::flush))
        .routes(routes!(admin::healthz))
        .routes(routes!(admin::readyz))
        .routes(routes!(export::export_csv))
        .routes(routes!(export::metrics))
}

/// The whole HTTP application: API routes, `/openapi.json`, Swagger UI at
/// `/docs`, and the middleware stack (request id, tracing, JSON errors,
/// timeout, body limit).
pub fn app(shared: Arc<AppState>) -> Router {
    app_with_token(shared, None)
}

/// [`app`], with every route but health checks and docs requiring
/// `Authorization: Bearer <token>` when a token is given.
pub fn app_with_token(shared: Arc<AppState>, token: Option<BearerToken>) -> Router {
    let body_limit = shared.kv.max_item_size().max(MIN_BODY_LIMIT);
    let timeout = Duration::from_secs(shared.config.http_timeout_secs.max(1));
    let (api, doc) = router().split_for_parts();
    let mut app = api
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", openapi::json_value(doc)),
        )
        .fallback(not_found);
    if let Some(token) = token {
        app = app.layer(axum::middleware::from_fn_with_state(
            token,
            crate::http::middleware::auth::require_bearer,
        ));
    }
    app
        // Innermost first: each `layer` wraps everything above it.
        .layer(
            ServiceBuilder::new()
                .layer(RequestBodyLimitLayer::new(body_limit))
                .layer(DefaultBodyLimit::disable()),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            durable::commit_writes,
        ))
        .route_layer(axum::middleware::from_fn(observe::record))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        // An error-level span is on whenever errors are
                        // logged, so every error names its request id.
                        .make_span_with(|req: &Request<_>| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::error_span!("http", method = %req.method(), uri = %req.uri(), request_id = %id)
                        })
                        // A 5xx the server chose (503 while shutting down,
                        // 507 at --max-bytes) is no operator's error; an
                        // internal failure logs its own error with detail.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(shared)
}

async fn not_found() -> error::ApiError {
    error::ApiError::NoRoute
}

/// Serves the API on `listener` (over TLS when `tls` is given) until the
/// server shuts down, then lets in-flight plain-HTTP requests finish.
pub async fn run(
    listener: TcpListener,
    shared: Arc<AppState>,
    token: Option<BearerToken>,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let mut stop = shared.shutdown_signal();
    let app = app_with_token(shared, token);
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|requested| *requested).await;
            })
            .await;
    };
    // axum::serve speaks plain TCP only: drive hyper over each TLS stream.
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = stop.wait_for(|requested| *requested) => return Ok(()),
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match crate::net::tls::accept(&tls, socket).await {
                Ok(stream) => stream,
                Err(e) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "HTTPS connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests;
