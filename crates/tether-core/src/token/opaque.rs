//! Opaque tokens. An opaque access token is HMAC-SHA256(opaque key, stored random id), base64url:
//! 256 bits, derivable again for reuse (B-3), and useless to whoever reads only the database (the
//! opaque key is sealed under the master key). The store keeps its SHA-256 for lookup.

use crate::crypto::MacKey;
use crate::secret::{b64url, random_bytes};

pub fn new_id() -> String {
    b64url(&random_bytes::<32>())
}

pub fn derive(key: &MacKey, id: &str) -> String {
    key.mac_b64(id.as_bytes())
}
