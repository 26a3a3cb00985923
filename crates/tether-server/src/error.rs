//! The error → HTTP mapping, the only place statuses are chosen: [`ApiError`] (RFC 6749 §5.2
//! JSON), [`ResourceError`] (RFC 6750 §3 / RFC 9449 §7.1 refusals at a protected resource) and the
//! `no-store` headers every answer carrying secrets or errors gets.

use axum::Json;
use axum::http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::resource::{self, PopMode, Refusal};

/// An [`OAuthError`] on its way out: RFC 6749 §5.2 JSON with the status its code calls for.
pub(crate) struct ApiError(pub OAuthError);

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        ApiError(e)
    }
}

pub(crate) fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`.
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON body that must not be cached (tokens, introspection, claims).
pub(crate) fn json_no_store(body: Value) -> Response {
    let mut r = Json(body).into_response();
    no_store(r.headers_mut());
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if let Some(src) = &e.source {
            match e.code {
                ErrorCode::ServerError => tracing::error!(error = %src, "internal error"),
                _ => tracing::warn!(error = %src, code = %e.code, "request failed"),
            }
        }
        metrics::counter!("tether_oauth_errors_total", "error" => e.code.as_str()).increment(1);
        // A throttle's refusal (a retry time on any code but temporarily_unavailable) is 429.
        let status = match (e.code, e.retry_after) {
            (ErrorCode::TemporarilyUnavailable, _) | (_, None) => status_for(e.code),
            (_, Some(_)) => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut resp =
            (status, Json(json!({"error": e.code.as_str(), "error_description": e.description}))).into_response();
        let h = resp.headers_mut();
        no_store(h);
        if e.code == ErrorCode::InvalidClient {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tether\""));
        }
        if e.code == ErrorCode::TemporarilyUnavailable || e.retry_after.is_some() {
            h.insert("retry-after", HeaderValue::from(e.retry_after.unwrap_or(1).max(1)));
        }
        if let Some(n) = e.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
            h.insert("dpop-nonce", n);
        }
        resp
    }
}

/// A refusal at a protected resource (RFC 6750 §3, RFC 9449 §7.1): the status its code calls for
/// and the challenges core builds, decided by the refusal's type, never by its text.
pub(crate) struct ResourceError(pub Refusal);

impl IntoResponse for ResourceError {
    fn into_response(self) -> Response {
        let challenges = resource::challenges("tether", &self.0, PopMode::Optional);
        let mut resp = match self.0 {
            Refusal::NoCredentials => {
                let e = OAuthError::invalid_request("no access token in the request (use Authorization: Bearer)");
                ApiError(e).into_response().with_status(StatusCode::UNAUTHORIZED)
            }
            Refusal::Error(e) => {
                let status = match e.code {
                    ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce => StatusCode::UNAUTHORIZED,
                    code => status_for(code),
                };
                ApiError(e).into_response().with_status(status)
            }
        };
        if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST) {
            for c in challenges.iter().filter_map(|c| HeaderValue::from_str(c).ok()) {
                resp.headers_mut().append(WWW_AUTHENTICATE, c);
            }
        }
        resp
    }
}

/// A response with its status replaced (an error body kept, a more specific status).
pub(crate) trait WithStatus {
    fn with_status(self, s: StatusCode) -> Self;
}

impl WithStatus for Response {
    fn with_status(mut self, s: StatusCode) -> Self {
        *self.status_mut() = s;
        self
    }
}
