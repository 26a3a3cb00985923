//! The web console (admin-api.md A-6): server-rendered pages over the same core admin service
//! as the admin API and the CLI (`tether_core::admin_ops`), so every change is the same audit
//! event, with the console user as its actor.
//!
//! **Sign-in goes through Tether itself.** The console is an OAuth client of its own server: the
//! built-in app `tether-console` (public, authorization code + PKCE, `sso-session` binding,
//! opaque tokens, scopes `openid admin:read admin:write`) is created at start and its redirect
//! URI reconciled with `issuer` / `admin_url` ([`ensure_app`]). The callback redeems the code
//! through core's token endpoint in-process (no HTTP to itself) and keeps the access token in
//! the console cookie. Every console request then authenticates that token exactly as the
//! admin API authenticates a bearer token (`endpoint::admin::authenticate`): its audience, its
//! scopes (`admin:write` → the forms; `admin:read` only → read-only pages), and its
//! `sso-session` binding, proven by the browser's session cookie. So a console session lives
//! exactly as long as the SSO session it was issued under: signing out (here or anywhere),
//! disabling the user or taking their role away ends it on every node at once, and there is
//! no console session state of its own to keep in step between nodes.
//!
//! Why a token in the cookie rather than a console session table: the token already carries
//! everything the console needs checked (user, roles as scopes, expiry, revocation, binding),
//! it is stored only as a hash, and the cookie is `Secure; HttpOnly; SameSite=Lax`,
//! `Path=/console`. `Lax` rather than `Strict` because an operator opening a console link from
//! mail or chat would otherwise arrive without the cookie, be sent to sign in, and come back
//! without it again; the forms carry CSRF values instead ([`crate::csrf`], bound to the
//! browser cookie and to this console session) and posts must come from the same origin.
//!
//! Destructive acts (deleting an app, retiring a key) need a sign-in at most
//! [`REAUTH_AGE`] seconds old: otherwise the confirmation page offers a fresh sign-in
//! (`max_age=0` at the authorization endpoint) and comes back to itself.
//!
//! Pages work without JavaScript; `console.js` only adds niceties (the binding help follows
//! the selected type, a confirmation on sign-out everywhere). Nothing is fetched from outside
//! (air-gapped networks): the CSS and the script are served from `/console/static/`, and the
//! CSP allows only those (`script-src 'self'`, no inline script or style).

// Handlers answer a page either way; `Result<_, Response>` lets `?` return the refusal page.
#![allow(clippy::result_large_err)]

mod pages;
mod session;
mod view;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tether_core::admin::AppChanges;
use tether_core::admin_ops::CONSOLE_CLIENT_ID;
use tether_core::provider::Provider;

use crate::csrf;
use crate::state::AppState;
use session::{SCOPES, callback, redirect_uri, signed_out, signin, signout};

pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let browser_cookie = middleware::from_fn_with_state(state, csrf::browser_cookie);
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(|| async { crate::pages::common::redirect("/console", StatusCode::SEE_OTHER) }))
        .route("/console/signin", get(signin))
        .route("/console/callback", get(callback))
        .route("/console/signout", post(signout))
        .route("/console/signed-out", get(signed_out))
        .route("/console/apps", get(pages::apps).post(pages::create_app))
        .route("/console/apps/new", get(pages::new_app))
        .route("/console/apps/{id}", get(pages::app).post(pages::update_app))
        .route("/console/apps/{id}/secret", post(pages::app_secret))
        .route("/console/apps/{id}/delete", get(pages::confirm_delete_app).post(pages::delete_app))
        .route("/console/users", get(pages::users).post(pages::create_user))
        .route("/console/users/new", get(pages::new_user))
        .route("/console/users/{name}", get(pages::user).post(pages::update_user))
        .route("/console/users/{name}/password", post(pages::set_password))
        .route("/console/users/{name}/logout", post(pages::logout_user))
        .route("/console/users/{name}/sessions/{id}/end", post(pages::end_session))
        .route("/console/tokens", get(pages::tokens))
        .route("/console/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/console/keys", get(pages::keys))
        .route("/console/keys/rotate", post(pages::rotate_keys))
        .route("/console/keys/{kid}/retire", get(pages::confirm_retire).post(pages::retire_key))
        .route("/console/events", get(pages::events))
        .layer(browser_cookie)
        // The static files need no cookie.
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
}

// ---------- the built-in app ----------

/// Create the console's built-in app, or bring it back in shape (its redirect URI follows
/// `issuer` / `admin_url`; its settings are the server's, whatever was done to the database).
/// Two nodes starting at once both try: the loser of the insert finds the winner's app.
pub async fn ensure_app(p: &Provider) -> Result<(), String> {
    let want = AppChanges {
        name: Some("Tether console".into()),
        grant_types: Some(vec!["authorization_code".into()]),
        redirect_uris: Some(vec![redirect_uri(p)]),
        public: Some(true),
        token_type: Some("opaque".into()),
        binding: Some("sso-session".into()),
        validate_binding: Some(true),
        revoke_on_logout: Some(true),
        scopes: Some(SCOPES.split(' ').map(str::to_string).collect()),
        require_consent: Some(false),
        ..Default::default()
    };
    let existing = p.store.get_app(CONSOLE_CLIENT_ID).await.map_err(|e| e.to_string())?;
    match existing {
        None => {
            let (mut rec, _) = tether_core::admin::create(&want)?;
            rec.app.client_id = CONSOLE_CLIENT_ID.into();
            match p.store.create_app(&rec).await {
                Ok(()) => {}
                Err(e) if p.store.get_app(CONSOLE_CLIENT_ID).await.ok().flatten().is_some() => {
                    tracing::debug!(error = %e, "another node created the console app first");
                }
                Err(e) => return Err(format!("cannot create the console's app: {e}")),
            }
        }
        Some(rec) => {
            let (new, _) = tether_core::admin::update(&rec, &want)?;
            if new.app != rec.app {
                p.store.update_app(&new).await.map_err(|e| format!("cannot update the console's app: {e}"))?;
            }
        }
    }
    p.refresh().await.map(|_| ()).map_err(|e| e.to_string())
}

// ---------- static files ----------

const CSS: &str = include_str!("../../static/console.css");
const JS: &str = include_str!("../../static/console.js");

fn static_file(body: &'static str, ct: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    r
}

async fn css() -> Response {
    static_file(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    static_file(JS, "text/javascript; charset=utf-8")
}
