//! A pushed authorization request's life at the authorization endpoint (RFC 9126 §4): a
//! `request_uri` stands for the parameters its client pushed (to `endpoint::par`); its first use
//! must come within [`LIFETIME`] seconds of the push, it then serves one authorization for at
//! most [`USE_WINDOW`] seconds and is consumed when a code or an error is issued. Its own module
//! so that the authorization endpoint and the push endpoint (which validates through the
//! authorization endpoint) do not depend on each other.

use crate::error::OAuthError;
use crate::form::Form;
use crate::provider::Provider;
use crate::secret::hash_secret;

/// Seconds from the push to the first use.
pub const LIFETIME: i64 = 60;
/// Seconds a request stays usable after its first use (sign-in, page reloads), until consumed.
pub const USE_WINDOW: i64 = 600;
/// RFC 9126 §2.2.
pub const URN_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The pushed parameters a `request_uri` stands for, for `client_id`; marks the first use. The
/// error says what is wrong (shown on a page: the request cannot be trusted to redirect).
pub async fn take(p: &Provider, request_uri: &str, client_id: &str) -> Result<(String, Form), OAuthError> {
    let gone = || {
        OAuthError::invalid_request(
            "request_uri is unknown, expired or already used; the application must push its request again",
        )
    };
    let random = request_uri.strip_prefix(URN_PREFIX).ok_or_else(gone)?;
    let uri_hash = hash_secret(random);
    // Another client's request_uri is as unknown (and left untouched).
    let rec = p.store.use_par(&uri_hash, client_id, p.now(), USE_WINDOW).await?.ok_or_else(gone)?;
    Ok((uri_hash, Form::from_pairs(rec.params)))
}

/// A pushed request's authorization is over (a code or an error was issued): it cannot be used
/// again. Returns false when it already was.
pub async fn consume(p: &Provider, uri_hash: &str) -> Result<bool, OAuthError> {
    Ok(p.store.consume_par(uri_hash, p.now()).await?)
}
