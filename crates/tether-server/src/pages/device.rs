//! The device verification pages (RFC 8628 §3.3, `GET`/`POST /oauth2/device`): the user types the
//! code shown on the device (throttled per browser session and per address, §5.1), signs in if
//! needed, and approves or denies the device.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tether_core::endpoint::{device, paths};
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::form::Form;
use tether_core::login::{check_credentials, login_blocked, record_login};
use tether_core::provider::Provider;
use tether_core::secret::Secret;
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::{DeviceRecord, SessionRecord};
use tether_core::throttle::wait_text;
use tether_tls::accept::ConnInfo;

use crate::cookies;
use crate::csrf;
use crate::extract::{FormBody, client_addr};
use crate::pages::common::{LoginPage, error_page, message, page};
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

fn code_page(p: &Provider, user_code: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = csrf::token(p, &device_subject("code", ""));
    page(status, DeviceCodePage { action: paths::DEVICE, user_code, csrf: &csrf, error }.render())
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
        ("csrf", csrf::token(p, &device_subject("login", code))),
    ];
    let note = format!("Code {shown}");
    page(
        status,
        LoginPage { app_name: rec_app, action: paths::DEVICE, hidden, username, error, note: Some(&note) }.render(),
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
        ("csrf", csrf::token(p, &device_subject("approve", code))),
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
    match session::lookup_and_touch(p, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(Some(sess)) => approve_page(p, rec, app_name, code, &sess).await,
        Ok(None) => device_login_page(p, app_name, code, "", None, StatusCode::OK),
        Err(e) => error_page(&e),
    }
}

pub(crate) async fn get(
    State(s): State<AppState>,
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
    let addr = client_addr(&conn);
    match find_code(p, &headers, addr.as_deref(), code).await {
        Ok((rec, app)) => after_code(p, &headers, &rec, &app.app.name, code).await,
        Err(r) => r,
    }
}

pub(crate) async fn post(
    State(s): State<AppState>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    let p = &s.p;
    let addr = client_addr(&conn);
    let addr = addr.as_deref();
    if !csrf::same_origin(p, &headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    let step = form.get("step").unwrap_or("code");
    let code = form.get("user_code").unwrap_or("").trim();
    let subject = if step == "code" { device_subject("code", "") } else { device_subject(step, code) };
    if !csrf::verify(p, &subject, form.get("csrf").unwrap_or("")) {
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
            let password = Secret::new(form.get("password").unwrap_or(""));
            if username.is_empty() || password.expose().is_empty() {
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
            r.headers_mut().append(SET_COOKIE, cookies::session(cookie_value.expose(), s.opts.secure_cookies));
            r
        }
        "approve" => {
            let sess = match session::lookup_and_touch(p, cookies::get(&headers, SESSION_COOKIE)).await {
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
