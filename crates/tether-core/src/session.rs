//! Login sessions (OIDC Core §3.1.2.3): starting one, finding the live one a cookie names, and
//! the one rule of when a session is live (not ended, within its lifetime and idle timeout).
//!
//! [`lookup`] has no side effects: a binding check or an introspection never extends a session.
//! Only the browser endpoints, where the user is actually active, call [`touch`].

use crate::error::OAuthError;
use crate::provider::Provider;
use crate::secret::{Secret, b64url, hash_secret, random_bytes};
use crate::store::SessionRecord;

/// The name of the SSO session cookie.
pub const COOKIE: &str = "tether_session";

/// Longest cookie value looked up; anything longer is not ours and is not hashed.
const MAX_COOKIE_LEN: usize = 128;

/// Is the login session live at the provider's `now`?
pub fn is_live(p: &Provider, s: &SessionRecord) -> bool {
    let now = p.now();
    s.ended_at.is_none() && s.expires_at > now && s.last_seen + p.config.session_idle_timeout > now
}

/// The live session this cookie value names, or `None`. Reads only.
pub async fn lookup(p: &Provider, cookie: Option<&str>) -> Result<Option<SessionRecord>, OAuthError> {
    let Some(c) = cookie.filter(|c| c.len() <= MAX_COOKIE_LEN) else { return Ok(None) };
    Ok(p.store.find_session(&hash_secret(c)).await?.filter(|s| is_live(p, s)))
}

/// The live session of this cookie, marked as used now (the user is active in the browser).
pub async fn lookup_and_touch(p: &Provider, cookie: Option<&str>) -> Result<Option<SessionRecord>, OAuthError> {
    let s = lookup(p, cookie).await?;
    if let Some(s) = &s {
        p.store.touch_session(&s.id, p.now()).await?;
    }
    Ok(s)
}

/// Is the session with this id live? An unknown (purged) session is not.
pub async fn live_by_id(p: &Provider, session_id: &str) -> Result<bool, OAuthError> {
    Ok(p.store.find_session_by_id(session_id).await?.is_some_and(|s| is_live(p, &s)))
}

/// Where a sign-in came from: the client's address and `User-Agent`, kept with the session for
/// the admin API's session list.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// At most this many bytes of a `User-Agent` are kept.
const MAX_USER_AGENT: usize = 256;

/// Start a login session. Returns the cookie value (shown once, stored as a hash).
pub async fn start(p: &Provider, user_id: &str, origin: Origin<'_>) -> Result<(SessionRecord, Secret), OAuthError> {
    let now = p.now();
    let cookie = Secret::generate();
    let s = SessionRecord {
        id: b64url(&random_bytes::<16>()),
        cookie_hash: cookie.hash(),
        user_id: user_id.to_string(),
        auth_time: now,
        expires_at: now + p.config.session_lifetime,
        last_seen: now,
        ended_at: None,
        ip: origin.ip.map(str::to_string),
        user_agent: origin.user_agent.map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_string()
        }),
    };
    p.store.create_session(&s).await?;
    Ok((s, cookie))
}
