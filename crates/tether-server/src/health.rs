//! The health check: `/healthz`, and the middleware that answers 503 `temporarily_unavailable`
//! (with `Retry-After`) in front of the endpoints that need the database while the provider's
//! health check fails.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_core::error::{OAuthError, StoreError};

use crate::error::ApiError;
use crate::state::AppState;

/// RFC 6749 §5.2 `temporarily_unavailable`, 503, `Retry-After`.
pub(crate) fn unavailable() -> Response {
    ApiError(OAuthError::from(StoreError::Unavailable("health check failing".into()))).into_response()
}

/// `GET /healthz`: 200 `{"status":"ok"}`, or [`unavailable`].
pub(crate) async fn healthz(State(s): State<AppState>) -> Response {
    if s.p.healthy() { (StatusCode::OK, Json(json!({"status": "ok"}))).into_response() } else { unavailable() }
}

/// Middleware (`axum::middleware::from_fn_with_state`): [`unavailable`] without running the
/// handler while the provider is unhealthy.
pub(crate) async fn require_healthy(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.p.healthy() {
        return unavailable();
    }
    next.run(req).await
}
