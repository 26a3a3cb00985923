//! No binding type (`none`): tokens are bearer tokens — unless the client itself asks for a
//! sender-constrained token. A DPoP proof on the token request binds the token to its key
//! (RFC 9449: standard clients send proofs and expect DPoP tokens), and a `dpop_jkt` on the
//! authorization request binds the code to that key (§10). Such tokens are then `dpop` tokens in
//! every respect.

use async_trait::async_trait;

use super::{AuthzBinding, AuthzContext, BindContext, Evidence, TokenBinder, record};
use crate::error::OAuthError;
use crate::model::BindingType;
use crate::provider::Provider;
use crate::store::BindingRecord;

pub struct NoBinding;

#[async_trait]
impl TokenBinder for NoBinding {
    fn kind(&self) -> BindingType {
        BindingType::None
    }

    async fn at_authorization(&self, _: &Provider, ctx: &AuthzContext<'_>) -> Result<AuthzBinding, OAuthError> {
        Ok(super::dpop::from_dpop_jkt(ctx))
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        Ok(ctx.evidence.dpop.map(|d| record(BindingType::Dpop, &d.jkt, true)))
    }

    /// No stored token has this type; nothing to prove.
    async fn proven(&self, _: &Provider, _: &BindingRecord, _: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(true)
    }
}
