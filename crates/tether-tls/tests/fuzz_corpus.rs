//! The `client_cert` fuzz corpus as a plain test: every checked-in input of
//! `fuzz/corpus/client_cert/` goes through the body of the `cargo fuzz` target
//! (`tether_tls::fuzzing::client_cert`) on every `cargo test`. See `fuzz/README.md`.
//!
//! The seeds are made by `write_seed_corpus` (ignored; run it by hand to regenerate them, which
//! makes new keys): `cargo test -p tether-tls --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::string::{BmpString, PrintableString};
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/client_cert")
}

#[test]
fn every_corpus_input_passes_its_target() {
    let mut files: Vec<_> =
        fs::read_dir(corpus()).expect("fuzz/corpus/client_cert").map(|e| e.expect("corpus entry").path()).collect();
    files.sort();
    let (mut accepted, mut refused) = (0, 0);
    for path in &files {
        let data = fs::read(path).expect("corpus file");
        // Printed before running, so a panic names its input.
        println!("client_cert: {}", path.display());
        let ok = tether_tls::fuzzing::client_cert(&data);
        println!("  {}", if ok { "accepted" } else { "refused" });
        if ok {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(files.len() >= 10, "only {} corpus inputs", files.len());
    assert!(accepted >= 3 && refused >= 1, "{accepted} accepted, {refused} refused");
}

fn cert(alg: &'static rcgen::SignatureAlgorithm, subject: DistinguishedName) -> rcgen::Certificate {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut params = CertificateParams::new(vec!["client.example".to_string()]).expect("params");
    params.distinguished_name = subject;
    params.self_signed(&key).expect("certificate")
}

/// Every header form a proxy sends (token-binding.md B-2), for one certificate.
fn header_forms(name: &str, c: &rcgen::Certificate, out: &mut Vec<(String, Vec<u8>)>) {
    let (pem, der) = (c.pem(), c.der().to_vec());
    let b64 = STANDARD.encode(&der);
    // nginx `$ssl_client_escaped_cert`: URL-encoded, `+` left as is.
    let escaped = percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    let forms = [
        ("pem-folded", pem.trim_end().replace('\n', " ")),
        ("pem-escaped", escaped),
        ("pem-plus-armor", pem.trim_end().replace("BEGIN CERTIFICATE", "BEGIN+CERTIFICATE").replace('\n', " ")),
        ("base64", b64.clone()),
        ("rfc9440", format!(":{b64}:")),
    ];
    for (form, text) in forms {
        out.push((format!("{name}-{form}"), text.into_bytes()));
    }
    out.push((format!("{name}-der"), der));
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "svc");
    header_forms("p256", &cert(&rcgen::PKCS_ECDSA_P256_SHA256, dn), &mut out);

    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, DnValue::PrintableString(PrintableString::try_from("DE").expect("printable")));
    dn.push(DnType::OrganizationName, "Acme, Inc.");
    dn.push(DnType::CommonName, DnValue::BmpString(BmpString::try_from("Jürgen +#;").expect("bmp")));
    dn.push(
        DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
        DnValue::Ia5String("a@b.c".try_into().expect("ia5")),
    );
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 99]), " spaced ");
    let c = cert(&rcgen::PKCS_ECDSA_P384_SHA384, dn);
    out.push(("p384-bmp-pem-folded".into(), c.pem().trim_end().replace('\n', " ").into_bytes()));
    out.push(("p384-bmp-der".into(), c.der().to_vec()));

    let c = cert(&rcgen::PKCS_ED25519, DistinguishedName::new());
    out.push(("ed25519-empty-subject-rfc9440".into(), format!(":{}:", STANDARD.encode(c.der())).into_bytes()));

    for (name, text) in [
        ("garbage", "not a certificate"),
        ("empty-armor", "-----BEGIN CERTIFICATE----- -----END CERTIFICATE-----"),
        ("rfc9440-not-der", ":bm90IGEgY2VydA==:"),
        ("escaped-bad-utf8", "%FF%FE"),
        ("whitespace", "   "),
        // Found by the fuzzer: overlapping armor lines made `decode` slice backwards (a panic).
        ("regression-armor-overlap", "-----BEGIN CERTIFICATE-----END CERTIFICATE-----"),
    ] {
        out.push((name.into(), text.as_bytes().to_vec()));
    }
    out
}

#[test]
#[ignore = "writes fuzz/corpus/client_cert; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    fs::create_dir_all(corpus()).expect("corpus dir");
    for (name, data) in seeds() {
        fs::write(corpus().join(name), data).expect("corpus file");
    }
}
