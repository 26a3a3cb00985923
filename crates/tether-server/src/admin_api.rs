//! The admin REST API (admin-api.md) under `/api/admin/v1`: HTTP in, core's
//! `admin_ops` (the same operations the CLI runs) and `endpoint::admin` (who may call) out.
//!
//! JSON in and out; PATCH takes `application/merge-patch+json` (or `application/json`). Errors
//! are RFC 9457 `application/problem+json` with `type`, `title`, `status`, `detail` and, for
//! invalid input, `errors: [{pointer, detail}]`. Unknown JSON members are refused naming the
//! member. Apps carry an `ETag`; a PATCH or DELETE with a non-matching `If-Match` gets 412.
//! Lists are paginated: `?limit=` (default 50, max 500) and `?cursor=`, answering
//! `{"items": [...], "next_cursor": ...}`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tether_core::admin::AppChanges;
use tether_core::admin_ops::{self as ops, AdminError, NewUser, UserChanges};
use tether_core::audit::Actor;
use tether_core::endpoint::admin::{self as admin_auth, AdminCaller, AdminRequest};
use tether_core::endpoint::paths;
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::model::{AppRecord, BindingType};
use tether_core::resource::{self, PopMode, Refusal};
use tether_core::secret::{Secret, b64url, sha256};
use tether_core::store::{EventQuery, TokenMeta, TokenQuery};

use crate::extract::{ClientAddr, PeerCert, evidence};
use crate::state::AppState;

/// Request bodies larger than this are refused with 413.
const MAX_JSON: usize = 64 * 1024;

/// The admin API's routes, to be nested at [`paths::ADMIN_API`].
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{client_id}", get(get_app).patch(patch_app).delete(delete_app))
        .route("/apps/{client_id}/secret", post(app_secret))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{username}", get(get_user).patch(patch_user).delete(delete_user))
        .route("/users/{username}/sessions", get(list_sessions))
        .route("/users/{username}/sessions/{id}", axum::routing::delete(end_session))
        .route("/users/{username}/logout", post(logout_user))
        .route("/users/{username}/unlock", post(unlock_user))
        .route("/tokens", get(list_tokens))
        .route("/tokens/revoke", post(revoke_tokens))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/keys", get(list_keys))
        .route("/keys/rotate", post(rotate_keys))
        .route("/keys/{kid}", axum::routing::delete(retire_key))
        .route("/events", get(list_events))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such admin API resource") })
}

// ---------- problems ----------

struct Problem {
    status: StatusCode,
    detail: String,
    errors: Vec<(String, String)>,
    headers: Vec<(axum::http::HeaderName, HeaderValue)>,
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    Problem { status, detail: detail.into(), errors: vec![], headers: vec![] }.into_response()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = self.errors.iter().map(|(p, d)| json!({"pointer": p, "detail": d})).collect();
        }
        let mut r = (self.status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        for (k, v) in self.headers {
            h.append(k, v);
        }
        r
    }
}

