//! The master key and what it protects.
//!
//! Every server secret kept in the database (signing keys, the key that derives opaque tokens, the
//! key that signs page forms) is sealed with AES-256-GCM under the master key, which lives outside
//! the database (`DATA_DIR/master.key` or `TETHER_MASTER_KEY`). The record's name is the AEAD's
//! associated data, so a sealed value cannot be moved to another record.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;

use crate::secret::{b64url, random_bytes};

pub struct MasterKey {
    key: RandomizedNonceKey,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes, given as 64 hex characters or 43 base64url characters")]
    BadMasterKey,
    #[error("a sealed value in the database does not open under this master key (was the master key replaced?)")]
    Open,
}

impl MasterKey {
    pub fn generate() -> [u8; 32] {
        random_bytes::<32>()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::BadMasterKey);
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self { key })
    }

    /// Parse the text form kept in `master.key` / `TETHER_MASTER_KEY`: hex or base64url.
    pub fn from_text(text: &str) -> Result<Self, CryptoError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0)).collect::<Vec<u8>>()
        } else {
            crate::secret::b64url_decode(t).ok_or(CryptoError::BadMasterKey)?
        };
        Self::from_bytes(&bytes)
    }

    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut buf = plaintext.to_vec();
        // Sealing only fails for inputs beyond AES-GCM's size limit (gigabytes).
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut buf)
            .unwrap_or_else(|_| panic!("AES-GCM seal failed"));
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Open);
        }
        let (n, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| CryptoError::Open)?;
        let mut buf = ct.to_vec();
        let pt = self.key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf).map_err(|_| CryptoError::Open)?;
        Ok(pt.to_vec())
    }
}

/// HMAC-SHA256 keys held in memory after being unsealed.
#[derive(Clone)]
pub struct MacKey(hmac::Key);

impl MacKey {
    pub fn new(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let t = hmac::sign(&self.0, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(t.as_ref());
        out
    }
    pub fn mac_b64(&self, data: &[u8]) -> String {
        b64url(&self.mac(data))
    }
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, data, tag).is_ok()
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn seal_open_and_name_binding() {
        let mk = MasterKey::from_bytes(&MasterKey::generate()).unwrap();
        let s = mk.seal("a", b"hello");
        assert_eq!(mk.open("a", &s).unwrap(), b"hello");
        assert!(mk.open("b", &s).is_err());
        let other = MasterKey::from_bytes(&MasterKey::generate()).unwrap();
        assert!(other.open("a", &s).is_err());
        let hex = crate::secret::hex(&[7u8; 32]);
        assert!(MasterKey::from_text(&hex).is_ok());
        assert!(MasterKey::from_text("short").is_err());
    }
}
