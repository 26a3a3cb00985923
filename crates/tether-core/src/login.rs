//! Signing in with a username and password, shared by the login page and the password grant:
//! the throttles (per username and per source address) and the argon2id check.

use crate::error::OAuthError;
use crate::provider::Provider;
use crate::secret::Secret;

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

/// The user, if the password is theirs. An unknown user costs the same time as a wrong password.
pub async fn check_credentials(
    p: &Provider,
    username: &str,
    password: Secret,
) -> Result<crate::model::UserRecord, OAuthError> {
    let user = p.store.get_user_by_name(username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => crate::password::verify(password.expose(), &h),
        None => {
            crate::password::verify(password.expose(), crate::password::dummy_hash());
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
