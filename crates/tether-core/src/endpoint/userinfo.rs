//! OpenID Connect userinfo (Core §5.3) with Bearer tokens (RFC 6750).

use serde_json::{Value, json};

use crate::binding::{Evidence, proven};
use crate::error::{ErrorCode, OAuthError};
use crate::model::BindingType;
use crate::provider::Provider;
use crate::scope;
use crate::secret::hash_secret;
use crate::token::MAX_TOKEN_LEN;
use crate::token::id_token::profile_claims;

/// `evidence`: what the request presents. A certificate-bound token is only accepted with its
/// certificate (token-binding.md B-5, RFC 8705 §3); with `--validate-binding`, the other binding
/// types are checked too.
/// `dpop`: `Some(proof header)` when the request used the `DPoP` scheme (RFC 9449 §7), with the
/// request `method` the proof must name.
pub async fn handle(
    p: &Provider,
    token: &str,
    dpop: Option<Option<&str>>,
    method: &str,
    evidence: &Evidence<'_>,
) -> Result<Value, OAuthError> {
    let bad = || OAuthError::invalid_token("the access token is unknown, expired or revoked");
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad());
    }
    let rec = p.store.find_access(&hash_secret(token)).await?.ok_or_else(bad)?;
    if !rec.active(p.now()) || !crate::binding::sso_session::access_alive(p, &rec).await? {
        return Err(bad());
    }
    let bound_dpop = rec.binding.as_ref().filter(|b| b.kind == BindingType::Dpop);
    let proof = match (bound_dpop, dpop) {
        (Some(_), None) => {
            return Err(OAuthError::invalid_token("the access token is DPoP-bound: use the DPoP scheme with a proof"));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_token(
                "the DPoP scheme was used with an access token that is not DPoP-bound",
            ));
        }
        (Some(_), Some(None)) => {
            return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP header is missing"));
        }
        (Some(_), Some(Some(h))) => {
            Some(crate::binding::dpop::check_proof(p, h, method, "/oauth2/userinfo", Some(token)).await?)
        }
        (None, None) => None,
    };
    let evidence = Evidence { dpop: proof.as_ref(), ..*evidence };
    let evidence = &evidence;
    if let Some(b) = &rec.binding {
        if b.kind == BindingType::Dpop {
            if !proven(p, b, evidence).await? {
                return Err(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "the DPoP proof is not signed with the key the access token is bound to",
                ));
            }
        } else if b.kind == BindingType::Certificate {
            if !proven(p, b, evidence).await? {
                return Err(OAuthError::invalid_token(
                    "the access token is bound to a client certificate that this request did not present",
                ));
            }
        } else {
            let validate = p.find_app(&rec.client_id).await?.is_some_and(|a| a.app.validate_binding);
            if validate && !proven(p, b, evidence).await? {
                return Err(OAuthError::invalid_request("Valid token binding value not present in the request."));
            }
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