impl From<AdminError> for Problem {
    fn from(e: AdminError) -> Self {
        let (status, detail, errors) = match e {
            AdminError::Invalid { detail, pointer } => {
                let errors = pointer.map(|p| vec![(p, detail.clone())]).unwrap_or_default();
                (StatusCode::BAD_REQUEST, detail, errors)
            }
            AdminError::NotFound(d) => (StatusCode::NOT_FOUND, d, vec![]),
            AdminError::Conflict(d) => (StatusCode::CONFLICT, d, vec![]),
            AdminError::Unavailable(d) => {
                tracing::warn!(error = %d, "admin API: database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is temporarily unavailable; retry shortly".into(),
                    vec![],
                )
            }
            AdminError::Internal(d) => {
                tracing::error!(error = %d, "admin API: internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "the server could not complete the request".into(), vec![])
            }
        };
        Problem { status, detail, errors, headers: vec![] }
    }
}

fn bad(pointer: &str, detail: impl Into<String>) -> Problem {
    let detail = detail.into();
    Problem {
        status: StatusCode::BAD_REQUEST,
        detail: detail.clone(),
        errors: vec![(pointer.into(), detail)],
        headers: vec![],
    }
}

/// A refused token: 401 `invalid_token` or 403 `insufficient_scope`, with the RFC 6750 / 9449
/// challenges, as problem+json.
fn refused(e: OAuthError, write: bool) -> Problem {
    let status = match e.code {
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut headers = vec![];
    if status == StatusCode::FORBIDDEN {
        let scope = if write { "admin:write" } else { "admin:read" };
        let c = format!("Bearer realm=\"tether-admin\", error=\"insufficient_scope\", scope=\"{scope}\"");
        if let Ok(v) = HeaderValue::from_str(&c) {
            headers.push((WWW_AUTHENTICATE, v));
        }
    } else if status == StatusCode::UNAUTHORIZED {
        let refusal = Refusal::Error(OAuthError::new(e.code, e.description.clone()));
        for c in resource::challenges("tether-admin", &refusal, PopMode::Optional) {
            if let Ok(v) = HeaderValue::from_str(&c) {
                headers.push((WWW_AUTHENTICATE, v));
            }
        }
    }
    Problem { status, detail: e.description, errors: vec![], headers }
}

// ---------- the caller ----------

/// Authenticate the request's token for a read (GET) or a write.
async fn caller(
    s: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: &Option<tether_core::cert::ClientCert>,
    addr: Option<String>,
) -> Result<AdminCaller, Problem> {
    let write = method != Method::GET && method != Method::HEAD;
    let sources = resource::Sources {
        authorization: headers.get_all(AUTHORIZATION).iter().map(HeaderValue::as_bytes).collect(),
        query_token: uri
            .query()
            .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")),
        form_token: None,
    };
    let credentials = match resource::extract(&sources) {
        Ok(Some(c)) => c,
        Ok(None) => {
            let mut p =
                refused(OAuthError::invalid_token("no access token (use Authorization: Bearer or DPoP)"), write);
            p.headers.retain(|_| true);
            return Err(p);
        }
        Err(e) => return Err(refused(e, write)),
    };
    let req = AdminRequest {
        method: method.as_str(),
        path: uri.path(),
        credentials: &credentials,
        dpop: headers.get_all("dpop").iter().map(HeaderValue::as_bytes).collect(),
        evidence: evidence(peer, headers),
        write,
    };
    let mut c = admin_auth::authenticate(&s.p, req).await.map_err(|e| refused(e, write))?;
    c.actor.ip = addr;
    c.actor.user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    Ok(c)
}

/// The authenticated caller of an admin request, with the state: every handler's first
/// argument (the refusal is the 401/403 problem).
struct Call {
    s: AppState,
    actor: Actor,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let PeerCert(peer) = PeerCert::from_request_parts(parts, s).await.map_err(IntoResponse::into_response)?;
        let ClientAddr(addr) = match ClientAddr::from_request_parts(parts, s).await {
            Ok(a) => a,
            Err(never) => match never {},
        };
        match caller(s, &parts.method, &parts.uri, &parts.headers, &peer, addr).await {
            Ok(c) => Ok(Call { s: s.clone(), actor: c.actor }),
            Err(p) => Err(p.into_response()),
        }
    }
}

/// A JSON body of type `T`: 415 for another content type, 413 when too large, 400 naming the
/// member for anything serde refuses (unknown members included).
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes, patch: bool) -> Result<T, Problem> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = mime == "application/json" || (patch && mime == "application/merge-patch+json");
    if !ok {
        let want = if patch { "application/merge-patch+json or application/json" } else { "application/json" };
        return Err(Problem {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            detail: format!("the body must be {want}"),
            errors: vec![],
            headers: vec![],
        });
    }
    if body.len() > MAX_JSON {
        return Err(Problem {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail: format!("the body is larger than {MAX_JSON} bytes"),
            errors: vec![],
            headers: vec![],
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let pointer = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .map(|f| format!("#/{f}"))
            .unwrap_or_else(|| "#".into());
        bad(&pointer, format!("invalid JSON body: {msg}"))
    })
}

fn json_ok(status: StatusCode, v: Value) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

// ---------- pagination ----------

#[derive(Deserialize, Default)]
struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    q: Option<String>,
}

fn limit_of(l: Option<u32>) -> Result<u32, Problem> {
    match l {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(bad("#/limit", "limit must be between 1 and 500")),
    }
}

