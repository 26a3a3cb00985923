//! `authorization_code` (RFC 6749 §4.1.3) with PKCE (RFC 7636). Codes are single-use: the code is
//! consumed atomically with issuance ([`Precondition::ConsumeCode`]); a replayed code revokes the
//! tokens issued from it.

use async_trait::async_trait;

use super::{Grant, GrantContext, Subject, Validated};
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::pkce;
use crate::provider::Provider;
use crate::secret::hash_secret;
use crate::store::Precondition;

pub const GRANT_TYPE: GrantType = GrantType::AuthorizationCode;

pub struct AuthorizationCode;

#[async_trait]
impl Grant for AuthorizationCode {
    fn grant_type(&self) -> GrantType {
        GRANT_TYPE
    }

    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError> {
        handle(ctx.p, ctx.app, ctx.form).await
    }
}

async fn handle(p: &Provider, app: &App, form: &Form) -> Result<Validated, OAuthError> {
    let code = form.require("code")?;
    let code_hash = hash_secret(code);
    let Some(rec) = p.store.find_code(&code_hash).await? else {
        return Err(OAuthError::invalid_grant("unknown or expired authorization code"));
    };
    if rec.client_id != app.client_id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if rec.used_at.is_some() {
        p.store.revoke_grant(&rec.grant_id, p.now()).await?;
        return Err(OAuthError::invalid_grant(
            "the authorization code has already been used; tokens issued from it have been revoked",
        ));
    }
    if rec.expires_at <= p.now() {
        return Err(OAuthError::invalid_grant("the authorization code has expired"));
    }
    match form.get("redirect_uri") {
        Some(r) if r == rec.redirect_uri => {}
        Some(_) => return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request")),
        None => return Err(OAuthError::invalid_request("missing parameter: redirect_uri")),
    }
    match (&rec.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let method =
                rec.code_challenge_method.as_deref().and_then(pkce::Method::parse).unwrap_or(pkce::Method::Plain);
            pkce::verify(method, challenge, verifier)?;
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required (PKCE)")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier sent but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    let user = p
        .store
        .get_user(&rec.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the user of this authorization no longer exists"))?;
    Ok(Validated {
        grant: GRANT_TYPE,
        subject: Some(Subject { user_id: user.user.id, username: user.user.username }),
        scopes: rec.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        audience: super::narrow_audience(&rec.audience, form, "this authorization")?,
        grant_id: Some(rec.grant_id.clone()),
        session_id: Some(rec.session_id.clone()),
        auth_time: Some(rec.auth_time),
        nonce: rec.nonce.clone(),
        issue_refresh: app.allows_grant(GrantType::RefreshToken),
        precondition: Precondition::ConsumeCode(code_hash),
        inherited: None,
        act: None,
        preset_binding: rec.binding.clone(),
    })
}
