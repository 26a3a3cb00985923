//! Routes, extractors and the error → HTTP mapping (the only place HTTP statuses are chosen).

use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, PRAGMA, SET_COOKIE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tether_core::endpoint::authorize::{self, AuthzError, AuthzRequest};
use tether_core::endpoint::{discovery, introspect, revoke, token, userinfo};
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::form::Form;
use tether_core::login::{check_credentials, login_blocked, record_login};
use tether_core::model::AppRecord;
use tether_core::provider::Provider;
use tether_core::resource::{self, PopMode, Refusal};
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::SessionRecord;
use tower_http::cors::{AllowOrigin, CorsLayer};

use tether_core::binding::Evidence;
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::cert::ClientCert;

use tether_tls::accept::ConnInfo;

/// Request bodies larger than this are refused with 413 before they are read.
pub const MAX_BODY: usize = 64 * 1024;
/// A login form is valid this long after it was shown.
const FORM_LIFETIME: i64 = 1800;

pub struct Options {
    pub secure_cookies: bool,
    pub proxy_cert: tether_tls::client_cert::ProxyCertConfig,
}

/// The request's client certificate (DER): from a trusted proxy's header, else from the TLS
/// handshake of the connection. A malformed header from a trusted proxy is `invalid_request`.
pub(crate) struct PeerCert(pub Option<tether_core::cert::ClientCert>);

impl axum::extract::FromRequestParts<S> for PeerCert {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, s: &S) -> Result<Self, ApiError> {
        let Some(c) = parts.extensions.get::<ConnInfo>() else { return Ok(PeerCert(None)) };
        match s.opts.proxy_cert.forwarded(c.remote.ip(), &parts.headers) {
            Ok(Some(der)) => Ok(PeerCert(tether_tls::client_cert::inspect(der))),
            // A trusted proxy's own TLS certificate never stands in for its clients'.
            Ok(None) if s.opts.proxy_cert.from_trusted_proxy(c.remote.ip()) => Ok(PeerCert(None)),
            Ok(None) => {
                Ok(PeerCert(c.peer_cert.as_ref().and_then(|d| tether_tls::client_cert::inspect(d.as_ref().clone()))))
            }
            Err(e) => Err(ApiError(OAuthError::invalid_request(e))),
        }
    }
}

#[derive(Clone)]
pub(crate) struct S {
    pub p: Arc<Provider>,
    pub opts: Arc<Options>,
}

pub fn router(p: Arc<Provider>, opts: Options) -> Router {
    let origins = p.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().map(|o| origins.origin_allowed(o)).unwrap_or(false)
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, HeaderName::from_static("dpop")])
        .expose_headers([HeaderName::from_static("dpop-nonce"), WWW_AUTHENTICATE])
        .max_age(std::time::Duration::from_secs(600));
    let browser = Router::new()
        // OPTIONS routes exist so that the CORS layer (which answers preflights itself) wraps them.
        .route("/oauth2/token", post(token_endpoint).options(preflight))
        .route("/oauth2/userinfo", get(userinfo_endpoint).post(userinfo_endpoint).options(preflight))
        .route("/oauth2/revoke", post(revoke_endpoint).options(preflight))
        .layer(cors);
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_endpoint))
        .route("/.well-known/oauth-authorization-server", get(discovery_endpoint))
        .route("/oauth2/jwks", get(jwks_endpoint))
        .route("/oauth2/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth2/introspect", post(introspect_endpoint))
        .route("/oauth2/device_authorize", post(crate::browser::device_authorize))
        .route("/oauth2/device", get(crate::browser::device_get).post(crate::browser::device_post))
        .route("/oidc/logout", get(crate::browser::logout_get).post(crate::browser::logout_post))
        .route("/healthz", get(healthz))
        .merge(browser)
        .route_layer(middleware::from_fn(track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(S { p, opts: Arc::new(opts) })
}

pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()) }
        }),
    )
}

