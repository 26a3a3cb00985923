//! `device-flow` binding (B-1, B-2): tokens from the device authorization grant are bound to the
//! `device_code` they were polled with, so each device authorization is its own token family
//! (B-3). The code is a secret: only its hash and MD5 reference are stored (B-11). Other grants
//! are issued unbound.

use super::{BindContext, TokenBinder};
use crate::error::OAuthError;
use crate::model::{BindingType, GrantType};

pub struct DeviceFlow;

impl TokenBinder for DeviceFlow {
    fn kind(&self) -> BindingType {
        BindingType::DeviceFlow
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<String>, OAuthError> {
        if ctx.grant != GrantType::DeviceCode {
            return Ok(None);
        }
        Ok(Some(ctx.form.require("device_code")?.to_string()))
    }
}
