//! Signing in with a username and password, shared by the sign-in pages and the password grant:
//! the throttles, the device cookie, and the bounded argon2id check ([`sign_in`]); and what a
//! sign-in does to the browser's existing session ([`establish_session`]).
//!
//! Throttling (the rules a stranger must not be able to turn against a user):
//! - On the pages, a browser that signed in as a user before holds a [`DEVICE_COOKIE`] vouching
//!   for that username only (a MAC over the username and a device id; signing into your own
//!   account buys no guesses against anyone else). Its failures count per (username, device):
//!   10 in 5 minutes close that device for the rest of the window, and nobody else's.
//! - Attempts without such a cookie count per username, as a backoff: after 10 failures in 5
//!   minutes, one untrusted attempt per interval (1 s doubling to 60 s), the others refused at
//!   once without computing a hash. Never a hard lock: the user on their own device is unaffected.
//! - Per source address, 30 failures in 5 minutes (pages only; trusted devices are not counted).
//! - The password grant: per (username, client_id) and per (username, address), as a backoff.
//!
//! Every attempt is reserved in its throttles *before* the hash is computed and counts as a
//! failure until it succeeds, so a parallel burst cannot all pass the check.

use serde_json::json;

use crate::audit::{Actor, kind};
use crate::binding::Evidence;
use crate::endpoint::logout;
use crate::error::{ErrorCode, OAuthError};
use crate::model::UserRecord;
use crate::provider::Provider;
use crate::secret::{Secret, b64url, b64url_decode, random_bytes};
use crate::session;
use crate::store::SessionRecord;
use crate::throttle::{Throttle, wait_text};

/// The cookie that says "this browser signed in as this user before".
pub const DEVICE_COOKIE: &str = "tether_device";
/// How long a device cookie vouches (180 days).
pub const DEVICE_LIFETIME: i64 = 180 * 86_400;

/// Where a sign-in comes from.
pub enum Via<'a> {
    /// A sign-in page, with the browser's device cookie if it sent one.
    Page { device: Option<&'a str> },
    /// The password grant, for this (authenticated) client.
    PasswordGrant { client_id: &'a str },
}

pub struct Attempt<'a> {
    pub username: &'a str,
    pub password: Secret,
    /// The client's address (after the trusted-proxy rule), when known.
    pub addr: Option<&'a str>,
    pub via: Via<'a>,
}

/// Why a sign-in did not succeed.
#[derive(Debug)]
pub enum Refused {
    /// Too many failures: try again in this many seconds. No hash was computed.
    Throttled(i64),
    /// Wrong username or password.
    Wrong,
    /// No turn to check a password came in time (503).
    Busy,
    Error(OAuthError),
}

impl Refused {
    /// The answer of the password grant (RFC 6749 §5.2): 429 with `Retry-After` when throttled,
    /// `invalid_grant` when wrong, 503 `temporarily_unavailable` when busy.
    pub fn into_oauth(self) -> OAuthError {
        match self {
            Refused::Throttled(wait) => OAuthError::invalid_grant(format!(
                "too many failed sign-in attempts for this user; try again in {}",
                wait_text(wait)
            ))
            .retry_after(wait),
            Refused::Wrong => OAuthError::invalid_grant("invalid username or password"),
            Refused::Busy => busy(),
            Refused::Error(e) => e,
        }
    }
}

/// 503 `temporarily_unavailable`, retry in a second.
pub fn busy() -> OAuthError {
    OAuthError::new(ErrorCode::TemporarilyUnavailable, "too many sign-ins at once; try again in a moment")
        .retry_after(1)
}

