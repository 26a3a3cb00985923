//! `sso-session` binding (B-1, B-2): the token is bound to the login session's key, an opaque
//! per-login identifier that the ID token carries as `isk`. It is derived from the session's
//! random public id (`sid`), never from the session cookie's value (B-11), and is fixed at the
//! authorization endpoint with the code; other grants are issued unbound. A new login means a new
//! key, hence a new token (B-3); when the session ends, its tokens end with it (B-4, B-6).

use super::{BindContext, TokenBinder};
use crate::error::OAuthError;
use crate::model::BindingType;
use crate::provider::Provider;
use crate::secret::{b64url, sha256};
use crate::store::SessionRecord;

pub struct SsoSession;

impl TokenBinder for SsoSession {
    fn kind(&self) -> BindingType {
        BindingType::SsoSession
    }

    fn bind(&self, _: &BindContext<'_>) -> Result<Option<String>, OAuthError> {
        Ok(None)
    }
}

/// The session key (`isk`) of a login session.
pub fn session_key(session_id: &str) -> String {
    b64url(&sha256(format!("tether-isk:{session_id}").as_bytes()))
}

/// Is the login session live at `now` (not ended, not past its lifetime or idle timeout)?
pub fn live(p: &Provider, s: &SessionRecord) -> bool {
    let now = p.now();
    s.ended_at.is_none() && s.expires_at > now && s.last_seen + p.config.session_idle_timeout > now
}

/// Is the session with this id live? An unknown (purged) session is not.
pub async fn live_by_id(p: &Provider, session_id: &str) -> Result<bool, OAuthError> {
    Ok(p.store.find_session_by_id(session_id).await?.is_some_and(|s| live(p, &s)))
}

/// B-4/B-6: the login session a token lives and dies with, if any — the one it is bound to
/// (`sso-session`), or the one it was issued through for an app with `--revoke-on-logout`.
async fn tied_session<'a>(
    p: &Provider,
    client_id: &str,
    binding: Option<&crate::store::BindingRecord>,
    session_id: Option<&'a str>,
) -> Result<Option<&'a str>, OAuthError> {
    let Some(sid) = session_id else { return Ok(None) };
    match binding.map(|b| b.kind) {
        Some(BindingType::SsoSession) => return Ok(Some(sid)),
        // B-6: never ended by a browser session.
        Some(BindingType::ClientRequest | BindingType::DeviceFlow) => return Ok(None),
        _ => {}
    }
    Ok(p.find_app(client_id).await?.filter(|a| a.app.revoke_on_logout).map(|_| sid))
}

/// Is this access token still alive as far as its login session goes? A token whose session has
/// ended (logout, lifetime, idle timeout) is revoked now, with its refresh tokens, and is not.
pub async fn access_alive(p: &Provider, a: &crate::store::AccessTokenRecord) -> Result<bool, OAuthError> {
    match tied_session(p, &a.client_id, a.binding.as_ref(), a.session_id.as_deref()).await? {
        Some(sid) if !live_by_id(p, sid).await? => {
            p.store.revoke_access(&a.token_hash, p.now()).await?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// The same for a refresh token (its whole family is revoked).
pub async fn refresh_alive(p: &Provider, r: &crate::store::RefreshTokenRecord) -> Result<bool, OAuthError> {
    match tied_session(p, &r.client_id, r.binding.as_ref(), r.session_id.as_deref()).await? {
        Some(sid) if !live_by_id(p, sid).await? => {
            p.store.revoke_family(&r.family_id, p.now()).await?;
            Ok(false)
        }
        _ => Ok(true),
    }
}
