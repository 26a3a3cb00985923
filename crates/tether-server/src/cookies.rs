//! Cookies in and out, through the `cookie` crate: reading one from the request's `Cookie`
//! headers, and the `Set-Cookie` values Tether sends (the session cookie, its clearing, and the
//! B-7 `atbv` browser-binding cookie).
//!
//! Values are rendered with the attributes in one fixed order (`Path`, `Max-Age`, `Secure`,
//! `HttpOnly`, `SameSite`), the order B-7 pins for `atbv`; the `cookie` crate's own `Display`
//! orders them differently (and adds `Secure` to every `SameSite=None` cookie by itself).

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::session::COOKIE as SESSION_COOKIE;

/// The value of the first cookie called `name` in the request's `Cookie` headers.
pub(crate) fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

/// The browser session: `tether_session=<value>; Path=/; HttpOnly; SameSite=Lax`, `Secure` when
/// the deployment says so; no expiry (the server ends sessions).
pub(crate) fn session(value: &str, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((SESSION_COOKIE, value)).path("/").http_only(true).same_site(SameSite::Lax);
    if secure {
        c = c.secure(true);
    }
    header_value(&c.build())
}

/// The session cookie's removal: empty, `Max-Age=0`, otherwise the attributes it was set with.
pub(crate) fn clear_session(secure: bool) -> HeaderValue {
    let mut c =
        Cookie::build((SESSION_COOKIE, "")).path("/").max_age(Duration::ZERO).http_only(true).same_site(SameSite::Lax);
    if secure {
        c = c.secure(true);
    }
    header_value(&c.build())
}

/// The pre-session cookie the page forms' CSRF values are bound to (see `csrf`).
pub(crate) const BROWSER_COOKIE: &str = "tether_browser";

/// The pre-session browser cookie: like the session cookie, no expiry.
pub(crate) fn browser(value: &str, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((BROWSER_COOKIE, value)).path("/").http_only(true).same_site(SameSite::Lax);
    if secure {
        c = c.secure(true);
    }
    header_value(&c.build())
}

/// The device cookie (180 days) that vouches for the user who signed in with this browser.
pub(crate) fn device(value: &str, secure: bool) -> HeaderValue {
    let mut c = Cookie::build((tether_core::login::DEVICE_COOKIE, value))
        .path("/")
        .max_age(Duration::seconds(tether_core::login::DEVICE_LIFETIME))
        .http_only(true)
        .same_site(SameSite::Lax);
    if secure {
        c = c.secure(true);
    }
    header_value(&c.build())
}

/// B-7: `atbv=<uuid>; Path=/; Secure; HttpOnly; SameSite=None`, no expiry, host-only.
pub(crate) fn atbv(value: &str) -> HeaderValue {
    let c = Cookie::build((ATBV, value)).path("/").secure(true).http_only(true).same_site(SameSite::None);
    header_value(&c.build())
}

/// `c` as a `Set-Cookie` value. Only the attributes Tether sets are rendered (no `Domain`,
/// `Expires` or `Partitioned`: every cookie here is host-only and without an expiry date).
fn header_value(c: &Cookie<'_>) -> HeaderValue {
    let mut s = format!("{}={}", c.name(), c.value());
    if let Some(p) = c.path() {
        s.push_str(&format!("; Path={p}"));
    }
    if let Some(m) = c.max_age() {
        s.push_str(&format!("; Max-Age={}", m.whole_seconds()));
    }
    if c.secure() == Some(true) {
        s.push_str("; Secure");
    }
    if c.http_only() == Some(true) {
        s.push_str("; HttpOnly");
    }
    if let Some(ss) = c.same_site() {
        s.push_str(&format!("; SameSite={ss}"));
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_values() {
        assert_eq!(atbv("u-1"), "atbv=u-1; Path=/; Secure; HttpOnly; SameSite=None");
        assert_eq!(session("v", true), format!("{SESSION_COOKIE}=v; Path=/; Secure; HttpOnly; SameSite=Lax").as_str());
        assert_eq!(session("v", false), format!("{SESSION_COOKIE}=v; Path=/; HttpOnly; SameSite=Lax").as_str());
        assert_eq!(
            clear_session(true),
            format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax").as_str()
        );
        assert_eq!(
            clear_session(false),
            format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax").as_str()
        );
    }

    #[test]
    fn request_cookies() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; broken; atbv=x=y"));
        h.append(COOKIE, HeaderValue::from_static("b=; a=2"));
        assert_eq!(get(&h, "a"), Some("1"));
        assert_eq!(get(&h, "atbv"), Some("x=y"));
        assert_eq!(get(&h, "b"), Some(""));
        assert_eq!(get(&h, "c"), None);
    }
}
