//! Random values, hashes and constant-time comparison. Secrets travel in [`Secret`], whose `Debug`
//! never prints the value (ARCHITECTURE.md pattern 6).

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// A value that must not appear in logs: passwords, client secrets, refresh tokens, codes,
/// device codes, cookie values. `Debug` prints `[redacted]`; there is no `Display`, `Clone` or
/// `Serialize`, so copying or printing it takes a visible `expose()`. The stored form is
/// [`Secret::hash`].
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// A fresh 256-bit random value (see [`random_token`]).
    pub fn generate() -> Self {
        Self(random_token())
    }
    /// The stored form ([`hash_secret`]).
    pub fn hash(&self) -> String {
        hash_secret(&self.0)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// For filling a buffer in place (a line read from standard input).
    pub fn expose_mut(&mut self) -> &mut String {
        &mut self.0
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SystemRandom only fails if the OS RNG is unusable, in which case nothing here is safe.
    SystemRandom::new().fill(&mut b).unwrap_or_else(|_| panic!("operating system RNG failed"));
    b
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// 256 random bits, base64url: client secrets, opaque tokens, refresh tokens, codes, cookies.
pub fn random_token() -> String {
    b64url(&random_bytes::<32>())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The stored form of a high-entropy secret: SHA-256, base64url. A fast hash is right for values
/// with ≥ 256 random bits (no dictionary to attack); passwords use argon2id instead.
pub fn hash_secret(s: &str) -> String {
    b64url(&sha256(s.as_bytes()))
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Does `presented` hash to `stored_hash`? Constant time in the compared bytes.
pub fn verify_secret(presented: &str, stored_hash: &str) -> bool {
    ct_eq(hash_secret(presented).as_bytes(), stored_hash.as_bytes())
}

pub fn hex(data: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_compare() {
        let t = random_token();
        assert!(t.len() >= 43);
        let h = hash_secret(&t);
        assert!(verify_secret(&t, &h));
        assert!(!verify_secret("other", &h));
        assert_eq!(format!("{:?}", Secret::new("x")), "[redacted]");
        let g = Secret::generate();
        assert!(verify_secret(g.expose(), &g.hash()));
        assert_eq!(format!("{:?}", Some(g)), "Some([redacted])");
    }
}
