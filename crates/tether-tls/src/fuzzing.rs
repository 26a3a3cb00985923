//! Fuzz target bodies, shared by the `cargo fuzz` target `client_cert` in `fuzz/` (outside the
//! workspace, run by hand with a nightly toolchain) and `tests/fuzz_corpus.rs`, which runs every
//! checked-in input of `fuzz/corpus/client_cert/` through the same function on every `cargo test`
//! (see `tether_core::fuzzing` for the DPoP, form, DN and JWS targets). Not an API: hidden from the
//! docs, may change any time.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use tether_core::dn::Dn;

use crate::client_cert::{ProxyCertConfig, decode, inspect};

/// The header a trusted proxy forwards certificates in.
pub const HEADER: &str = "x-client-cert";
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The input twice: as the value of a trusted proxy's certificate header (PEM, URL-encoded PEM,
/// base64 DER, RFC 9440 `:base64:`), and as a DER certificate as a TLS handshake delivers it.
/// Whatever is accepted must re-encode to the same DER and be inspectable. True if either way
/// yields a certificate.
pub fn client_cert(data: &[u8]) -> bool {
    let header = forwarded(data);
    let der = x509_parser::parse_x509_certificate(data).is_ok();
    if der {
        inspected(data);
    }
    header || der
}

fn forwarded(data: &[u8]) -> bool {
    let Ok(value) = HeaderValue::from_bytes(data) else { return false };
    let cfg = ProxyCertConfig { header: Some(HeaderName::from_static(HEADER)), trusted: vec![IpNet::from(PROXY)] };
    let mut headers = HeaderMap::new();
    headers.insert(HEADER, value);
    assert_eq!(cfg.forwarded(STRANGER, &headers), Ok(None), "the header counts only from a trusted proxy");
    let Ok(Some(der)) = cfg.forwarded(PROXY, &headers) else { return false };
    let b64 = STANDARD.encode(&der);
    assert_eq!(decode(&b64).as_deref(), Some(der.as_slice()));
    assert_eq!(decode(&format!(":{b64}:")).as_deref(), Some(der.as_slice()));
    inspected(&der);
    true
}

fn inspected(der: &[u8]) {
    let cert = inspect(der.to_vec()).expect("a certificate x509-parser accepts can be inspected");
    assert_eq!(cert.der, der);
    let _ = cert.check_validity(tether_core::fuzzing::NOW);
    let _ = (tether_core::cert::rfc3339(cert.not_before), tether_core::cert::rfc3339(cert.not_after));
    assert!(cert.subject.matches(&cert.subject));
    // A subject printed and parsed back (as an operator copies it into `--tls-subject-dn`) matches.
    let printed = cert.subject.to_string();
    if let Ok(parsed) = Dn::parse(&printed) {
        assert!(parsed.matches(&cert.subject), "subject {printed:?} does not match itself printed");
    }
}
