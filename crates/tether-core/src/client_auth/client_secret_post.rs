//! `client_secret_post` (RFC 6749 §2.3.1): `client_id` and `client_secret` in the form body. The
//! secret check itself (constant time, against the stored hash) is shared with
//! `client_secret_basic`, which carries the same secret in a header.

use crate::error::OAuthError;
use crate::model::AppRecord;

/// The current secret, or a regenerated one's predecessor within its grace period (`now` < its
/// `until`).
pub fn verify(app: &AppRecord, secret: &str, now: i64) -> Result<(), OAuthError> {
    let current = app.secret_hash.as_deref().is_some_and(|h| crate::secret::verify_secret(secret, h));
    let previous =
        app.previous_secret.as_ref().is_some_and(|p| now < p.until && crate::secret::verify_secret(secret, &p.hash));
    if current || previous { Ok(()) } else { Err(OAuthError::invalid_client("wrong client secret")) }
}
