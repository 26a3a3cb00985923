//! Token revocation (RFC 7009). Revoking either token of a pair revokes both; revoking a refresh
//! token revokes its whole rotation family. Unknown tokens answer 200 (§2.2).
//!
//! The client authenticates before anything is written: a DPoP proof's `jti` is spent only for an
//! authenticated client, so unauthenticated requests cannot make the store write.

use serde_json::json;

use crate::audit::{Actor, kind};
use crate::binding::{dpop, registry};
use crate::client_auth;
use crate::endpoint::paths;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::provider::Provider;
use crate::token::{self, Found, MAX_TOKEN_LEN};

/// `dpop`: the request's `DPoP` header, unverified (B-5: revoking a DPoP-bound access token with
/// `--validate-binding` takes a proof with its key). `evidence.dpop` is ignored.
///
/// Returns the answer and the client that authenticated (`None` when none did), for the access log.
pub async fn handle(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    dpop: Option<&str>,
    evidence: &crate::binding::Evidence<'_>,
) -> (Option<String>, Result<(), OAuthError>) {
    let mut client_id = None;
    let answer = run(p, form, authorization, dpop, evidence, &mut client_id).await;
    (client_id, answer)
}

async fn run(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    dpop: Option<&str>,
    evidence: &crate::binding::Evidence<'_>,
    client_id: &mut Option<String>,
) -> Result<(), OAuthError> {
    let caller = client_auth::authenticate(p, form, authorization, evidence.peer_cert, paths::REVOKE).await?;
    *client_id = Some(caller.app.client_id.clone());
    let proof = match dpop {
        Some(h) => Some(dpop::check_proof(p, h, "POST", paths::REVOKE, None).await?),
        None => None,
    };
    let evidence = &crate::binding::Evidence { dpop: proof.as_ref(), ..*evidence };
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
                let actor = Actor::client(&caller.app.client_id).with_user(a.username.as_deref());
                let detail = json!({"target": a.jti, "where": "revoke", "binding_type": b.kind.as_str()});
                p.event(kind::BINDING_MISMATCH, &actor, detail);
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "Valid token binding value not present in the request.",
                ));
            }
            p.store.revoke_access(&a.token_hash, now).await?;
            let actor = Actor::client(&caller.app.client_id).with_user(a.username.as_deref());
            p.event(kind::TOKEN_REVOKED, &actor, json!({"target": a.jti, "kind": "access_token"}));
            Ok(())
        }
        Some(Found::Refresh(r)) => {
            if r.client_id != caller.app.client_id {
                return Err(OAuthError::invalid_request("the token was issued to another client; it was not revoked"));
            }
            p.store.revoke_family(&r.family_id, now).await?;
            let actor = Actor::client(&caller.app.client_id).with_user(r.username.as_deref());
            p.event(kind::TOKEN_REVOKED, &actor, json!({"target": r.id, "kind": "refresh_token"}));
            Ok(())
        }
    }
}
