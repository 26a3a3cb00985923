//! `sso-session` binding (B-1, B-2): the token is bound to the login session's key, an opaque
//! per-login identifier that the ID token carries as `isk`. It is derived from the session's
//! random public id (`sid`), never from the session cookie's value (B-11), and is fixed at the
//! authorization endpoint with the code; other grants are issued unbound. A new login means a new
//! key, hence a new token (B-3); when the session ends, its tokens end with it (B-4, B-6),
//! whatever the app's flags. B-10: the app needs the authorization_code grant.

use async_trait::async_trait;

use super::{
    AuthzBinding, AuthzContext, BindContext, Evidence, SessionTie, TokenBinder, matches, record, requires_grant,
};
use crate::error::OAuthError;
use crate::model::{App, BindingType, GrantType};
use crate::provider::Provider;
use crate::secret::{b64url, sha256};
use crate::session;
use crate::store::BindingRecord;

pub struct SsoSession;

/// The session key (`isk`) of a login session.
pub fn session_key(session_id: &str) -> String {
    b64url(&sha256(format!("tether-isk:{session_id}").as_bytes()))
}

#[async_trait]
impl TokenBinder for SsoSession {
    fn kind(&self) -> BindingType {
        BindingType::SsoSession
    }

    fn check_app(&self, app: &App) -> Result<(), String> {
        requires_grant(app, GrantType::AuthorizationCode, "authorization_code")
    }

    async fn at_authorization(&self, _: &Provider, ctx: &AuthzContext<'_>) -> Result<AuthzBinding, OAuthError> {
        let b = record(BindingType::SsoSession, &session_key(&ctx.session.id), false);
        Ok(AuthzBinding { binding: Some(b), set_atbv: None })
    }

    fn bind(&self, _: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        Ok(None)
    }

    /// The cookie of a live session whose key matches. Looking it up does not extend the session.
    async fn proven(&self, p: &Provider, b: &BindingRecord, ev: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(session::lookup(p, ev.session_cookie).await?.is_some_and(|s| matches(b, &session_key(&s.id))))
    }

    fn session_tie(&self) -> SessionTie {
        SessionTie::Always
    }
}