async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("tether_http_request_duration_seconds", "endpoint" => endpoint.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("tether_http_requests_total", "endpoint" => endpoint, "status" => status).increment(1);
    resp
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An [`OAuthError`] on its way out: RFC 6749 §5.2 JSON with the status its code calls for.
pub(crate) struct ApiError(pub OAuthError);

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        ApiError(e)
    }
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
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
        let status = status_for(e.code);
        let mut resp =
            (status, Json(json!({"error": e.code.as_str(), "error_description": e.description}))).into_response();
        let h = resp.headers_mut();
        no_store(h);
        match e.code {
            ErrorCode::InvalidClient => {
                h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tether\""));
            }
            ErrorCode::TemporarilyUnavailable => {
                h.insert("retry-after", HeaderValue::from_static("1"));
            }
            _ => {}
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

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found() -> Response {
    ApiError(OAuthError::invalid_request("no such endpoint"))
        .into_response()
        .map(|b| b)
        .with_status(StatusCode::NOT_FOUND)
}

async fn method_not_allowed(method: Method) -> Response {
    ApiError(OAuthError::invalid_request(format!("method {method} is not allowed on this endpoint")))
        .into_response()
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

trait WithStatus {
    fn with_status(self, s: StatusCode) -> Self;
}
impl WithStatus for Response {
    fn with_status(mut self, s: StatusCode) -> Self {
        *self.status_mut() = s;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Extractors

/// A strictly parsed `application/x-www-form-urlencoded` body, at most [`MAX_BODY`] bytes.
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
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| too_large())?;
        Form::parse(&bytes).map(FormBody).map_err(|e| ApiError(e).into_response())
    }
}

