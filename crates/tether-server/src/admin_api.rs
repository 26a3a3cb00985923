//! The admin REST API (admin-api.md) under `/api/admin/v1`: HTTP in, core's
//! `admin_ops` (the same operations the CLI runs) and `endpoint::admin` (who may call) out.
//!
//! JSON in and out; PATCH takes `application/merge-patch+json` (or `application/json`). Errors
//! are RFC 9457 `application/problem+json` with `type`, `title`, `status`, `detail` and, for
//! invalid input, `errors: [{pointer, detail}]`. Unknown JSON members are refused naming the
//! member. Apps carry an `ETag`; a PATCH or DELETE with a non-matching `If-Match` gets 412.
//! Lists are paginated: `?limit=` (default 50, max 500) and `?cursor=`, answering
//! `{"items": [...], "next_cursor": ...}`.
//!
//! Every handler carries its `#[utoipa::path]` and every body its `ToSchema`: the router and the
//! OpenAPI document ([`openapi`], `GET /openapi.json`) are built from the same list of handlers,
//! and the answers are the typed structs the document describes.

mod openapi;

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_core::admin::AppChanges;
use tether_core::admin_ops::{
    self as ops, AdminError, KeyState, LogoutResult, NewUser, SessionView, UserChanges, UserView,
};
use tether_core::audit::Actor;
use tether_core::endpoint::admin::{self as admin_auth, AdminCaller, AdminRequest};
use tether_core::endpoint::paths;
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::keys::Alg;
use tether_core::model::{App, AppRecord, AuthMethod, BindingType, IdTokenAlg, Profile, TokenType};
use tether_core::resource::{self, PopMode, Refusal};
use tether_core::secret::{Secret, b64url, sha256};
use tether_core::store::{EventQuery, EventRecord, TokenMeta, TokenQuery};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, schema::Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::openapi::{
    BadRequest, Conflict, FieldError, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed, ProblemBody,
    Unauthorized, Unavailable, UnsupportedMediaType,
};
use crate::extract::{ClientAddr, PeerCert, evidence};
use crate::state::AppState;

/// Request bodies larger than this are refused with 413.
const MAX_JSON: usize = 64 * 1024;

/// Every route of the admin API with its OpenAPI operation: the one list both the router and the
/// document come from. Each `routes!` groups the handlers of one path.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, create_app))
        .routes(routes!(get_app, patch_app, delete_app))
        .routes(routes!(app_secret))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, patch_user, delete_user))
        .routes(routes!(list_sessions))
        .routes(routes!(end_session))
        .routes(routes!(logout_user))
        .routes(routes!(unlock_user))
        .routes(routes!(list_tokens))
        .routes(routes!(revoke_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
        .routes(routes!(retire_key))
        .routes(routes!(list_events))
        .routes(routes!(openapi_json))
}

/// The admin API's routes, to be nested at [`paths::ADMIN_API`].
pub(crate) fn routes() -> Router<AppState> {
    let (router, _) = api().split_for_parts();
    router.fallback(|| async { problem(StatusCode::NOT_FOUND, "no such admin API resource") })
}

/// The OpenAPI document of [`api`] (see [`openapi`]).
fn document() -> Value {
    let mut operations = api().into_openapi();
    // The secret regeneration names its optional body by reference (see `app_secret`).
    operations
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(SecretBody::name().into(), SecretBody::schema());
    openapi::document(operations)
}

/// The served document, made once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| openapi::text(&document()));

/// This document
///
/// The OpenAPI 3.1 document of the admin API. No token needed.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object),
    ))]
async fn openapi_json() -> Response {
    let mut r = (StatusCode::OK, DOCUMENT.as_str()).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
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
        let body = ProblemBody {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").into(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors.into_iter().map(|(pointer, detail)| FieldError { pointer, detail }).collect(),
        };
        let mut r = (self.status, serde_json::to_string(&body).unwrap_or_default()).into_response();
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
        // These routes are nested under the prefix, which axum strips: a DPoP proof's `htu`
        // names the full path.
        path: &format!("{}{}", paths::ADMIN_API, uri.path()),
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
        // No id, name or filter holds a control character: refuse them before anything reaches
        // the store (PostgreSQL refuses a NUL in a text parameter).
        let path = percent_encoding::percent_decode_str(parts.uri.path()).collect::<Vec<u8>>();
        let query_bad = parts.uri.query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k.chars().chain(v.chars()).any(char::is_control))
        });
        if path.iter().any(|b| *b < 0x20 || *b == 0x7f) || query_bad {
            return Err(bad("#", "control characters are not allowed in paths or query parameters").into_response());
        }
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

