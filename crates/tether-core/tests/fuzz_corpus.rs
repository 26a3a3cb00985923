//! The fuzz corpus as a plain test: every checked-in input of `fuzz/corpus/<target>/` goes through
//! the body of its `cargo fuzz` target (`tether_core::fuzzing`), so the invariants the fuzzer checks
//! hold on every `cargo test`, on stable, without libFuzzer. See `fuzz/README.md`.
//!
//! The seeds are made by `write_seed_corpus` (ignored; run it by hand to regenerate them, which
//! makes new keys):
//! `cargo test -p tether-core --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};
use tether_core::dpop::{ath, new_nonce};
use tether_core::fuzzing::{self, ACCESS_TOKEN, METHOD, NOW, URL};
use tether_core::secret::b64url;

type Target = fn(&[u8]) -> bool;

const TARGETS: &[(&str, Target)] = &[
    ("dpop", fuzzing::dpop_proof),
    ("dpop_signed", fuzzing::dpop_signed),
    ("form", fuzzing::form),
    ("dn", fuzzing::dn),
    ("jws", fuzzing::jws),
];

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn every_corpus_input_passes_its_target() {
    for (target, run) in TARGETS {
        let dir = corpus(target);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        let (mut accepted, mut refused) = (0, 0);
        for path in &files {
            let data = fs::read(path).expect("corpus file");
            // Printed before running, so a panic names its input.
            println!("{target}: {}", path.display());
            let ok = run(&data);
            println!("  {}", if ok { "accepted" } else { "refused" });
            if ok {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(files.len() >= 10, "{target}: only {} corpus inputs", files.len());
        assert!(accepted >= 3 && refused >= 1, "{target}: {accepted} accepted, {refused} refused");
    }
}

type Sign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A proof signed with a real key, as a client makes it.
struct Signer {
    alg: &'static str,
    jwk: Value,
    sign: Sign,
}

fn signers() -> Vec<Signer> {
    let rng = SystemRandom::new();
    let ec = |alg: &'static str, crv: &str, a: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(a, &rng).expect("EC key");
        let kp = EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref()).expect("EC key");
        let p = kp.public_key().as_ref().to_vec();
        let n = (p.len() - 1) / 2;
        let jwk = json!({"kty": "EC", "crv": crv, "x": b64url(&p[1..=n]), "y": b64url(&p[n + 1..])});
        let sign = move |m: &[u8]| kp.sign(&SystemRandom::new(), m).expect("sign").as_ref().to_vec();
        Signer { alg, jwk, sign: Box::new(sign) }
    };
    let rsa = |alg: &'static str, pad: &'static dyn aws_lc_rs::signature::RsaEncoding| {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let pk = kp.public_key();
        let jwk = json!({
            "kty": "RSA",
            "n": b64url(pk.modulus().big_endian_without_leading_zero()),
            "e": b64url(pk.exponent().big_endian_without_leading_zero()),
        });
        let sign = move |m: &[u8]| {
            let mut sig = vec![0; kp.public_modulus_len()];
            kp.sign(pad, &SystemRandom::new(), m, &mut sig).expect("sign");
            sig
        };
        Signer { alg, jwk, sign: Box::new(sign) }
    };
    let ed = Ed25519KeyPair::generate().expect("Ed25519 key");
    let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(ed.public_key().as_ref())});
    vec![
        ec("ES256", "P-256", &ECDSA_P256_SHA256_FIXED_SIGNING),
        ec("ES384", "P-384", &ECDSA_P384_SHA384_FIXED_SIGNING),
        ec("ES512", "P-521", &ECDSA_P521_SHA512_FIXED_SIGNING),
        rsa("RS256", &RSA_PKCS1_SHA256),
        rsa("PS256", &RSA_PSS_SHA256),
        Signer { alg: "EdDSA", jwk: ed_jwk, sign: Box::new(move |m| ed.sign(m).as_ref().to_vec()) },
    ]
}