pub(crate) fn header(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// What a request presents that can prove a token binding (B-5).
pub(crate) fn evidence<'a>(peer: &'a Option<ClientCert>, headers: &'a HeaderMap) -> Evidence<'a> {
    Evidence {
        peer_cert: peer.as_ref(),
        atbv: cookie(headers, ATBV),
        session_cookie: cookie(headers, SESSION_COOKIE),
        dpop: None,
    }
}

/// The `DPoP` header: at most one (RFC 9449 §4.3 check 1).
fn dpop_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut all = headers.get_all("dpop").iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "more than one DPoP header"));
    }
    first
        .map(|v| v.to_str().map_err(|_| OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP header is not text")))
        .transpose()
}

/// B-7: `atbv=<uuid>; Path=/; Secure; HttpOnly; SameSite=None`, no expiry, host-only.
fn atbv_cookie(value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{ATBV}={value}; Path=/; Secure; HttpOnly; SameSite=None"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A redirect carrying a new code, with the `atbv` cookie for `cookie` apps.
fn code_redirect(url: &str, atbv: Option<String>) -> Response {
    let mut r = redirect(url, StatusCode::SEE_OTHER);
    if let Some(v) = atbv {
        r.headers_mut().append(SET_COOKIE, atbv_cookie(&v));
    }
    r
}

pub(crate) fn json_no_store(body: Value) -> Response {
    let mut r = Json(body).into_response();
    no_store(r.headers_mut());
    r
}

pub(crate) fn unavailable() -> Response {
    ApiError(OAuthError::from(tether_core::error::StoreError::Unavailable("health check failing".into())))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Endpoints

async fn healthz(State(s): State<S>) -> Response {
    if s.p.healthy() { (StatusCode::OK, Json(json!({"status": "ok"}))).into_response() } else { unavailable() }
}

async fn discovery_endpoint(State(s): State<S>) -> Response {
    let mut r = Json(discovery::metadata(&s.p)).into_response();
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

async fn jwks_endpoint(State(s): State<S>) -> Response {
    let mut r = Json(json!({"keys": s.p.keys().jwks})).into_response();
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    r
}

async fn token_endpoint(
    State(s): State<S>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    if !s.p.healthy() {
        return unavailable();
    }
    let dpop = match dpop_header(&headers) {
        Ok(d) => d,
        Err(e) => return ApiError(e).into_response(),
    };
    let req = token::TokenRequest {
        form: &form,
        authorization: header(&headers, AUTHORIZATION),
        evidence: evidence(&peer, &headers),
        dpop,
    };
    match token::handle(&s.p, req).await {
        Ok(body) => json_no_store(body),
        Err(e) => ApiError(e).into_response(),
    }
}

async fn introspect_endpoint(
    State(s): State<S>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    if !s.p.healthy() {
        return unavailable();
    }
    match introspect::handle(&s.p, &form, header(&headers, AUTHORIZATION), peer.as_ref()).await {
        Ok(body) => json_no_store(body),
        Err(e) => ApiError(e).into_response(),
    }
}

async fn revoke_endpoint(
    State(s): State<S>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    if !s.p.healthy() {
        return unavailable();
    }
    // B-5: revoking a DPoP-bound access token with --validate-binding takes a proof with its key.
    let proof = match dpop_header(&headers) {
        Ok(Some(h)) => match tether_core::binding::dpop::check_proof(&s.p, h, "POST", "/oauth2/revoke", None).await {
            Ok(ok) => Some(ok),
            Err(e) => return ApiError(e).into_response(),
        },
        Ok(None) => None,
        Err(e) => return ApiError(e).into_response(),
    };
    let ev = Evidence { dpop: proof.as_ref(), ..evidence(&peer, &headers) };
    match revoke::handle(&s.p, &form, header(&headers, AUTHORIZATION), &ev).await {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => ApiError(e).into_response(),
    }
}

async fn userinfo_endpoint(
    State(s): State<S>,
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
    match userinfo::handle(&s.p, req).await {
        Ok(body) => json_no_store(body),
        Err(e) if matches!(e.code, ErrorCode::TemporarilyUnavailable | ErrorCode::ServerError) => {
            ApiError(e).into_response()
        }
        Err(e) => ResourceError(Refusal::Error(e)).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Authorization endpoint and pages

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage<'a> {
    pub app_name: &'a str,
    /// Where the form posts; everything else it needs is in `hidden` (interface.md §2).
    pub action: &'a str,
    pub hidden: Vec<(&'a str, String)>,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub note: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    app_name: &'a str,
    username: &'a str,
    scopes: &'a str,
    authz: &'a str,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    code: &'a str,
    description: &'a str,
}

pub(crate) fn page(status: StatusCode, html: Result<String, askama::Error>) -> Response {
    page_to(status, html, None)
}

/// A page whose form, once posted, redirects to `target` (a client's redirect URI). Browsers apply
/// CSP `form-action` to the redirects that follow a form submission, so the target's origin must
/// be allowed too, or a real browser silently stays on the page.
pub(crate) fn page_to(status: StatusCode, html: Result<String, askama::Error>, target: Option<&str>) -> Response {
    match html {
        Ok(h) => {
            let mut r = (status, Html(h)).into_response();
            let hd = r.headers_mut();
            no_store(hd);
            hd.insert("x-frame-options", HeaderValue::from_static("DENY"));
            let extra = target
                .and_then(|t| url::Url::parse(t).ok())
                .map(|u| u.origin())
                .filter(|o| o.is_tuple())
                .map(|o| format!(" {}", o.ascii_serialization()))
                .unwrap_or_default();
            let csp = format!(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'"
            );
            if let Ok(v) = HeaderValue::from_str(&csp) {
                hd.insert("content-security-policy", v);
            }
            hd.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            r
        }
        Err(e) => ApiError(OAuthError::server(e.to_string())).into_response(),
    }
}

pub(crate) fn error_page(e: &OAuthError) -> Response {
    let status = match e.code {
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    page(status, ErrorPage { code: e.code.as_str(), description: &e.description }.render())
}

pub(crate) fn redirect(to: &str, status: StatusCode) -> Response {
    let mut r = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    no_store(r.headers_mut());
    r
}

fn authz_error(p: &Provider, e: AuthzError) -> Response {
    match e {
        AuthzError::Page(e) => error_page(&e),
        AuthzError::Redirect { redirect_uri, state, error } => {
            redirect(&authorize::error_redirect(p, &redirect_uri, state.as_deref(), &error), StatusCode::SEE_OTHER)
        }
    }
}

/// The hidden `csrf` value: a timestamp and a MAC over it and the pending request.
pub(crate) fn csrf_token(p: &Provider, authz: &str) -> String {
    let ts = p.now();
    format!("{ts}.{}", p.form_key.mac_b64(format!("{ts}|{authz}").as_bytes()))
}

pub(crate) fn csrf_ok(p: &Provider, authz: &str, token: &str) -> bool {
    let Some((ts, mac)) = token.split_once('.') else { return false };
    let Ok(t) = ts.parse::<i64>() else { return false };
    let Some(tag) = tether_core::secret::b64url_decode(mac) else { return false };
    let now = p.now();
    t <= now + 60 && now - t <= FORM_LIFETIME && p.form_key.verify(format!("{t}|{authz}").as_bytes(), &tag)
}

/// Login CSRF defence for form posts: browsers say where a submission comes from; a cross-site
/// post is refused. Scripts send neither header and are not browsers to protect.
pub(crate) fn same_origin(p: &Provider, headers: &HeaderMap) -> bool {
    if let Some(site) = header(headers, HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match header(headers, axum::http::header::ORIGIN) {
        None | Some("null") => true,
        Some(o) => {
            let issuer_origin =
                url::Url::parse(p.issuer()).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
            o == issuer_origin
                || headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .is_some_and(|h| o.ends_with(&format!("://{h}")))
        }
    }
}

pub(crate) fn session_cookie(opts: &Options, value: &str) -> HeaderValue {
    let secure = if opts.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn login_page(
    app: &AppRecord,
    authz: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let hidden = vec![("authz", authz.to_string()), ("csrf", csrf.to_string())];
    let target = redirect_target(app, authz);
    page_to(
        status,
        LoginPage { app_name: &app.app.name, action: "/oauth2/authorize", hidden, username, error, note: None }
            .render(),
        target.as_deref(),
    )
}

/// Where a pending authorization request's form will end up (its registered redirect URI).
fn redirect_target(app: &AppRecord, authz: &str) -> Option<String> {
    let f = Form::parse(authz.as_bytes()).ok();
    let r = f.as_ref().and_then(|f| f.get("redirect_uri")).map(str::to_string);
    r.filter(|r| app.app.redirect_uris.contains(r)).or_else(|| app.app.redirect_uris.first().cloned())
}

async fn authorize_get(State(s): State<S>, headers: HeaderMap, req: Request) -> Response {
    let raw = req.uri().query().unwrap_or("").to_string();
    authorize_request(&s, &headers, raw).await
}

async fn authorize_post(
    State(s): State<S>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    if form.has("authz") {
        let addr = conn.map(|c| c.remote.ip().to_string());
        return login_or_consent_submit(&s, &headers, &form, addr.as_deref()).await;
    }
    let raw = form_urlencoded::Serializer::new(String::new()).extend_pairs(form.pairs()).finish();
    authorize_request(&s, &headers, raw).await
}

/// A fresh authorization request (query string or POSTed form, re-serialised).
async fn authorize_request(s: &S, headers: &HeaderMap, raw: String) -> Response {
    let p = &s.p;
    let form = match Form::parse(raw.as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let (app, req) = match authorize::validate(p, &form).await {
        Ok(x) => x,
        Err(e) => return authz_error(p, e),
    };
    let session = match session::lookup_and_touch(p, cookie(headers, SESSION_COOKIE)).await {
        Ok(s) => s.filter(|s| !authorize::needs_fresh_login(p, &req, s)),
        Err(e) => return error_page(&e),
    };
    match session {
        Some(sess) => proceed(s, headers, &app, &req, &raw, &sess, None).await,
        None if req.prompt_none => authz_error(
            p,
            AuthzError::Redirect {
                redirect_uri: req.redirect_uri.clone(),
                state: req.state.clone(),
                error: OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in"),
            },
        ),
        None => login_page(&app, &raw, &csrf_token(p, &raw), "", None, StatusCode::OK),
    }
}

/// With a signed-in user: ask for consent if the app wants it, else issue the code.
async fn proceed(
    s: &S,
    headers: &HeaderMap,
    app: &AppRecord,
    req: &AuthzRequest,
    raw: &str,
    sess: &SessionRecord,
    set_cookie: Option<HeaderValue>,
) -> Response {
    let p = &s.p;
    let mut resp = if app.app.require_consent {
        let username = match p.store.get_user(&sess.user_id).await {
            Ok(Some(u)) => u.user.username,
            Ok(None) => return error_page(&OAuthError::invalid_request("the signed-in user no longer exists")),
            Err(e) => return error_page(&e.into()),
        };
        let scopes = req.scopes.join(" ");
        page_to(
            StatusCode::OK,
            ConsentPage {
                app_name: &app.app.name,
                username: &username,
                scopes: &scopes,
                authz: raw,
                csrf: &csrf_token(p, raw),
            }
            .render(),
            Some(&req.redirect_uri),
        )
    } else {
        match authorize::issue_code(p, app, req, sess, cookie(headers, ATBV)).await {
            Ok((url, atbv)) => code_redirect(&url, atbv),
            Err(e) => return error_page(&e),
        }
    };
    if let Some(c) = set_cookie {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

async fn login_or_consent_submit(s: &S, headers: &HeaderMap, form: &Form, addr: Option<&str>) -> Response {
    let p = &s.p;
    let raw = form.get("authz").unwrap_or("").to_string();
    if !same_origin(p, headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    if !csrf_ok(p, &raw, form.get("csrf").unwrap_or("")) {
        return error_page(&OAuthError::invalid_request(
            "this sign-in form has expired or was altered; go back to the application and start again",
        ));
    }
    let authz_form = match Form::parse(raw.as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let (app, req) = match authorize::validate(p, &authz_form).await {
        Ok(x) => x,
        Err(e) => return authz_error(p, e),
    };
    if form.get("step") == Some("consent") {
        let sess = match session::lookup_and_touch(p, cookie(headers, SESSION_COOKIE)).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return login_page(
                    &app,
                    &raw,
                    &csrf_token(p, &raw),
                    "",
                    Some("Your session has ended. Sign in again."),
                    StatusCode::OK,
                );
            }
            Err(e) => return error_page(&e),
        };
        if form.get("approve") != Some("yes") {
            return authz_error(
                p,
                AuthzError::Redirect {
                    redirect_uri: req.redirect_uri.clone(),
                    state: req.state.clone(),
                    error: OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
                },
            );
        }
        return match authorize::issue_code(p, &app, &req, &sess, cookie(headers, ATBV)).await {
            Ok((url, atbv)) => code_redirect(&url, atbv),
            Err(e) => error_page(&e),
        };
    }
    let username = form.get("username").unwrap_or("").to_string();
    let password = form.get("password").unwrap_or("").to_string();
    if username.is_empty() || password.is_empty() {
        return login_page(
            &app,
            &raw,
            &csrf_token(p, &raw),
            &username,
            Some("Enter your username and password."),
            StatusCode::BAD_REQUEST,
        );
    }
    if let Some(wait) = login_blocked(p, &username, addr) {
        let msg = format!("Too many failed sign-in attempts. Try again in {}.", tether_core::throttle::wait_text(wait));
        return login_page(&app, &raw, &csrf_token(p, &raw), &username, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
    }
    let result = check_credentials(p, &username, password).await;
    record_login(p, &username, addr, result.is_ok());
    let user = match result {
        Ok(u) => u,
        Err(e) if e.code == ErrorCode::InvalidGrant => {
            return login_page(
                &app,
                &raw,
                &csrf_token(p, &raw),
                &username,
                Some("Wrong username or password."),
                StatusCode::UNAUTHORIZED,
            );
        }
        Err(e) => return error_page(&e),
    };
    let (sess, cookie_value) = match session::start(p, &user.user.id).await {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    proceed(s, headers, &app, &req, &raw, &sess, Some(session_cookie(&s.opts, &cookie_value))).await
}
