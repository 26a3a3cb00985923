//! The JSON endpoints around `tether_core::endpoint`: token, introspection, revocation, userinfo,
//! device authorization (RFC 8628 §3.1), discovery and the JWKS.
//!
//! The ones that need the database sit behind [`crate::health::require_healthy`] in the router,
//! except userinfo, which refuses a request without credentials (401) before it looks at health.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_core::client_auth;
use tether_core::endpoint::{device, discovery, introspect, par, revoke, token, userinfo};
use tether_core::error::ErrorCode;
use tether_core::resource::{self, Refusal};
use tether_tls::access::AuthenticatedClient;

use crate::cors::for_client;
use crate::error::{ApiError, ResourceError, json_no_store, no_store};
use crate::extract::{ClientAddr, FormBody, PeerCert, dpop_header, evidence, header};
use crate::health::unavailable;
use crate::state::AppState;

/// Both discovery documents (OpenID Connect Discovery and RFC 8414).
pub(crate) async fn discovery_endpoint(State(s): State<AppState>) -> Response {
    let mut r = Json(discovery::metadata(&s.p)).into_response();
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

pub(crate) async fn jwks_endpoint(State(s): State<AppState>) -> Response {
    let mut r = Json(json!({"keys": s.p.keys().jwks})).into_response();
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    r
}

pub(crate) async fn token_endpoint(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let client = named_client(&form, &headers);
    let dpop = match dpop_header(&headers) {
        Ok(d) => d,
        Err(e) => return for_client(ApiError(e).into_response(), client),
    };
    let req = token::TokenRequest {
        form: &form,
        authorization: header(&headers, AUTHORIZATION),
        evidence: evidence(&peer, &headers),
        dpop,
        addr: addr.as_deref(),
    };
    let (who, answer) = token::handle(&s.p, req).await;
    let resp = match answer {
        Ok(body) => json_no_store(body),
        Err(e) => ApiError(e).into_response(),
    };
    authenticated(for_client(resp, client), who)
}

/// Tag an answer with the client that authenticated for it (the access log's `client_id`).
fn authenticated(mut resp: Response, client_id: Option<String>) -> Response {
    if let Some(c) = client_id {
        resp.extensions_mut().insert(AuthenticatedClient(c));
    }
    resp
}

/// The client a token or revocation request names (HTTP Basic or `client_id`), authenticated or
/// not: its origins are the ones that may read the answer ([`crate::cors`]).
fn named_client(form: &tether_core::form::Form, headers: &HeaderMap) -> Option<String> {
    client_auth::presented(form, header(headers, AUTHORIZATION)).ok().map(|p| p.client_id().to_owned())
}

pub(crate) async fn introspect_endpoint(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let (who, answer) = introspect::handle(&s.p, &form, header(&headers, AUTHORIZATION), peer.as_ref()).await;
    let resp = match answer {
        Ok(body) => json_no_store(body),
        Err(e) => ApiError(e).into_response(),
    };
    authenticated(resp, who)
}

pub(crate) async fn revoke_endpoint(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let client = named_client(&form, &headers);
    // The proof is checked (and its jti spent) by core, after the client authenticated.
    let dpop = match dpop_header(&headers) {
        Ok(d) => d,
        Err(e) => return for_client(ApiError(e).into_response(), client),
    };
    let ev = evidence(&peer, &headers);
    let (who, answer) = revoke::handle(&s.p, &form, header(&headers, AUTHORIZATION), dpop, &ev).await;
    let resp = match answer {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => ApiError(e).into_response(),
    };
    authenticated(for_client(resp, client), who)
}

/// RFC 9126: a client pushes an authorization request; 201 with its `request_uri`.
pub(crate) async fn par_endpoint(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let dpop = match dpop_header(&headers) {
        Ok(d) => d,
        Err(e) => return ApiError(e).into_response(),
    };
    let (who, answer) = par::handle(&s.p, &form, header(&headers, AUTHORIZATION), dpop, peer.as_ref()).await;
    let resp = match answer {
        Ok(body) => {
            let mut r = json_no_store(body);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => ApiError(e).into_response(),
    };
    authenticated(resp, who)
}

/// RFC 8628 §3.1: a device asks for a device code and a user code.
pub(crate) async fn device_authorize(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let (who, answer) = device::authorize(&s.p, &form, header(&headers, AUTHORIZATION), peer.as_ref()).await;
    let resp = match answer {
        Ok(body) => json_no_store(body),
        Err(e) => ApiError(e).into_response(),
    };
    authenticated(resp, who)
}

/// A protected resource of the server's own: credentials first (none is a 401 whatever the
/// server's health), then the health check, then core.
pub(crate) async fn userinfo_endpoint(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    method: Method,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let query_token =
        req.uri().query().is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token"));
    let is_form = header(&headers, CONTENT_TYPE).is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form = if method == Method::POST && is_form {
        match FormBody::from_request(req, &()).await {
            Ok(FormBody(f)) => Some(f),
            Err(r) => return r,
        }
    } else {
        None
    };
    let sources = resource::Sources {
        authorization: headers.get_all(AUTHORIZATION).iter().map(HeaderValue::as_bytes).collect(),
        query_token,
        form_token: form.as_ref().and_then(|f| f.get("access_token")),
    };
    let credentials = match resource::extract(&sources) {
        Ok(Some(c)) => c,
        Ok(None) => return ResourceError(Refusal::NoCredentials).into_response(),
        Err(e) => return ResourceError(Refusal::Error(e)).into_response(),
    };
    if !s.p.healthy() {
        return unavailable();
    }
    let req = userinfo::UserinfoRequest {
        method: method.as_str(),
        credentials: &credentials,
        dpop: headers.get_all("dpop").iter().map(HeaderValue::as_bytes).collect(),
        evidence: evidence(&peer, &headers),
    };
    let (client, answer) = userinfo::handle(&s.p, req).await;
    // The access log names the token's client only when the token was accepted.
    let who = answer.is_ok().then(|| client.clone()).flatten();
    let resp = match answer {
        Ok(body) => json_no_store(body),
        Err(e) if matches!(e.code, ErrorCode::TemporarilyUnavailable | ErrorCode::ServerError) => {
            ApiError(e).into_response()
        }
        Err(e) => ResourceError(Refusal::Error(e)).into_response(),
    };
    authenticated(for_client(resp, client), who)
}
