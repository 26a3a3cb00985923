//! Caches of validated tokens, keyed by the token's hash (never the token itself).

use std::collections::HashMap;
use std::sync::Arc;

/// Token hash → (cached result, valid until in Unix seconds).
pub type TokenCache = HashMap<[u8; 32], (Arc<serde_json::Value>, i64)>;

/// SHA-256 of a token, the key of the caches.
pub fn token_hash(token: &str) -> [u8; 32] {
    tether_core::secret::sha256(token.as_bytes())
}
