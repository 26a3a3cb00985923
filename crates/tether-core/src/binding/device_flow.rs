//! `device-flow` binding (B-1, B-2): tokens from the device authorization grant are bound to the
//! `device_code` they were polled with, so each device authorization is its own token family
//! (B-3). The code is a secret: only its hash and MD5 reference are stored (B-11). Other grants
//! are issued unbound. A browser logout never revokes these tokens (B-6). B-10: the app needs the
//! device_code grant.

use async_trait::async_trait;

use super::{BindContext, Evidence, SessionTie, TokenBinder, record};
use crate::error::OAuthError;
use crate::model::{App, BindingType, GrantType};
use crate::provider::Provider;
use crate::store::BindingRecord;

pub struct DeviceFlow;

#[async_trait]
impl TokenBinder for DeviceFlow {
    fn kind(&self) -> BindingType {
        BindingType::DeviceFlow
    }

    fn check_app(&self, app: &App) -> Result<(), String> {
        super::requires_grant(app, GrantType::DeviceCode, "device_code")
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        if ctx.grant != GrantType::DeviceCode {
            return Ok(None);
        }
        Ok(Some(record(BindingType::DeviceFlow, ctx.form.require("device_code")?, false)))
    }

    /// B-5: the device holds its tokens; there is nothing further to present.
    async fn proven(&self, _: &Provider, _: &BindingRecord, _: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(true)
    }

    fn session_tie(&self) -> SessionTie {
        SessionTie::Never
    }
}
