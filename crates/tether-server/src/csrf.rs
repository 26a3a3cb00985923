//! Cross-site request forgery defences for the pages' form posts: the signed hidden `csrf` value
//! (a timestamp and a MAC under the provider's form key, bound to what the form is about *and to
//! the browser* through its pre-session [`BROWSER_COOKIE`]) and the browser's own word on where a
//! submission comes from (`Sec-Fetch-Site`, `Origin`).
//!
//! The browser cookie is what stops login CSRF when a browser says nothing about the origin
//! (`Origin: null`, no `Sec-Fetch-Site`): an attacker can fetch a sign-in form and its `csrf`
//! value for themselves, but that value is bound to *their* browser cookie, which they cannot
//! set in the victim's browser.

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tether_core::provider::Provider;
use tether_core::secret::{b64url, random_bytes};

use crate::cookies;
use crate::extract::header;
use crate::state::AppState;

/// The pre-session cookie the page forms are bound to.
pub(crate) const BROWSER_COOKIE: &str = "tether_browser";

/// Give every page request a browser cookie: a request without one gets a new value, seen by the
/// handler as if the browser had sent it, and set on the response.
pub(crate) async fn browser_cookie(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let valid = cookies::get(req.headers(), BROWSER_COOKIE).is_some_and(|v| v.len() == 22);
    if valid {
        return next.run(req).await;
    }
    let value = b64url(&random_bytes::<16>());
    if let Ok(v) = HeaderValue::from_str(&format!("{BROWSER_COOKIE}={value}")) {
        // Placed before the browser's own Cookie headers: `cookies::get` takes the first.
        let h = req.headers_mut();
        let theirs: Vec<HeaderValue> = h.get_all(COOKIE).iter().cloned().collect();
        h.remove(COOKIE);
        h.append(COOKIE, v);
        theirs.into_iter().for_each(|c| {
            h.append(COOKIE, c);
        });
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().append(SET_COOKIE, cookies::browser(&value, s.opts.secure_cookies));
    resp
}

fn browser(headers: &HeaderMap) -> &str {
    cookies::get(headers, BROWSER_COOKIE).unwrap_or("")
}

/// A form is valid this long after it was shown.
const FORM_LIFETIME: i64 = 1800;

/// The hidden `csrf` value for a form about `subject` in this browser: a timestamp and a MAC over
/// it, the browser cookie and the subject (the pending request, or the step and code of a device
/// form).
pub(crate) fn token(p: &Provider, headers: &HeaderMap, subject: &str) -> String {
    let ts = p.now();
    format!("{ts}.{}", p.form_key.mac_b64(format!("{ts}|{}|{subject}", browser(headers)).as_bytes()))
}

/// Is `token` a [`token`] for `subject` in this browser, issued at most [`FORM_LIFETIME`] seconds
/// ago?
pub(crate) fn verify(p: &Provider, headers: &HeaderMap, subject: &str, token: &str) -> bool {
    let Some((ts, mac)) = token.split_once('.') else { return false };
    let Ok(t) = ts.parse::<i64>() else { return false };
    let Some(tag) = tether_core::secret::b64url_decode(mac) else { return false };
    let now = p.now();
    let input = format!("{t}|{}|{subject}", browser(headers));
    // A range, not `now - t`: `t` is the submitter's, and may be any i64.
    (now - FORM_LIFETIME..=now + 60).contains(&t) && p.form_key.verify(input.as_bytes(), &tag)
}

/// Login CSRF defence for form posts: browsers say where a submission comes from; a cross-site
/// post is refused. Scripts send neither header and are not browsers to protect.
pub(crate) fn same_origin(p: &Provider, headers: &HeaderMap) -> bool {
    if let Some(site) = header(headers, HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match header(headers, ORIGIN) {
        None | Some("null") => true,
        Some(o) => {
            let issuer_origin =
                url::Url::parse(p.issuer()).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
            o == issuer_origin
                || headers.get(HOST).and_then(|h| h.to_str().ok()).is_some_and(|h| o.ends_with(&format!("://{h}")))
        }
    }
}