fn json_ok<T: Serialize>(status: StatusCode, v: T) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

// ---------- pagination ----------

/// `?limit=&cursor=` of a list.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Items per page: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `?limit=&cursor=&q=` of the user list.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserListQuery {
    /// Items per page: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only usernames starting with this.
    q: Option<String>,
}

/// The page type of each list (concrete types, so that the document names their items by
/// reference rather than inlining them).
macro_rules! pages {
    ($($page:ident of $item:ident),+ $(,)?) => {$(
        /// A page of a list: `next_cursor` is the `cursor` of the next page, `null` on the last.
        #[derive(Serialize, ToSchema)]
        struct $page {
            items: Vec<$item>,
            #[schema(required = true)]
            next_cursor: Option<String>,
        }

        impl From<(Vec<$item>, Option<String>)> for $page {
            fn from((items, next_cursor): (Vec<$item>, Option<String>)) -> Self {
                $page { items, next_cursor }
            }
        }
    )+};
}

pages!(
    AppPage of App,
    UserPage of UserView,
    SessionPage of SessionView,
    TokenPage of TokenView,
    KeyPage of KeyView,
    EventPage of EventView,
);

fn limit_of(l: Option<u32>) -> Result<u32, Problem> {
    match l {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(bad("#/limit", "limit must be between 1 and 500")),
    }
}

/// A page of `items` (already sorted by `key`) after `cursor`, and the next cursor.
fn page<T, U>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    cursor: Option<&str>,
    limit: u32,
    show: impl Fn(&T) -> U,
) -> (Vec<U>, Option<String>) {
    let mut rest: Vec<T> = items.into_iter().filter(|i| cursor.is_none_or(|c| key(i).as_str() > c)).collect();
    let more = rest.len() > limit as usize;
    rest.truncate(limit as usize);
    let next = if more { rest.last().map(&key) } else { None };
    (rest.iter().map(show).collect(), next)
}

// ---------- apps ----------

/// The app members a client may send. Read-only members (`client_id`, `tls_client_certificates`)
/// may be repeated with their current values in a PATCH; a create chooses them itself.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct AppBody {
    /// Read-only.
    client_id: Option<String>,
    /// Unique among apps.
    name: Option<String>,
    /// Grant type wire values, or the aliases `device_code` and `token_exchange`.
    grant_types: Option<Vec<String>>,
    redirect_uris: Option<Vec<String>>,
    public: Option<bool>,
    #[schema(value_type = Option<AuthMethod>)]
    auth_method: Option<String>,
    tls_subject_dn: Option<String>,
    /// PEM certificate(s) or a JWKS with `x5c`, for self_signed_tls_client_auth.
    client_certificates: Option<String>,
    /// Read-only: the x5t#S256 thumbprints of `client_certificates`.
    tls_client_certificates: Option<Vec<String>>,
    #[schema(value_type = Option<TokenType>)]
    token_type: Option<String>,
    #[schema(value_type = Option<BindingType>)]
    binding: Option<String>,
    validate_binding: Option<bool>,
    revoke_on_logout: Option<bool>,
    scopes: Option<Vec<String>>,
    audience: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    introspect_any: Option<bool>,
    require_consent: Option<bool>,
    /// Authorization requests must be pushed first (RFC 9126).
    require_par: Option<bool>,
    exchange_from: Option<Vec<String>>,
    #[schema(value_type = Option<IdTokenAlg>)]
    id_token_alg: Option<String>,
    /// Seconds.
    access_token_ttl: Option<i64>,
    /// Seconds.
    refresh_token_ttl: Option<i64>,
    /// The client's public keys, a JWK Set (`private_key_jwt`, signed request objects); `null`
    /// removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    jwks: Option<Value>,
    /// Where the client publishes its JWK Set instead; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    jwks_uri: Option<Value>,
    /// A security profile the app must follow: `fapi2` (FAPI 2.0 Security Profile) or `none`.
    #[schema(value_type = Option<Profile>)]
    profile: Option<String>,
    /// OIDC Back-Channel Logout 1.0: where a `logout_token` is posted when a session ends; `null`
    /// removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    backchannel_logout_uri: Option<Value>,
    backchannel_logout_session_required: Option<bool>,
}

