//! `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4–3.5, token-binding.md B-8): the
//! device polls until the user decides. Each poll is recorded; polling faster than the interval
//! answers `slow_down` and adds 5 seconds to it. An approved code yields tokens once: it is
//! consumed in the same transaction that issues them ([`Precondition::ConsumeDevice`]).
//!
//! Device tokens carry no login session: a browser logout never revokes them (B-6).

use async_trait::async_trait;

use super::{Grant, GrantContext, Subject, Validated};
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::provider::Provider;
use crate::secret::hash_secret;
use crate::store::{DeviceStatus, Precondition};

pub const GRANT_TYPE: GrantType = GrantType::DeviceCode;

pub struct DeviceCode;

#[async_trait]
impl Grant for DeviceCode {
    fn grant_type(&self) -> GrantType {
        GRANT_TYPE
    }

    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError> {
        handle(ctx.p, ctx.app, ctx.form).await
    }
}

async fn handle(p: &Provider, app: &App, form: &Form) -> Result<Validated, OAuthError> {
    let device_code = form.require("device_code")?;
    let hash = hash_secret(device_code);
    let now = p.now();
    let Some(rec) = p.store.find_device(&hash).await? else {
        return Err(OAuthError::invalid_grant("unknown device_code"));
    };
    if rec.client_id != app.client_id {
        return Err(OAuthError::invalid_grant("the device_code was issued to another client"));
    }
    if rec.status == DeviceStatus::Used {
        return Err(OAuthError::invalid_grant("the device_code has already been used"));
    }
    if rec.expires_at <= now {
        return Err(OAuthError::new(
            ErrorCode::ExpiredToken,
            "the device_code has expired; start the device flow again",
        ));
    }
    match rec.status {
        DeviceStatus::Pending => {
            if let Some(last) = rec.last_polled
                && now - last < rec.interval
            {
                let interval = rec.interval + 5;
                p.store.poll_device(&hash, now, interval).await?;
                return Err(OAuthError::new(
                    ErrorCode::SlowDown,
                    format!("polling too fast: wait at least {interval} seconds between requests"),
                ));
            }
            p.store.poll_device(&hash, now, rec.interval).await?;
            Err(OAuthError::new(ErrorCode::AuthorizationPending, "the user has not yet approved this device"))
        }
        DeviceStatus::Denied => Err(OAuthError::new(ErrorCode::AccessDenied, "the user denied the request")),
        DeviceStatus::Used => Err(OAuthError::invalid_grant("the device_code has already been used")),
        DeviceStatus::Approved => {
            let user_id =
                rec.user_id.clone().ok_or_else(|| OAuthError::invalid_grant("the device authorization has no user"))?;
            let user = p
                .store
                .get_user(&user_id)
                .await?
                .ok_or_else(|| OAuthError::invalid_grant("the user of this authorization no longer exists"))?;
            Ok(Validated {
                grant: GRANT_TYPE,
                subject: Some(Subject { user_id: user.user.id, username: user.user.username }),
                scopes: rec.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                audience: rec.audience.clone(),
                grant_id: None,
                session_id: None,
                auth_time: rec.auth_time,
                nonce: None,
                issue_refresh: app.allows_grant(GrantType::RefreshToken),
                precondition: Precondition::ConsumeDevice(hash),
                inherited: None,
                act: None,
                preset_binding: None,
            })
        }
    }
}
