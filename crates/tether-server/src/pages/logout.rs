//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0, `GET`/`POST /oidc/logout`): a
//! valid ID token hint naming this browser's session ends it at once; without a hint the user
//! confirms on the logout page. Only the session whose cookie the request carries is ever ended. Ending a session also revokes what is tied to it (core's `end_session`).

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tether_core::binding::Evidence;
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::endpoint::{logout, paths};
use tether_core::error::OAuthError;
use tether_core::form::Form;
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::SessionRecord;

use crate::cookies;
use crate::csrf;
use crate::extract::FormBody;
use crate::pages::common::{error_page, message, page_to, redirect};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    action: &'a str,
    username: Option<&'a str>,
    app_name: Option<&'a str>,
    hidden: Vec<(&'a str, String)>,
}

/// After the session ended (or when there was none): the client's page, or ours.
fn signed_out(s: &AppState, req: &logout::LogoutRequest, ended: bool) -> Response {
    let mut r = match logout::redirect_after(req) {
        Some(url) => redirect(&url, StatusCode::SEE_OTHER),
        None => message(StatusCode::OK, "Signed out", "You are signed out. You can close this window.", false),
    };
    if ended {
        r.headers_mut().append(SET_COOKIE, cookies::clear_session(s.opts.secure_cookies));
    }
    r
}

async fn end(s: &AppState, headers: &HeaderMap, sess: Option<SessionRecord>, req: &logout::LogoutRequest) -> Response {
    let Some(sess) = sess else { return signed_out(s, req, false) };
    match logout::end_session(&s.p, &sess, &Evidence { atbv: cookies::get(headers, ATBV), ..Default::default() }).await
    {
        Ok(_) => signed_out(s, req, true),
        Err(e) => error_page(&e),
    }
}

pub(crate) async fn get(State(s): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    let raw = req.uri().query().unwrap_or("").to_string();
    logout_request(&s, &headers, raw).await
}

pub(crate) async fn post(State(s): State<AppState>, headers: HeaderMap, FormBody(form): FormBody) -> Response {
    if form.get("step") == Some("confirm") {
        return logout_confirmed(&s, &headers, &form).await;
    }
    let raw = form_urlencoded::Serializer::new(String::new()).extend_pairs(form.pairs()).finish();
    logout_request(&s, &headers, raw).await
}

async fn logout_request(s: &AppState, headers: &HeaderMap, raw: String) -> Response {
    let p = &s.p;
    let form = match Form::parse(raw.as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let req = match logout::validate(p, &form).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let current = match session::lookup_and_touch(p, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    if req.hint.is_some() {
        // A valid ID token hint ends, without asking, the session of this browser when it names
        // it (same user, same sid when it has one). Logout only ever ends the session whose
        // cookie the request carries: a hint naming another session (an ID token replayed from
        // elsewhere) ends nothing, and a confirmation would not help (its sender clicks yes).
        match &current {
            Some(c) if req.hint_names(c) => return end(s, headers, current, &req).await,
            Some(_) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Not signed out",
                    "This sign-out request is for another session than this browser's. Nothing was ended; \
                     you are still signed in.",
                    true,
                );
            }
            None => return signed_out(s, &req, false),
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
        ("csrf", csrf::token(p, headers, &format!("logout|{raw}"))),
    ];
    page_to(
        StatusCode::OK,
        LogoutPage {
            action: paths::LOGOUT,
            username: username.as_deref(),
            app_name: req.client.as_ref().map(|c| c.app.name.as_str()),
            hidden,
        }
        .render(),
        req.post_logout_redirect_uri.as_deref(),
    )
}

async fn logout_confirmed(s: &AppState, headers: &HeaderMap, form: &Form) -> Response {
    let p = &s.p;
    let raw = form.get("request").unwrap_or("").to_string();
    if !csrf::same_origin(p, headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    if !csrf::verify(p, headers, &format!("logout|{raw}"), form.get("csrf").unwrap_or("")) {
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
    match session::lookup_and_touch(p, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(sess) => end(s, headers, sess, &req).await,
        Err(e) => error_page(&e),
    }
}
