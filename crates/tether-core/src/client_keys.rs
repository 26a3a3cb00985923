//! Clients' key sets published at a `jwks_uri` (`private_key_jwt`, signed request objects):
//! fetched through the [`JwksFetcher`] the server plugs in (this crate does no HTTP) and cached
//! per URL: for [`FRESH`] seconds, and fetched again early when a JWS names a `kid` the cached set
//! lacks (the client rotated its key) — at most once per [`REFETCH_MIN`] seconds per URL,
//! whatever arrives, so a flood of made-up `kid`s cannot turn Tether into a load generator against
//! the client's server. A failed fetch keeps the keys fetched before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::error::OAuthError;

/// Seconds a fetched key set is used without asking again.
pub const FRESH: i64 = 300;
/// The least seconds between two fetches of one URL.
pub const REFETCH_MIN: i64 = 10;

/// Fetches a client's JWK Set (the server's HTTP client).
#[async_trait]
pub trait JwksFetcher: Send + Sync + std::fmt::Debug {
    /// `guarded`: a registered client's URL, to be fetched only from addresses outside the
    /// server's own networks.
    async fn fetch(&self, uri: &str, guarded: bool) -> Result<Value, String>;
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
    /// The keys at `uri` as of `now`, fetched with `fetcher` when stale or when they lack `kid`
    /// (rate-limited).
    pub async fn keys(
        &self,
        now: i64,
        fetcher: Option<&dyn JwksFetcher>,
        uri: &str,
        kid: Option<&str>,
        guarded: bool,
    ) -> Result<Arc<Vec<Value>>, OAuthError> {
        // A guarded fetch is cached apart: an operator's app with the same URL (fetched
        // unguarded) must not hand a registered client what its own fetch would be refused.
        let key = if guarded { format!("guarded {uri}") } else { uri.to_string() };
        let cached = self.entries.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(e) = &cached {
            let has_kid = kid.is_none_or(|k| e.keys.iter().any(|j| j["kid"].as_str() == Some(k)));
            let fresh = e.fetched_at.is_some_and(|t| now - t < FRESH);
            if (fresh && has_kid) || now - e.tried_at < REFETCH_MIN {
                return Ok(e.keys.clone());
            }
        }
        let Some(fetcher) = fetcher else {
            return Err(OAuthError::invalid_client("this server cannot fetch jwks_uri key sets"));
        };
        let fetched = fetcher.fetch(uri, guarded).await.and_then(|v| match v["keys"].as_array() {
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
            m.insert(key, entry);
        }
        Ok(keys)
    }
}
