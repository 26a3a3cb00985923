//! Token formats and their lookup: opaque access tokens, RFC 9068 JWT access tokens, ID tokens,
//! refresh tokens.

pub mod id_token;
pub mod jwt;
pub mod liveness;
pub mod opaque;

use crate::error::OAuthError;
use crate::provider::Provider;
use crate::secret::hash_secret;
use crate::store::{AccessTokenRecord, RefreshTokenRecord};

/// A presented token, looked up by its hash.
#[derive(Debug)]
pub enum Found {
    Access(AccessTokenRecord),
    Refresh(RefreshTokenRecord),
}

/// Look a token up in the order the hint suggests (RFC 7662 §2.1, RFC 7009 §2.1: the hint only
/// orders the search).
pub async fn find(p: &Provider, token: &str, hint: Option<&str>) -> Result<Option<Found>, OAuthError> {
    let h = hash_secret(token);
    let refresh_first = hint == Some("refresh_token");
    if refresh_first && let Some(r) = p.store.find_refresh(&h).await? {
        return Ok(Some(Found::Refresh(r)));
    }
    if let Some(a) = p.store.find_access(&h).await? {
        // A JWT signed with a key that has left the JWKS (retired by an operator) no longer
        // verifies anywhere, so it is unknown here too.
        if a.token_type == crate::model::TokenType::Jwt && !signed_by_published_key(p, token) {
            return Ok(None);
        }
        return Ok(Some(Found::Access(a)));
    }
    if !refresh_first && let Some(r) = p.store.find_refresh(&h).await? {
        return Ok(Some(Found::Refresh(r)));
    }
    Ok(None)
}

/// Is this JWT's `kid` one of the keys the JWKS publishes now?
pub fn signed_by_published_key(p: &Provider, jwt: &str) -> bool {
    let Some(header) = jwt.split('.').next().and_then(crate::secret::b64url_decode) else { return false };
    let Ok(h) = serde_json::from_slice::<serde_json::Value>(&header) else { return false };
    let Some(kid) = h.get("kid").and_then(serde_json::Value::as_str) else { return false };
    p.keys().jwks.iter().any(|k| k.get("kid").and_then(serde_json::Value::as_str) == Some(kid))
}

/// Tokens never exceed this size; anything larger is not ours and is not hashed or looked up.
pub const MAX_TOKEN_LEN: usize = 8192;
