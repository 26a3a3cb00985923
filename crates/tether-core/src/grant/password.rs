//! `password` (RFC 6749 §4.3): resource owner password credentials. The password is checked with
//! argon2id on a blocking thread; an unknown user costs the same time as a wrong password.

use async_trait::async_trait;

use super::{Grant, GrantContext, Subject, Validated, requested_audience, requested_scopes};
use crate::error::OAuthError;
use crate::form::Form;
use crate::login::{check_credentials, login_blocked, record_login};
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
        handle(ctx.p, ctx.app, ctx.form).await
    }
}

async fn handle(p: &Provider, app: &App, form: &Form) -> Result<Validated, OAuthError> {
    let username = form.require("username")?;
    let password = Secret::new(form.require("password")?);
    let scopes = requested_scopes(app, form)?;
    let audience = requested_audience(app, form)?;
    if let Some(wait) = login_blocked(p, username, None) {
        return Err(OAuthError::invalid_grant(format!(
            "too many failed sign-in attempts for this user; try again in {}",
            crate::throttle::wait_text(wait)
        )));
    }
    let result = check_credentials(p, username, password).await;
    record_login(p, username, None, result.is_ok());
    let user = result?;
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