/// A page of `items` (already sorted by `key`) after `cursor`.
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    cursor: Option<&str>,
    limit: u32,
    show: impl Fn(&T) -> Value,
) -> Value {
    let mut rest: Vec<T> = items.into_iter().filter(|i| cursor.is_none_or(|c| key(i).as_str() > c)).collect();
    let more = rest.len() > limit as usize;
    rest.truncate(limit as usize);
    let next = if more { rest.last().map(&key) } else { None };
    json!({"items": rest.iter().map(show).collect::<Vec<_>>(), "next_cursor": next})
}

// ---------- apps ----------

/// The app members a client may send. Read-only members (`client_id`, `tls_client_certificates`)
/// may be repeated with their current values.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AppBody {
    client_id: Option<String>,
    name: Option<String>,
    grant_types: Option<Vec<String>>,
    redirect_uris: Option<Vec<String>>,
    public: Option<bool>,
    auth_method: Option<String>,
    tls_subject_dn: Option<String>,
    /// PEM certificate(s) or a JWKS with `x5c`, for self_signed_tls_client_auth.
    client_certificates: Option<String>,
    tls_client_certificates: Option<Vec<String>>,
    token_type: Option<String>,
    binding: Option<String>,
    validate_binding: Option<bool>,
    revoke_on_logout: Option<bool>,
    scopes: Option<Vec<String>>,
    audience: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    introspect_any: Option<bool>,
    require_consent: Option<bool>,
    exchange_from: Option<Vec<String>>,
    id_token_alg: Option<String>,
    access_token_ttl: Option<i64>,
    refresh_token_ttl: Option<i64>,
}

impl AppBody {
    fn changes(self, force: bool) -> AppChanges {
        AppChanges {
            name: self.name,
            grant_types: self.grant_types,
            redirect_uris: self.redirect_uris,
            public: self.public,
            auth_method: self.auth_method,
            tls_subject_dn: self.tls_subject_dn,
            cert_file: self.client_certificates,
            token_type: self.token_type,
            binding: self.binding,
            validate_binding: self.validate_binding,
            revoke_on_logout: self.revoke_on_logout,
            scopes: self.scopes,
            audience: self.audience,
            allowed_origins: self.allowed_origins,
            introspect_any: self.introspect_any,
            require_consent: self.require_consent,
            exchange_from: self.exchange_from,
            id_token_alg: self.id_token_alg,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            force,
        }
    }
}

fn etag(a: &AppRecord) -> String {
    let mut input = ops::app_json(a).to_string();
    input.push_str(a.secret_hash.as_deref().unwrap_or("-"));
    format!("\"{}\"", &b64url(&sha256(input.as_bytes()))[..22])
}

fn with_etag(mut r: Response, a: &AppRecord) -> Response {
    if let Ok(v) = HeaderValue::from_str(&etag(a)) {
        r.headers_mut().insert(ETAG, v);
    }
    r
}

/// 412 when `If-Match` is sent and names another version.
fn check_if_match(headers: &HeaderMap, a: &AppRecord) -> Result<(), Problem> {
    let Some(want) = headers.get(IF_MATCH).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let current = etag(a);
    if want.trim() == "*" || want.split(',').any(|t| t.trim().trim_start_matches("W/") == current) {
        return Ok(());
    }
    Err(Problem {
        status: StatusCode::PRECONDITION_FAILED,
        detail: "the app changed since it was read (If-Match does not match its ETag)".into(),
        errors: vec![],
        headers: vec![],
    })
}

fn app_with_secret(a: &AppRecord, secret: Option<&Secret>) -> Value {
    let mut v = ops::app_json(a);
    if let Some(s) = secret {
        v["client_secret"] = json!(s.expose());
    }
    v
}

