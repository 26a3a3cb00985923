//! OpenID Connect userinfo (Core §5.3) with Bearer tokens (RFC 6750).

use serde_json::{Value, json};

use crate::error::{ErrorCode, OAuthError};
use crate::provider::Provider;
use crate::scope;
use crate::secret::hash_secret;
use crate::token::MAX_TOKEN_LEN;
use crate::token::id_token::profile_claims;

pub async fn handle(p: &Provider, token: &str) -> Result<Value, OAuthError> {
    let bad = || OAuthError::invalid_token("the access token is unknown, expired or revoked");
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad());
    }
    let rec = p.store.find_access(&hash_secret(token)).await?.ok_or_else(bad)?;
    if !rec.active(p.now()) {
        return Err(bad());
    }
    if !scope::contains(&rec.scope, "openid") {
        return Err(OAuthError::new(ErrorCode::InsufficientScope, "the access token lacks the openid scope"));
    }
    let user_id = rec.user_id.as_deref().ok_or_else(|| OAuthError::invalid_token("the access token has no user"))?;
    let user = p.store.get_user(user_id).await?.ok_or_else(bad)?;
    let mut out = json!({});
    profile_claims(&user, &rec.scope, &mut out);
    Ok(out)
}
