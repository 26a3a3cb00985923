//! `none`: public clients identify themselves with `client_id` only (RFC 6749 §2.1). They hold no
//! secret, so every grant they use is protected otherwise (PKCE for codes).

use crate::error::OAuthError;
use crate::model::AppRecord;

pub fn verify(app: &AppRecord) -> Result<(), OAuthError> {
    if app.app.public {
        Ok(())
    } else {
        Err(OAuthError::invalid_client("this client is confidential and must authenticate"))
    }
}
