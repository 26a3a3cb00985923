//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2) without HTTP: validating the
//! request, login sessions, and issuing codes.
//!
//! Errors before the client and its `redirect_uri` are known are shown to the user (never
//! redirected: an open redirector otherwise); later errors go back to the client per §4.1.2.1.

use std::sync::Arc;

use url::Url;

use crate::binding::registry;
use crate::binding::{AuthzBinding, AuthzContext};
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::grant::{self, new_grant_id};
use crate::model::{AppRecord, GrantType};
use crate::pkce;
use crate::provider::Provider;
use crate::secret::Secret;
use crate::store::{CodeRecord, SessionRecord};

#[derive(Debug, Clone)]
pub struct AuthzRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<pkce::Method>,
    pub prompt_login: bool,
    pub prompt_none: bool,
    /// OIDC `max_age`: a session older than this many seconds needs a fresh login.
    pub max_age: Option<i64>,
    /// RFC 9449 §10: the DPoP key thumbprint the code is bound to.
    pub dpop_jkt: Option<String>,
    /// The pushed request (RFC 9126) this came from: the hash of its `request_uri`, consumed
    /// when a code or an error is issued.
    pub par: Option<String>,
}

#[derive(Debug)]
pub enum AuthzError {
    /// Shown on a page: the client or redirect URI cannot be trusted.
    Page(OAuthError),
    /// Sent back to the client's redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
}

impl AuthzError {
    fn redirect(req_uri: &str, state: Option<&str>, code: ErrorCode, d: impl Into<String>) -> Self {
        AuthzError::Redirect {
            redirect_uri: req_uri.to_string(),
            state: state.map(str::to_string),
            error: OAuthError::new(code, d),
        }
    }
}

/// Validate a request at the authorization endpoint: its own parameters, or, with `request_uri`,
/// the ones the client pushed (RFC 9126 §4: only those; anything else in the query is ignored).
pub async fn validate(p: &Provider, form: &Form) -> Result<(Arc<AppRecord>, AuthzRequest), AuthzError> {
    if form.has("request") && form.has("request_uri") {
        return Err(AuthzError::Page(OAuthError::invalid_request("send request or request_uri, not both")));
    }
    if let Some(jwt) = form.get("request") {
        let inner = unpack_request_object(p, form, jwt).await?;
        return validate_params(p, &inner, Source::FrontChannel).await;
    }
    let Some(request_uri) = form.get("request_uri") else {
        return validate_params(p, form, Source::FrontChannel).await;
    };
    let client_id = form
        .get("client_id")
        .ok_or_else(|| AuthzError::Page(OAuthError::invalid_request("missing parameter: client_id")))?;
    let (uri_hash, pushed) = super::pushed::take(p, request_uri, client_id).await.map_err(AuthzError::Page)?;
    let (app, mut req) = validate_params(p, &pushed, Source::Pushed).await?;
    req.par = Some(uri_hash);
    Ok((app, req))
}

/// Validate parameters being pushed (RFC 9126), as the authorization endpoint will. A pushed
/// request object is unpacked: the parameters to store are returned with the validated request.
pub async fn validate_pushed(p: &Provider, form: &Form) -> Result<(Arc<AppRecord>, AuthzRequest, Form), AuthzError> {
    let inner = match form.get("request") {
        Some(jwt) => unpack_request_object(p, form, jwt).await?,
        None => form.clone(),
    };
    let (app, req) = validate_params(p, &inner, Source::Pushed).await?;
    Ok((app, req, inner))
}

/// A request object's parameters (RFC 9101), verified with the client's keys. Its failures are
/// shown on a page: the redirect URI inside it cannot be trusted.
async fn unpack_request_object(p: &Provider, form: &Form, jwt: &str) -> Result<Form, AuthzError> {
    let app = requesting_client(p, form).await?;
    super::request_object::unpack(p, &app, jwt).await.map_err(AuthzError::Page)
}

/// The app a request's `client_id` names (errors shown on a page: no redirect URI is trusted yet).
async fn requesting_client(p: &Provider, form: &Form) -> Result<Arc<AppRecord>, AuthzError> {
    let client_id = form
        .get("client_id")
        .ok_or_else(|| AuthzError::Page(OAuthError::invalid_request("missing parameter: client_id")))?;
    p.find_app(client_id)
        .await
        .map_err(|e| AuthzError::Page(e.into()))?
        .ok_or_else(|| AuthzError::Page(OAuthError::invalid_request("unknown client_id")))
}

