//! `private_key_jwt` (OpenID Connect Core §9, RFC 7523): the client signs its assertion with an
//! asymmetric key whose public half it registered, either as a JWK Set (`--jwks FILE`) or at a
//! URL (`--jwks-uri`). Keys at a URL are fetched through the [`JwksFetcher`] the server plugs in
//! (this crate does no HTTP) and cached: for [`FRESH`] seconds, and refetched early when an
//! assertion names a `kid` the cached set lacks (the client rotated its key) — at most once per
//! [`REFETCH_MIN`] seconds per URL, whatever arrives, so a flood of made-up `kid`s cannot turn
//! Tether into a load generator against the client's server. A failed fetch keeps the keys
//! fetched before.
//!
//! The claims and the replay check are [`super::jwt_bearer`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::jwt_bearer;
use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::provider::Provider;

/// The asymmetric algorithms accepted (the discovery document lists them).
pub const ALGS: [&str; 10] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
/// Seconds a fetched key set is used without asking again.
pub const FRESH: i64 = 300;
/// The least seconds between two fetches of one URL.
pub const REFETCH_MIN: i64 = 10;

/// Fetches a client's JWK Set (the server's HTTP client).
#[async_trait]
pub trait JwksFetcher: Send + Sync + std::fmt::Debug {
    async fn fetch(&self, uri: &str) -> Result<Value, String>;
}

/// Verify a `private_key_jwt` assertion sent to `endpoint` (a path).
pub async fn verify(p: &Provider, app: &AppRecord, raw: &str, endpoint: &str) -> Result<(), OAuthError> {
    let a = jwt_bearer::parse(raw)?;
    if !ALGS.contains(&a.alg.as_str()) {
        return Err(OAuthError::invalid_client(format!(
            "client_assertion alg {} is not one of private_key_jwt's ({})",
            a.alg,
            ALGS.join(", ")
        )));
    }
    let keys = registered_keys(p, app, a.kid.as_deref()).await?;
    let input = a.signing_input.as_bytes();
    let verified = candidates(&keys, a.kid.as_deref(), &a.alg)
        .any(|jwk| crate::keys::verify_with_jwk(jwk, &a.alg, input, &a.signature));
    if !verified {
        return Err(OAuthError::invalid_client(match &a.kid {
            Some(k) => format!("client_assertion signature does not verify with the client's key {k:?}"),
            None => "client_assertion signature does not verify with any of the client's keys".into(),
        }));
    }
    let (replay_key, until) = jwt_bearer::check_claims(p, &a, &app.app.client_id, endpoint)?;
    jwt_bearer::spend(p, &replay_key, until).await
}

/// The registered keys that may have signed: the `kid` when the JWS names one, never an
/// encryption key, and only keys whose own `alg` (when they say) is the one used.
pub fn candidates<'a>(keys: &'a [Value], kid: Option<&'a str>, alg: &'a str) -> impl Iterator<Item = &'a Value> {
    keys.iter().filter(move |k| {
        kid.is_none_or(|kid| k["kid"].as_str() == Some(kid))
            && k["use"].as_str() != Some("enc")
            && k["alg"].as_str().is_none_or(|a| a == alg)
    })
}

/// The client's public keys: registered inline, or fetched from its `jwks_uri`.
pub async fn registered_keys(p: &Provider, app: &AppRecord, kid: Option<&str>) -> Result<Arc<Vec<Value>>, OAuthError> {
    if let Some(set) = &app.app.jwks {
        return Ok(Arc::new(set["keys"].as_array().cloned().unwrap_or_default()));
    }
    match &app.app.jwks_uri {
        Some(uri) => p.client_jwks.keys(p, uri, kid).await,
        None => Err(OAuthError::invalid_client("the client registered no keys (jwks or jwks_uri)")),
    }
}

/// Key sets fetched from clients' `jwks_uri`s, per URL.
#[derive(Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone)]
struct Entry {
    keys: Arc<Vec<Value>>,
    /// When the keys were last fetched successfully (`None`: never).
    fetched_at: Option<i64>,
    /// When a fetch was last tried.
    tried_at: i64,
}

impl JwksCache {
    /// The keys at `uri`, fetched when stale or when they lack `kid` (rate-limited).
    pub async fn keys(&self, p: &Provider, uri: &str, kid: Option<&str>) -> Result<Arc<Vec<Value>>, OAuthError> {
        let now = p.now();
        let cached = self.entries.lock().ok().and_then(|m| m.get(uri).cloned());
        if let Some(e) = &cached {
            let has_kid = kid.is_none_or(|k| e.keys.iter().any(|j| j["kid"].as_str() == Some(k)));
            let fresh = e.fetched_at.is_some_and(|t| now - t < FRESH);
            if (fresh && has_kid) || now - e.tried_at < REFETCH_MIN {
                return Ok(e.keys.clone());
            }
        }
        let Some(fetcher) = &p.config.jwks_fetcher else {
            return Err(OAuthError::invalid_client("this server cannot fetch jwks_uri key sets"));
        };
        let fetched = fetcher.fetch(uri).await.and_then(|v| match v["keys"].as_array() {
            Some(k) => Ok(k.clone()),
            None => Err("the document has no \"keys\" array".to_string()),
        });
        let entry = match fetched {
            Ok(keys) => Entry { keys: Arc::new(keys), fetched_at: Some(now), tried_at: now },
            Err(e) => {
                tracing::warn!(jwks_uri = %uri, error = %e, "cannot fetch a client's key set; keeping the keys fetched before");
                match cached {
                    Some(old) => Entry { tried_at: now, ..old },
                    None => Entry { keys: Arc::new(vec![]), fetched_at: None, tried_at: now },
                }
            }
        };
        let keys = entry.keys.clone();
        if let Ok(mut m) = self.entries.lock() {
            m.insert(uri.to_string(), entry);
        }
        Ok(keys)
    }
}
