//! `cookie` binding (B-1, B-2, B-7): the token is bound to a random UUID kept in the browser's
//! `atbv` cookie. The value is fixed at the authorization endpoint when the code is issued (the
//! token request, often from a back end, need not carry the cookie) and travels with the code;
//! every other grant is issued unbound. A browser logout in an app with `--revoke-on-logout` also
//! revokes the tokens bound to the browser's `atbv` (B-6). B-10: the app needs the
//! authorization_code grant.

use async_trait::async_trait;

use super::{
    AuthzBinding, AuthzContext, BindContext, Evidence, TokenBinder, binding_ref, matches, record, requires_grant,
};
use crate::error::OAuthError;
use crate::model::{App, BindingType, GrantType};
use crate::provider::Provider;
use crate::secret::Secret;
use crate::store::{BindingRecord, RevokeFilter, SessionRecord};

pub const COOKIE: &str = "atbv";

pub struct Cookie;

/// A random UUID v4 (RFC 9562 §5.4), lowercase hyphenated.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_uuid(v: &str) -> bool {
    v.len() == 36 && uuid::Uuid::try_parse(v).is_ok()
}

/// B-7: the browser's existing `atbv` is kept only if a stored token is bound to it (so a value a
/// third party planted in the cookie is not adopted); otherwise a new one is minted. Returns the
/// value and whether the cookie must be (re)set.
async fn value_for(p: &Provider, existing: Option<&str>) -> Result<(Secret, bool), OAuthError> {
    if let Some(v) = existing.filter(|v| is_uuid(v))
        && p.store.binding_in_use(BindingType::Cookie, &binding_ref(v)).await?
    {
        return Ok((Secret::new(v), false));
    }
    Ok((Secret::new(new_uuid()), true))
}

#[async_trait]
impl TokenBinder for Cookie {
    fn kind(&self) -> BindingType {
        BindingType::Cookie
    }

    fn check_app(&self, app: &App) -> Result<(), String> {
        requires_grant(app, GrantType::AuthorizationCode, "authorization_code")
    }

    async fn at_authorization(&self, p: &Provider, ctx: &AuthzContext<'_>) -> Result<AuthzBinding, OAuthError> {
        let (value, _) = value_for(p, ctx.atbv).await?;
        Ok(AuthzBinding { binding: Some(record(BindingType::Cookie, value.expose(), false)), set_atbv: Some(value) })
    }

    fn bind(&self, _: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        Ok(None)
    }

    async fn proven(&self, _: &Provider, b: &BindingRecord, ev: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(ev.atbv.is_some_and(|v| matches(b, v)))
    }

    fn on_logout(&self, session: &SessionRecord, ev: &Evidence<'_>) -> Option<RevokeFilter> {
        let v = ev.atbv?;
        Some(RevokeFilter {
            user_id: Some(session.user_id.clone()),
            binding_kind: Some(BindingType::Cookie),
            binding_ref: Some(binding_ref(v)),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn uuids_are_v4() {
        let u = new_uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, new_uuid());
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid("{00000000-0000-4000-8000-000000000000}"));
    }
}
