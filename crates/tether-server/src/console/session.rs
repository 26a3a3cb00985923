//! The console's sign-in through Tether's own authorization endpoint, its cookie, and the
//! signed-in operator of every console request ([`Console`]); see the module docs of
//! [`super`] for why the console session is an access token.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use tether_core::admin_ops::CONSOLE_CLIENT_ID;
use tether_core::audit::Actor;
use tether_core::endpoint::admin::{self as admin_auth, AdminRequest};
use tether_core::endpoint::token::{self, TokenRequest};
use tether_core::form::Form;
use tether_core::provider::Provider;
use tether_core::resource::Credentials;
use tether_core::secret::{b64url, random_bytes, sha256};
use tether_core::session::{self, COOKIE as SESSION_COOKIE};

use super::view::{self, Nav};
use crate::cookies;
use crate::csrf;
use crate::extract::{ClientAddr, PeerCert, evidence};
use crate::state::AppState;

/// The console session cookie: the console's access token.
pub(crate) const COOKIE: &str = "tether_console";
/// The sign-in in progress: `state`, PKCE verifier and where to go back to.
const LOGIN_COOKIE: &str = "tether_console_login";
/// The console's path prefix.
pub(crate) const PREFIX: &str = "/console";
/// Deleting an app or retiring a key needs a sign-in at most this many seconds old.
pub(crate) const REAUTH_AGE: i64 = 300;
/// The scopes the console asks for; a user's token gets what their roles allow.
pub(crate) const SCOPES: &str = "openid admin:read admin:write";

/// Where the console is served: `admin_url` with `admin_listen`, else the issuer.
fn base(p: &Provider) -> String {
    p.config.admin_base.clone().unwrap_or_else(|| p.issuer().to_string()).trim_end_matches('/').to_string()
}

pub(crate) fn redirect_uri(p: &Provider) -> String {
    format!("{}{PREFIX}/callback", base(p))
}

// ---------- cookies ----------

