//! The `session` auth method (gateway.md G-2): the gateway as an OpenID Connect relying party. A
//! browser without credentials is sent through the issuer's authorization-code flow with PKCE
//! (S256), `state` and `nonce`; the callback redeems the code with the gateway's own client
//! credentials and keeps the access token in a session cookie, sealed with AES-256-GCM under a
//! key derived from `session_secret` (`Secure; HttpOnly; SameSite=Lax`).
//!
//! A session remembers whether it was created by a proof-of-possession-checked request: when the
//! browser presented a client certificate at login (and mTLS PoP is not `off`), every later request
//! of that session must present the same certificate.

use axum::body::Body;
use http::header::{COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Response, StatusCode, request::Parts};
use serde::{Deserialize, Serialize};
use tether_core::crypto::MasterKey;
use tether_core::secret::{b64url, b64url_decode, ct_eq, random_token, sha256};

use crate::config::{AuthMethod, PopMode};
use crate::guard::{Authenticated, Guard, Rejection, authenticated};

pub const SESSION_COOKIE: &str = "tether_gw_session";
const LOGIN_COOKIE: &str = "tether_gw_login";

#[derive(Serialize, Deserialize)]
struct SessionData {
    at: String,
    exp: i64,
    /// The client certificate thumbprint of the request that created the session.
    cert: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    verifier: String,
    nonce: String,
    return_to: String,
    exp: i64,
}

fn key(g: &Guard) -> Option<MasterKey> {
    let secret = g.cfg.session_secret.as_deref()?;
    MasterKey::from_bytes(&sha256(secret.as_bytes())).ok()
}

fn seal<T: Serialize>(g: &Guard, name: &str, v: &T) -> Option<String> {
    let k = key(g)?;
    Some(b64url(&k.seal(name, serde_json::to_vec(v).ok()?.as_slice())))
}

fn open<T: for<'de> Deserialize<'de>>(g: &Guard, name: &str, text: &str) -> Option<T> {
    let k = key(g)?;
    let plain = k.open(name, &b64url_decode(text)?).ok()?;
    serde_json::from_slice(&plain).ok()
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> Option<HeaderValue> {
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}")).ok()
}

/// The request's session, checked like a token (G-2) with its PoP re-check.
pub async fn from_cookie(g: &Guard, parts: &Parts) -> Result<Option<Authenticated>, Rejection> {
    let Some(raw) = cookie(parts, SESSION_COOKIE) else { return Ok(None) };
    let Some(s) = open::<SessionData>(g, SESSION_COOKIE, raw) else { return Ok(None) };
    if s.exp <= g.clock.now() {
        return Ok(None);
    }
    let policy = g.policy_of(parts);
    let (claims, _) = g.validate(&s.at, &g.default_policy.auth_methods).await?;
    // A session's token is the gateway's own; it cannot carry a proof of possession of its own.
    if claims.get("cnf").is_some_and(|c| c.as_object().is_some_and(|m| !m.is_empty())) {
        return Err(Rejection::invalid_token("a session's token must not be sender-constrained"));
    }
    if policy.pop_dpop == PopMode::Strict {
        return Err(Rejection::invalid_token("a DPoP-bound access token is required (sessions cannot carry one)"));
    }
    g.policy(&claims, &policy)?;
    let presented = g.certificate(parts)?;
    match (&s.cert, presented) {
        (Some(bound), Some(p)) if ct_eq(bound.as_bytes(), p.as_bytes()) => {}
        (Some(_), _) => {
            return Err(Rejection::invalid_token(
                "this session was created with a client certificate that this request did not present",
            ));
        }
        (None, _) if policy.pop_mtls == PopMode::Strict && g.cfg.pop_auth_methods_validation => {
            return Err(Rejection::invalid_token("a client certificate is required"));
        }
        (None, _) => {}
    }
    Ok(Some(authenticated(s.at, &claims, AuthMethod::Session)))
}

/// `openid` plus the scopes the gateway requires, so a session's token can pass `required_scopes`.
fn session_scope(g: &Guard) -> String {
    let mut s = vec!["openid".to_string()];
    s.extend(g.cfg.required_scopes.iter().filter(|x| *x != "openid").cloned());
    s.join(" ")
}

