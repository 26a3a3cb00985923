//! DPoP proofs at the gateway (gateway.md G-5, RFC 9449 §7): the [`ProofChecker`] that core's
//! resource-side check calls — every check of §4.3 through `tether_core::dpop` with `htu` =
//! `public_url` + path (never the `Host` header) — plus the `jti` replay cache: in memory, or in a
//! database (`replay_store = "postgres://…"` or `"sqlite://…"`, feature `db-replay`) shared by
//! every gateway node.
//!
//! Nonces (`dpop_use_nonce`) are stateless: a MAC over their issue time, with a key derived from
//! the gateway's `client_secret` or `session_secret`, so gateway nodes with the same configuration
//! accept each other's nonces.

use std::collections::HashMap;
#[cfg(feature = "db-replay")]
use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use tether_core::crypto::MacKey;
use tether_core::dpop::{self, DpopError, Expect, ProofOk};
use tether_core::error::{ErrorCode, OAuthError};
use tether_core::resource::ProofChecker;
use tether_core::secret::{random_bytes, sha256};

use crate::config::Config;

pub enum ReplayStore {
    Memory(Mutex<HashMap<String, i64>>),
    /// A database shared by every gateway node (feature `db-replay`).
    #[cfg(feature = "db-replay")]
    Shared(Arc<dyn tether_core::store::Store>),
}

const MAX_MEMORY: usize = 200_000;

impl ReplayStore {
    pub async fn open(spec: &str) -> Result<Self, String> {
        if spec == "memory" {
            return Ok(ReplayStore::Memory(Mutex::new(HashMap::new())));
        }
        if !(spec.starts_with("postgres") || spec.starts_with("sqlite:")) {
            return Err(format!("replay_store = {spec:?}: use \"memory\" or a postgres:// / sqlite:// database URL"));
        }
        Self::open_shared(spec).await
    }

    #[cfg(feature = "db-replay")]
    async fn open_shared(spec: &str) -> Result<Self, String> {
        let store = tether_store::open(spec, 4).await.map_err(|e| format!("replay_store: {e}"))?;
        Ok(ReplayStore::Shared(store))
    }

    #[cfg(not(feature = "db-replay"))]
    async fn open_shared(spec: &str) -> Result<Self, String> {
        Err(format!("replay_store = {spec:?}: this build has no database replay store (feature db-replay)"))
    }

    /// True when `key` is new (and is now remembered until `until`).
    async fn fresh(&self, key: &str, until: i64, now: i64) -> Result<bool, String> {
        match self {
            ReplayStore::Memory(m) => {
                let Ok(mut m) = m.lock() else { return Err("replay cache poisoned".into()) };
                if m.len() >= MAX_MEMORY {
                    m.retain(|_, u| *u > now);
                }
                match m.get(key) {
                    Some(u) if *u > now => Ok(false),
                    _ => {
                        m.insert(key.to_string(), until);
                        Ok(true)
                    }
                }
            }
            #[cfg(feature = "db-replay")]
            ReplayStore::Shared(s) => s.dpop_jti_fresh(key, until).await.map_err(|e| e.to_string()),
        }
    }
}

pub fn nonce_key(cfg: &Config) -> MacKey {
    let seed = cfg.client_secret.clone().or_else(|| cfg.session_secret.clone());
    match seed {
        Some(s) => MacKey::new(&sha256(format!("tether-gateway-dpop-nonce:{s}").as_bytes())),
        None => MacKey::new(&random_bytes::<32>()),
    }
}

/// DPoP proofs as core's resource-side check needs them: `htu` = `public_url` + path, the
/// gateway's nonce key, its replay store.
pub struct GatewayProofs<'a> {
    pub cfg: &'a Config,
    /// The route's `public_url`: the base of the `htu` the client addressed.
    pub public_url: &'a str,
    pub now: i64,
    pub nonce_key: &'a MacKey,
    pub replay: &'a ReplayStore,
}

#[async_trait]
impl ProofChecker for GatewayProofs<'_> {
    fn verify(&self, proof: &str, method: &str, path: &str, token: &str) -> Result<ProofOk, OAuthError> {
        let url = format!("{}{path}", self.public_url);
        let e = Expect {
            method,
            url: &url,
            access_token: Some(token),
            now: self.now,
            lifetime: i64::try_from(self.cfg.dpop_proof_lifetime).unwrap_or(300),
            nonce: self.cfg.dpop_use_nonce.then_some(self.nonce_key),
        };
        dpop::verify(proof, &e).map_err(|e| match e {
            DpopError::Invalid(d) => OAuthError::new(ErrorCode::InvalidDpopProof, d),
            DpopError::UseNonce(d) => {
                let mut err = OAuthError::new(ErrorCode::UseDpopNonce, d);
                err.dpop_nonce = Some(dpop::new_nonce(self.nonce_key, self.now));
                err
            }
        })
    }

    async fn spend(&self, ok: &ProofOk) -> Result<(), OAuthError> {
        match self.replay.fresh(&dpop::replay_key(ok), ok.replay_until, self.now).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(OAuthError::new(ErrorCode::InvalidDpopProof, "the DPoP proof was already used (jti replay)"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "DPoP replay store unavailable");
                Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the DPoP replay cache cannot be reached; try again",
                ))
            }
        }
    }
}
