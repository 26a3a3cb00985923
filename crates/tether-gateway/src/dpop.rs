//! DPoP proofs at the gateway (gateway.md G-5, RFC 9449 §7): every check of §4.3 through
//! `tether_core::dpop` — one `DPoP` header, `typ`, asymmetric `alg`, public `jwk`, signature,
//! `htm`, `htu` = `public_url` + path (never the `Host` header), `iat` window, `ath`, `jkt` — plus
//! the `jti` replay cache: in memory, or in a database (`replay_store = "postgres://…"` or
//! `"sqlite://…"`) shared by every gateway node.
//!
//! Nonces (`dpop_use_nonce`) are stateless: a MAC over their issue time, with a key derived from
//! the gateway's `client_secret` or `session_secret`, so gateway nodes with the same configuration
//! accept each other's nonces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;
use http::request::Parts;
use tether_core::crypto::MacKey;
use tether_core::dpop::{self, DpopError, Expect};
use tether_core::secret::{ct_eq, random_bytes, sha256};
use tether_core::store::Store;

use crate::guard::{Guard, Rejection};

pub enum ReplayStore {
    Memory(Mutex<HashMap<String, i64>>),
    Shared(Arc<dyn Store>),
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
        let store = tether_store::open(spec, 4).await.map_err(|e| format!("replay_store: {e}"))?;
        Ok(ReplayStore::Shared(store))
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
            ReplayStore::Shared(s) => s.dpop_jti_fresh(key, until).await.map_err(|e| e.to_string()),
        }
    }
}

pub fn nonce_key(cfg: &crate::Config) -> MacKey {
    let seed = cfg.client_secret.clone().or_else(|| cfg.session_secret.clone());
    match seed {
        Some(s) => MacKey::new(&sha256(format!("tether-gateway-dpop-nonce:{s}").as_bytes())),
        None => MacKey::new(&random_bytes::<32>()),
    }
}

fn invalid(d: impl Into<String>) -> Rejection {
    Rejection {
        status: http::StatusCode::UNAUTHORIZED,
        error: Some("invalid_dpop_proof"),
        description: d.into(),
        headers: Vec::new(),
    }
}

/// Check the request's DPoP proof for an access token bound to `jkt`.
pub async fn check(g: &Guard, parts: &Parts, token: &str, jkt: &str) -> Result<(), Rejection> {
    let mut all = parts.headers.get_all("dpop").iter();
    let Some(header) = all.next() else { return Err(invalid("the DPoP header is missing")) };
    if all.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let proof = header.to_str().map_err(|_| invalid("the DPoP header is not text"))?;
    let url = format!("{}{}", g.cfg.public_url, parts.uri.path());
    let now = g.clock.now();
    let lifetime = i64::try_from(g.cfg.dpop_proof_lifetime).unwrap_or(300);
    let e = Expect {
        method: parts.method.as_str(),
        url: &url,
        access_token: Some(token),
        now,
        lifetime,
        nonce: g.cfg.dpop_use_nonce.then_some(&g.dpop_nonce_key),
    };
    let ok = match dpop::verify(proof, &e) {
        Ok(ok) => ok,
        Err(DpopError::Invalid(d)) => return Err(invalid(d)),
        Err(DpopError::UseNonce(d)) => {
            let nonce = dpop::new_nonce(&g.dpop_nonce_key, now);
            let mut r = Rejection {
                status: http::StatusCode::UNAUTHORIZED,
                error: Some("use_dpop_nonce"),
                description: d,
                headers: Vec::new(),
            };
            if let Ok(v) = HeaderValue::from_str(&nonce) {
                r.headers.push((http::HeaderName::from_static("dpop-nonce"), v));
            }
            return Err(r);
        }
    };
    if !ct_eq(ok.jkt.as_bytes(), jkt.as_bytes()) {
        return Err(invalid("the DPoP proof is not signed with the key the access token is bound to (jkt)"));
    }
    match g.replay.fresh(&dpop::replay_key(&ok), ok.replay_until, now).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(invalid("the DPoP proof was already used (jti replay)")),
        Err(e) => {
            tracing::warn!(error = %e, "DPoP replay store unavailable");
            Err(Rejection::unavailable("the DPoP replay cache cannot be reached; try again"))
        }
    }
}
