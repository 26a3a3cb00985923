//! HTTP for dynamic client registration (RFC 7591) and its management (RFC 7592): the JSON in
//! and out, the bearer tokens, the statuses. Every decision is core's
//! (`tether_core::endpoint::registration`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tether_core::endpoint::admin::Presented;
use tether_core::endpoint::paths;
use tether_core::endpoint::registration::{self as reg, RegError};
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::resource;
use tether_tls::access::AuthenticatedClient;

use crate::error::no_store;
use crate::extract::{PeerCert, evidence};
use crate::state::AppState;

/// Client metadata is small; anything larger is refused before parsing.
const MAX_BODY: usize = 64 * 1024;

fn answer(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    no_store(r.headers_mut());
    r
}

fn refused(e: RegError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = answer(status, json!({"error": e.error.code.as_str(), "error_description": e.error.description}));
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        let mut c = format!("Bearer realm=\"tether\", error=\"{}\"", e.error.code.as_str());
        if e.error.code == ErrorCode::InsufficientScope {
            c.push_str(&format!(", scope=\"{}\"", reg::SCOPE));
        }
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
    }
    r
}

fn bad_metadata(d: &str) -> Response {
    refused(RegError { status: 400, error: OAuthError::new(ErrorCode::InvalidClientMetadata, d) })
}

/// The JSON body: `application/json`, at most [`MAX_BODY`] bytes, an object.
fn metadata(headers: &HeaderMap, body: &Bytes) -> Result<Value, Box<Response>> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(Box::new(bad_metadata("the body must be client metadata as application/json")));
    }
    if body.len() > MAX_BODY {
        return Err(Box::new(bad_metadata("the client metadata is larger than 64 KiB")));
    }
    serde_json::from_slice(body).map_err(|e| Box::new(bad_metadata(&format!("the body is not JSON: {e}"))))
}

/// RFC 7591 §3: register.
pub(crate) async fn register(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sources = resource::Sources {
        authorization: headers.get_all(AUTHORIZATION).iter().map(HeaderValue::as_bytes).collect(),
        query_token: false,
        form_token: None,
    };
    let credentials = match resource::extract(&sources) {
        Ok(c) => c,
        Err(e) => return refused(RegError { status: 400, error: e }),
    };
    let presented = credentials.as_ref().map(|c| Presented {
        method: method.as_str(),
        path: uri.path(),
        credentials: c,
        dpop: headers.get_all("dpop").iter().map(HeaderValue::as_bytes).collect(),
        evidence: evidence(&peer, &headers),
    });
    let actor = match reg::registrar(&s.p, presented).await {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let m = match metadata(&headers, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match reg::register(&s.p, &actor, &m).await {
        Ok(body) => {
            let location = body["registration_client_uri"].as_str().and_then(|u| HeaderValue::from_str(u).ok());
            let mut r = answer(StatusCode::CREATED, body);
            if let Some(l) = location {
                r.headers_mut().insert(LOCATION, l);
            }
            if let Some(c) = actor.client_id {
                r.extensions_mut().insert(AuthenticatedClient(c));
            }
            r
        }
        Err(e) => refused(e),
    }
}

/// The registration access token of a management request (`Authorization: Bearer`).
fn access_token(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let (Some(v), None) = (all.next(), all.next()) else { return None };
    let v = v.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn managed(resp: Response, client_id: &str) -> Response {
    let mut r = resp;
    if r.status().is_success() {
        r.extensions_mut().insert(AuthenticatedClient(client_id.to_string()));
    }
    r
}

/// RFC 7592 §2.1.
pub(crate) async fn read(State(s): State<AppState>, Path(client_id): Path<String>, headers: HeaderMap) -> Response {
    let r = match reg::read(&s.p, &client_id, access_token(&headers)).await {
        Ok(body) => answer(StatusCode::OK, body),
        Err(e) => refused(e),
    };
    managed(r, &client_id)
}

/// RFC 7592 §2.2.
pub(crate) async fn replace(
    State(s): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = access_token(&headers);
    // The token first: an unauthenticated caller learns nothing from metadata errors.
    if let Err(e) = reg::read(&s.p, &client_id, token).await {
        return refused(e);
    }
    let m = match metadata(&headers, &body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let r = match reg::replace(&s.p, &client_id, token, &m).await {
        Ok(body) => answer(StatusCode::OK, body),
        Err(e) => refused(e),
    };
    managed(r, &client_id)
}

/// RFC 7592 §2.3: 204.
pub(crate) async fn delete(State(s): State<AppState>, Path(client_id): Path<String>, headers: HeaderMap) -> Response {
    let r = match reg::delete(&s.p, &client_id, access_token(&headers)).await {
        Ok(()) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => refused(e),
    };
    managed(r, &client_id)
}

/// The routes, for the main router.
pub(crate) fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(paths::REGISTER, post(register))
        .route(&format!("{}/{{client_id}}", paths::REGISTER), get(read).put(replace).delete(delete))
}