fn jws(header: &Value, claims: &Value, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

fn claims(jti: &str) -> Value {
    json!({"jti": jti, "htm": METHOD, "htu": URL, "iat": NOW})
}

/// The seed inputs of every target, by file name.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| out.push((target, name.to_string(), data));
    let nonce = new_nonce(&fuzzing::nonce_key(), NOW);

    // dpop: real proofs, valid and not, as clients send them.
    let signers = signers();
    for s in &signers {
        let h = json!({"typ": "dpop+jwt", "alg": s.alg, "jwk": s.jwk});
        let alg = s.alg.to_ascii_lowercase();
        add("dpop", &format!("{alg}-valid"), jws(&h, &claims(&format!("{alg}-1")), &s.sign).into_bytes());
        let mut c = claims(&format!("{alg}-2"));
        c["ath"] = json!(ath(ACCESS_TOKEN));
        c["nonce"] = json!(nonce);
        add("dpop", &format!("{alg}-ath-nonce"), jws(&h, &c, &s.sign).into_bytes());
    }
    let es = &signers[0];
    let h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": es.jwk});
    let variant = |edit: &dyn Fn(&mut Value, &mut Value)| {
        let (mut h, mut c) = (h.clone(), claims("v"));
        edit(&mut h, &mut c);
        jws(&h, &c, &es.sign).into_bytes()
    };
    add("dpop", "htu-normalised", variant(&|_, c| c["htu"] = json!("HTTPS://AS.Example:443/oauth2/token?x=1#f")));
    add("dpop", "htu-other", variant(&|_, c| c["htu"] = json!("https://as.example/oauth2/other")));
    add("dpop", "htm-get", variant(&|_, c| c["htm"] = json!("GET")));
    add("dpop", "iat-expired", variant(&|_, c| c["iat"] = json!(NOW - 301)));
    add("dpop", "iat-future", variant(&|_, c| c["iat"] = json!(NOW + 6)));
    add("dpop", "iat-string", variant(&|_, c| c["iat"] = json!(NOW.to_string())));
    add("dpop", "typ-jwt", variant(&|h, _| h["typ"] = json!("JWT")));
    add("dpop", "jwk-private", variant(&|h, _| h["jwk"]["d"] = json!("AAAA")));
    add("dpop", "ath-wrong", variant(&|_, c| c["ath"] = json!(ath("another token"))));
    let mut tampered = variant(&|_, _| {});
    let dot = tampered.iter().position(|&b| b == b'.').expect("a dot");
    tampered[dot + 2] ^= 1;
    add("dpop", "tampered", tampered);
    add(
        "dpop",
        "alg-none",
        format!("{}.{}.", b64url(br#"{"typ":"dpop+jwt","alg":"none"}"#), b64url(b"{}")).into_bytes(),
    );
    add("dpop", "not-jws", b"eyJ.eyJ.".to_vec());

    // dpop_signed: header and claims JSON, signed by the target with its fixed key.
    let h = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": fuzzing::signed_jwk()});
    let signed = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims("s");
        edit(&mut c);
        fuzzing::dpop_signed_input(&h, &c)
    };
    add("dpop_signed", "valid", signed(&|_| {}));
    add(
        "dpop_signed",
        "ath-nonce",
        signed(&|c| {
            c["ath"] = json!(ath(ACCESS_TOKEN));
            c["nonce"] = json!(nonce);
        }),
    );
    add("dpop_signed", "iat-edge-past", signed(&|c| c["iat"] = json!(NOW - 300)));
    add("dpop_signed", "iat-edge-future", signed(&|c| c["iat"] = json!(NOW + 5)));
    add("dpop_signed", "iat-float", signed(&|c| c["iat"] = json!(1.7e9)));
    // Regression: `now - iat` overflowed (accepted in release builds, a panic with overflow checks).
    add("dpop_signed", "iat-min", signed(&|c| c["iat"] = json!(i64::MIN)));
    add("dpop_signed", "jti-missing", signed(&|c| c["jti"] = Value::Null));
    add("dpop_signed", "jti-256", signed(&|c| c["jti"] = json!("j".repeat(256))));
    add("dpop_signed", "jti-257", signed(&|c| c["jti"] = json!("j".repeat(257))));
    add("dpop_signed", "htu-port", signed(&|c| c["htu"] = json!("https://as.example:8443/oauth2/token")));
    add("dpop_signed", "htu-not-url", signed(&|c| c["htu"] = json!("as.example/oauth2/token")));
    add("dpop_signed", "nonce-garbage", signed(&|c| c["nonce"] = json!("garbage")));
    add("dpop_signed", "ath-number", signed(&|c| c["ath"] = json!(1)));
    add("dpop_signed", "no-newline", br#"{"typ":"dpop+jwt"}"#.to_vec());

    // form: token and authorization requests, and the edges of the encoding.
    for (name, body) in [
        ("password", "grant_type=password&username=alice&password=alice-password&scope=openid+profile+email"),
        (
            "code-pkce",
            "grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=dBjftJeZ4CVP-mJ92K9tpa0ohpp7WpAdn",
        ),
        (
            "resource-repeated",
            "grant_type=client_credentials&resource=https%3A%2F%2Fa.example&resource=https%3A%2F%2Fb.example&audience=x&audience=y",
        ),
        ("duplicate", "grant_type=password&grant_type=client_credentials"),
        ("duplicate-encoded", "a=1&%61=2"),
        ("empty", ""),
        ("separators", "&&=&a&&b=&=c"),
        ("plus-and-percent", "v=%2B+%20%25&w=a+b%2Bc"),
        ("utf8", "n%C3%A4me=caf%C3%A9&%E2%9C%93=1"),
        ("invalid-utf8", "a=%FF%FE&b=%C3"),
        ("bad-escapes", "a=%zz&b=%4&c=%"),
        (
            "token-exchange",
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=eyJ&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
        ),
    ] {
        add("form", name, body.as_bytes().to_vec());
    }

    // dn: `--tls-subject-dn` as operators write it.
    for (name, dn) in [
        ("simple", "CN=svc,O=Acme,C=DE"),
        ("spaces", " CN = Foo   Bar , O=b"),
        ("multi-valued", "CN=a+UID=b,OU=x,DC=example,DC=com"),
        ("oids", "2.5.4.3=svc,OID.2.5.4.10=Acme,2.5.4.99=x=y"),
        ("escapes", "CN=Doe\\, John\\+\\;\\<\\>\\\"\\\\,O=X"),
        ("hex-escapes", "CN=caf\\C3\\A9,O=\\00\\41"),
        ("edge-spaces", "CN=\\ a\\ ,O=\\#x"),
        ("hex-value", "CN=#0403616263 , O = x"),
        ("email", "emailAddress=a@b.c,E=x@y.z,givenName=Ann,surname=Lee"),
        ("unicode", "CN=Jürgen Ωmega 日本,O=Ünïcødé"),
        ("semicolon", "CN=a;O=b"),
        ("unknown-type", "FOO=bar"),
        ("empty-values", "CN=,O=+OU="),
        ("dangling", "CN=a,"),
    ] {
        add("dn", name, dn.as_bytes().to_vec());
    }

    // jws: proofs and tokens, and broken serializations.
    let own = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("seed");
    let own_sign = move |m: &[u8]| own.sign(m).as_ref().to_vec();
    let id_token = json!({"iss": "https://as.example", "sub": "alice", "aud": "c", "exp": NOW + 300, "sid": "s"});
    add(
        "jws",
        "own-valid",
        jws(&json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}), &id_token, &own_sign).into_bytes(),
    );
    add("jws", "own-wrong-kid", jws(&json!({"alg": "EdDSA", "kid": "k2"}), &id_token, &own_sign).into_bytes());
    add("jws", "own-alg-mismatch", jws(&json!({"alg": "ES256", "kid": "k1"}), &id_token, &own_sign).into_bytes());
    for s in &signers {
        let h = json!({"typ": "dpop+jwt", "alg": s.alg, "jwk": s.jwk});
        add("jws", &format!("proof-{}", s.alg.to_ascii_lowercase()), jws(&h, &claims("j"), &s.sign).into_bytes());
    }
    add("jws", "two-parts", b"eyJhbGciOiJub25lIn0.e30".to_vec());
    add("jws", "four-parts", b"eyJhbGciOiJub25lIn0.e30..".to_vec());
    add("jws", "header-array", format!("{}.{}.", b64url(b"[1]"), b64url(b"{}")).into_bytes());
    add("jws", "padded", b"eyJhbGciOiJub25lIn0=.e30=.".to_vec());
    add("jws", "empty-objects", format!("{}.{}.", b64url(b"{}"), b64url(b"{}")).into_bytes());
    out
}

#[test]
#[ignore = "writes fuzz/corpus/*; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = corpus(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), data).expect("corpus file");
    }
}