fn cookie_value(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((name, value)).path(PREFIX).http_only(true).same_site(SameSite::Lax);
    if secure {
        c = c.secure(true);
    }
    if let Some(m) = max_age {
        c = c.max_age(Duration::seconds(m));
    }
    let c = c.build();
    let mut s = format!("{}={}; Path={PREFIX}", c.name(), c.value());
    if let Some(m) = max_age {
        s.push_str(&format!("; Max-Age={m}"));
    }
    if secure {
        s.push_str("; Secure");
    }
    s.push_str("; HttpOnly; SameSite=Lax");
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// ---------- the signed-in operator ----------

/// The operator of a console request: authenticated, with at least `admin:read`.
pub(crate) struct Console {
    pub s: AppState,
    pub actor: Actor,
    pub username: String,
    pub can_write: bool,
    /// When the operator last entered their password (the SSO session's `auth_time`).
    pub auth_time: i64,
    /// The CSRF value of this page's forms.
    pub csrf: String,
    subject: String,
    headers: HeaderMap,
    same_origin: bool,
}

impl Console {
    /// The navigation bar of a page in `active` section.
    pub fn nav(&self, active: &'static str) -> Nav {
        Nav {
            username: self.username.clone(),
            can_write: self.can_write,
            csrf: self.csrf.clone(),
            active,
            role: if self.can_write { "admin" } else { "viewer" },
        }
    }

    /// Is `form` a genuine console form of this browser and session (CSRF)?
    pub fn check_form(&self, form: &Form) -> Result<(), Response> {
        let ok = self.same_origin
            && form.get("csrf").is_some_and(|t| csrf::verify(&self.s.p, &self.headers, &self.subject, t));
        if ok {
            return Ok(());
        }
        Err(view::message(
            &self.s.p,
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form was refused: its CSRF value is missing, expired or not from this console session. Reload the page and try again.",
        ))
    }

    /// A change: needs `admin:write` (the `admin` role) and a genuine form.
    pub fn writer(&self, form: &Form) -> Result<(), Response> {
        if !self.can_write {
            return Err(view::message(
                &self.s.p,
                StatusCode::FORBIDDEN,
                "Read-only access",
                "Your role lets you look, not change anything: ask an administrator for the admin role.",
            ));
        }
        self.check_form(form)
    }

    /// Signed in recently enough for a destructive act.
    pub fn fresh(&self) -> bool {
        self.s.p.now() - self.auth_time <= REAUTH_AGE
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let p = &s.p;
        let here = parts.uri.path_and_query().map(|x| x.as_str()).unwrap_or(PREFIX).to_string();
        let is_get = parts.method == axum::http::Method::GET;
        let secure = s.opts.secure_cookies;
        let to_signin = |clear: bool| {
            let target = if is_get { here.clone() } else { PREFIX.to_string() };
            let mut r = crate::pages::common::redirect(
                &format!("{PREFIX}/signin?return={}", urlencoding(&target)),
                StatusCode::SEE_OTHER,
            );
            if clear {
                r.headers_mut().append(SET_COOKIE, cookie_value(COOKIE, "", Some(0), secure));
            }
            r
        };
        let Some(token) =
            cookies::get(&parts.headers, COOKIE).filter(|t| !t.is_empty() && t.len() <= 512).map(str::to_string)
        else {
            return Err(to_signin(false));
        };
        let PeerCert(peer) = PeerCert::from_request_parts(parts, s).await.map_err(IntoResponse::into_response)?;
        let ClientAddr(addr) = match ClientAddr::from_request_parts(parts, s).await {
            Ok(a) => a,
            Err(never) => match never {},
        };
        let credentials = Credentials { token: token.clone(), scheme: tether_core::resource::Scheme::Bearer };
        let path = parts.uri.path().to_string();
        let req = AdminRequest {
            method: "GET",
            path: &path,
            credentials: &credentials,
            dpop: vec![],
            evidence: evidence(&peer, &parts.headers),
            write: false,
        };
        let caller = match admin_auth::authenticate(p, req).await {
            Ok(c) => c,
            // Expired, revoked, its session ended, or the role taken away: sign in again.
            Err(e) => {
                tracing::debug!(error = %e.description, "console session not valid; signing in again");
                return Err(to_signin(true));
            }
        };
        let session = session::lookup(p, cookies::get(&parts.headers, SESSION_COOKIE)).await.ok().flatten();
        let Some(session) = session else { return Err(to_signin(true)) };
        let mut actor = caller.actor;
        actor.ip = addr;
        actor.user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect());
        let subject = format!("console|{}", b64url(&sha256(token.as_bytes())));
        Ok(Console {
            s: s.clone(),
            username: actor.username.clone().unwrap_or_default(),
            actor,
            can_write: caller.can_write,
            auth_time: session.auth_time,
            csrf: csrf::token(p, &parts.headers, &subject),
            subject,
            headers: parts.headers.clone(),
            same_origin: csrf::same_origin(p, &parts.headers) || console_origin(p, &parts.headers),
        })
    }
}

/// A post from the console's own origin (the `admin_url` origin when the console has its own
/// listener).
fn console_origin(p: &Provider, headers: &HeaderMap) -> bool {
    let Some(o) = headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    url::Url::parse(&base(p)).is_ok_and(|u| u.origin().ascii_serialization() == o)
}

pub(crate) fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Only paths of the console itself are places to come back to.
fn safe_return(r: Option<&str>) -> String {
    match r {
        Some(r) if r.starts_with(PREFIX) && !r.starts_with("//") && !r.contains('\\') && !r.contains("://") => {
            r.to_string()
        }
        _ => PREFIX.to_string(),
    }
}

// ---------- sign-in, callback, sign-out ----------

#[derive(Deserialize)]
pub(crate) struct SigninQuery {
    #[serde(rename = "return")]
    back: Option<String>,
    /// `1`: a fresh password entry (a destructive act asked for it).
    reauth: Option<String>,
}