/// A member that is present, `null` included (JSON merge patch: `null` removes), as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A present member as the text the admin operations take: `null` is the empty text (remove).
fn text_of(v: Option<Value>) -> Option<String> {
    v.map(|v| match v {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    })
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
            require_par: self.require_par,
            exchange_from: self.exchange_from,
            id_token_alg: self.id_token_alg,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            jwks: text_of(self.jwks),
            jwks_uri: text_of(self.jwks_uri),
            profile: self.profile,
            backchannel_logout_uri: text_of(self.backchannel_logout_uri),
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            registered: None,
            force,
        }
    }
}

/// An app as a create or a change answers it: with `client_secret` when one was just made.
#[derive(Serialize, ToSchema)]
struct AppWithSecret {
    #[serde(flatten)]
    app: App,
    /// The new client secret, shown in this answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_secret: Option<String>,
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

fn app_with_secret(a: &AppRecord, secret: Option<&Secret>) -> AppWithSecret {
    AppWithSecret { app: a.app.clone(), client_secret: secret.map(|s| s.expose().to_string()) }
}

/// List apps
///
/// By `client_id`.
#[utoipa::path(get, path = "/apps", tag = "apps",
    params(PageQuery),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "A page of apps", body = AppPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ))]
async fn list_apps(c: Call, Query(q): Query<PageQuery>) -> Response {
    let limit = match limit_of(q.limit) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    match c.s.p.store.list_apps().await {
        Ok(mut apps) => {
            apps.retain(|a| a.app.client_id != ops::CONSOLE_CLIENT_ID);
            apps.sort_by(|a, b| a.app.client_id.cmp(&b.app.client_id));
            let p = page(apps, |a| a.app.client_id.clone(), q.cursor.as_deref(), limit, |a| a.app.clone());
            json_ok(StatusCode::OK, AppPage::from(p))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

/// Create an app
///
/// The server chooses `client_id`; a confidential app's `client_secret` is in this answer only.
#[utoipa::path(post, path = "/apps", tag = "apps",
    request_body(content = AppBody, content_type = "application/json"),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 201, description = "Created", body = AppWithSecret, headers(
            ("Location" = String, description = "The new app's URL path"),
            ("ETag" = String, description = "The app's version, for `If-Match`"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ))]
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

/// Read an app
#[utoipa::path(get, path = "/apps/{client_id}", tag = "apps",
    params(("client_id" = String, Path, description = "The app's client_id")),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "The app (never its secret)", body = App, headers(
            ("ETag" = String, description = "The app's version, for `If-Match`"),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn get_app(c: Call, Path(client_id): Path<String>) -> Response {
    match ops::get_app(&c.s.p, &client_id).await {
        Ok(a) => with_etag(json_ok(StatusCode::OK, &a.app), &a),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// `?force=` of an app PATCH.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct ForceQuery {
    /// Allow a change that deletes the app's secret (a confidential app made public), as the
    /// CLI's `--force`.
    force: Option<bool>,
}

/// Change an app
///
/// A JSON merge patch (RFC 7396) of any member the CLI can change; read-only members may be
/// repeated with their current values. An app that becomes confidential gets a secret, answered
/// here once as `client_secret`.
#[utoipa::path(patch, path = "/apps/{client_id}", tag = "apps",
    params(
        ("client_id" = String, Path, description = "The app's client_id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the change is based on: 412 when the app changed since"),
        ForceQuery,
    ),
    request_body(content(
        (AppBody = "application/merge-patch+json"),
        (AppBody = "application/json"),
    )),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "The changed app", body = AppWithSecret, headers(
            ("ETag" = String, description = "The app's new version"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ))]
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

/// Delete an app
///
/// Its tokens stop working at once.
#[utoipa::path(delete, path = "/apps/{client_id}", tag = "apps",
    params(
        ("client_id" = String, Path, description = "The app's client_id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the deletion is based on: 412 when the app changed since"),
    ),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 503, response = Unavailable),
    ))]
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

