//! `refresh_token` (RFC 6749 §6) with rotation: every use returns a new refresh token in the same
//! family; presenting a rotated one revokes the family (OAuth 2.0 Security BCP §4.14.2). The new
//! access token inherits the refresh token's binding (token-binding.md B-1).
//!
//! A FAPI 2.0 app's refresh tokens are not rotated (FAPI 2.0 §5.3.2.1: rotation brings nothing
//! to a sender-constrained, authenticated client, and a lost response would strand it): the same
//! token is answered again and stays valid, with no reuse detection; it still works only for the
//! client that authenticates, and each new access token is bound per B-1.

use serde_json::json;

use async_trait::async_trait;

use super::{Grant, GrantContext, Inherited, Subject, Validated};
use crate::audit::{Actor, kind};
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::provider::Provider;
use crate::scope;
use crate::secret::hash_secret;
use crate::store::Precondition;

pub const GRANT_TYPE: GrantType = GrantType::RefreshToken;

pub struct RefreshToken;

#[async_trait]
impl Grant for RefreshToken {
    fn grant_type(&self) -> GrantType {
        GRANT_TYPE
    }

    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError> {
        handle(ctx.p, ctx.app, ctx.form).await
    }
}

async fn handle(p: &Provider, app: &App, form: &Form) -> Result<Validated, OAuthError> {
    let presented = form.require("refresh_token")?;
    let now = p.now();
    let Some(rec) = p.store.find_refresh(&hash_secret(presented)).await? else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    if rec.client_id != app.client_id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
    }
    if rec.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("the refresh token has been revoked"));
    }
    if rec.used_at.is_some() {
        p.store.revoke_family(&rec.family_id, now).await?;
        let actor = Actor::client(&app.client_id).with_user(rec.username.as_deref());
        p.event(kind::TOKEN_REFRESH_REUSE, &actor, json!({"target": rec.id, "family_revoked": true}));
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; as a precaution every token of its family has been revoked",
        ));
    }
    if rec.expires_at <= now {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    if !crate::token::liveness::refresh_alive(p, &rec).await? {
        return Err(OAuthError::invalid_grant("the login session this refresh token belongs to has ended"));
    }
    if let Some(uid) = &rec.user_id
        && p.store.get_user(uid).await?.is_none_or(|u| u.user.disabled)
    {
        return Err(OAuthError::invalid_grant("the user of this refresh token is disabled or deleted"));
    }
    let granted: Vec<String> = rec.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let scopes = match form.get("scope") {
        None => granted.clone(),
        Some(s) => {
            let req = scope::parse(s)?;
            if let Some(bad) = req.iter().find(|s| !granted.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("scope {bad:?} was not granted to this refresh token")));
            }
            req
        }
    };
    let audience = super::narrow_audience(&rec.audience, form, "this refresh token")?;
    let subject = match (&rec.user_id, &rec.username) {
        (Some(id), Some(name)) => Some(Subject { user_id: id.clone(), username: name.clone() }),
        _ => None,
    };
    Ok(Validated {
        grant: GRANT_TYPE,
        subject,
        scopes,
        audience,
        grant_id: rec.grant_id.clone(),
        session_id: rec.session_id.clone(),
        auth_time: rec.auth_time,
        nonce: None,
        issue_refresh: !app.fapi2(),
        precondition: if app.fapi2() {
            Precondition::KeepRefresh(rec.token_hash.clone())
        } else {
            Precondition::RotateRefresh(rec.token_hash.clone())
        },
        inherited: Some(Inherited {
            kept: app.fapi2().then(|| presented.to_string()),
            binding: rec.binding.clone(),
            family_id: rec.family_id.clone(),
            refresh_scope: rec.scope.clone(),
            refresh_expires_at: rec.expires_at,
        }),
        act: None,
        preset_binding: None,
    })
}