pub(crate) async fn signin(State(s): State<AppState>, Query(q): Query<SigninQuery>) -> Response {
    let p = &s.p;
    let state = b64url(&random_bytes::<16>());
    let verifier = b64url(&random_bytes::<32>());
    let challenge = b64url(&sha256(verifier.as_bytes()));
    let back = safe_return(q.back.as_deref());
    let value = format!("{state}.{verifier}.{}", b64url(back.as_bytes()));
    let mut url = format!(
        "{}{}?response_type=code&client_id={CONSOLE_CLIENT_ID}&redirect_uri={}&scope={}&state={state}&code_challenge={challenge}&code_challenge_method=S256",
        p.issuer().trim_end_matches('/'),
        tether_core::endpoint::paths::AUTHORIZE,
        urlencoding(&redirect_uri(p)),
        urlencoding(SCOPES),
    );
    if q.reauth.as_deref() == Some("1") {
        url.push_str("&max_age=0");
    }
    let mut r = crate::pages::common::redirect(&url, StatusCode::SEE_OTHER);
    r.headers_mut().append(SET_COOKIE, cookie_value(LOGIN_COOKIE, &value, Some(600), s.opts.secure_cookies));
    r
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub(crate) async fn callback(
    State(s): State<AppState>,
    PeerCert(peer): PeerCert,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let p = &s.p;
    if let Some(e) = &q.error {
        let text = format!("Sign-in did not complete: {e}. {}", q.error_description.as_deref().unwrap_or(""));
        return view::message(p, StatusCode::BAD_REQUEST, "Sign-in failed", text.trim());
    }
    let pending = cookies::get(&headers, LOGIN_COOKIE).unwrap_or("");
    let mut it = pending.splitn(3, '.');
    let (state, verifier, back) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
    let state_ok = !state.is_empty()
        && q.state.as_deref().is_some_and(|st| tether_core::secret::ct_eq(st.as_bytes(), state.as_bytes()));
    let (Some(code), true) = (q.code.as_deref(), state_ok) else {
        return view::message(
            p,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in was not started here or took too long. Open the console again to sign in.",
        );
    };
    let back = tether_core::secret::b64url_decode(back).and_then(|b| String::from_utf8(b).ok());
    let back = safe_return(back.as_deref());
    let form = Form::from_pairs(vec![
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.into()),
        ("redirect_uri".into(), redirect_uri(p)),
        ("client_id".into(), CONSOLE_CLIENT_ID.into()),
        ("code_verifier".into(), verifier.into()),
    ]);
    let req = TokenRequest {
        form: &form,
        authorization: None,
        evidence: evidence(&peer, &headers),
        dpop: None,
        addr: addr.as_deref(),
    };
    let (_, answer) = token::handle(p, req).await;
    let body = match answer {
        Ok(b) => b,
        Err(e) => {
            return view::message(p, StatusCode::BAD_REQUEST, "Sign-in failed", &e.description);
        }
    };
    let scope = body.get("scope").and_then(|v| v.as_str()).unwrap_or("");
    let Some(access) = body.get("access_token").and_then(|v| v.as_str()) else {
        return view::message(p, StatusCode::BAD_GATEWAY, "Sign-in failed", "no access token was issued");
    };
    let mut r = if scope.split(' ').any(|x| x == "admin:read" || x == "admin:write") {
        let mut r = crate::pages::common::redirect(&back, StatusCode::SEE_OTHER);
        r.headers_mut().append(SET_COOKIE, cookie_value(COOKIE, access, None, s.opts.secure_cookies));
        r
    } else {
        view::no_access(p)
    };
    r.headers_mut().append(SET_COOKIE, cookie_value(LOGIN_COOKIE, "", Some(0), s.opts.secure_cookies));
    r
}

pub(crate) async fn signout(c: Console, body: axum::body::Bytes) -> Response {
    let form = match Form::parse(&body) {
        Ok(f) => f,
        Err(e) => return view::message(&c.s.p, StatusCode::BAD_REQUEST, "Form refused", &e.description),
    };
    if let Err(r) = c.check_form(&form) {
        return r;
    }
    let p = &c.s.p;
    let sso = cookies::get(&c.headers, SESSION_COOKIE);
    if let Ok(Some(session)) = session::lookup(p, sso).await {
        let ev = tether_core::binding::Evidence { session_cookie: sso, ..Default::default() };
        if let Err(e) = tether_core::endpoint::logout::end_session(p, &session, &ev).await {
            return view::message(p, StatusCode::SERVICE_UNAVAILABLE, "Sign-out failed", &e.description);
        }
    }
    let mut r = crate::pages::common::redirect(&format!("{PREFIX}/signed-out"), StatusCode::SEE_OTHER);
    let h = r.headers_mut();
    h.append(SET_COOKIE, cookie_value(COOKIE, "", Some(0), c.s.opts.secure_cookies));
    h.append(SET_COOKIE, cookies::clear_session(c.s.opts.secure_cookies));
    r
}

pub(crate) async fn signed_out(State(s): State<AppState>) -> Response {
    view::signed_out(&s.p)
}
