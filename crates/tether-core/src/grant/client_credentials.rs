//! `client_credentials` (RFC 6749 §4.4): the client acts for itself. No refresh token (§4.4.3).

use async_trait::async_trait;

use super::{Grant, GrantContext, Validated, requested_audience, requested_scopes};
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::store::Precondition;

pub const GRANT_TYPE: GrantType = GrantType::ClientCredentials;

pub struct ClientCredentials;

#[async_trait]
impl Grant for ClientCredentials {
    fn grant_type(&self) -> GrantType {
        GRANT_TYPE
    }

    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError> {
        handle(ctx.app, ctx.form)
    }
}

fn handle(app: &App, form: &Form) -> Result<Validated, OAuthError> {
    if app.public {
        return Err(OAuthError::unauthorized_client("public clients cannot use client_credentials"));
    }
    let mut scopes = requested_scopes(app, form)?;
    if form.get("scope").is_none() {
        // The default: the app's scopes that make sense without a user.
        scopes.retain(|s| !super::USER_SCOPES.contains(&s.as_str()));
    }
    // openid needs a user, and client_credentials has none: the token is issued without it (as
    // WSO2 and Keycloak do; the response's `scope` shows what was granted, RFC 6749 §3.3) rather
    // than refused, so a client library that always adds openid still works.
    scopes.retain(|s| s != "openid");
    Ok(Validated {
        grant: GRANT_TYPE,
        subject: None,
        scopes,
        audience: requested_audience(app, form)?,
        grant_id: None,
        session_id: None,
        auth_time: None,
        nonce: None,
        issue_refresh: false,
        precondition: Precondition::None,
        inherited: None,
        act: None,
        preset_binding: None,
    })
}
