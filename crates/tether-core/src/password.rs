//! User passwords: argon2id (the crate's defaults: m=19456 KiB, t=2, p=1, OWASP's recommendation).
//!
//! Checking a password costs ≈19 MiB of memory and ≈50 ms of CPU, and anyone can ask for one
//! (a sign-in form, the password grant). [`Verifier`] bounds that: at most one check per core
//! runs at a time, each in a working memory allocated once and reused (so a burst neither grows
//! the heap nor leaves it grown), and a request that cannot get a turn within a short wait is
//! answered `temporarily_unavailable` instead of queueing without end.

use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::secret::{Secret, ct_eq};

pub fn hash(password: &str) -> Result<String, String> {
    let h: PasswordHash = Argon2::default().hash_password(password.as_bytes()).map_err(|e| e.to_string())?;
    Ok(h.to_string())
}

/// Check `password` against a stored PHC string (allocates its own working memory: for the CLI
/// and tests; servers use a [`Verifier`]).
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

/// The largest working memory a stored hash may ask for (KiB): a corrupt or hostile row must not
/// make one check allocate gigabytes.
const MAX_M_COST: u32 = 256 * 1024;

/// No turn to check a password came within the wait: answer 503 with `Retry-After`.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

/// Bounded, memory-reusing password checks (see the module docs).
pub struct Verifier {
    turns: Semaphore,
    memory: Mutex<Vec<Vec<Block>>>,
    wait: Duration,
}

impl Verifier {
    /// `parallel` checks at a time; a request waits at most `wait` for a turn.
    pub fn new(parallel: usize, wait: Duration) -> Self {
        let parallel = parallel.max(1);
        Self { turns: Semaphore::new(parallel), memory: Mutex::new(Vec::with_capacity(parallel)), wait }
    }

    /// One check per core, waiting up to 2 s for a turn.
    pub fn for_this_machine() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2), Duration::from_secs(2))
    }

    /// Does `password` match `stored`? With `stored = None` (no such user) the dummy hash is
    /// checked instead, and the answer is `false`.
    pub async fn verify(&self, password: Secret, stored: Option<String>) -> Result<bool, Busy> {
        let _turn = tokio::time::timeout(self.wait, self.turns.acquire()).await.map_err(|_| Busy)?.map_err(|_| Busy)?;
        let mut memory = self.memory.lock().ok().and_then(|mut m| m.pop()).unwrap_or_default();
        let (ok, memory) = tokio::task::spawn_blocking(move || {
            let ok = match &stored {
                Some(h) => check(password.expose(), h, &mut memory),
                None => {
                    check(password.expose(), dummy_hash(), &mut memory);
                    false
                }
            };
            (ok, memory)
        })
        .await
        .map_err(|_| Busy)?;
        if let Ok(mut m) = self.memory.lock() {
            m.push(memory);
        }
        Ok(ok)
    }
}

/// Verify against a PHC string in the given working memory (resized to the hash's `m` cost).
fn check(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else { return false };
    let version = match hash.version {
        Some(v) => match Version::try_from(v) {
            Ok(v) => v,
            Err(_) => return false,
        },
        None => Version::default(),
    };
    let Ok(params) = Params::try_from(&hash) else { return false };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let blocks = params.block_count();
    memory.resize(blocks, Block::new());
    let mut out = vec![0u8; expected.len()];
    let ctx = Argon2::new(algorithm, version, params);
    ctx.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, &mut memory[..blocks]).is_ok()
        && ct_eq(&out, expected.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_roundtrip() {
        let h = super::hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret", &h));
        assert!(!super::verify("nope", &h));
    }

    #[test]
    fn the_reusing_check_agrees_with_the_crate() {
        let h = hash("s3cret").unwrap();
        let mut mem = Vec::new();
        assert!(check("s3cret", &h, &mut mem));
        assert!(!check("s3cret ", &h, &mut mem));
        assert_eq!(mem.len(), 19456, "one block per KiB of m cost, kept for the next check");
        assert!(!check("s3cret", "not a phc string", &mut mem));
        let huge = h.replace("m=19456", "m=4194304");
        assert!(!check("s3cret", &huge, &mut mem), "an absurd cost is refused, not allocated");
    }

    #[tokio::test]
    async fn no_turn_within_the_wait_is_busy() {
        let v = Verifier::new(1, Duration::from_millis(1));
        let held = v.turns.acquire().await.unwrap();
        assert_eq!(v.verify(Secret::new("x"), None).await, Err(Busy));
        drop(held);
        let h = hash("pw").unwrap();
        assert_eq!(v.verify(Secret::new("pw"), Some(h.clone())).await, Ok(true));
        assert_eq!(v.verify(Secret::new("no"), Some(h)).await, Ok(false));
        assert_eq!(v.verify(Secret::new("pw"), None).await, Ok(false));
    }
}
