//! `client_secret_post` (RFC 6749 §2.3.1): `client_id` and `client_secret` in the form body.

use crate::error::OAuthError;
use crate::model::AppRecord;

pub fn verify(app: &AppRecord, secret: &str) -> Result<(), OAuthError> {
    super::verify_secret(app, secret)
}