// Added to the document's components by `document`: the operation refers to it by name.
/// The body of a secret regeneration (optional: an empty body is `{}`).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    /// How long the old secret stays valid: 0 (the default) to 2592000 seconds.
    #[schema(minimum = 0, maximum = 2592000)]
    grace_seconds: Option<i64>,
}

/// A new client secret, shown once.
#[derive(Serialize, ToSchema)]
struct NewSecret {
    client_id: String,
    client_secret: String,
}

/// Regenerate an app's secret
///
/// The old secret stays valid `grace_seconds` more seconds, for rotation without downtime.
#[utoipa::path(post, path = "/apps/{client_id}/secret", tag = "apps",
    params(("client_id" = String, Path, description = "The app's client_id")),
    // By reference: an optional body (`Option<SecretBody>` would also admit `null`, which is refused).
    request_body(
        content = ref("#/components/schemas/SecretBody"),
        content_type = "application/json",
        description = "Optional: an empty body is `{}`",
    ),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "The new secret", body = NewSecret),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ))]
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
        Ok(secret) => json_ok(StatusCode::OK, NewSecret { client_id, client_secret: secret.expose().to_string() }),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- users ----------

/// List users
///
/// By username; `q` keeps the usernames starting with it.
#[utoipa::path(get, path = "/users", tag = "users",
    params(UserListQuery),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ))]
async fn list_users(c: Call, Query(q): Query<UserListQuery>) -> Response {
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
            let p = page(users, |u| u.user.username.clone(), q.cursor.as_deref(), limit, |u| UserView::from(&u.user));
            json_ok(StatusCode::OK, UserPage::from(p))
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

/// A new user. The password is never echoed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    /// 1 to 128 characters, no spaces or control characters.
    username: String,
    #[schema(write_only)]
    password: String,
    email: Option<String>,
    name: Option<String>,
    /// `admin` and/or `viewer`.
    #[serde(default)]
    roles: Vec<String>,
}

/// Create a user
#[utoipa::path(post, path = "/users", tag = "users",
    request_body(content = NewUserBody, content_type = "application/json"),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 201, description = "Created", body = UserView, headers(
            ("Location" = String, description = "The new user's URL path"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ))]
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
            let mut r = json_ok(StatusCode::CREATED, UserView::from(&rec.user));
            let loc = format!("{}/users/{}", paths::ADMIN_API, rec.user.username);
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        Err(e) => Problem::from(e).into_response(),
    }
}

/// Read a user
#[utoipa::path(get, path = "/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The username")),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn get_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::get_user(&c.s.p, &username).await {
        Ok(u) => json_ok(StatusCode::OK, UserView::from(&u.user)),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// A user PATCH. `null` clears email or name; read-only members may be repeated unchanged.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    /// Read-only.
    username: Option<String>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    /// Replaces the list; removing a role revokes the user's tokens.
    roles: Option<Vec<String>>,
    #[schema(write_only)]
    password: Option<String>,
    /// Disabling ends the user's sessions and revokes their tokens.
    disabled: Option<bool>,
    /// Read-only.
    created_at: Option<i64>,
}

/// A present member, `null` included, is `Some`.
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Change a user
///
/// A JSON merge patch (RFC 7396) of email, name, roles, password, disabled.
#[utoipa::path(patch, path = "/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The username")),
    request_body(content(
        (UserPatch = "application/merge-patch+json"),
        (UserPatch = "application/json"),
    )),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "The changed user", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ))]
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
        Ok(u) => json_ok(StatusCode::OK, UserView::from(&u.user)),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// Delete a user