/// Where an authorization request's parameters come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The browser's query or form: refused for an app (or a server) that requires PAR.
    FrontChannel,
    /// Pushed by the authenticated client.
    Pushed,
}

async fn validate_params(
    p: &Provider,
    form: &Form,
    source: Source,
) -> Result<(Arc<AppRecord>, AuthzRequest), AuthzError> {
    let app = requesting_client(p, form).await?;
    if app.app.fapi2() {
        // FAPI 2.0 §5.3.2.2: the redirect URI is trusted only from the authenticated push, so a
        // refusal here is shown, never redirected.
        if source == Source::FrontChannel {
            return Err(AuthzError::Page(OAuthError::invalid_request(
                "this FAPI 2.0 client must push its authorization request first (RFC 9126: POST it to the pushed \
                 authorization request endpoint, then send only client_id and request_uri)",
            )));
        }
        if !form.has("redirect_uri") {
            return Err(AuthzError::Page(OAuthError::invalid_request(
                "a FAPI 2.0 client's pushed request must carry redirect_uri",
            )));
        }
    }
    let redirect_uri = match form.get("redirect_uri") {
        Some(r) if app.app.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        Some(_) => {
            return Err(AuthzError::Page(OAuthError::invalid_request(
                "redirect_uri does not match any redirect URI registered for this client",
            )));
        }
        None if app.app.redirect_uris.len() == 1 => app.app.redirect_uris[0].clone(),
        None => return Err(AuthzError::Page(OAuthError::invalid_request("missing parameter: redirect_uri"))),
    };
    let state = form.get("state");
    let r = |code, d: &str| AuthzError::redirect(&redirect_uri, state, code, d);
    if !app.app.allows_grant(GrantType::AuthorizationCode) {
        return Err(r(ErrorCode::UnauthorizedClient, "this client is not allowed the authorization_code grant"));
    }
    if source == Source::FrontChannel && (app.app.require_par || p.config.require_par) {
        return Err(r(
            ErrorCode::InvalidRequest,
            "this client must push its authorization request first (RFC 9126: POST it to the pushed authorization \
             request endpoint, then send request_uri)",
        ));
    }
    match form.get("response_type").map(str::trim) {
        Some("code") => {}
        Some(_) => return Err(r(ErrorCode::UnsupportedResponseType, "only response_type=code is supported")),
        None => return Err(r(ErrorCode::InvalidRequest, "missing parameter: response_type")),
    }
    if let Some(m) = form.get("response_mode")
        && m != "query"
    {
        return Err(r(ErrorCode::InvalidRequest, "only response_mode=query is supported"));
    }
    if form.has("request") || form.has("request_uri") {
        return Err(AuthzError::redirect(
            &redirect_uri,
            state,
            ErrorCode::InvalidRequest,
            "request and request_uri cannot be nested",
        ));
    }
    let scopes = grant::requested_scopes(&app.app, form).map_err(|e| r(e.code, &e.description))?;
    let audience = grant::requested_audience(&app.app, form).map_err(|e| r(e.code, &e.description))?;
    let code_challenge = form.get("code_challenge").map(str::to_string);
    let method = match (form.get("code_challenge_method").map(str::trim), &code_challenge) {
        (Some(m), Some(_)) => Some(
            pkce::Method::parse(m)
                .ok_or_else(|| r(ErrorCode::InvalidRequest, "code_challenge_method must be S256 or plain"))?,
        ),
        (None, Some(_)) => Some(pkce::Method::Plain),
        (Some(_), None) => return Err(r(ErrorCode::InvalidRequest, "code_challenge_method without code_challenge")),
        (None, None) => None,
    };
    if let Some(c) = &code_challenge
        && !pkce::valid_verifier(c)
    {
        return Err(r(ErrorCode::InvalidRequest, "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]"));
    }
    if app.app.public || app.app.fapi2() {
        let who = if app.app.public { "public clients" } else { "FAPI 2.0 clients" };
        match method {
            Some(pkce::Method::S256) => {}
            Some(pkce::Method::Plain) => {
                return Err(r(ErrorCode::InvalidRequest, &format!("{who} must use code_challenge_method=S256")));
            }
            None => {
                return Err(r(ErrorCode::InvalidRequest, &format!("{who} must send a PKCE code_challenge (S256)")));
            }
        }
    }
    let prompt = form.get("prompt").unwrap_or("");
    let prompt_none = prompt.split(' ').any(|x| x == "none");
    let prompt_login = prompt.split(' ').any(|x| x == "login");
    if prompt_none && prompt_login {
        return Err(r(ErrorCode::InvalidRequest, "prompt=none cannot be combined with other prompt values"));
    }
    let max_age = match form.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| r(ErrorCode::InvalidRequest, "max_age must be a non-negative integer"))?,
        ),
    };
    let dpop_jkt = match form.get("dpop_jkt") {
        None => None,
        Some(j) if j.len() == 43 && crate::secret::b64url_decode(j).is_some_and(|b| b.len() == 32) => {
            Some(j.to_string())
        }
        Some(_) => {
            return Err(r(
                ErrorCode::InvalidRequest,
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 9449 §10)",
            ));
        }
    };
    Ok((
        app.clone(),
        AuthzRequest {
            client_id: app.app.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            state: state.map(str::to_string),
            nonce: form.get("nonce").map(str::to_string),
            scopes,
            audience,
            code_challenge,
            code_challenge_method: method,
            prompt_login,
            prompt_none,
            max_age,
            dpop_jkt,
            par: None,
        },
    ))
}

