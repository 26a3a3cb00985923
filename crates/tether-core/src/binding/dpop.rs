//! `dpop` binding (RFC 9449, B-1/B-2): the token is bound to the key of the request's DPoP proof
//! (`cnf.jkt`, its RFC 7638 thumbprint), on every grant. The proof is verified — every check of
//! §4.3, replay included — before any grant runs ([`check_proof`]); the binder only reads the
//! result. Missing or invalid proof for a `dpop` app: 400 `invalid_dpop_proof`.

use super::{BindContext, TokenBinder};
use crate::dpop::{self, DpopError, Expect, ProofOk};
use crate::error::{ErrorCode, OAuthError};
use crate::model::BindingType;
use crate::provider::Provider;

pub struct Dpop;

impl TokenBinder for Dpop {
    fn kind(&self) -> BindingType {
        BindingType::Dpop
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<String>, OAuthError> {
        ctx.evidence.dpop.map(|p| Some(p.jkt.clone())).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "this client's tokens are DPoP-bound: a DPoP proof is required",
            )
        })
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
/// access token), and record its `jti` so it cannot be replayed on any node.
pub async fn check_proof(
    p: &Provider,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> Result<ProofOk, OAuthError> {
    let now = p.now();
    let nonce = p.config.dpop_require_nonce.then_some(&p.dpop_nonce_key);
    let mut last = None;
    let mut ok = None;
    for url in endpoint_urls(p, path) {
        let e = Expect { method, url: &url, access_token, now, lifetime: p.config.dpop_proof_lifetime, nonce };
        match dpop::verify(proof, &e) {
            Ok(x) => {
                ok = Some(x);
                break;
            }
            Err(err) => last = Some(err),
        }
    }
    let Some(ok) = ok else {
        return Err(dpop_error(p, last.unwrap_or_else(|| DpopError::Invalid("invalid DPoP proof".into()))));
    };
    if !p.store.dpop_jti_fresh(&dpop::replay_key(&ok), ok.replay_until).await? {
        return Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP proof was already used (jti replay)"));
    }
    Ok(ok)
}