#[utoipa::path(delete, path = "/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The username")),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn delete_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::delete_user(&c.s.p, &c.actor, &username).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// List a user's sessions
///
/// Every login session of the user (one page: `next_cursor` is always `null`).
#[utoipa::path(get, path = "/users/{username}/sessions", tag = "users",
    params(("username" = String, Path, description = "The username")),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "The sessions", body = SessionPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn list_sessions(c: Call, Path(username): Path<String>) -> Response {
    let u = match ops::get_user(&c.s.p, &username).await {
        Ok(u) => u,
        Err(e) => return Problem::from(e).into_response(),
    };
    let (now, idle) = (c.s.p.now(), c.s.p.config.session_idle_timeout);
    match c.s.p.store.list_sessions(&u.user.id).await {
        Ok(list) => {
            let items: Vec<SessionView> = list.iter().map(|x| SessionView::new(x, now, idle)).collect();
            json_ok(StatusCode::OK, SessionPage { items, next_cursor: None })
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

/// End a session
///
/// Revokes what is bound to it.
#[utoipa::path(delete, path = "/users/{username}/sessions/{id}", tag = "users",
    params(
        ("username" = String, Path, description = "The username"),
        ("id" = String, Path, description = "The session's id"),
    ),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn end_session(c: Call, Path((username, id)): Path<(String, String)>) -> Response {
    match ops::end_session(&c.s.p, &c.actor, &username, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// Log a user out everywhere
///
/// Ends every session of the user and revokes every token of the user (all binding types).
#[utoipa::path(post, path = "/users/{username}/logout", tag = "users",
    params(("username" = String, Path, description = "The username")),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "What was ended", body = LogoutResult),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn logout_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::logout_user(&c.s.p, &c.actor, &username).await {
        Ok(v) => json_ok(StatusCode::OK, v),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// Unlock a user
///
/// Clears the user's sign-in throttles on every node (the others within a second).
#[utoipa::path(post, path = "/users/{username}/unlock", tag = "users",
    params(("username" = String, Path, description = "The username")),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 204, description = "Unlocked"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn unlock_user(c: Call, Path(username): Path<String>) -> Response {
    match ops::unlock_user(&c.s.p, &c.actor, &username).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- tokens ----------

/// A token's metadata: never its value, its hash, or the id an opaque token derives from.
#[derive(Serialize, ToSchema)]
#[schema(as = Token)]
struct TokenView {
    /// A public id: the `jti` of an access token, a random id of a refresh token.
    id: String,
    kind: TokenKind,
    /// Refresh tokens are always opaque.
    format: TokenType,
    client_id: String,
    /// The user the token was issued to; `null` for a client's own token.
    #[schema(required = true)]
    username: Option<String>,
    #[schema(required = true)]
    binding_type: Option<BindingType>,
    /// Unix seconds.
    issued_at: i64,
    /// Unix seconds.
    expires_at: i64,
    state: TokenState,
}

#[derive(Serialize, ToSchema, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
enum TokenKind {
    AccessToken,
    RefreshToken,
}

#[derive(Serialize, ToSchema, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenView {
    fn new(t: &TokenMeta, now: i64) -> Self {
        let state = match (t.revoked_at, t.expires_at > now) {
            (Some(_), _) => TokenState::Revoked,
            (None, false) => TokenState::Expired,
            (None, true) => TokenState::Active,
        };
        TokenView {
            id: t.id.clone(),
            kind: if t.refresh { TokenKind::RefreshToken } else { TokenKind::AccessToken },
            format: t.format,
            client_id: t.client_id.clone(),
            username: t.username.clone(),
            binding_type: t.binding_type,
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            state,
        }
    }
}

/// `?client_id=&username=&binding=&limit=&cursor=` of the token list.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenListQuery {
    /// Only this app's tokens.
    client_id: Option<String>,
    /// Only this user's tokens (404 when there is no such user).
    username: Option<String>,
    /// Only tokens of this binding type.
    #[param(value_type = Option<BindingType>)]
    binding: Option<String>,
    /// Items per page: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List tokens
///
/// Token metadata by public id.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    params(TokenListQuery),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "A page of tokens", body = TokenPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
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
            let items: Vec<TokenView> = list.iter().map(|t| TokenView::new(t, now)).collect();
            json_ok(StatusCode::OK, TokenPage { items, next_cursor: next })
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

/// How many tokens a revocation revoked.
#[derive(Serialize, ToSchema)]
struct Revoked {
    revoked: u64,
}

/// Revoke a token
///
/// Revokes the token and its pair (an access token's refresh token, or the other way).
#[utoipa::path(post, path = "/tokens/{id}/revoke", tag = "tokens",
    params(("id" = String, Path, description = "The token's public id")),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ))]
async fn revoke_token(c: Call, Path(id): Path<String>) -> Response {
    match ops::revoke_token(&c.s.p, &c.actor, &id).await {
        Ok(()) => json_ok(StatusCode::OK, Revoked { revoked: 1 }),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// Which tokens to revoke: a client's, a user's, or a user's at one client. At least one.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    client_id: Option<String>,
    username: Option<String>,
}

/// Revoke matching tokens
///
/// Every token of the `client_id` and/or `username`; an empty filter is refused (400).
#[utoipa::path(post, path = "/tokens/revoke", tag = "tokens",
    request_body(content = RevokeBody, content_type = "application/json"),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ))]
