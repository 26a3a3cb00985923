//! Fetching clients' `jwks_uri` key sets (`private_key_jwt`) over HTTPS for the core's cache
//! ([`tether_core::client_keys::JwksCache`], which decides when to fetch).
//! Bounded: 5 s per fetch, 256 KiB per document, no redirects (a client's key set lives at the URL
//! it registered), the system's trust anchors; a registered client's URL only to addresses outside
//! the server's networks ([`crate::outbound`]).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tether_core::client_keys::JwksFetcher;

const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct HttpJwks {
    plain: reqwest::Client,
    guarded: reqwest::Client,
}

impl HttpJwks {
    pub fn new() -> Result<Self, String> {
        let t = Duration::from_secs(5);
        Ok(HttpJwks { plain: crate::outbound::client(t, false)?, guarded: crate::outbound::client(t, true)? })
    }
}

#[async_trait]
impl JwksFetcher for HttpJwks {
    async fn fetch(&self, uri: &str, guarded: bool) -> Result<Value, String> {
        if guarded && let Some(f) = crate::outbound::literal_forbidden(uri) {
            return Err(f.to_string());
        }
        let client = if guarded { &self.guarded } else { &self.plain };
        let sent = client.get(uri).header("accept", "application/json").send().await;
        let mut r = sent.map_err(|e| crate::outbound::is_forbidden(&e).unwrap_or_else(|| e.to_string()))?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(format!("the document is larger than {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    }
}
