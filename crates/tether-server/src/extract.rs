//! What handlers take from a request: the strictly parsed form body ([`FormBody`]), the client
//! certificate ([`PeerCert`]), single headers, the client's address, the binding evidence
//! ([`evidence`]) and the `DPoP` header.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, EXPECT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use tether_core::binding::Evidence;
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::cert::ClientCert;
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::form::Form;
use tether_core::session::COOKIE as SESSION_COOKIE;
use tether_tls::accept::ConnInfo;
use tether_tls::body::{self, ReadError};
use tether_tls::client_cert;

use crate::cookies;
use crate::error::{ApiError, WithStatus};
use crate::state::AppState;

/// Request bodies larger than this are refused with 413 (after a bounded part of the rest has
/// been read and discarded, so that the client sees the answer: `tether_tls::body`).
pub const MAX_BODY: usize = 64 * 1024;

/// A strictly parsed `application/x-www-form-urlencoded` body, at most [`MAX_BODY`] bytes. A body
/// that stops arriving for `[http] body_read_timeout_seconds` is 408 `invalid_request`.
pub(crate) struct FormBody(pub Form);

impl<St: Send + Sync> FromRequest<St> for FormBody {
    type Rejection = Response;

    async fn from_request(req: Request, _: &St) -> Result<Self, Response> {
        let too_large = || {
            ApiError(OAuthError::invalid_request(format!("the request body is larger than {MAX_BODY} bytes")))
                .into_response()
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        };
        let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            ))
            .into_response());
        }
        // A client that waits for `100 Continue` has not sent the body: answer it at once.
        let expects_continue = req
            .headers()
            .get(EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        let bytes = match body::read_limited(req.into_body(), MAX_BODY, !expects_continue).await {
            Ok(b) => b,
            Err(ReadError::TooLarge) => return Err(too_large()),
            Err(ReadError::TimedOut) => {
                return Err(ApiError(OAuthError::invalid_request("the request body did not arrive in time"))
                    .into_response()
                    .with_status(StatusCode::REQUEST_TIMEOUT));
            }
            Err(ReadError::Failed(e)) => {
                tracing::debug!(error = %e, "request body could not be read");
                return Err(ApiError(OAuthError::invalid_request("the request body could not be read")).into_response());
            }
        };
        Form::parse(&bytes).map(FormBody).map_err(|e| ApiError(e).into_response())
    }
}

/// The request's client certificate (DER): from a trusted proxy's header, else from the TLS
/// handshake of the connection. A malformed header from a trusted proxy is `invalid_request`.
pub(crate) struct PeerCert(pub Option<ClientCert>);

impl FromRequestParts<AppState> for PeerCert {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let Some(c) = parts.extensions.get::<ConnInfo>() else { return Ok(PeerCert(None)) };
        match s.opts.proxy_cert.forwarded(c.remote.ip(), &parts.headers) {
            Ok(Some(der)) => Ok(PeerCert(client_cert::inspect(der))),
            // A trusted proxy's own TLS certificate never stands in for its clients'.
            Ok(None) if s.opts.proxy_cert.from_trusted_proxy(c.remote.ip()) => Ok(PeerCert(None)),
            Ok(None) => Ok(PeerCert(c.peer_cert.as_ref().and_then(|d| client_cert::inspect(d.as_ref().clone())))),
            Err(e) => Err(ApiError(OAuthError::invalid_request(e))),
        }
    }
}

/// A header's value, when it is text.
pub(crate) fn header(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The client's address: the connection's peer, or behind a `[tls] trusted_proxies` peer the
/// rightmost untrusted `Forwarded` / `X-Forwarded-For` hop. Used wherever an address appears
/// (throttles, logs).
pub(crate) struct ClientAddr(pub Option<String>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Some(c) = parts.extensions.get::<ConnInfo>() else { return Ok(ClientAddr(None)) };
        Ok(ClientAddr(Some(s.opts.proxy_cert.client_ip(c.remote.ip(), &parts.headers).to_string())))
    }
}

/// What a request presents that can prove a token binding (B-5).
pub(crate) fn evidence<'a>(peer: &'a Option<ClientCert>, headers: &'a HeaderMap) -> Evidence<'a> {
    Evidence {
        peer_cert: peer.as_ref(),
        atbv: cookies::get(headers, ATBV),
        session_cookie: cookies::get(headers, SESSION_COOKIE),
        dpop: None,
    }
}

/// The `DPoP` header: at most one (RFC 9449 §4.3 check 1).
pub(crate) fn dpop_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut all = headers.get_all("dpop").iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "more than one DPoP header"));
    }
    first
        .map(|v| v.to_str().map_err(|_| OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP header is not text")))
        .transpose()
}
