//! `password` (RFC 6749 §4.3): resource owner password credentials, checked by
//! [`crate::login::sign_in`] (throttled per username and client, and per username and address;
//! bounded argon2id; an unknown user costs the same time as a wrong password).

use async_trait::async_trait;

use super::{Grant, GrantContext, Subject, Validated, requested_audience, requested_scopes};
use crate::error::OAuthError;
use crate::form::Form;
use crate::login::{Attempt, Refused, Via, sign_in};
use crate::model::{App, GrantType};
use crate::provider::Provider;
use crate::secret::Secret;
use crate::store::Precondition;

pub const GRANT_TYPE: GrantType = GrantType::Password;

pub struct Password;

#[async_trait]
impl Grant for Password {
    fn grant_type(&self) -> GrantType {
        GRANT_TYPE
    }

    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError> {
        handle(ctx.p, ctx.app, ctx.form, ctx.addr).await
    }
}

async fn handle(p: &Provider, app: &App, form: &Form, addr: Option<&str>) -> Result<Validated, OAuthError> {
    // Trimmed: a seed command's line continuation puts a space before the next `&`.
    let username = form.require("username")?.trim();
    let password = Secret::new(form.require("password")?);
    let scopes = requested_scopes(app, form)?;
    let audience = requested_audience(app, form)?;
    let attempt = Attempt { username, password, addr, via: Via::PasswordGrant { client_id: &app.client_id } };
    let (user, _) = sign_in(p, attempt).await.map_err(Refused::into_oauth)?;
    Ok(Validated {
        grant: GRANT_TYPE,
        subject: Some(Subject { user_id: user.user.id, username: user.user.username }),
        scopes,
        audience,
        grant_id: None,
        session_id: None,
        auth_time: Some(p.now()),
        nonce: None,
        issue_refresh: app.allows_grant(GrantType::RefreshToken),
        precondition: Precondition::None,
        inherited: None,
        act: None,
        preset_binding: None,
    })
}
