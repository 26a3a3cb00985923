//! User passwords: argon2id (the crate's defaults: m=19456 KiB, t=2, p=1, OWASP's recommendation).
//! Hashing is CPU-heavy (~50 ms in release); callers run it on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub fn hash(password: &str) -> Result<String, String> {
    let h: PasswordHash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| e.to_string())?;
    Ok(h.to_string())
}

pub fn verify(password: &str, stored: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), stored).is_ok()
}

/// A hash of nothing in particular, verified against when the user does not exist so that a
/// missing user costs the same time as a wrong password (no username enumeration by timing).
pub fn dummy_hash() -> &'static str {
    use std::sync::OnceLock;
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash("tether-dummy-password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn argon2id_roundtrip() {
        let h = super::hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret", &h));
        assert!(!super::verify("nope", &h));
    }
}
