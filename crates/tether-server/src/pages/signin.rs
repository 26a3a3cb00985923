//! A posted username and password, as the authorization and device pages both take them: the
//! throttled check (core's `login::sign_in`, with the browser's device cookie), then the session
//! (core's `login::establish_session`: the same user keeps the session under a new cookie, a
//! different user ends the old one), and the cookies to set.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use tether_core::binding::Evidence;
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::form::Form;
use tether_core::login::{self, Attempt, DEVICE_COOKIE, Refused, Via};
use tether_core::secret::Secret;
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::SessionRecord;
use tether_core::throttle::wait_text;

use crate::cookies;
use crate::pages::common::error_page;
use crate::state::AppState;

pub(crate) enum Outcome {
    /// Signed in: the session, and the `Set-Cookie` values (session, device).
    SignedIn { session: SessionRecord, set_cookies: Vec<HeaderValue> },
    /// Show the sign-in form again with this message (and `Retry-After`).
    Again { status: StatusCode, message: String, retry_after: Option<i64> },
    /// Not a form matter: this page instead.
    Page(Response),
}

pub(crate) async fn submit(s: &AppState, headers: &HeaderMap, form: &Form, addr: Option<&str>) -> Outcome {
    let p = &s.p;
    let username = form.get("username").unwrap_or("");
    let password = Secret::new(form.get("password").unwrap_or(""));
    if username.is_empty() || password.expose().is_empty() {
        return again(StatusCode::BAD_REQUEST, "Enter your username and password.", None);
    }
    let device = cookies::get(headers, DEVICE_COOKIE);
    let attempt = Attempt { username, password, addr, via: Via::Page { device } };
    let (user, device_cookie) = match login::sign_in(p, attempt).await {
        Ok(x) => x,
        Err(Refused::Throttled(wait)) => {
            let msg = format!("Too many failed sign-in attempts. Try again in {}.", wait_text(wait));
            return again(StatusCode::TOO_MANY_REQUESTS, &msg, Some(wait));
        }
        Err(Refused::Wrong) => return again(StatusCode::UNAUTHORIZED, "Wrong username or password.", None),
        Err(Refused::Busy) => {
            let msg = "Too many sign-ins at once. Try again in a moment.";
            return again(StatusCode::SERVICE_UNAVAILABLE, msg, Some(1));
        }
        Err(Refused::Error(e)) => return Outcome::Page(error_page(&e)),
    };
    let current = match session::lookup(p, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(c) => c,
        Err(e) => return Outcome::Page(error_page(&e)),
    };
    let ev = Evidence { atbv: cookies::get(headers, ATBV), ..Default::default() };
    let ua = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let origin = session::Origin { ip: addr, user_agent: ua };
    let (session, cookie) = match login::establish_session(p, &user.user.id, current, &ev, origin).await {
        Ok(x) => x,
        Err(e) => return Outcome::Page(error_page(&e)),
    };
    let mut set_cookies = vec![cookies::session(cookie.expose(), s.opts.secure_cookies)];
    if let Some(d) = device_cookie {
        set_cookies.push(cookies::device(d.expose(), s.opts.secure_cookies));
    }
    Outcome::SignedIn { session, set_cookies }
}

fn again(status: StatusCode, message: &str, retry_after: Option<i64>) -> Outcome {
    Outcome::Again { status, message: message.to_string(), retry_after }
}

/// `resp` with `Retry-After` when there is one.
pub(crate) fn with_retry_after(mut resp: Response, retry_after: Option<i64>) -> Response {
    if let Some(secs) = retry_after {
        resp.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
    }
    resp
}
