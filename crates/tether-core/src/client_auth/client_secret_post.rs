//! `client_secret_post` (RFC 6749 §2.3.1): `client_id` and `client_secret` in the form body. The
//! secret check itself (constant time, against the stored hash) is shared with
//! `client_secret_basic`, which carries the same secret in a header.

use crate::error::OAuthError;
use crate::model::AppRecord;

pub fn verify(app: &AppRecord, secret: &str) -> Result<(), OAuthError> {
    match &app.secret_hash {
        Some(h) if crate::secret::verify_secret(secret, h) => Ok(()),
        _ => Err(OAuthError::invalid_client("wrong client secret")),
    }
}
