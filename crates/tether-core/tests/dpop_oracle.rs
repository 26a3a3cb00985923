//! DPoP proof verification checked against an independent oracle: proofs, keys and RFC 7638
//! thumbprints made by panva's jose (npm, on WebCrypto; interop/dpop-proofs.mjs), for every
//! algorithm discovery advertises, and RFC 7638 §3.1's own test vector. Nothing expected here
//! comes from the code under test.
//!
//! The algorithms are `tether_core::dpop::ALGS`, the list the discovery document serializes as
//! `dpop_signing_alg_values_supported`, so a newly advertised algorithm is tested automatically.
//!
//! Needs `node` and `interop/node_modules` (`cd interop && npm ci`). Without them the oracle tests
//! are skipped with a note, except under `CI=true`, where they fail.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};
use tether_core::crypto::MacKey;
use tether_core::dpop::{self, DpopError, Expect};
use tether_core::keys::jwk_thumbprint;
use tether_core::secret::{b64url, b64url_decode};

const NOW: i64 = 1_793_491_200;
const LIFETIME: i64 = 300;
const TOKEN_URL: &str = "https://as.example/oauth2/token";
const RESOURCE_URL: &str = "https://rs.example/orders/1";
const ACCESS_TOKEN: &str = "an-access-token.from-some-server";

/// RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint, as printed in the RFC.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

fn rfc7638_key() -> Value {
    json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"})
}

fn nonce_key() -> MacKey {
    MacKey::new(b"dpop-oracle nonce key")
}

/// Algorithms jose can sign with that Tether does not advertise: `verify` must refuse them.
fn unadvertised() -> Vec<&'static str> {
    ["Ed25519"].into_iter().filter(|a| !dpop::ALGS.contains(a)).collect()
}

/// The interop directory, or why the oracle cannot run (skip, or fail under `CI=true`).
fn oracle_dir(test: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let problem = if !node {
        "node is not installed"
    } else if !dir.join("node_modules/jose").is_dir() {
        "interop/node_modules is missing (run `cd interop && npm ci`)"
    } else {
        return Some(dir);
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{test}: the jose DPoP oracle is required under CI: {problem}");
    eprintln!("SKIPPED (the checks against jose in) {test}: the jose DPoP oracle is unavailable: {problem}");
    None
}

/// One run of interop/dpop-proofs.mjs for every test here, per advertised algorithm: a proof for
/// the token endpoint, one for a resource request with `ath` and a server nonce; then the
/// unadvertised algorithms' proofs and jose's thumbprint of the RFC 7638 key.
fn oracle(test: &str) -> Option<&'static Value> {
    static OUT: OnceLock<Option<Value>> = OnceLock::new();
    let dir = oracle_dir(test)?;
    OUT.get_or_init(|| {
        let nonce = dpop::new_nonce(&nonce_key(), NOW);
        let mut reqs = Vec::new();
        for alg in dpop::ALGS.iter().chain(&unadvertised()) {
            reqs.push(json!({"alg": alg, "htm": "POST", "htu": TOKEN_URL, "iat": NOW}));
            reqs.push(json!({
                "alg": alg, "htm": "GET", "htu": RESOURCE_URL, "iat": NOW,
                "access_token": ACCESS_TOKEN, "nonce": nonce,
            }));
        }
        reqs.push(json!({"thumbprint": rfc7638_key()}));
        let mut child = Command::new("node")
            .arg(dir.join("dpop-proofs.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}", Value::Array(reqs)).unwrap();
        drop(stdin);
        let out = child.wait_with_output().expect("node runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(stdout.lines().next().unwrap_or("")).unwrap_or(Value::Null);
        assert!(
            out.status.success() && report["ok"] == true,
            "interop/dpop-proofs.mjs failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(report["results"].clone())
    })
    .as_ref()
}

/// The oracle's result for `alg` and `htm`.
fn made<'a>(results: &'a Value, alg: &str, htm: &str) -> &'a Value {
    results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alg"] == alg && jwt_claim(r["proof"].as_str().unwrap(), "htm") == htm)
        .unwrap_or_else(|| panic!("jose made no {htm} proof for {alg}"))
}

fn jwt_claim(jwt: &str, name: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice::<Value>(&b64url_decode(part).unwrap()).unwrap()[name].clone()
}

fn at_token_endpoint() -> Expect<'static> {
    Expect { method: "POST", url: TOKEN_URL, access_token: None, now: NOW, lifetime: LIFETIME, nonce: None }
}

