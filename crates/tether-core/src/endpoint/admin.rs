//! Who may call the admin API (admin-api.md A-2): an access token of this Tether whose audience
//! is the admin API (and nothing else), active, its binding proven exactly as at userinfo (a
//! DPoP- or certificate-bound admin token without its proof is refused), carrying `admin:read`
//! for reads and `admin:write` for everything else (`admin:write` implies `admin:read`).
//! Refusals are `invalid_token` (401) or `insufficient_scope` (403), with their challenges.

use super::token::{ADMIN_READ, ADMIN_WRITE, admin_audience};
use super::userinfo::Proofs;
use crate::audit::Actor;
use crate::binding::Evidence;
use crate::binding::dpop;
use crate::dpop::ProofOk;
use crate::error::{ErrorCode, OAuthError};
use crate::provider::Provider;
use crate::resource::{self, Confirmation, Credentials, Policy, ProofChecker, ResourceRequest};
use crate::store::AccessTokenRecord;
use crate::token::liveness;

/// DPoP proofs at the admin API: its own listener's URL (`admin_url`) when it has one, else the
/// issuer's URLs as at userinfo.
struct AdminProofs<'a>(&'a Provider);

#[async_trait::async_trait]
impl ProofChecker for AdminProofs<'_> {
    fn verify(&self, proof: &str, method: &str, path: &str, token: &str) -> Result<ProofOk, OAuthError> {
        match &self.0.config.admin_base {
            Some(base) => dpop::verify_proof_at(self.0, proof, method, &[format!("{base}{path}")], Some(token)),
            None => Proofs(self.0).verify(proof, method, path, token),
        }
    }
    async fn spend(&self, ok: &ProofOk) -> Result<(), OAuthError> {
        Proofs(self.0).spend(ok).await
    }
}

pub struct AdminRequest<'a> {
    pub method: &'a str,
    /// The request path (for a DPoP proof's `htu`).
    pub path: &'a str,
    pub credentials: &'a Credentials,
    pub dpop: Vec<&'a [u8]>,
    pub evidence: Evidence<'a>,
    /// Needs `admin:write` (every method but GET).
    pub write: bool,
}

/// The authenticated caller.
pub struct AdminCaller {
    pub actor: Actor,
    pub client_id: String,
    /// The token carries `admin:write` (a read-only caller does not).
    pub can_write: bool,
}

pub async fn authenticate(p: &Provider, req: AdminRequest<'_>) -> Result<AdminCaller, OAuthError> {
    let aud = admin_audience(p.issuer());
    let presented = Presented {
        method: req.method,
        path: req.path,
        credentials: req.credentials,
        dpop: req.dpop,
        evidence: req.evidence,
    };
    let rec = proven_token(p, presented, &AdminProofs(p), "admin_api", |rec| {
        if rec.audience != [aud.clone()] {
            return Err(OAuthError::invalid_token(format!(
                "this token is not for the admin API (its audience must be {aud}: request the admin:read or admin:write scope)"
            )));
        }
        Ok(())
    })
    .await?;
    let scopes: Vec<&str> = rec.scope.split(' ').collect();
    let allowed = scopes.contains(&ADMIN_WRITE) || (!req.write && scopes.contains(&ADMIN_READ));
    if !allowed {
        let need = if req.write { ADMIN_WRITE } else { ADMIN_READ };
        return Err(OAuthError::new(ErrorCode::InsufficientScope, format!("this request needs the {need} scope")));
    }
    let actor =
        Actor { client_id: Some(rec.client_id.clone()), username: rec.username.clone(), ip: None, user_agent: None };
    Ok(AdminCaller { actor, client_id: rec.client_id, can_write: scopes.contains(&ADMIN_WRITE) })
}

/// An access token presented to one of Tether's own APIs, as received.
pub struct Presented<'a> {
    pub method: &'a str,
    /// The request path (for a DPoP proof's `htu`).
    pub path: &'a str,
    pub credentials: &'a Credentials,
    pub dpop: Vec<&'a [u8]>,
    pub evidence: Evidence<'a>,
}

/// The token of a request to one of Tether's own APIs (the admin API, client registration): one
/// of this Tether's access tokens, active, its session alive, passing `fits` (the API's audience
/// rule), and its binding proven exactly as at userinfo (a bound token without its proof is
/// refused, and recorded as `binding.mismatch` at `place`).
pub async fn proven_token(
    p: &Provider,
    req: Presented<'_>,
    proofs: &dyn ProofChecker,
    place: &str,
    fits: impl FnOnce(&AccessTokenRecord) -> Result<(), OAuthError>,
) -> Result<AccessTokenRecord, OAuthError> {
    let bad = || OAuthError::invalid_token("the access token is unknown, expired or revoked");
    let rec = match crate::token::find(p, &req.credentials.token, Some("access_token")).await? {
        Some(crate::token::Found::Access(a)) => a,
        _ => return Err(bad()),
    };
    if !rec.active(p.now()) || !liveness::access_alive(p, &rec).await? {
        return Err(bad());
    }
    fits(&rec)?;
    let thumbprint = req.evidence.peer_cert.map(|c| c.thumbprint());
    let rr = ResourceRequest {
        method: req.method,
        path: req.path,
        credentials: req.credentials,
        dpop: req.dpop,
        cert_thumbprint: thumbprint.as_deref(),
    };
    let checked = resource::check(&rr, &Confirmation::of(rec.binding.as_ref()), Policy::OPTIONAL, proofs).await;
    if let (Err(_), Some(b)) = (&checked, &rec.binding) {
        let actor = Actor::client(&rec.client_id).with_user(rec.username.as_deref());
        let detail = serde_json::json!({"target": rec.jti, "where": place, "binding_type": b.kind.as_str()});
        p.event(crate::audit::kind::BINDING_MISMATCH, &actor, detail);
    }
    checked?;
    Ok(rec)
}