async fn revoke_tokens(c: Call, headers: HeaderMap, body: Bytes) -> Response {
    let b: RevokeBody = match json_body(&headers, &body, false) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    match ops::revoke_tokens(&c.s.p, &c.actor, b.client_id.as_deref(), b.username.as_deref()).await {
        Ok(n) => json_ok(StatusCode::OK, Revoked { revoked: n }),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- keys ----------

/// A signing key (never its private part).
#[derive(Serialize, ToSchema)]
#[schema(as = Key)]
struct KeyView {
    kid: String,
    alg: Alg,
    /// Unix seconds.
    created_at: i64,
    state: KeyState,
    /// Unix seconds: when a replaced key leaves the JWKS; `null` while active.
    #[schema(required = true)]
    publish_until: Option<i64>,
}

/// A key a rotation made.
#[derive(Serialize, ToSchema)]
struct NewKey {
    kid: String,
    alg: Alg,
}

/// The keys a rotation made, one per algorithm.
#[derive(Serialize, ToSchema)]
struct RotatedKeys {
    items: Vec<NewKey>,
}

/// List signing keys
///
/// Every key (one page: `next_cursor` is always `null`).
#[utoipa::path(get, path = "/keys", tag = "keys",
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "The keys", body = KeyPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ))]
async fn list_keys(c: Call) -> Response {
    let now = c.s.p.now();
    match c.s.p.store.list_keys().await {
        Ok(keys) => {
            let items: Vec<KeyView> = keys
                .iter()
                .map(|k| KeyView {
                    kid: k.kid.clone(),
                    alg: k.alg,
                    created_at: k.created_at,
                    state: ops::key_state(k, now),
                    publish_until: k.publish_until,
                })
                .collect();
            json_ok(StatusCode::OK, KeyPage { items, next_cursor: None })
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}

/// Rotate the signing keys
///
/// A new key per algorithm signs from now on; the old ones stay published until their tokens
/// expire.
#[utoipa::path(post, path = "/keys/rotate", tag = "keys",
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 200, description = "The new keys", body = RotatedKeys),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ))]
async fn rotate_keys(c: Call) -> Response {
    match ops::rotate_keys(&c.s.p, &c.actor).await {
        Ok(new) => {
            let items = new.iter().map(|k| NewKey { kid: k.kid.clone(), alg: k.alg }).collect();
            json_ok(StatusCode::OK, RotatedKeys { items })
        }
        Err(e) => Problem::from(e).into_response(),
    }
}

/// Retire a signing key
///
/// The key leaves the JWKS and its tokens stop verifying. The only active key of an algorithm
/// cannot be retired (409): rotate first.
#[utoipa::path(delete, path = "/keys/{kid}", tag = "keys",
    params(("kid" = String, Path, description = "The key's id")),
    security(("bearer" = ["admin:write"]), ("dpop" = ["admin:write"])),
    responses(
        (status = 204, description = "Retired"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ))]
async fn retire_key(c: Call, Path(kid): Path<String>) -> Response {
    match ops::retire_key(&c.s.p, &c.actor, &kid).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

// ---------- events ----------

/// An audit event type (`tether_core::audit::kind::ALL`).
struct EventType;

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(tether_core::audit::kind::ALL.iter().copied()))
            .into()
    }
}

impl ToSchema for EventType {}

