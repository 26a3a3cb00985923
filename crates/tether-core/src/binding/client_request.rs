//! `client-request` binding (B-1, B-2): the token request's `tokenBindingId` parameter, on every
//! grant. Absent or blank: unbound. 256 characters or more: `invalid_request`.

use super::{BindContext, TokenBinder};
use crate::error::OAuthError;
use crate::model::BindingType;

pub const PARAM: &str = "tokenBindingId";
pub const MAX_LEN: usize = 255;

pub struct ClientRequest;

impl TokenBinder for ClientRequest {
    fn kind(&self) -> BindingType {
        BindingType::ClientRequest
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<String>, OAuthError> {
        match ctx.form.get(PARAM).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if v.chars().count() > MAX_LEN => {
                Err(OAuthError::invalid_request(format!("{PARAM} must be shorter than 256 characters")))
            }
            Some(v) => Ok(Some(v.to_string())),
        }
    }
}
