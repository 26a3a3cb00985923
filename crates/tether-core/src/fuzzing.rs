//! Fuzz target bodies, shared by the `cargo fuzz` targets in `fuzz/` (a crate outside the
//! workspace, run by hand with a nightly toolchain) and `tests/fuzz_corpus.rs`, which runs every
//! checked-in input of `fuzz/corpus/<target>/` through the same function on every `cargo test`.
//! Keeping the bodies here, not in `fuzz/`, means the corpus test checks exactly what the fuzzer
//! checks and both stay compiled on stable. Not an API: hidden from the docs, may change any time.
//!
//! Each function takes arbitrary bytes, must never panic, and returns whether the parser accepted
//! the input (the corpus test uses that to check the seeds still reach past the parser). Beyond "does not crash", each asserts
//! what must hold of whatever its parser accepted (a re-encoded form parses to the same pairs, a
//! printed DN parses back to itself, an accepted DPoP proof lies in its time window): a failed
//! assertion is a finding like any other panic.
//!
//! The DPoP targets verify against a fixed request ([`METHOD`], [`URL`]) at a fixed clock
//! ([`NOW`]), so checked-in proofs stay valid forever.

use std::collections::HashSet;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use crate::crypto::MacKey;
use crate::dn::Dn;
use crate::dpop::{self, Expect, FUTURE_SKEW};
use crate::form::Form;
use crate::keys::{jwk_thumbprint, parse_jws, verify_own, verify_with_jwk};
use crate::secret::b64url;

/// The clock of every DPoP check.
pub const NOW: i64 = 1_700_000_000;
/// The request a proof must match.
pub const METHOD: &str = "POST";
pub const URL: &str = "https://as.example/oauth2/token";
/// The access token of the second check (with `ath` and a required nonce).
pub const ACCESS_TOKEN: &str = "fuzz-access-token";
pub const LIFETIME: i64 = 300;
/// The Ed25519 seed of the key [`dpop_signed`] signs with.
const SIGNED_SEED: [u8; 32] = [7; 32];
/// Parameters `Form::parse` lets repeat (RFC 8707 `resource`, RFC 8693 `audience`).
const REPEATABLE: &[&str] = &["resource", "audience"];

/// The key of the server nonces the second DPoP check requires.
pub fn nonce_key() -> MacKey {
    MacKey::new(b"tether fuzz nonce key")
}

fn signed_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&SIGNED_SEED).expect("a 32-byte Ed25519 seed")
}

/// The public JWK of the key [`dpop_signed`] signs with (for seed inputs).
pub fn signed_jwk() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(signed_key().public_key().as_ref())})
}

/// A `DPoP` header value as a client sends it.
pub fn dpop_proof(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(check_dpop)
}

/// `header JSON` `\n` `claims JSON`, signed here with a fixed Ed25519 key: the signature check
/// passes whenever the header carries that key's JWK (the seeds do), so the fuzzer reaches the
/// claim checks behind it, which it could never do by mutating signed base64.
pub fn dpop_signed(data: &[u8]) -> bool {
    let Some(split) = data.iter().position(|&b| b == b'\n') else { return false };
    let input = format!("{}.{}", b64url(&data[..split]), b64url(&data[split + 1..]));
    let sig = signed_key().sign(input.as_bytes());
    check_dpop(&format!("{input}.{}", b64url(sig.as_ref())))
}

/// Sign `header` and `claims` as [`dpop_signed`] does (the input format of that target).
pub fn dpop_signed_input(header: &Value, claims: &Value) -> Vec<u8> {
    format!("{header}\n{claims}").into_bytes()
}

/// Verifies twice: without an access token or nonce, and with both required. True if either passed.
fn check_dpop(proof: &str) -> bool {
    let key = nonce_key();
    let mut accepted = false;
    for (access_token, nonce) in [(None, None), (Some(ACCESS_TOKEN), Some(&key))] {
        let e = Expect { method: METHOD, url: URL, access_token, now: NOW, lifetime: LIFETIME, nonce };
        let Ok(ok) = dpop::verify(proof, &e) else { continue };
        let (header, claims, _, _) = parse_jws(proof.trim()).expect("an accepted proof is a compact JWS");
        assert_eq!(jwk_thumbprint(&header["jwk"]).as_deref(), Some(ok.jkt.as_str()), "jkt is the jwk's thumbprint");
        assert_eq!(claims["jti"].as_str(), Some(ok.jti.as_str()));
        assert!(!ok.jti.is_empty() && ok.jti.len() <= 256);
        let iat = i128::from(claims["iat"].as_i64().expect("an accepted proof has an integer iat"));
        let now = i128::from(NOW);
        assert!(iat <= now + i128::from(FUTURE_SKEW) && now - iat <= i128::from(LIFETIME), "iat {iat} accepted");
        // The jti must be remembered for as long as the proof is acceptable.
        assert!(i128::from(ok.replay_until) >= iat + i128::from(LIFETIME), "replay_until {}", ok.replay_until);
        assert_eq!(dpop::replay_key(&ok).len(), 43);
        accepted = true;
    }
    accepted
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(data: &[u8]) -> bool {
    let duplicate = {
        let mut seen = HashSet::new();
        form_urlencoded::parse(data).any(|(k, _)| !REPEATABLE.contains(&k.as_ref()) && !seen.insert(k))
    };
    let form = match Form::parse(data) {
        Ok(form) => form,
        Err(e) => {
            assert!(duplicate, "refused without a repeated parameter: {e:?}");
            return false;
        }
    };
    assert!(!duplicate, "a repeated parameter was accepted");
    let pairs = form.pairs();
    for (k, v) in pairs {
        assert!(form.has(k));
        let first = pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        assert_eq!(form.get(k), first.filter(|v| !v.is_empty()));
        assert!(v.is_empty() || form.get_all(k).contains(&v.as_str()));
    }
    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let again = Form::parse(encoded.as_bytes()).expect("a re-encoded form parses");
    assert_eq!(again.pairs(), pairs, "re-encoded as {encoded:?}");
    true
}

/// An RFC 4514 distinguished name (`[tls] … --tls-subject-dn`): whatever parses prints as a DN that
/// parses back to the same DN.
pub fn dn(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let Ok(dn) = Dn::parse(text) else { return false };
    let printed = dn.to_string();
    let again = Dn::parse(&printed).unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
    assert_eq!(again, dn, "{text:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
    assert!(dn.matches(&again) && again.matches(&dn));
    true
}

/// A JWS compact serialization (`id_token_hint`, DPoP proofs): splitting, and verification
/// against the JWK in its header with every algorithm.
pub fn jws(data: &[u8]) -> bool {
    let Ok(token) = std::str::from_utf8(data) else { return false };
    let jwks = [json!({"kid": "k1", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": signed_jwk()["x"]})];
    let _ = verify_own(&jwks, token);
    let Some((header, claims, input, sig)) = parse_jws(token) else { return false };
    assert!(header.is_object() && claims.is_object());
    assert_eq!(token.split('.').count(), 3);
    assert!(token.strip_prefix(input).is_some_and(|rest| rest.starts_with('.')));
    if let Some(jwk) = header.get("jwk") {
        let _ = jwk_thumbprint(jwk);
        for alg in dpop::ALGS.iter().chain(&["Ed25519", "HS256", "none"]) {
            let _ = verify_with_jwk(jwk, alg, input.as_bytes(), &sig);
        }
    }
    true
}
