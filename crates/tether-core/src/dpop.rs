//! DPoP proofs (RFC 9449): every check of §4.3, shared by the authorization server (token and
//! userinfo endpoints) and the gateway (gateway.md G-5).
//!
//! What a caller supplies: the request's method and the URL the client addressed (from
//! configuration — the issuer's or the gateway's public URL plus the path — never from a `Host`
//! header), the access token when the proof accompanies one (`ath`), the clock, and the nonce key
//! when nonces are required. Replay (`jti`) is checked by the caller against a store shared by
//! every node, with the key [`replay_key`] until [`ProofOk::replay_until`].
//!
//! Server nonces are stateless: base64url(issue time ‖ HMAC(issue time)), valid for the proof
//! lifetime, so any node can check any other node's nonce without shared state.

use serde_json::Value;

use crate::clock::issued_within;
use crate::crypto::MacKey;
use crate::keys::{jwk_thumbprint, parse_jws, verify_with_jwk};
use crate::secret::{b64url, b64url_decode, ct_eq, sha256};

/// Accepted proof algorithms (asymmetric only; RFC 9449 §4.3 check 4).
pub const ALGS: &[&str] = &["ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
/// How far in the future a proof's `iat` may be (clock skew): 10 s, as FAPI 2.0 §5.3.2.1 asks,
/// at the authorization server and the gateway alike.
pub const FUTURE_SKEW: i64 = 10;
/// JWK members that make a key private (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// `invalid_dpop_proof`, with the reason.
    Invalid(String),
    /// `use_dpop_nonce`: the proof lacks a valid server nonce; send the fresh one.
    UseNonce(String),
}

fn bad(s: impl Into<String>) -> DpopError {
    DpopError::Invalid(s.into())
}

/// What the proof must match.
pub struct Expect<'a> {
    pub method: &'a str,
    /// The URL the client addressed (normalised by [`normalize_htu`] before comparing).
    pub url: &'a str,
    /// The access token the proof accompanies (`ath`), if any.
    pub access_token: Option<&'a str>,
    pub now: i64,
    /// Seconds a proof stays acceptable after its `iat`.
    pub lifetime: i64,
    /// Required server nonces: the key they are made with.
    pub nonce: Option<&'a MacKey>,
}

#[derive(Debug, Clone)]
pub struct ProofOk {
    /// RFC 7638 thumbprint of the proof key (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    /// Until when the `jti` must be remembered.
    pub replay_until: i64,
    /// The proof's signing algorithm (a profile may accept fewer).
    pub alg: &'static str,
}

/// RFC 3986 §6.2.2–6.2.3 normalisation for comparing `htu`: scheme and host lower-cased, the
/// default port dropped, no query or fragment, an empty path as `/`.
pub fn normalize_htu(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    // `url` already drops a scheme's default port.
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = if url.path().is_empty() { "/" } else { url.path() };
    Some(format!("{}://{host}{port}{path}", url.scheme()))
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    b64url(&sha256(access_token.as_bytes()))
}

/// The replay-cache key of a proof: its key and `jti`, hashed to a fixed width.
pub fn replay_key(p: &ProofOk) -> String {
    b64url(&sha256(format!("{}\u{0}{}", p.jkt, p.jti).as_bytes()))
}

/// A fresh server nonce.
pub fn new_nonce(key: &MacKey, now: i64) -> String {
    let t = now.to_be_bytes();
    let mut raw = t.to_vec();
    raw.extend_from_slice(&key.mac(&t)[..16]);
    b64url(&raw)
}

fn nonce_ok(key: &MacKey, nonce: &str, now: i64, lifetime: i64) -> bool {
    let Some(raw) = b64url_decode(nonce) else { return false };
    if raw.len() != 24 {
        return false;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&raw[..8]);
    let issued = i64::from_be_bytes(t);
    ct_eq(&raw[8..], &key.mac(&t)[..16]) && issued_within(issued, now, FUTURE_SKEW, lifetime)
}

