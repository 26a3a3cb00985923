//! `dpop` binding (RFC 9449, B-1/B-2): the token is bound to the key of the request's DPoP proof
//! (`cnf.jkt`, its RFC 7638 thumbprint), on every grant, and its `token_type` is `DPoP`. The
//! proof is verified — every check of §4.3, replay included — before any grant runs
//! ([`check_proof`]); the binder only reads the result. Missing proof for a `dpop` app: 400
//! `invalid_dpop_proof`. A `dpop_jkt` on the authorization request (§10) fixes the key with the
//! code; the token request must then prove that key. Sender-constrained: every use of the token
//! carries a proof.

use async_trait::async_trait;

use super::{AuthzBinding, AuthzContext, BindContext, Evidence, TokenBinder, matches, rebind_key, record};
use crate::dpop::{self, DpopError, Expect, ProofOk};
use crate::error::{ErrorCode, OAuthError};
use crate::model::{App, BindingType};
use crate::provider::Provider;
use crate::store::BindingRecord;

pub struct Dpop;

fn required(what: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, format!("{what}: a DPoP proof is required"))
}

/// RFC 9449 §10: a `dpop_jkt` on the authorization request binds the code to that key.
pub(super) fn from_dpop_jkt(ctx: &AuthzContext<'_>) -> AuthzBinding {
    AuthzBinding { binding: ctx.dpop_jkt.map(|j| record(BindingType::Dpop, j, true)), set_atbv: None }
}

#[async_trait]
impl TokenBinder for Dpop {
    fn kind(&self) -> BindingType {
        BindingType::Dpop
    }

    async fn at_authorization(&self, _: &Provider, ctx: &AuthzContext<'_>) -> Result<AuthzBinding, OAuthError> {
        Ok(from_dpop_jkt(ctx))
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        let proof = ctx.evidence.dpop.ok_or_else(|| required("this client's tokens are DPoP-bound"))?;
        Ok(Some(record(BindingType::Dpop, &proof.jkt, true)))
    }

    fn confirm_preset(&self, preset: &BindingRecord, ctx: &BindContext<'_>) -> Result<BindingRecord, OAuthError> {
        match ctx.evidence.dpop {
            // A fresh record from the proven key: the code's copy carries no public `cnf`.
            Some(d) if matches(preset, &d.jkt) => Ok(record(BindingType::Dpop, &d.jkt, true)),
            _ => Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof's key is not the dpop_jkt of the authorization request",
            )),
        }
    }

    async fn rebind(
        &self,
        _: &Provider,
        app: &App,
        bound: &BindingRecord,
        ctx: &BindContext<'_>,
    ) -> Result<BindingRecord, OAuthError> {
        let proof = ctx.evidence.dpop.ok_or_else(|| required("the refresh token is DPoP-bound"))?;
        rebind_key(app, bound, proof.jkt.clone())
    }

    async fn proven(&self, _: &Provider, b: &BindingRecord, ev: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(ev.dpop.is_some_and(|d| matches(b, &d.jkt)))
    }

    fn unproven(&self) -> &'static str {
        "is DPoP-bound; the request needs a DPoP proof signed with its key"
    }

    fn sender_constrained(&self) -> bool {
        true
    }

    fn cnf_member(&self) -> Option<&'static str> {
        Some("jkt")
    }

    fn token_type(&self) -> &'static str {
        "DPoP"
    }
}

/// Where clients may address an endpoint: the issuer's URL and, when configured, the mTLS alias
/// (never anything taken from the request's `Host`).
pub fn endpoint_urls(p: &Provider, path: &str) -> Vec<String> {
    let mut v = vec![format!("{}{path}", p.issuer())];
    if let Some(m) = &p.config.mtls_base
        && m != p.issuer()
    {
        v.push(format!("{m}{path}"));
    }
    v
}

fn dpop_error(p: &Provider, e: DpopError) -> OAuthError {
    match e {
        DpopError::Invalid(d) => OAuthError::new(ErrorCode::InvalidDpopProof, d),
        DpopError::UseNonce(d) => {
            let mut err = OAuthError::new(ErrorCode::UseDpopNonce, d);
            err.dpop_nonce = Some(dpop::new_nonce(&p.dpop_nonce_key, p.now()));
            err
        }
    }
}

/// Verify a request's `DPoP` header for `method` at `path` (with `ath` when it accompanies an
/// access token) — every check of §4.3 but replay.
pub fn verify_proof(
    p: &Provider,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> Result<ProofOk, OAuthError> {
    verify_proof_at(p, proof, method, &endpoint_urls(p, path), access_token)
}

/// [`verify_proof`] against these URLs (any of them may be the proof's `htu`).
pub fn verify_proof_at(
    p: &Provider,
    proof: &str,
    method: &str,
    urls: &[String],
    access_token: Option<&str>,
) -> Result<ProofOk, OAuthError> {
    let now = p.now();
    let nonce = p.config.dpop_require_nonce.then_some(&p.dpop_nonce_key);
    let mut last = None;
    for url in urls {
        let e = Expect { method, url, access_token, now, lifetime: p.config.dpop_proof_lifetime, nonce };
        match dpop::verify(proof, &e) {
            Ok(x) => return Ok(x),
            Err(err) => last = Some(err),
        }
    }
    Err(dpop_error(p, last.unwrap_or_else(|| DpopError::Invalid("invalid DPoP proof".into()))))
}

/// Record a verified proof's `jti` so it cannot be replayed on any node.
pub async fn spend(p: &Provider, ok: &ProofOk) -> Result<(), OAuthError> {
    if !p.store.dpop_jti_fresh(&dpop::replay_key(ok), ok.replay_until).await? {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP proof was already used (jti replay)"));
    }
    Ok(())
}

/// [`verify_proof`] and [`spend`]: a proof that accompanies no access token (token endpoint,
/// revocation).
pub async fn check_proof(
    p: &Provider,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> Result<ProofOk, OAuthError> {
    let ok = verify_proof(p, proof, method, path, access_token)?;
    spend(p, &ok).await?;
    Ok(ok)
}
