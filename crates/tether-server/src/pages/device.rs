//! The device verification pages (RFC 8628 §3.3, `GET`/`POST /oauth2/device`): the user types the
//! code shown on the device (throttled per browser session and per address, §5.1), signs in if
//! needed, and approves or denies the device.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tether_core::endpoint::{device, paths};
use tether_core::error::OAuthError;
use tether_core::form::Form;
use tether_core::provider::Provider;
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::{DeviceRecord, SessionRecord};
use tether_core::throttle::wait_text;

use crate::cookies;
use crate::csrf;
use crate::extract::{ClientAddr, FormBody};
use crate::pages::common::{LoginPage, error_page, message, page};
use crate::pages::signin::{self, Outcome, with_retry_after};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "device_code.html")]
struct DeviceCodePage<'a> {
    action: &'a str,
    user_code: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "device_approve.html")]
struct DeviceApprovePage<'a> {
    action: &'a str,
    app_name: &'a str,
    username: &'a str,
    user_code: &'a str,
    scopes: &'a str,
    hidden: Vec<(&'a str, String)>,
}

/// The CSRF MAC of the device forms is bound to the step and the user code.
fn device_subject(step: &str, code: &str) -> String {
    format!("device|{step}|{}", device::normalize_user_code(code).unwrap_or_default())
}

fn code_page(p: &Provider, headers: &HeaderMap, user_code: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = csrf::token(p, headers, &device_subject("code", ""));
    page(status, DeviceCodePage { action: paths::DEVICE, user_code, csrf: &csrf, error }.render())
}

fn device_login_page(
    p: &Provider,
    headers: &HeaderMap,
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
        ("csrf", csrf::token(p, headers, &device_subject("login", code))),
    ];
    let note = format!("Code {shown}");
    page(
        status,
        LoginPage { app_name: rec_app, action: paths::DEVICE, hidden, username, error, note: Some(&note) }.render(),
    )
}

async fn approve_page(
    p: &Provider,
    headers: &HeaderMap,
    rec: &DeviceRecord,
    app_name: &str,
    code: &str,
    sess: &SessionRecord,
) -> Response {
    let username = match p.store.get_user(&sess.user_id).await {
        Ok(Some(u)) => u.user.username,
        Ok(None) => return error_page(&OAuthError::invalid_request("the signed-in user no longer exists")),
        Err(e) => return error_page(&e.into()),
    };
    let shown = device::normalize_user_code(code).map(|c| device::display_user_code(&c)).unwrap_or_default();
    let hidden = vec![
        ("step", "approve".to_string()),
        ("user_code", shown.clone()),
        ("csrf", csrf::token(p, headers, &device_subject("approve", code))),
    ];
    page(
        StatusCode::OK,
        DeviceApprovePage {
            action: paths::DEVICE,
            app_name,
            username: &username,
            user_code: &shown,
            scopes: &rec.scope,
            hidden,
        }
        .render(),
    )
}

/// RFC 8628 §5.1: wrong codes are throttled per browser session and per source address.
fn code_throttled(p: &Provider, headers: &HeaderMap, addr: Option<&str>) -> Option<i64> {
    let now = p.now();
    let by_session = cookies::get(headers, SESSION_COOKIE).and_then(|c| p.throttles.user_code_session.blocked(c, now));
    let by_addr = addr.and_then(|a| p.throttles.user_code_addr.blocked(a, now));
    by_session.into_iter().chain(by_addr).max()
}

fn code_failed(p: &Provider, headers: &HeaderMap, addr: Option<&str>) {
    let now = p.now();
    if let Some(c) = cookies::get(headers, SESSION_COOKIE) {
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
        return Err(code_page(p, headers, code, Some(&msg), StatusCode::TOO_MANY_REQUESTS));
    }
    match device::pending(p, code).await {
        Ok(Some(x)) => Ok(x),
        Ok(None) => {
            code_failed(p, headers, addr);
            Err(code_page(p, headers, code, Some(BAD_CODE), StatusCode::BAD_REQUEST))
        }
        Err(e) => Err(error_page(&e)),
    }
}

/// With a valid code: approve if signed in, else sign in first.
async fn after_code(p: &Provider, headers: &HeaderMap, rec: &DeviceRecord, app_name: &str, code: &str) -> Response {
    match session::lookup_and_touch(p, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(Some(sess)) => approve_page(p, headers, rec, app_name, code, &sess).await,
        Ok(None) => device_login_page(p, headers, app_name, code, "", None, StatusCode::OK),
        Err(e) => error_page(&e),
    }
}

pub(crate) async fn get(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let p = &s.p;
    let form = match Form::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let Some(code) = form.get("user_code").filter(|c| !c.trim().is_empty()) else {
        return code_page(p, &headers, "", None, StatusCode::OK);
    };
    match find_code(p, &headers, addr.as_deref(), code).await {
        Ok((rec, app)) => after_code(p, &headers, &rec, &app.app.name, code).await,
        Err(r) => r,
    }
}

pub(crate) async fn post(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let p = &s.p;
    let addr = addr.as_deref();
    if !csrf::same_origin(p, &headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    let step = form.get("step").unwrap_or("code");
    let code = form.get("user_code").unwrap_or("").trim();
    let subject = if step == "code" { device_subject("code", "") } else { device_subject(step, code) };
    if !csrf::verify(p, &headers, &subject, form.get("csrf").unwrap_or("")) {
        return code_page(
            p,
            &headers,
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
        "login" => match signin::submit(&s, &headers, &form, addr).await {
            Outcome::SignedIn { session, set_cookies } => {
                let mut r = approve_page(p, &headers, &rec, &app.app.name, code, &session).await;
                for c in set_cookies {
                    r.headers_mut().append(SET_COOKIE, c);
                }
                r
            }
            Outcome::Again { status, message, retry_after } => {
                let username = form.get("username").unwrap_or("");
                let page = device_login_page(p, &headers, &app.app.name, code, username, Some(&message), status);
                with_retry_after(page, retry_after)
            }
            Outcome::Page(r) => r,
        },
        "approve" => {
            let sess = match session::lookup_and_touch(p, cookies::get(&headers, SESSION_COOKIE)).await {
                Ok(Some(x)) => x,
                Ok(None) => {
                    let e = Some("Your session has ended. Sign in again.");
                    return device_login_page(p, &headers, &app.app.name, code, "", e, StatusCode::OK);
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
                Ok(false) => code_page(p, &headers, "", Some(BAD_CODE), StatusCode::BAD_REQUEST),
                Err(e) => error_page(&e),
            }
        }
        _ => error_page(&OAuthError::invalid_request("unknown step")),
    }
}