/// An error for a request that came from a pushed request consumes it (RFC 9126 §4: a
/// `request_uri` serves one authorization).
pub async fn consume_on_error(p: &Provider, req: &AuthzRequest) {
    if let Some(h) = &req.par {
        let _ = super::pushed::consume(p, h).await;
    }
}

/// Does this request need the user to log in again although a session exists (`prompt=login`,
/// or a session older than `max_age`, OIDC Core §3.1.2.1)?
pub fn needs_fresh_login(p: &Provider, req: &AuthzRequest, session: &SessionRecord) -> bool {
    req.prompt_login || req.max_age.is_some_and(|m| p.now() - session.auth_time > m || m == 0)
}

/// Issue a code for a validated request and a live session. Returns the redirect URL and, for a
/// `cookie` app, the `atbv` value to set (B-7). `atbv`: the browser's current `atbv` cookie.
pub async fn issue_code(
    p: &Provider,
    app: &AppRecord,
    req: &AuthzRequest,
    session: &SessionRecord,
    atbv: Option<&str>,
) -> Result<(String, Option<Secret>), OAuthError> {
    if let Some(h) = &req.par
        && !super::pushed::consume(p, h).await?
    {
        return Err(OAuthError::invalid_request("this pushed authorization request was already used"));
    }
    // B-2: what the app's binder fixes here travels with the code.
    let ctx = AuthzContext { session, atbv, dpop_jkt: req.dpop_jkt.as_deref() };
    let AuthzBinding { binding, set_atbv } = registry::binder(app.app.binding).at_authorization(p, &ctx).await?;
    let code = Secret::generate();
    let now = p.now();
    let rec = CodeRecord {
        code_hash: code.hash(),
        client_id: req.client_id.clone(),
        user_id: session.user_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        scope: crate::scope::canonical(&req.scopes),
        audience: req.audience.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        code_challenge_method: req.code_challenge_method.map(|m| m.as_str().to_string()),
        session_id: session.id.clone(),
        auth_time: session.auth_time,
        grant_id: new_grant_id(),
        binding,
        expires_at: now + crate::profile::code_lifetime(&app.app, p.config.code_lifetime),
        used_at: None,
    };
    p.store.insert_code(&rec).await?;
    let mut params = vec![("code", code.expose())];
    if let Some(s) = &req.state {
        params.push(("state", s));
    }
    params.push(("iss", p.issuer()));
    Ok((append_query(&req.redirect_uri, &params), set_atbv))
}

/// An error redirect (RFC 6749 §4.1.2.1) with `iss` (RFC 9207).
pub fn error_redirect(p: &Provider, redirect_uri: &str, state: Option<&str>, err: &OAuthError) -> String {
    let mut params = vec![("error", err.code.as_str()), ("error_description", err.description.as_str())];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", p.issuer()));
    append_query(redirect_uri, &params)
}

fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_string(),
    }
}