/// Check a username and password under the throttles. On success the user, and (pages) the
/// device cookie value to set.
pub async fn sign_in(p: &Provider, a: Attempt<'_>) -> Result<(UserRecord, Option<Secret>), Refused> {
    let now = p.now();
    let t = &p.throttles;
    let user = a.username;
    let device = match a.via {
        Via::Page { device } => device.and_then(|d| device_id(p, d, user, now)),
        Via::PasswordGrant { .. } => None,
    };
    let mut keys: Vec<(&Throttle, String)> = Vec::with_capacity(2);
    match (&a.via, &device) {
        (Via::Page { .. }, Some(id)) => keys.push((&t.login_device, format!("{user}\u{0}{id}"))),
        (Via::Page { .. }, None) => {
            keys.push((&t.login_user, user.to_string()));
            if let Some(addr) = a.addr {
                keys.push((&t.login_addr, addr.to_string()));
            }
        }
        (Via::PasswordGrant { client_id }, _) => {
            keys.push((&t.password_grant, format!("client\u{0}{user}\u{0}{client_id}")));
            if let Some(addr) = a.addr {
                keys.push((&t.password_grant, format!("addr\u{0}{user}\u{0}{addr}")));
            }
        }
    }
    let actor = Actor {
        client_id: match a.via {
            Via::PasswordGrant { client_id } => Some(client_id.to_string()),
            Via::Page { .. } => None,
        },
        username: Some(user.to_string()),
        ip: a.addr.map(str::to_string),
        user_agent: None,
    };
    if let Err(wait) = reserve_all(&keys, now) {
        p.event(kind::THROTTLE_BLOCKED, &actor, json!({"target": user, "retry_after": wait}));
        return Err(Refused::Throttled(wait));
    }
    let release = |keys: &[(&Throttle, String)]| keys.iter().for_each(|(t, k)| t.release(k));
    // Usernames never hold control characters; such a name is unknown without asking the store
    // (PostgreSQL refuses a NUL in a text parameter).
    let lookup = async {
        if !crate::admin_ops::valid_username(user) {
            return Ok(None);
        }
        p.store.get_user_by_name(user).await
    };
    let found = match lookup.await {
        Ok(u) => u,
        Err(e) => {
            release(&keys);
            return Err(Refused::Error(e.into()));
        }
    };
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    let ok = match p.passwords.verify(a.password, hash).await {
        Ok(ok) => ok,
        Err(_) => {
            release(&keys);
            return Err(Refused::Busy);
        }
    };
    match found {
        Some(u) if ok && u.user.disabled => {
            // Answered as a wrong password; the event says why.
            p.event(kind::LOGIN_FAILURE, &actor, json!({"reason": "disabled"}));
            Err(Refused::Wrong)
        }
        Some(u) if ok => {
            release(&keys);
            p.event(kind::LOGIN_SUCCESS, &actor, json!({}));
            if let (Some(id), Via::Page { .. }) = (&device, &a.via) {
                t.login_device.clear(&format!("{user}\u{0}{id}"));
            }
            let cookie = match a.via {
                Via::Page { .. } => Some(device_cookie(p, user, device.as_deref(), now)),
                Via::PasswordGrant { .. } => None,
            };
            Ok((u, cookie))
        }
        _ => {
            tracing::info!(username = %user, addr = a.addr.unwrap_or("-"), "sign-in failed");
            p.event(kind::LOGIN_FAILURE, &actor, json!({"reason": "invalid_credentials"}));
            Err(Refused::Wrong)
        }
    }
}

/// Reserve an attempt in every throttle, or in none (the longest wait).
fn reserve_all(keys: &[(&Throttle, String)], now: i64) -> Result<(), i64> {
    for (i, (t, k)) in keys.iter().enumerate() {
        if let Err(wait) = t.reserve(k, now) {
            keys[..i].iter().for_each(|(t, k)| t.release(k));
            let longest = keys[i + 1..].iter().filter_map(|(t, k)| t.blocked(k, now)).max().unwrap_or(0);
            return Err(wait.max(longest).max(1));
        }
    }
    Ok(())
}

fn device_mac_input(user: &str, id: &str, iat: i64) -> Vec<u8> {
    format!("device|{user}|{id}|{iat}").into_bytes()
}

/// A device cookie for `user`: `ID.IAT.MAC`, keeping the browser's device id when it had one.
fn device_cookie(p: &Provider, user: &str, id: Option<&str>, now: i64) -> Secret {
    let id = id.map(str::to_string).unwrap_or_else(|| b64url(&random_bytes::<16>()));
    let mac = p.form_key.mac_b64(&device_mac_input(user, &id, now));
    Secret::new(format!("{id}.{now}.{mac}"))
}

/// The device id of a cookie that vouches for `user` and has not expired.
fn device_id(p: &Provider, cookie: &str, user: &str, now: i64) -> Option<String> {
    let mut parts = cookie.splitn(3, '.');
    let (id, iat, mac) = (parts.next()?, parts.next()?, parts.next()?);
    let iat: i64 = iat.parse().ok()?;
    if id.len() != 22 || !crate::clock::issued_within(iat, now, 60, DEVICE_LIFETIME) {
        return None;
    }
    let tag = b64url_decode(mac)?;
    p.form_key.verify(&device_mac_input(user, id, iat), &tag).then(|| id.to_string())
}

/// After a successful sign-in in a browser that may already hold a session (`current`, live):
/// the same user re-authenticating keeps the session (same id and `sid`, `auth_time` now) under a
/// new cookie value, so the old value stops working; a different user ends the old session as a
/// logout does (B-6, `ev` is what the browser presents) and starts a new one. Returns the session
/// and the cookie value to set.
pub async fn establish_session(
    p: &Provider,
    user_id: &str,
    current: Option<SessionRecord>,
    ev: &Evidence<'_>,
    origin: session::Origin<'_>,
) -> Result<(SessionRecord, Secret), OAuthError> {
    let now = p.now();
    match current {
        Some(mut s) if s.user_id == user_id => {
            let cookie = Secret::generate();
            let expires_at = now + p.config.session_lifetime;
            if p.store.reauthenticate_session(&s.id, &cookie.hash(), now, expires_at).await? {
                s.cookie_hash = cookie.hash();
                s.auth_time = now;
                s.last_seen = now;
                s.expires_at = expires_at;
                return Ok((s, cookie));
            }
            session::start(p, user_id, origin).await
        }
        Some(other) => {
            logout::end_session(p, &other, ev).await?;
            session::start(p, user_id, origin).await
        }
        None => session::start(p, user_id, origin).await,
    }
}
