//! What several pages share: the sign-in page (the authorization and device flows both show it),
//! the error and message pages, the security headers every page gets, and redirects.

use askama::Template;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tether_core::error::{ErrorCode, OAuthError};

use crate::error::{ApiError, no_store};

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
#[template(path = "error.html")]
struct ErrorPage<'a> {
    code: &'a str,
    description: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    error: bool,
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

/// A request that cannot continue, as a page (never a redirect to an unverified client).
pub(crate) fn error_page(e: &OAuthError) -> Response {
    let status = match e.code {
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    page(status, ErrorPage { code: e.code.as_str(), description: &e.description }.render())
}

/// A page with a title and one sentence (an outcome, or a problem when `error`).
pub(crate) fn message(status: StatusCode, title: &str, text: &str, error: bool) -> Response {
    page(status, MessagePage { title, message: text, error }.render())
}

pub(crate) fn redirect(to: &str, status: StatusCode) -> Response {
    let mut r = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    no_store(r.headers_mut());
    r
}