async fn list_apps(c: Call, Query(q): Query<PageQuery>) -> Response {
    let limit = match limit_of(q.limit) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    match c.s.p.store.list_apps().await {
        Ok(mut apps) => {
            apps.sort_by(|a, b| a.app.client_id.cmp(&b.app.client_id));
            json_ok(StatusCode::OK, page(apps, |a| a.app.client_id.clone(), q.cursor.as_deref(), limit, ops::app_json))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

async fn create_app(c: Call, headers: HeaderMap, body: Bytes) -> Response {
    let b: AppBody = match json_body(&headers, &body, false) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if b.client_id.is_some() || b.tls_client_certificates.is_some() {
        return bad("#/client_id", "client_id and tls_client_certificates are chosen by the server").into_response();
    }
    match ops::create_app(&c.s.p, &c.actor, &b.changes(false)).await {
        Ok((rec, secret)) => {
            let mut r = with_etag(json_ok(StatusCode::CREATED, app_with_secret(&rec, secret.as_ref())), &rec);
            let loc = format!("{}/apps/{}", paths::ADMIN_API, rec.app.client_id);
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn get_app(c: Call, Path(client_id): Path<String>) -> Response {
    match ops::get_app(&c.s.p, &client_id).await {
        Ok(a) => with_etag(json_ok(StatusCode::OK, ops::app_json(&a)), &a),
        Err(e) => Problem::from(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
struct ForceQuery {
    force: Option<bool>,
}

async fn patch_app(
    c: Call,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    Query(fq): Query<ForceQuery>,
    body: Bytes,
) -> Response {
    let b: AppBody = match json_body(&headers, &body, true) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let existing = match ops::get_app(&c.s.p, &client_id).await {
        Ok(a) => a,
        Err(e) => return Problem::from(e).into_response(),
    };
    if let Err(p) = check_if_match(&headers, &existing) {
        return p.into_response();
    }
    if b.client_id.as_ref().is_some_and(|id| *id != client_id) {
        return bad("#/client_id", "client_id cannot be changed").into_response();
    }
    if b.tls_client_certificates.as_ref().is_some_and(|t| *t != existing.app.tls_client_certificates) {
        return bad(
            "#/tls_client_certificates",
            "tls_client_certificates is read-only; send client_certificates (PEM or JWKS) to change them",
        )
        .into_response();
    }
    match ops::update_app(&c.s.p, &c.actor, &client_id, &b.changes(fq.force.unwrap_or(false))).await {
        Ok((rec, secret)) => with_etag(json_ok(StatusCode::OK, app_with_secret(&rec, secret.as_ref())), &rec),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn delete_app(c: Call, headers: HeaderMap, Path(client_id): Path<String>) -> Response {
    if headers.contains_key(IF_MATCH) {
        match ops::get_app(&c.s.p, &client_id).await {
            Ok(a) => {
                if let Err(p) = check_if_match(&headers, &a) {
                    return p.into_response();
                }
            }
            Err(e) => return Problem::from(e).into_response(),
        }
    }
    match ops::delete_app(&c.s.p, &c.actor, &client_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    grace_seconds: Option<i64>,
}

async fn app_secret(c: Call, headers: HeaderMap, Path(client_id): Path<String>, body: Bytes) -> Response {
    let b: SecretBody = if body.is_empty() {
        SecretBody::default()
    } else {
        match json_body(&headers, &body, false) {
            Ok(b) => b,
            Err(p) => return p.into_response(),
        }
    };
    match ops::regenerate_secret(&c.s.p, &c.actor, &client_id, b.grace_seconds.unwrap_or(0)).await {
        Ok(secret) => json_ok(StatusCode::OK, json!({"client_id": client_id, "client_secret": secret.expose()})),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- users ----------

async fn list_users(c: Call, Query(q): Query<PageQuery>) -> Response {
    let limit = match limit_of(q.limit) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    match c.s.p.store.list_users().await {
        Ok(mut users) => {
            if let Some(prefix) = &q.q {
                users.retain(|u| u.user.username.starts_with(prefix.as_str()));
            }
            users.sort_by(|a, b| a.user.username.cmp(&b.user.username));
            let v = page(users, |u| u.user.username.clone(), q.cursor.as_deref(), limit, |u| ops::user_json(&u.user));
            json_ok(StatusCode::OK, v)
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    username: String,
    password: String,
    email: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

async fn create_user(c: Call, headers: HeaderMap, body: Bytes) -> Response {
    let b: NewUserBody = match json_body(&headers, &body, false) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let n = NewUser {
        username: b.username,
        password: Secret::new(b.password),
        email: b.email,
        name: b.name,
        roles: b.roles,
    };
    match ops::create_user(&c.s.p, &c.actor, n).await {
        Ok(rec) => {
            let mut r = json_ok(StatusCode::CREATED, ops::user_json(&rec.user));
            let loc = format!("{}/users/{}", paths::ADMIN_API, rec.user.username);
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn get_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::get_user(&c.s.p, &username).await {
        Ok(u) => json_ok(StatusCode::OK, ops::user_json(&u.user)),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// A user PATCH. `null` clears email or name; read-only members may be repeated unchanged.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    username: Option<String>,
    #[serde(default, deserialize_with = "some")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    name: Option<Option<String>>,
    roles: Option<Vec<String>>,
    password: Option<String>,
    disabled: Option<bool>,
    created_at: Option<i64>,
}

/// A present member, `null` included, is `Some`.
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

async fn patch_user(c: Call, headers: HeaderMap, Path(username): Path<String>, body: Bytes) -> Response {
    let b: UserPatch = match json_body(&headers, &body, true) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    if b.username.as_ref().is_some_and(|u| *u != username) {
        return bad("#/username", "the username cannot be changed").into_response();
    }
    let _ = b.created_at;
    let ch = UserChanges {
        email: b.email,
        name: b.name,
        roles: b.roles,
        password: b.password.map(Secret::new),
        disabled: b.disabled,
    };
    match ops::update_user(&c.s.p, &c.actor, &username, ch, c.s.opts.revoke_on_password_change).await {
        Ok(u) => json_ok(StatusCode::OK, ops::user_json(&u.user)),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn delete_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::delete_user(&c.s.p, &c.actor, &username).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn list_sessions(c: Call, Path(username): Path<String>) -> Response {
    let u = match ops::get_user(&c.s.p, &username).await {
        Ok(u) => u,
        Err(e) => return Problem::from(e).into_response(),
    };
    let (now, idle) = (c.s.p.now(), c.s.p.config.session_idle_timeout);
    match c.s.p.store.list_sessions(&u.user.id).await {
        Ok(list) => {
            let items: Vec<Value> = list.iter().map(|x| ops::session_json(x, now, idle)).collect();
            json_ok(StatusCode::OK, json!({"items": items, "next_cursor": null}))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

async fn end_session(c: Call, Path((username, id)): Path<(String, String)>) -> Response {
    match ops::end_session(&c.s.p, &c.actor, &username, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn logout_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::logout_user(&c.s.p, &c.actor, &username).await {
        Ok(v) => json_ok(StatusCode::OK, v),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn unlock_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::unlock_user(&c.s.p, &c.actor, &username).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- tokens ----------

fn token_json(t: &TokenMeta, now: i64) -> Value {
    let state = match (t.revoked_at, t.expires_at > now) {
        (Some(_), _) => "revoked",
        (None, false) => "expired",
        (None, true) => "active",
    };
    json!({
        "id": t.id,
        "kind": if t.refresh { "refresh_token" } else { "access_token" },
        "format": t.format.as_str(),
        "client_id": t.client_id,
        "username": t.username,
        "binding_type": t.binding_type.map(BindingType::as_str),
        "issued_at": t.issued_at,
        "expires_at": t.expires_at,
        "state": state,
    })
}

#[derive(Deserialize, Default)]
struct TokenListQuery {
    client_id: Option<String>,
    username: Option<String>,
    binding: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list_tokens(c: Call, Query(q): Query<TokenListQuery>) -> Response {
    let limit = match limit_of(q.limit) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let binding = match q.binding.as_deref().map(|b| BindingType::parse(b).ok_or(b)) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(b)) => return bad("#/binding", format!("unknown binding type {b:?}")).into_response(),
    };
    let user_id = match &q.username {
        None => None,
        Some(u) => match ops::get_user(&c.s.p, u).await {
            Ok(u) => Some(u.user.id),
            Err(e) => return Problem::from(e).into_response(),
        },
    };
    let tq = TokenQuery { client_id: q.client_id, user_id, binding, after_id: q.cursor, limit: limit + 1 };
    match c.s.p.store.list_tokens(&tq).await {
        Ok(mut list) => {
            let more = list.len() > limit as usize;
            list.truncate(limit as usize);
            let now = c.s.p.now();
            let next = if more { list.last().map(|t| t.id.clone()) } else { None };
            let items: Vec<Value> = list.iter().map(|t| token_json(t, now)).collect();
            json_ok(StatusCode::OK, json!({"items": items, "next_cursor": next}))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

async fn revoke_token(c: Call, Path(id): Path<String>) -> Response {
    match ops::revoke_token(&c.s.p, &c.actor, &id).await {
        Ok(()) => json_ok(StatusCode::OK, json!({"revoked": 1})),
        Err(e) => Problem::from(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    client_id: Option<String>,
    username: Option<String>,
}

async fn revoke_tokens(c: Call, headers: HeaderMap, body: Bytes) -> Response {
    let b: RevokeBody = match json_body(&headers, &body, false) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    match ops::revoke_tokens(&c.s.p, &c.actor, b.client_id.as_deref(), b.username.as_deref()).await {
        Ok(n) => json_ok(StatusCode::OK, json!({"revoked": n})),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- keys ----------

async fn list_keys(c: Call) -> Response {
    let now = c.s.p.now();
    match c.s.p.store.list_keys().await {
        Ok(keys) => {
            let items: Vec<Value> = keys
                .iter()
                .map(|k| {
                    json!({"kid": k.kid, "alg": k.alg.as_str(), "created_at": k.created_at,
                           "state": ops::key_state(k, now), "publish_until": k.publish_until})
                })
                .collect();
            json_ok(StatusCode::OK, json!({"items": items, "next_cursor": null}))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

async fn rotate_keys(c: Call) -> Response {
    match ops::rotate_keys(&c.s.p, &c.actor).await {
        Ok(new) => {
            let items: Vec<Value> = new.iter().map(|k| json!({"kid": k.kid, "alg": k.alg.as_str()})).collect();
            json_ok(StatusCode::OK, json!({"items": items}))
        }
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn retire_key(c: Call, Path(kid): Path<String>) -> Response {
    match ops::retire_key(&c.s.p, &c.actor, &kid).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- events ----------

fn parse_time(name: &str, v: &str) -> Result<i64, Problem> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| bad(&format!("#/{name}"), format!("{name} must be an RFC 3339 time (2026-11-30T08:00:00Z)")))
}

async fn list_events(c: Call, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut eq = EventQuery::default();
    for (k, v) in &q {
        let r: Result<(), Problem> = match k.as_str() {
            "type" => {
                eq.types = v.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
                match eq.types.iter().find(|t| !tether_core::audit::kind::ALL.contains(&t.as_str())) {
                    Some(t) => Err(bad("#/type", format!("unknown event type {t:?}"))),
                    None => Ok(()),
                }
            }
            "since" => parse_time("since", v).map(|t| eq.since = Some(t)),
            "until" => parse_time("until", v).map(|t| eq.until = Some(t)),
            "client_id" => {
                eq.client_id = Some(v.clone());
                Ok(())
            }
            "username" => {
                eq.username = Some(v.clone());
                Ok(())
            }
            "cursor" => {
                eq.before_id = Some(v.clone());
                Ok(())
            }
            "limit" => match v.parse::<u32>().ok().filter(|n| (1..=500).contains(n)) {
                Some(n) => {
                    eq.limit = n;
                    Ok(())
                }
                None => Err(bad("#/limit", "limit must be between 1 and 500")),
            },
            other => Err(bad(&format!("#/{other}"), format!("unknown query parameter {other:?}"))),
        };
        if let Err(p) = r {
            return p.into_response();
        }
    }
    let limit = if eq.limit == 0 { 50 } else { eq.limit };
    eq.limit = limit + 1;
    // Events still in the write queue are stored first, so a caller sees what just happened.
    c.s.p.audit.flush(&*c.s.p.store).await;
    match c.s.p.store.list_events(&eq).await {
        Ok(mut list) => {
            let more = list.len() > limit as usize;
            list.truncate(limit as usize);
            let next = if more { list.last().map(|e| e.id.clone()) } else { None };
            let items: Vec<Value> = list
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["time"] = json!(tether_core::cert::rfc3339(e.time));
                    v
                })
                .collect();
            json_ok(StatusCode::OK, json!({"items": items, "next_cursor": next}))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}
