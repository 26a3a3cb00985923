//! `password` (RFC 6749 §4.3): resource owner password credentials. The password is checked with
//! argon2id on a blocking thread; an unknown user costs the same time as a wrong password.

use super::{Subject, Validated, requested_audience, requested_scopes};
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::provider::Provider;
use crate::store::Precondition;

pub const GRANT_TYPE: GrantType = GrantType::Password;

pub async fn handle(p: &Provider, app: &App, form: &Form) -> Result<Validated, OAuthError> {
    let username = form.require("username")?;
    let password = form.require("password")?.to_string();
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

/// Seconds until this username (or source address) may try a password again, if throttled.
pub fn login_blocked(p: &Provider, username: &str, addr: Option<&str>) -> Option<i64> {
    let now = p.now();
    p.throttles
        .login_user
        .blocked(username, now)
        .into_iter()
        .chain(addr.and_then(|a| p.throttles.login_addr.blocked(a, now)))
        .max()
}

/// Count a failed attempt (or forget the username's failures after a success).
pub fn record_login(p: &Provider, username: &str, addr: Option<&str>, ok: bool) {
    let now = p.now();
    if ok {
        p.throttles.login_user.clear(username);
        return;
    }
    p.throttles.login_user.fail(username, now);
    if let Some(a) = addr {
        p.throttles.login_addr.fail(a, now);
    }
}

/// Shared with the login page.
pub async fn check_credentials(
    p: &Provider,
    username: &str,
    password: String,
) -> Result<crate::model::UserRecord, OAuthError> {
    let user = p.store.get_user_by_name(username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => crate::password::verify(&password, &h),
        None => {
            crate::password::verify(&password, crate::password::dummy_hash());
            false
        }
    })
    .await
    .map_err(|e| OAuthError::server(e.to_string()))?;
    match user {
        Some(u) if ok => Ok(u),
        _ => Err(OAuthError::invalid_grant("invalid username or password")),
    }
}