/// Verify one `DPoP` header value against everything RFC 9449 §4.3 requires.
pub fn verify(proof: &str, e: &Expect<'_>) -> Result<ProofOk, DpopError> {
    let (header, claims, input, sig) = parse_jws(proof.trim())
        .ok_or_else(|| bad("the DPoP proof is not a compact JWS with JSON header and claims"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(bad("the DPoP proof's typ must be dpop+jwt"));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !ALGS.contains(&alg) {
        return Err(bad(format!("the DPoP proof's alg {alg:?} is not an accepted asymmetric algorithm")));
    }
    let jwk = header.get("jwk").filter(|j| j.is_object()).ok_or_else(|| bad("the DPoP proof has no jwk header"))?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.get(**m).is_some()) {
        return Err(bad(format!("the DPoP proof's jwk must be a public key (it has the private member {m:?})")));
    }
    if !verify_with_jwk(jwk, alg, input.as_bytes(), &sig) {
        return Err(bad("the DPoP proof's signature does not verify with its jwk"));
    }
    let jkt = jwk_thumbprint(jwk).ok_or_else(|| bad("the DPoP proof's jwk is not a key Tether can thumbprint"))?;
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    let jti = s("jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| bad("the DPoP proof has no jti"))?;
    let htm = s("htm").ok_or_else(|| bad("the DPoP proof has no htm"))?;
    if htm != e.method {
        return Err(bad(format!("the DPoP proof's htm {htm:?} is not the request method {}", e.method)));
    }
    let htu = s("htu").ok_or_else(|| bad("the DPoP proof has no htu"))?;
    let (Some(got), Some(want)) = (normalize_htu(htu), normalize_htu(e.url)) else {
        return Err(bad("the DPoP proof's htu is not an http(s) URL"));
    };
    if got != want {
        return Err(bad(format!("the DPoP proof's htu {htu:?} is not the URL of this request ({want})")));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or_else(|| bad("the DPoP proof has no numeric iat"))?;
    if !issued_within(iat, e.now, FUTURE_SKEW, e.lifetime) {
        return Err(bad("the DPoP proof's iat is outside the acceptable window (check the client's clock)"));
    }
    match (e.access_token, s("ath")) {
        (Some(t), Some(a)) if ct_eq(a.as_bytes(), ath(t).as_bytes()) => {}
        (Some(_), Some(_)) => return Err(bad("the DPoP proof's ath does not match the access token")),
        (Some(_), None) => return Err(bad("the DPoP proof has no ath for the access token it accompanies")),
        (None, _) => {}
    }
    if let Some(key) = e.nonce {
        match s("nonce") {
            Some(n) if nonce_ok(key, n, e.now, e.lifetime) => {}
            Some(_) => return Err(DpopError::UseNonce("the DPoP nonce is invalid or expired; use the new one".into())),
            None => return Err(DpopError::UseNonce("this server requires a DPoP nonce; use the one provided".into())),
        }
    }
    let alg = ALGS.iter().copied().find(|a| *a == alg).unwrap_or("");
    Ok(ProofOk { jkt, jti: jti.to_string(), replay_until: iat.max(e.now) + e.lifetime + FUTURE_SKEW, alg })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proof and key of RFC 9449 §4.1 (Figure 3): parsing and the thumbprint of its key.
    const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

    #[test]
    fn rfc9449_example_proof() {
        let (header, claims, _, _) = parse_jws(RFC_PROOF).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(claims["htu"], "https://server.example.com/token");
        // RFC 9449 §6.1: the thumbprint of this key.
        assert_eq!(jwk_thumbprint(&header["jwk"]).unwrap(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        // Its signature verifies at its own iat, for its method and URL (port and case normalised).
        let e = Expect {
            method: "POST",
            url: "HTTPS://Server.Example.com:443/token",
            access_token: None,
            now: 1_562_262_616,
            lifetime: 300,
            nonce: None,
        };
        let ok = verify(RFC_PROOF, &e).unwrap();
        assert_eq!(ok.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        assert_eq!(ok.jti, "-BwC3ESc6acc2lTc");
        assert!(matches!(verify(RFC_PROOF, &Expect { method: "GET", ..e }), Err(DpopError::Invalid(_))));
        let late = Expect { method: "POST", url: "https://server.example.com/token", now: 1_562_262_616 + 301, ..e };
        assert!(verify(RFC_PROOF, &late).is_err());
    }

    /// Found while writing the fuzz target's window invariant: `now - iat` with an `iat` near
    /// `i64::MIN` overflowed (a panic with overflow checks; in release a negative age, so the proof
    /// was accepted forever and its jti forgotten after one lifetime).
    #[test]
    fn extreme_iat_is_refused_without_overflow() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let key = Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap();
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key().as_ref())});
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
        let e = Expect {
            method: "POST",
            url: "https://as.example/t",
            access_token: None,
            now: 1_700_000_000,
            lifetime: 300,
            nonce: None,
        };
        for (iat, ok) in [(i64::MIN, false), (i64::MIN + 1_700_000_000, false), (1_700_000_000, true)] {
            let claims = serde_json::json!({"jti": "j", "htm": "POST", "htu": "https://as.example/t", "iat": iat});
            let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
            let proof = format!("{input}.{}", b64url(key.sign(input.as_bytes()).as_ref()));
            assert_eq!(verify(&proof, &e).is_ok(), ok, "iat {iat}");
        }
    }

    #[test]
    fn htu_normalisation() {
        assert_eq!(normalize_htu("HTTPS://EXAMPLE.com:443/a?b=1#c").unwrap(), "https://example.com/a");
        assert_eq!(normalize_htu("https://example.com:8443").unwrap(), "https://example.com:8443/");
        assert_eq!(normalize_htu("http://example.com:80/x").unwrap(), "http://example.com/x");
        assert!(normalize_htu("ftp://x/").is_none());
    }

    #[test]
    fn nonces_are_stateless_and_expire() {
        let k = MacKey::new(b"k");
        let n = new_nonce(&k, 1000);
        assert!(nonce_ok(&k, &n, 1100, 300));
        assert!(!nonce_ok(&k, &n, 1301, 300));
        assert!(!nonce_ok(&MacKey::new(b"other"), &n, 1100, 300));
        assert!(!nonce_ok(&k, "garbage", 1100, 300));
    }
}
