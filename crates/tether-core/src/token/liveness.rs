//! Is a stored token still alive as far as its login session goes (token-binding.md B-4, B-6)?
//!
//! A token lives and dies with the session it was issued through when its binding type says so
//! ([`SessionTie`]), or when its app has `--revoke-on-logout`. A token whose session has ended
//! (logout, lifetime, idle timeout) is revoked when it is next seen, with its refresh tokens.

use crate::binding::SessionTie;
use crate::binding::registry::binder;
use crate::error::OAuthError;
use crate::provider::Provider;
use crate::session;
use crate::store::{AccessTokenRecord, BindingRecord, RefreshTokenRecord};

/// The login session a token lives and dies with, if any.
async fn tied_session<'a>(
    p: &Provider,
    client_id: &str,
    binding: Option<&BindingRecord>,
    session_id: Option<&'a str>,
) -> Result<Option<&'a str>, OAuthError> {
    let Some(sid) = session_id else { return Ok(None) };
    let tie = binding.map(|b| binder(b.kind).session_tie()).unwrap_or(SessionTie::IfRevokeOnLogout);
    Ok(match tie {
        SessionTie::Always => Some(sid),
        SessionTie::Never => None,
        SessionTie::IfRevokeOnLogout => p.find_app(client_id).await?.filter(|a| a.app.revoke_on_logout).map(|_| sid),
    })
}

/// Is this access token alive? One whose session has ended is revoked now, and is not.
pub async fn access_alive(p: &Provider, a: &AccessTokenRecord) -> Result<bool, OAuthError> {
    match tied_session(p, &a.client_id, a.binding.as_ref(), a.session_id.as_deref()).await? {
        Some(sid) if !session::live_by_id(p, sid).await? => {
            p.store.revoke_access(&a.token_hash, p.now()).await?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// The same for a refresh token (its whole family is revoked).
pub async fn refresh_alive(p: &Provider, r: &RefreshTokenRecord) -> Result<bool, OAuthError> {
    match tied_session(p, &r.client_id, r.binding.as_ref(), r.session_id.as_deref()).await? {
        Some(sid) if !session::live_by_id(p, sid).await? => {
            p.store.revoke_family(&r.family_id, p.now()).await?;
            Ok(false)
        }
        _ => Ok(true),
    }
}
