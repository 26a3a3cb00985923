//! The authorization endpoint (`GET`/`POST /oauth2/authorize`): a fresh request is validated by
//! core, then the user signs in (the login page), consents when the app asks for it (the consent
//! page), and is redirected back with a code (and the B-7 `atbv` cookie for `cookie` apps).

use askama::Template;
use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use tether_core::binding::cookie::COOKIE as ATBV;
use tether_core::endpoint::authorize::{self, AuthzError, AuthzRequest};
use tether_core::endpoint::paths;
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::form::Form;
use tether_core::model::AppRecord;
use tether_core::provider::Provider;
use tether_core::secret::Secret;
use tether_core::session::{self, COOKIE as SESSION_COOKIE};
use tether_core::store::SessionRecord;

use crate::cookies;
use crate::csrf;
use crate::extract::{ClientAddr, FormBody};
use crate::pages::common::{LoginPage, error_page, page_to, redirect};
use crate::pages::signin::{self, Outcome, with_retry_after};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    action: &'a str,
    app_name: &'a str,
    username: &'a str,
    scopes: &'a str,
    authz: &'a str,
    csrf: &'a str,
}

pub(crate) async fn get(State(s): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    let raw = req.uri().query().unwrap_or("").to_string();
    authorize_request(&s, &headers, raw).await
}

pub(crate) async fn post(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    FormBody(form): FormBody,
) -> Response {
    if form.has("authz") {
        return login_or_consent_submit(&s, &headers, &form, addr.as_deref()).await;
    }
    let raw = form_urlencoded::Serializer::new(String::new()).extend_pairs(form.pairs()).finish();
    authorize_request(&s, &headers, raw).await
}

fn authz_error(p: &Provider, e: AuthzError) -> Response {
    match e {
        AuthzError::Page(e) => error_page(&e),
        AuthzError::Redirect { redirect_uri, state, error } => {
            redirect(&authorize::error_redirect(p, &redirect_uri, state.as_deref(), &error), StatusCode::SEE_OTHER)
        }
    }
}

/// An error for a validated request: a pushed request it came from is consumed with it.
async fn deny(p: &Provider, req: &AuthzRequest, e: AuthzError) -> Response {
    authorize::consume_on_error(p, req).await;
    authz_error(p, e)
}

/// A redirect carrying a new code, with the `atbv` cookie for `cookie` apps.
fn code_redirect(url: &str, atbv: Option<Secret>) -> Response {
    let mut r = redirect(url, StatusCode::SEE_OTHER);
    if let Some(v) = atbv {
        r.headers_mut().append(SET_COOKIE, cookies::atbv(v.expose()));
    }
    r
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
        LoginPage { app_name: &app.app.name, action: paths::AUTHORIZE, hidden, username, error, note: None }.render(),
        target.as_deref(),
    )
}

/// Where a pending authorization request's form will end up (its registered redirect URI).
fn redirect_target(app: &AppRecord, authz: &str) -> Option<String> {
    let f = Form::parse(authz.as_bytes()).ok();
    let r = f.as_ref().and_then(|f| f.get("redirect_uri")).map(str::to_string);
    r.filter(|r| app.app.redirect_uris.contains(r)).or_else(|| app.app.redirect_uris.first().cloned())
}

/// A fresh authorization request (query string or POSTed form, re-serialised).
async fn authorize_request(s: &AppState, headers: &HeaderMap, raw: String) -> Response {
    let p = &s.p;
    let form = match Form::parse(raw.as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(&e),
    };
    let (app, req) = match authorize::validate(p, &form).await {
        Ok(x) => x,
        Err(e) => return authz_error(p, e),
    };
    let session = match session::lookup_and_touch(p, cookies::get(headers, SESSION_COOKIE)).await {
        Ok(s) => s.filter(|s| !authorize::needs_fresh_login(p, &req, s)),
        Err(e) => return error_page(&e),
    };
    match session {
        Some(sess) => proceed(s, headers, &app, &req, &raw, &sess, vec![]).await,
        None if req.prompt_none => {
            deny(
                p,
                &req,
                AuthzError::Redirect {
                    redirect_uri: req.redirect_uri.clone(),
                    state: req.state.clone(),
                    error: OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in"),
                },
            )
            .await
        }
        None => login_page(&app, &raw, &csrf::token(p, headers, &raw), "", None, StatusCode::OK),
    }
}

/// With a signed-in user: ask for consent if the app wants it, else issue the code.
async fn proceed(
    s: &AppState,
    headers: &HeaderMap,
    app: &AppRecord,
    req: &AuthzRequest,
    raw: &str,
    sess: &SessionRecord,
    set_cookies: Vec<HeaderValue>,
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
                action: paths::AUTHORIZE,
                app_name: &app.app.name,
                username: &username,
                scopes: &scopes,
                authz: raw,
                csrf: &csrf::token(p, headers, raw),
            }
            .render(),
            Some(&req.redirect_uri),
        )
    } else {
        match authorize::issue_code(p, app, req, sess, cookies::get(headers, ATBV)).await {
            Ok((url, atbv)) => code_redirect(&url, atbv),
            Err(e) => return error_page(&e),
        }
    };
    for c in set_cookies {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

async fn login_or_consent_submit(s: &AppState, headers: &HeaderMap, form: &Form, addr: Option<&str>) -> Response {
    let p = &s.p;
    let raw = form.get("authz").unwrap_or("").to_string();
    if !csrf::same_origin(p, headers) {
        return error_page(&OAuthError::invalid_request("cross-site form submissions are refused"));
    }
    if !csrf::verify(p, headers, &raw, form.get("csrf").unwrap_or("")) {
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
        let sess = match session::lookup_and_touch(p, cookies::get(headers, SESSION_COOKIE)).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return login_page(
                    &app,
                    &raw,
                    &csrf::token(p, headers, &raw),
                    "",
                    Some("Your session has ended. Sign in again."),
                    StatusCode::OK,
                );
            }
            Err(e) => return error_page(&e),
        };
        if form.get("approve") != Some("yes") {
            return deny(
                p,
                &req,
                AuthzError::Redirect {
                    redirect_uri: req.redirect_uri.clone(),
                    state: req.state.clone(),
                    error: OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
                },
            )
            .await;
        }
        return match authorize::issue_code(p, &app, &req, &sess, cookies::get(headers, ATBV)).await {
            Ok((url, atbv)) => code_redirect(&url, atbv),
            Err(e) => error_page(&e),
        };
    }
    match signin::submit(s, headers, form, addr).await {
        Outcome::SignedIn { session, set_cookies } => {
            proceed(s, headers, &app, &req, &raw, &session, set_cookies).await
        }
        Outcome::Again { status, message, retry_after } => {
            let username = form.get("username").unwrap_or("");
            let page = login_page(&app, &raw, &csrf::token(p, headers, &raw), username, Some(&message), status);
            with_retry_after(page, retry_after)
        }
        Outcome::Page(r) => r,
    }
}