/// An audit event. `client_id` and `username` are the actor (who made the request); what was
/// acted on is `detail.target`. Never holds a token, secret, password or code.
#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
struct EventView {
    /// Sortable and unique.
    id: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    time: String,
    #[serde(rename = "type")]
    #[schema(value_type = EventType)]
    kind: String,
    #[schema(required = true)]
    client_id: Option<String>,
    #[schema(required = true)]
    username: Option<String>,
    #[schema(required = true)]
    ip: Option<String>,
    #[schema(required = true)]
    user_agent: Option<String>,
    /// What the event is about: `target`; for `admin.change` also `action` and, for updates,
    /// `changes` (`{"field": {"before": …, "after": …}}`, secrets never shown).
    detail: Value,
}

impl From<&EventRecord> for EventView {
    fn from(e: &EventRecord) -> Self {
        EventView {
            id: e.id.clone(),
            time: tether_core::cert::rfc3339(e.time),
            kind: e.kind.clone(),
            client_id: e.client_id.clone(),
            username: e.username.clone(),
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// The filters of `GET /events`, for the document: [`event_query`] reads them (and refuses any
/// other parameter).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct EventListQuery {
    /// Comma-separated event types: events of any of them.
    #[param(rename = "type", value_type = Option<Vec<EventType>>, style = Form, explode = false)]
    kind: Option<String>,
    /// Events at or after this time: RFC 3339 (`2026-11-30T08:00:00Z`) or Unix seconds.
    since: Option<String>,
    /// Events before this time: RFC 3339 or Unix seconds.
    until: Option<String>,
    /// Events whose actor is this app.
    client_id: Option<String>,
    /// Events whose actor is this user.
    username: Option<String>,
    /// Items per page: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn parse_time(name: &str, v: &str) -> Result<i64, Problem> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| bad(&format!("#/{name}"), format!("{name} must be an RFC 3339 time (2026-11-30T08:00:00Z)")))
}

/// The store query of `GET /events?…` (its `limit` is the page size, 0 for the default).
fn event_query(q: &HashMap<String, String>) -> Result<EventQuery, Problem> {
    let mut eq = EventQuery::default();
    for (k, v) in q {
        match k.as_str() {
            "type" => {
                eq.types = v.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
                if let Some(t) = eq.types.iter().find(|t| !tether_core::audit::kind::ALL.contains(&t.as_str())) {
                    return Err(bad("#/type", format!("unknown event type {t:?}")));
                }
            }
            "since" => eq.since = Some(parse_time("since", v)?),
            "until" => eq.until = Some(parse_time("until", v)?),
            "client_id" => eq.client_id = Some(v.clone()),
            "username" => eq.username = Some(v.clone()),
            "cursor" => eq.before_id = Some(v.clone()),
            "limit" => match v.parse::<u32>().ok().filter(|n| (1..=500).contains(n)) {
                Some(n) => eq.limit = n,
                None => return Err(bad("#/limit", "limit must be between 1 and 500")),
            },
            other => return Err(bad(&format!("#/{other}"), format!("unknown query parameter {other:?}"))),
        }
    }
    Ok(eq)
}

/// List audit events
///
/// Newest first. Any other query parameter is refused (400).
#[utoipa::path(get, path = "/events", tag = "events",
    params(EventListQuery),
    security(("bearer" = ["admin:read"]), ("dpop" = ["admin:read"])),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ))]
async fn list_events(c: Call, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut eq = match event_query(&q) {
        Ok(eq) => eq,
        Err(p) => return p.into_response(),
    };
    let limit = if eq.limit == 0 { 50 } else { eq.limit };
    eq.limit = limit + 1;
    // Events still in the write queue are stored first, so a caller sees what just happened.
    c.s.p.audit.flush(&*c.s.p.store).await;
    match c.s.p.store.list_events(&eq).await {
        Ok(mut list) => {
            let more = list.len() > limit as usize;
            list.truncate(limit as usize);
            let next = if more { list.last().map(|e| e.id.clone()) } else { None };
            let items: Vec<EventView> = list.iter().map(EventView::from).collect();
            json_ok(StatusCode::OK, EventPage { items, next_cursor: next })
        }
        Err(e) => Problem::from(AdminError::from(e)).into_response(),
    }
}
