//! `client_secret_jwt` (OpenID Connect Core §9, RFC 7523): the client signs its assertion with
//! HMAC (HS256, HS384 or HS512) under its client secret. Checking an HMAC needs the secret itself,
//! so an app registered for this method — and only such an app — keeps its secret sealed under the
//! master key ([`crate::model::AppRecord::sealed_secret`]); every other app keeps only a hash. The
//! trade-off: whoever holds both the database and the master key can read these secrets, where a
//! hash would not give them up. `private_key_jwt` has no shared secret at all and is preferred.
//!
//! The claims and the replay check are [`super::jwt_bearer`]'s.

use aws_lc_rs::hmac;

use super::jwt_bearer::{self, HMAC_ALGS};
use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::provider::Provider;

/// Verify a `client_secret_jwt` assertion sent to `endpoint` (a path).
pub async fn verify(p: &Provider, app: &AppRecord, raw: &str, endpoint: &str) -> Result<(), OAuthError> {
    let a = jwt_bearer::parse(raw)?;
    let algorithm = match a.alg.as_str() {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => {
            return Err(OAuthError::invalid_client(format!(
                "client_assertion alg {other} is not one of client_secret_jwt's ({})",
                HMAC_ALGS.join(", ")
            )));
        }
    };
    let secret =
        unseal(p, app).ok_or_else(|| OAuthError::invalid_client("the client's sealed secret does not open"))?;
    let key = hmac::Key::new(algorithm, &secret);
    // Constant time (aws-lc's verify).
    if hmac::verify(&key, a.signing_input.as_bytes(), &a.signature).is_err() {
        return Err(OAuthError::invalid_client("client_assertion HMAC does not verify with the client's secret"));
    }
    let (replay_key, until) = jwt_bearer::check_claims(p, &a, &app.app.client_id, endpoint, false)?;
    jwt_bearer::spend(p, &replay_key, until).await
}

/// The app's secret, when it has a sealed one that opens under this master key.
pub fn unseal(p: &Provider, app: &AppRecord) -> Option<Vec<u8>> {
    let sealed = crate::secret::b64url_decode(app.sealed_secret.as_deref()?)?;
    p.master.open(&format!("{}{}", AppRecord::SEAL_PREFIX, app.app.client_id), &sealed).ok()
}

/// Seal `secret` for the app `client_id` (stored as [`AppRecord::sealed_secret`]).
pub fn seal(p: &Provider, client_id: &str, secret: &str) -> String {
    crate::secret::b64url(&p.master.seal(&format!("{}{client_id}", AppRecord::SEAL_PREFIX), secret.as_bytes()))
}
