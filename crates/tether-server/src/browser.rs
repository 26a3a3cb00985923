//! The device authorization endpoints (RFC 8628) and RP-initiated logout: their pages and the
//! HTTP around `tether_core::endpoint::{device, logout}`.
//!
//! Every form follows the pinned page contract (interface.md §2): one `<form method="post">`,
//! visible inputs named by the interface (`user_code`, `username`, `password`, `approve`),
//! everything else hidden (a CSRF MAC bound to what the form is about, the step). Posts are also
//! refused when the browser says they come from another site.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::endpoint::{device, logout};
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::form::Form;
use tether_core::login::{check_credentials, login_blocked, record_login};
use tether_core::provider::Provider;
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::{DeviceRecord, SessionRecord};
use tether_core::throttle::wait_text;

use crate::http::{
    ApiError, FormBody, LoginPage, PeerCert, S, cookie, csrf_ok, csrf_token, error_page, header, json_no_store, page,
    page_to, redirect, same_origin, session_cookie, unavailable,
};
use tether_tls::accept::ConnInfo;

#[derive(Template)]
#[template(path = "device_code.html")]
struct DeviceCodePage<'a> {
    user_code: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "device_approve.html")]
struct DeviceApprovePage<'a> {
    app_name: &'a str,
    username: &'a str,
    user_code: &'a str,
    scopes: &'a str,
    hidden: Vec<(&'a str, String)>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    error: bool,
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    username: Option<&'a str>,
    app_name: Option<&'a str>,
    hidden: Vec<(&'a str, String)>,
}

fn message(status: StatusCode, title: &str, text: &str, error: bool) -> Response {
    page(status, MessagePage { title, message: text, error }.render())
}

fn addr_of(conn: &Option<axum::Extension<ConnInfo>>) -> Option<String> {
    conn.as_ref().map(|c| c.remote.ip().to_string())
}

// ---------------------------------------------------------------------------------------------
// POST /oauth2/device_authorize

pub(crate) async fn device_authorize(
    State(s): State<S>,
    PeerCert(peer): PeerCert,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    if !s.p.healthy() {
        return unavailable();
    }
    match device::authorize(&s.p, &form, header(&headers, AUTHORIZATION), peer.as_ref()).await {
        Ok(body) => json_no_store(body),
        Err(e) => ApiError(e).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// GET, POST /oauth2/device (the verification page)

/// The CSRF MAC of the device forms is bound to the step and the user code.
fn device_subject(step: &str, code: &str) -> String {
    format!("device|{step}|{}", device::normalize_user_code(code).unwrap_or_default())
}

fn code_page(p: &Provider, user_code: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = csrf_token(p, &device_subject("code", ""));
    page(status, DeviceCodePage { user_code, csrf: &csrf, error }.render())
}

fn device_login_page(
    p: &Provider,
    rec_app: &str,
    code: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let shown = device::normalize_user_code(code).map(|c| device::display_user_code(&c)).unwrap_or_default();
    let hidden = vec![
        ("step", "login".to_string()),
        ("user_code", shown.clone()),
        ("csrf", csrf_token(p, &device_subject("login", code))),
    ];
    let note = format!("Code {shown}");
    page(
        status,
        LoginPage { app_name: rec_app, action: "/oauth2/device", hidden, username, error, note: Some(&note) }.render(),
    )
}

async fn approve_page(p: &Provider, rec: &DeviceRecord, app_name: &str, code: &str, sess: &SessionRecord) -> Response {
    let username = match p.store.get_user(&sess.user_id).await {
        Ok(Some(u)) => u.user.username,
        Ok(None) => return error_page(&OAuthError::invalid_request("the signed-in user no longer exists")),
        Err(e) => return error_page(&e.into()),
    };
    let shown = device::normalize_user_code(code).map(|c| device::display_user_code(&c)).unwrap_or_default();
    let hidden = vec![
        ("step", "approve".to_string()),
        ("user_code", shown.clone()),
        ("csrf", csrf_token(p, &device_subject("approve", code))),
    ];
    page(
        StatusCode::OK,
        DeviceApprovePage { app_name, username: &username, user_code: &shown, scopes: &rec.scope, hidden }.render(),
    )
}

/// RFC 8628 §5.1: wrong codes are throttled per browser session and per source address.
fn code_throttled(p: &Provider, headers: &HeaderMap, addr: Option<&str>) -> Option<i64> {
    let now = p.now();
    let by_session = cookie(headers, SESSION_COOKIE).and_then(|c| p.throttles.user_code_session.blocked(c, now));
    let by_addr = addr.and_then(|a| p.throttles.user_code_addr.blocked(a, now));
    by_session.into_iter().chain(by_addr).max()
}

fn code_failed(p: &Provider, headers: &HeaderMap, addr: Option<&str>) {
    let now = p.now();
    if let Some(c) = cookie(headers, SESSION_COOKIE) {
        p.throttles.user_code_session.fail(c, now);
    }
    if let Some(a) = addr {
        p.throttles.user_code_addr.fail(a, now);
    }
}

const BAD_CODE: &str =
    "That code is not valid, or it has expired or been used. Check the code on your device and try again.";

/// Look a typed code up (throttled); `Err` is the page to show instead.
async fn find_code(
    p: &Provider,
    headers: &HeaderMap,
    addr: Option<&str>,
    code: &str,
) -> Result<(DeviceRecord, std::sync::Arc<tether_core::model::AppRecord>), Response> {
    if let Some(wait) = code_throttled(p, headers, addr) {
        let msg = format!("Too many wrong codes. Try again in {}.", wait_text(wait));
        return Err(code_page(p, code, Some(&msg), StatusCode::TOO_MANY_REQUESTS));
    }
    match device::pending(p, code).await {
        Ok(Some(x)) => Ok(x),
        Ok(None) => {
            code_failed(p, headers, addr);
            Err(code_page(p, code, Some(BAD_CODE), StatusCode::BAD_REQUEST))
        }
        Err(e) => Err(error_page(&e)),
    }
}

/// With a valid code: approve if signed in, else sign in first.
async fn after_code(p: &Provider, headers: &HeaderMap, rec: &DeviceRecord, app_name: &str, code: &str) -> Response {
    match session::lookup_and_touch(p, cookie(headers, SESSION_COOKIE)).await {
        Ok(Some(sess)) => approve_page(p, rec, app_name, code, &sess).await,
        Ok(None) => device_login_page(p, app_name, code, "", None, StatusCode::OK),
        Err(e) => error_page(&e),
    }
}

pub(crate) async fn device_get(
    State(s): State<S>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let p = &s.p;
    let form = match Form::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let Some(code) = form.get("user_code").filter(|c| !c.trim().is_empty()) else {
        return code_page(p, "", None, StatusCode::OK);
    };
    let addr = addr_of(&conn);
    match find_code(p, &headers, addr.as_deref(), code).await {
        Ok((rec, app)) => after_code(p, &headers, &rec, &app.app.name, code).await,
        Err(r) => r,
    }
}

pub(crate) async fn device_post(
    State(s): State<S>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let p = &s.p;
    let addr = addr_of(&conn);
    let addr = addr.as_deref();
    if !same_origin(p, &headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    let step = form.get("step").unwrap_or("code");
    let code = form.get("user_code").unwrap_or("").trim();
    let subject = if step == "code" { device_subject("code", "") } else { device_subject(step, code) };
    if !csrf_ok(p, &subject, form.get("csrf").unwrap_or("")) {
        return code_page(
            p,
            code,
            Some("This form has expired or was altered. Enter the code again."),
            StatusCode::BAD_REQUEST,
        );
    }
    let (rec, app) = match find_code(p, &headers, addr, code).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match step {
        "code" => after_code(p, &headers, &rec, &app.app.name, code).await,
        "login" => {
            let username = form.get("username").unwrap_or("").to_string();
            let password = form.get("password").unwrap_or("").to_string();
            if username.is_empty() || password.is_empty() {
                let e = Some("Enter your username and password.");
                return device_login_page(p, &app.app.name, code, &username, e, StatusCode::BAD_REQUEST);
            }
            if let Some(wait) = login_blocked(p, &username, addr) {
                let msg = format!("Too many failed sign-in attempts. Try again in {}.", wait_text(wait));
                return device_login_page(p, &app.app.name, code, &username, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
            }
            let result = check_credentials(p, &username, password).await;
            record_login(p, &username, addr, result.is_ok());
            let user = match result {
                Ok(u) => u,
                Err(e) if e.code == ErrorCode::InvalidGrant => {
                    let e = Some("Wrong username or password.");
                    return device_login_page(p, &app.app.name, code, &username, e, StatusCode::UNAUTHORIZED);
                }
                Err(e) => return error_page(&e),
            };
            let (sess, cookie_value) = match session::start(p, &user.user.id).await {
                Ok(x) => x,
                Err(e) => return error_page(&e),
            };
            let mut r = approve_page(p, &rec, &app.app.name, code, &sess).await;
            r.headers_mut().append(SET_COOKIE, session_cookie(&s.opts, &cookie_value));
            r
        }
        "approve" => {
            let sess = match session::lookup_and_touch(p, cookie(&headers, SESSION_COOKIE)).await {
                Ok(Some(x)) => x,
                Ok(None) => {
                    let e = Some("Your session has ended. Sign in again.");
                    return device_login_page(p, &app.app.name, code, "", e, StatusCode::OK);
                }
                Err(e) => return error_page(&e),
            };
            let approve = form.get("approve") == Some("yes");
            match device::decide(p, &rec, approve, &sess).await {
                Ok(true) if approve => message(
                    StatusCode::OK,
                    "Device connected",
                    &format!("{} can now use your account. You can return to your device.", app.app.name),
                    false,
                ),
                Ok(true) => message(StatusCode::OK, "Request denied", "The device was not given access.", false),
                Ok(false) => code_page(p, "", Some(BAD_CODE), StatusCode::BAD_REQUEST),
                Err(e) => error_page(&e),
            }
        }
        _ => error_page(&OAuthError::invalid_request("unknown step")),
    }
}

// ---------------------------------------------------------------------------------------------
// GET, POST /oidc/logout

fn clear_session_cookie(s: &S) -> HeaderValue {
    let secure = if s.opts.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// After the session ended (or when there was none): the client's page, or ours.
fn signed_out(s: &S, req: &logout::LogoutRequest, ended: bool) -> Response {
    let mut r = match logout::redirect_after(req) {
        Some(url) => redirect(&url, StatusCode::SEE_OTHER),
        None => message(StatusCode::OK, "Signed out", "You are signed out. You can close this window.", false),
    };
    if ended {
        r.headers_mut().append(SET_COOKIE, clear_session_cookie(s));
    }
    r
}

async fn end(s: &S, headers: &HeaderMap, sess: Option<SessionRecord>, req: &logout::LogoutRequest) -> Response {
    let Some(sess) = sess else { return signed_out(s, req, false) };
    match logout::end_session(
        &s.p,
        &sess,
        &tether_core::binding::Evidence { atbv: cookie(headers, ATBV), ..Default::default() },
    )
    .await
    {
        Ok(_) => signed_out(s, req, true),
        Err(e) => error_page(&e),
    }
}

pub(crate) async fn logout_get(State(s): State<S>, headers: HeaderMap, req: Request) -> Response {
    let raw = req.uri().query().unwrap_or("").to_string();
    logout_request(&s, &headers, raw).await
}

pub(crate) async fn logout_post(State(s): State<S>, headers: HeaderMap, FormBody(form): FormBody) -> Response {
    if form.get("step") == Some("confirm") {
        return logout_confirmed(&s, &headers, &form).await;
    }
    let raw = form_urlencoded::Serializer::new(String::new()).extend_pairs(form.pairs()).finish();
    logout_request(&s, &headers, raw).await
}

async fn logout_request(s: &S, headers: &HeaderMap, raw: String) -> Response {
    let p = &s.p;
    let form = match Form::parse(raw.as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let req = match logout::validate(p, &form).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let current = match session::lookup_and_touch(p, cookie(headers, SESSION_COOKIE)).await {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    if req.hint.is_some() {
        // A valid ID token hint ends, without asking, only the session it names: this browser's
        // (same user, same sid when it has one), or — with no session in this browser — the
        // session of its sid. Anything else is confirmed by the user below.
        match (&current, req.hint_sid()) {
            (Some(c), _) if req.hint_names(c) => return end(s, headers, current, &req).await,
            (None, Some(sid)) => {
                let target = p.store.find_session_by_id(sid).await.ok().flatten();
                let target = target.filter(|t| t.ended_at.is_none() && req.hint_names(t));
                return end(s, headers, target, &req).await;
            }
            (None, None) => return signed_out(s, &req, false),
            (Some(_), _) => {}
        }
    }
    let Some(sess) = current else {
        // Nothing to end; nothing a cross-site request could harm.
        return signed_out(s, &req, false);
    };
    let username = p.store.get_user(&sess.user_id).await.ok().flatten().map(|u| u.user.username);
    let hidden = vec![
        ("step", "confirm".to_string()),
        ("request", raw.clone()),
        ("csrf", csrf_token(p, &format!("logout|{raw}"))),
    ];
    page_to(
        StatusCode::OK,
        LogoutPage {
            username: username.as_deref(),
            app_name: req.client.as_ref().map(|c| c.app.name.as_str()),
            hidden,
        }
        .render(),
        req.post_logout_redirect_uri.as_deref(),
    )
}

async fn logout_confirmed(s: &S, headers: &HeaderMap, form: &Form) -> Response {
    let p = &s.p;
    let raw = form.get("request").unwrap_or("").to_string();
    if !same_origin(p, headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    if !csrf_ok(p, &format!("logout|{raw}"), form.get("csrf").unwrap_or("")) {
        return error_page(&OAuthError::invalid_request("this sign-out form has expired or was altered; try again"));
    }
    let req = match Form::parse(raw.as_bytes()) {
        Ok(f) => match logout::validate(p, &f).await {
            Ok(r) => r,
            Err(e) => return error_page(&e),
        },
        Err(e) => return error_page(&e),
    };
    if form.get("approve") != Some("yes") {
        return message(StatusCode::OK, "Still signed in", "You were not signed out.", false);
    }
    match session::lookup_and_touch(p, cookie(headers, SESSION_COOKIE)).await {
        Ok(sess) => end(s, headers, sess, &req).await,
        Err(e) => error_page(&e),
    }
}
