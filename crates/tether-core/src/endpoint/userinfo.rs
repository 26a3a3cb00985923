//! OpenID Connect userinfo (Core §5.3): a protected resource of Tether's own. The presented token
//! goes through the same resource-side check as at the gateway ([`crate::resource`]): bound
//! certificates and DPoP keys are always proven (token-binding.md B-5, RFC 8705 §3, RFC 9449 §7);
//! with `--validate-binding` the other binding types are proven too, by their binders.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::paths;
use crate::binding::registry::binder;
use crate::binding::{Evidence, dpop};
use crate::dpop::ProofOk;
use crate::error::{ErrorCode, OAuthError};
use crate::provider::Provider;
use crate::resource::{self, Confirmation, Credentials, Policy, ProofChecker, ResourceRequest};
use crate::scope;
use crate::secret::hash_secret;
use crate::token::id_token::profile_claims;
use crate::token::liveness;

/// DPoP proofs at the authorization server: its issuer (or mTLS alias) URLs, its replay table.
pub(crate) struct Proofs<'a>(pub(crate) &'a Provider);

#[async_trait]
impl ProofChecker for Proofs<'_> {
    fn verify(&self, proof: &str, method: &str, path: &str, token: &str) -> Result<ProofOk, OAuthError> {
        dpop::verify_proof(self.0, proof, method, path, Some(token))
    }
    async fn spend(&self, ok: &ProofOk) -> Result<(), OAuthError> {
        dpop::spend(self.0, ok).await
    }
}

pub struct UserinfoRequest<'a> {
    pub method: &'a str,
    pub credentials: &'a Credentials,
    /// Every `DPoP` header value.
    pub dpop: Vec<&'a [u8]>,
    /// The client certificate and cookies.
    pub evidence: Evidence<'a>,
}

/// The answer, and the app the presented token was issued to (`None` when the token is unknown):
/// the adapter lets a browser read the answer only from an origin of that app (CORS).
pub async fn handle(p: &Provider, req: UserinfoRequest<'_>) -> (Option<String>, Result<Value, OAuthError>) {
    let mut client_id = None;
    let answer = claims(p, req, &mut client_id).await;
    (client_id, answer)
}

async fn claims(p: &Provider, req: UserinfoRequest<'_>, client_id: &mut Option<String>) -> Result<Value, OAuthError> {
    let bad = || OAuthError::invalid_token("the access token is unknown, expired or revoked");
    let token = req.credentials.token.as_str();
    let rec = p.store.find_access(&hash_secret(token)).await?.ok_or_else(bad)?;
    *client_id = Some(rec.client_id.clone());
    if !rec.active(p.now()) || !liveness::access_alive(p, &rec).await? {
        return Err(bad());
    }
    let thumbprint = req.evidence.peer_cert.map(|c| c.thumbprint());
    let rr = ResourceRequest {
        method: req.method,
        path: paths::USERINFO,
        credentials: req.credentials,
        dpop: req.dpop,
        cert_thumbprint: thumbprint.as_deref(),
    };
    let mismatch = |b: &crate::store::BindingRecord| {
        let actor = crate::audit::Actor::client(&rec.client_id).with_user(rec.username.as_deref());
        let detail = json!({"target": rec.jti, "where": "userinfo", "binding_type": b.kind.as_str()});
        p.event(crate::audit::kind::BINDING_MISMATCH, &actor, detail);
    };
    let checked = resource::check(&rr, &Confirmation::of(rec.binding.as_ref()), Policy::OPTIONAL, &Proofs(p)).await;
    if let (Err(_), Some(b)) = (&checked, &rec.binding) {
        mismatch(b);
    }
    checked?;
    if let Some(b) = &rec.binding {
        let binder = binder(b.kind);
        let validate = p.find_app(&rec.client_id).await?.is_some_and(|a| a.app.validate_binding);
        if !binder.sender_constrained() && validate && !binder.proven(p, b, &req.evidence).await? {
            mismatch(b);
            return Err(OAuthError::invalid_request("Valid token binding value not present in the request."));
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
