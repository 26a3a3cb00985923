//! Token revocation (RFC 7009). Revoking either token of a pair revokes both; revoking a refresh
//! token revokes its whole rotation family. Unknown tokens answer 200 (§2.2).

use crate::binding::registry;
use crate::client_auth;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::provider::Provider;
use crate::token::{self, Found, MAX_TOKEN_LEN};

pub async fn handle(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    evidence: &crate::binding::Evidence<'_>,
) -> Result<(), OAuthError> {
    let caller = client_auth::authenticate(p, form, authorization, evidence.peer_cert).await?;
    let token = form.require("token")?;
    if token.len() > MAX_TOKEN_LEN {
        return Ok(());
    }
    let now = p.now();
    match token::find(p, token, form.get("token_type_hint").map(str::trim)).await? {
        None => Ok(()),
        Some(Found::Access(a)) => {
            if a.client_id != caller.app.client_id {
                return Err(OAuthError::invalid_request("the token was issued to another client; it was not revoked"));
            }
            // B-5: with --validate-binding, revoking a bound access token takes the binding's
            // proof (the same certificate, the atbv cookie, the live session).
            if let Some(b) = &a.binding
                && caller.app.validate_binding
                && !registry::binder(b.kind).proven(p, b, evidence).await?
            {
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "Valid token binding value not present in the request.",
                ));
            }
            p.store.revoke_access(&a.token_hash, now).await?;
            Ok(())
        }
        Some(Found::Refresh(r)) => {
            if r.client_id != caller.app.client_id {
                return Err(OAuthError::invalid_request("the token was issued to another client; it was not revoked"));
            }
            p.store.revoke_family(&r.family_id, now).await?;
            Ok(())
        }
    }
}
