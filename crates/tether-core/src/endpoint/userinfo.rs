//! OpenID Connect userinfo (Core §5.3) with Bearer tokens (RFC 6750).

use serde_json::{Value, json};

use crate::error::{ErrorCode, OAuthError};
use crate::model::BindingType;
use crate::provider::Provider;
use crate::scope;
use crate::secret::hash_secret;
use crate::token::MAX_TOKEN_LEN;
use crate::token::id_token::profile_claims;

/// `peer_cert`: the request's client certificate (a certificate-bound token is only
/// accepted with it: token-binding.md B-5, RFC 8705 §3).
pub async fn handle(
    p: &Provider,
    token: &str,
    peer_cert: Option<&crate::cert::ClientCert>,
) -> Result<Value, OAuthError> {
    let bad = || OAuthError::invalid_token("the access token is unknown, expired or revoked");
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad());
    }
    let rec = p.store.find_access(&hash_secret(token)).await?.ok_or_else(bad)?;
    if !rec.active(p.now()) {
        return Err(bad());
    }
    if let Some(b) = rec.binding.as_ref().filter(|b| b.kind == BindingType::Certificate) {
        let proven = peer_cert.is_some_and(|c| crate::binding::matches(b, &c.thumbprint()));
        if !proven {
            return Err(OAuthError::invalid_token(
                "the access token is bound to a client certificate that this request did not present",
            ));
        }
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