/// Every advertised algorithm: `verify` accepts jose's proofs (bare, and with `ath` and a server
/// nonce) and reports jose's RFC 7638 thumbprint of the proof key.
#[test]
fn every_advertised_alg_verifies_jose_proofs_with_jose_thumbprint() {
    let Some(results) = oracle("every_advertised_alg_verifies_jose_proofs_with_jose_thumbprint") else { return };
    assert!(!dpop::ALGS.is_empty());
    let key = nonce_key();
    let mut failures = Vec::new();
    for alg in dpop::ALGS {
        let post = made(results, alg, "POST");
        let jkt = post["jkt"].as_str().unwrap();
        assert_eq!(jkt.len(), 43, "{alg}: jose's thumbprint {jkt}");
        match dpop::verify(post["proof"].as_str().unwrap(), &at_token_endpoint()) {
            Ok(ok) if ok.jkt == jkt => {}
            Ok(ok) => failures.push(format!("{alg}: jkt {} but jose says {jkt}", ok.jkt)),
            Err(e) => failures.push(format!("{alg}: token-endpoint proof refused: {e:?}")),
        }
        let get = made(results, alg, "GET");
        assert_eq!(get["jkt"], jkt, "{alg}: jose signed both proofs with one key");
        let e = Expect {
            method: "GET",
            url: RESOURCE_URL,
            access_token: Some(ACCESS_TOKEN),
            nonce: Some(&key),
            ..at_token_endpoint()
        };
        match dpop::verify(get["proof"].as_str().unwrap(), &e) {
            Ok(ok) if ok.jkt == jkt => {}
            Ok(ok) => failures.push(format!("{alg}: jkt {} but jose says {jkt}", ok.jkt)),
            Err(e) => failures.push(format!("{alg}: resource proof (ath, nonce) refused: {e:?}")),
        }
        eprintln!("{alg}: jose proofs verified, jkt {jkt}");
    }
    assert!(failures.is_empty(), "advertised DPoP algorithms that verify() does not handle:\n{}", failures.join("\n"));
}

/// A jose proof with one signature byte changed is refused, for every advertised algorithm.
#[test]
fn tampered_jose_signatures_are_refused() {
    let Some(results) = oracle("tampered_jose_signatures_are_refused") else { return };
    for alg in dpop::ALGS {
        let proof = made(results, alg, "POST")["proof"].as_str().unwrap();
        let (input, sig) = proof.rsplit_once('.').unwrap();
        let sig = b64url_decode(sig).unwrap();
        for i in [0, sig.len() / 2, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            let tampered = format!("{input}.{}", b64url(&bad));
            match dpop::verify(&tampered, &at_token_endpoint()) {
                Err(DpopError::Invalid(m)) => assert!(m.contains("signature does not verify"), "{alg}: {m}"),
                other => panic!("{alg}: a proof with signature byte {i} flipped: {other:?}"),
            }
        }
        // The same proof with a changed claim under the original signature.
        let (h, _) = input.split_once('.').unwrap();
        let claims = json!({"jti": "x", "htm": "POST", "htu": TOKEN_URL, "iat": NOW + 1});
        let forged = format!("{h}.{}.{}", b64url(claims.to_string().as_bytes()), b64url(&sig));
        assert!(dpop::verify(&forged, &at_token_endpoint()).is_err(), "{alg}: forged claims accepted");
    }
}

/// What verify() accepts is no more than what discovery advertises: jose proofs with an
/// algorithm outside the list are refused for that reason.
#[test]
fn jose_proofs_with_unadvertised_algs_are_refused() {
    let Some(results) = oracle("jose_proofs_with_unadvertised_algs_are_refused") else { return };
    for alg in unadvertised() {
        let proof = made(results, alg, "POST")["proof"].as_str().unwrap();
        match dpop::verify(proof, &at_token_endpoint()) {
            Err(DpopError::Invalid(m)) => assert!(m.contains("not an accepted"), "{alg}: {m}"),
            other => panic!("{alg} is not advertised, yet verify() gave {other:?}"),
        }
    }
}

/// RFC 7638 §3.1: Tether's thumbprint of the RFC's RSA key is the RFC's value (and so is jose's,
/// which shows the oracle agrees with the RFC).
#[test]
fn rfc7638_thumbprint_test_vector() {
    assert_eq!(jwk_thumbprint(&rfc7638_key()).as_deref(), Some(RFC7638_JKT));
    // Members outside the required set (alg, kid) and their order play no part.
    let bare = json!({"n": RFC7638_N, "kty": "RSA", "e": "AQAB"});
    assert_eq!(jwk_thumbprint(&bare).as_deref(), Some(RFC7638_JKT));
    if let Some(results) = oracle("rfc7638_thumbprint_test_vector") {
        let jose = results.as_array().unwrap().iter().find(|r| r.get("alg").is_none()).unwrap();
        assert_eq!(jose["jkt"], RFC7638_JKT, "jose's thumbprint of the RFC 7638 key");
    }
}