/// Is this a request a browser would follow a redirect for?
pub fn browser_navigation(parts: &Parts) -> bool {
    parts.method == http::Method::GET
        && parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// Send the browser to the issuer (authorization code + PKCE).
pub async fn login_redirect(g: &Guard, parts: &Parts) -> Response<Body> {
    let endpoint = match g.issuer.endpoints().await {
        Ok(e) => e.authorization_endpoint.clone(),
        Err(crate::issuer::IssuerError::Unreachable(e)) => {
            tracing::warn!(error = %e, "issuer unreachable");
            None
        }
    };
    let (Some(endpoint), Some(redirect_uri)) = (endpoint, g.cfg.redirect_uri.as_ref()) else {
        return g.reject(Rejection::unavailable("the authorization server cannot be reached to sign in"));
    };
    let verifier = random_token();
    let pending = Pending {
        state: random_token(),
        verifier: verifier.clone(),
        nonce: random_token(),
        return_to: parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into()),
        exp: g.clock.now() + 600,
    };
    let Ok(mut url) = url::Url::parse(&endpoint) else {
        return g.reject(Rejection::unavailable("the issuer's authorization endpoint is not a URL"));
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", g.cfg.client_id.as_deref().unwrap_or(""))
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("scope", &session_scope(g))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &b64url(&sha256(verifier.as_bytes())))
        .append_pair("code_challenge_method", "S256");
    if let Some(aud) = &g.cfg.audience {
        url.query_pairs_mut().append_pair("resource", aud);
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut().insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        r.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = seal(g, LOGIN_COOKIE, &pending).and_then(|v| set_cookie(LOGIN_COOKIE, &v, Some(600))) {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r
}

/// The redirect URI: redeem the code, start the session, go back where the browser was going.
pub async fn callback(g: &Guard, parts: &Parts) -> Response<Body> {
    let q: Vec<(String, String)> =
        parts.uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(e) = get("error") {
        return g.reject(Rejection::invalid_request(format!("sign-in failed at the authorization server: {e}")));
    }
    let pending = cookie(parts, LOGIN_COOKIE).and_then(|c| open::<Pending>(g, LOGIN_COOKIE, c));
    let Some(p) = pending.filter(|p| p.exp > g.clock.now()) else {
        return g.reject(Rejection::invalid_request("no sign-in is in progress in this browser (or it expired)"));
    };
    if !get("state").is_some_and(|s| ct_eq(s.as_bytes(), p.state.as_bytes())) {
        return g.reject(Rejection::invalid_request("state does not match the sign-in in progress"));
    }
    let Some(code) = get("code") else { return g.reject(Rejection::invalid_request("missing code")) };
    let redirect_uri = g.cfg.redirect_uri.as_ref().map(|u| u.as_str().to_string()).unwrap_or_default();
    let tokens = match g.issuer.redeem_code(code, &redirect_uri, &p.verifier).await {
        Ok(t) => t,
        Err(crate::issuer::IssuerError::Unreachable(e)) => {
            tracing::warn!(error = %e, "token endpoint unreachable");
            return g.reject(Rejection::unavailable("the authorization server cannot be reached"));
        }
    };
    let Some(at) = tokens.get("access_token").and_then(|v| v.as_str()).map(str::to_string) else {
        let why = tokens.get("error_description").and_then(|v| v.as_str()).unwrap_or("no access token");
        return g.reject(Rejection::invalid_request(format!("the code could not be redeemed: {why}")));
    };
    let (claims, _) = match g.validate(&at, &g.default_policy.auth_methods).await {
        Ok(x) => x,
        Err(r) => return g.reject(r),
    };
    let cert = match g.certificate(parts) {
        Ok(c) => c,
        Err(r) => return g.reject(r),
    };
    let cert = cert.filter(|_| g.cfg.pop_mtls != PopMode::Off);
    if cert.is_none() && g.cfg.pop_mtls == PopMode::Strict && g.cfg.pop_auth_methods_validation {
        return g.reject(Rejection::invalid_token("a client certificate is required to start a session"));
    }
    let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(g.clock.now() + 3600);
    let data = SessionData { at, exp, cert };
    // A path on this host only: browsers read `/\host` as `//host`, another host.
    let local = p.return_to.starts_with('/') && !p.return_to.starts_with("//") && !p.return_to.starts_with("/\\");
    let return_to = if local { p.return_to } else { "/".into() };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut().insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&return_to) {
        r.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = seal(g, SESSION_COOKIE, &data).and_then(|v| set_cookie(SESSION_COOKIE, &v, None)) {
        r.headers_mut().append(SET_COOKIE, c);
    }
    if let Some(c) = set_cookie(LOGIN_COOKIE, "", Some(0)) {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r
}
