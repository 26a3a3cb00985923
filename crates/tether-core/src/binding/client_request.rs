//! `client-request` binding (B-1, B-2): the token request's `tokenBindingId` parameter, on every
//! grant. Absent or blank: unbound. 256 characters or more: `invalid_request`. The value is the
//! client's own secret (B-11): only its hash and reference are stored. A browser logout never
//! revokes these tokens (B-6).

use async_trait::async_trait;

use super::{BindContext, Evidence, SessionTie, TokenBinder, record};
use crate::error::OAuthError;
use crate::model::BindingType;
use crate::provider::Provider;
use crate::store::BindingRecord;

pub const PARAM: &str = "tokenBindingId";
pub const MAX_LEN: usize = 255;

pub struct ClientRequest;

#[async_trait]
impl TokenBinder for ClientRequest {
    fn kind(&self) -> BindingType {
        BindingType::ClientRequest
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        match ctx.form.get(PARAM).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if v.chars().count() > MAX_LEN => {
                Err(OAuthError::invalid_request(format!("{PARAM} must be shorter than 256 characters")))
            }
            Some(v) => Ok(Some(record(BindingType::ClientRequest, v, false))),
        }
    }

    /// B-5: the back channel that holds the value is trusted to have presented it.
    async fn proven(&self, _: &Provider, _: &BindingRecord, _: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(true)
    }

    fn session_tie(&self) -> SessionTie {
        SessionTie::Never
    }
}
