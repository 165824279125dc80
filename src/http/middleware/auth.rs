//! The HTTP bearer-token gate (`--http-token-file`): every route but the
//! health checks and the API docs needs `Authorization: Bearer <token>`.
//! The token and its constant-time check live in [`crate::auth`].

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::BearerToken;

/// Routes reachable without the token: health checks and the API docs.
pub fn is_public_path(path: &str) -> bool {
    const EXACT: [&str; 3] = ["/healthz", "/readyz", "/openapi.json"];
    const PREFIXES: [&str; 3] = ["/docs", "/swagger-ui", "/api-docs"];
    EXACT.contains(&path)
        || PREFIXES
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// axum middleware: 401 with a JSON body unless the request carries the
/// bearer token or targets a public path. Apply it to the HTTP router with
/// `axum::middleware::from_fn_with_state(token, require_bearer)`.
pub async fn require_bearer(
    State(token): State<BearerToken>,
    req: Request,
    next: Next,
) -> Response {
    let authorized = is_public_path(req.uri().path())
        || req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| token.accepts(v.as_bytes()));
    if authorized {
        return next.run(req).await;
    }
    let body = axum::Json(serde_json::json!({
        "error": "unauthorized",
        "message": "missing or wrong bearer token",
    }));
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn status(app: &Router, path: &str, auth: Option<&str>) -> StatusCode {
        let mut req = axum::http::Request::get(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        resp.status()
    }

    #[tokio::test]
    async fn layer_guards_all_but_public_routes() {
        let token = BearerToken::new("tok").unwrap();
        let app = Router::new()
            .route("/v1/keys/{key}", get(|| async { "value" }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/docs/index.html", get(|| async { "docs" }))
            .layer(axum::middleware::from_fn_with_state(token, require_bearer));
        assert_eq!(
            status(&app, "/v1/keys/a", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, "/v1/keys/a", Some("Bearer nope")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, "/v1/keys/a", Some("Bearer tok")).await,
            StatusCode::OK
        );
        assert_eq!(status(&app, "/healthz", None).await, StatusCode::OK);
        assert_eq!(status(&app, "/docs/index.html", None).await, StatusCode::OK);
        assert_eq!(status(&app, "/docsx", None).await, StatusCode::UNAUTHORIZED);
    }
}
