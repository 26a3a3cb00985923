//! Where a request's client certificate comes from (token-binding.md B-2): the TLS handshake of
//! its connection or, only when the connection comes from a configured trusted proxy, the header
//! the proxy forwards it in. From any other peer the header is ignored, so nobody can claim a
//! certificate they do not hold by sending a header.
//!
//! Header formats accepted, as proxies send them: PEM (also with its newlines folded into
//! spaces), URL-encoded PEM (nginx `$ssl_client_escaped_cert`; `+` stays `+`, it is base64, not a
//! space), bare base64 DER, and RFC 9440 `Client-Cert` (`:base64:` byte sequence).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::pem::PemObject;
use tether_core::cert::{ClientCert, ClientCertTrust};
use tether_core::dn::{Dn, DnValue};

#[derive(Clone, Debug, Default)]
pub struct ProxyCertConfig {
    pub header: Option<HeaderName>,
    pub trusted: Vec<IpNet>,
}

impl ProxyCertConfig {
    /// Parse `[tls] client_cert_header` and `trusted_proxies` (addresses or CIDRs).
    pub fn parse(header: Option<&str>, trusted: &[String]) -> Result<Self, String> {
        let header = header
            .map(|h| {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .map_err(|_| format!("[tls] client_cert_header {h:?} is not a header name"))
            })
            .transpose()?;
        let trusted = trusted
            .iter()
            .map(|t| {
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("[tls] trusted_proxies entry {t:?} is not an address or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { header, trusted })
    }

    /// Is `peer` a trusted proxy that forwards certificates in the header? Then the header is the
    /// only source: the proxy's own TLS client certificate never stands in for its clients'.
    pub fn from_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.header.is_some() && self.trusted.iter().any(|n| n.contains(&peer))
    }

    /// The client's address: the peer, or behind a trusted proxy the rightmost untrusted hop of
    /// `Forwarded` / `X-Forwarded-For` ([`crate::forwarded`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        crate::forwarded::client_ip(peer, &self.trusted, headers)
    }

    /// The certificate a trusted proxy forwarded: `Ok(None)` when there is no such header or the
    /// peer is not trusted; an error when a trusted proxy sent something that is not a certificate.
    pub fn forwarded(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Option<Vec<u8>>, String> {
        let Some(name) = &self.header else { return Ok(None) };
        if !self.from_trusted_proxy(peer) {
            return Ok(None);
        }
        let Some(value) = headers.get(name) else { return Ok(None) };
        let text = value.to_str().map_err(|_| "the forwarded client certificate header is not text".to_string())?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        decode(text)
            .map(Some)
            .ok_or_else(|| "the forwarded client certificate header does not hold a certificate".to_string())
    }
}

/// Any accepted header form to DER; `None` if it is not a parseable X.509 certificate.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    let der = if t.len() > 2 && t.starts_with(':') && t.ends_with(':') {
        STANDARD.decode(&t[1..t.len() - 1]).ok()?
    } else {
        let unescaped = if t.contains('%') {
            percent_encoding::percent_decode_str(t).decode_utf8().ok()?.into_owned()
        } else {
            t.to_string()
        };
        // Some proxies form-encode the armor's spaces as `+`.
        let unescaped = unescaped
            .replace("-----BEGIN+CERTIFICATE-----", "-----BEGIN CERTIFICATE-----")
            .replace("-----END+CERTIFICATE-----", "-----END CERTIFICATE-----");
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        // The END line must start after the BEGIN line ends: in `-----BEGIN CERTIFICATE-----END
        // CERTIFICATE-----` they share dashes, and slicing between them panicked (found by fuzzing).
        let body = match (unescaped.find(BEGIN), unescaped.find("-----END CERTIFICATE-----")) {
            (Some(b), Some(e)) if b + BEGIN.len() <= e => unescaped[b + BEGIN.len()..e].to_string(),
            _ => unescaped,
        };
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        STANDARD.decode(&b64).ok()?
    };
    let ok = x509_parser::parse_x509_certificate(&der).is_ok();
    ok.then_some(der)
}

/// Parse a certificate (already known to be X.509) into what the protocol layer looks at.
pub fn inspect(der: Vec<u8>) -> Option<ClientCert> {
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let rdns = cert
        .subject()
        .iter()
        .map(|rdn| rdn.iter().map(|ava| (ava.attr_type().to_id_string(), dn_value(ava))).collect())
        .collect();
    let validity = cert.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let subject = Dn::from_asn1_rdns(rdns);
    drop(cert);
    Some(ClientCert { der, not_before, not_after, subject })
}

fn dn_value(ava: &x509_parser::x509::AttributeTypeAndValue<'_>) -> DnValue {
    use x509_parser::asn1_rs::{Tag, ToDer};
    if let Ok(s) = ava.as_str() {
        return DnValue::Text(s.to_string());
    }
    let v = ava.attr_value();
    if v.tag() == Tag::BmpString && v.data.len() % 2 == 0 {
        let units: Vec<u16> = v.data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        if let Ok(s) = String::from_utf16(&units) {
            return DnValue::Text(s);
        }
    }
    DnValue::Der(v.to_der_vec().unwrap_or_default())
}

/// `tls_client_auth` trust anchors: the certificates of `[tls] client_ca_file` (roots, and any
/// intermediates the clients do not send: every certificate in the file is an anchor), checked
/// with webpki: signature chain, validity at the provider's clock, and the clientAuth usage when
/// the certificate restricts its usages.
#[derive(Debug)]
pub struct CaTrust {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl CaTrust {
    pub fn load(path: &Path) -> Result<Self, String> {
        let what = format!("[tls] client_ca_file {}", path.display());
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {what}: {e}"))?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| format!("{what}: bad PEM: {e}"))?;
            roots.add(c).map_err(|e| format!("{what}: unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("{what} holds no certificate"));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(Self { verifier })
    }
}

impl ClientCertTrust for CaTrust {
    fn verify(&self, cert: &ClientCert, now: i64) -> Result<(), String> {
        let now = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
        let der = CertificateDer::from(cert.der.as_slice());
        match self.verifier.verify_client_cert(&der, &[], now) {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(e)) => Err(match e {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    "the TLS client certificate does not chain to a trusted CA ([tls] client_ca_file)".to_string()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the TLS client certificate expired at {}", tether_core::cert::rfc3339(cert.not_after))
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                    "the TLS client certificate is not valid before {}",
                    tether_core::cert::rfc3339(cert.not_before)
                ),
                CertificateError::Other(ref o) if o.to_string().contains("UnsupportedCertVersion") => {
                    "the TLS client certificate is an X.509 v1 certificate; tls_client_auth needs v3 \
                     (openssl: sign it with -extfile / -copy_extensions, or use `openssl req -x509 -CA`)"
                        .to_string()
                }
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    "the TLS client certificate is not for client authentication (extended key usage)".to_string()
                }
                other => format!("the TLS client certificate was refused: {other}"),
            }),
            Err(other) => Err(format!("the TLS client certificate was refused: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_form_decodes_to_the_same_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        let pem = cert.pem();
        let b64 = STANDARD.encode(&der);
        let escaped: String = percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2B", "+");
        for form in [pem.clone(), pem.replace('\n', " "), escaped, b64.clone(), format!(":{b64}:")] {
            assert_eq!(decode(&form).as_deref(), Some(der.as_slice()), "{form}");
        }
        assert!(decode("not a certificate").is_none());
        // Regression (fuzz/corpus/client_cert/regression-armor-overlap): the armor lines overlap.
        assert!(decode("-----BEGIN CERTIFICATE-----END CERTIFICATE-----").is_none());
        assert!(decode("-----BEGIN+CERTIFICATE-----END+CERTIFICATE-----").is_none());
        assert!(decode("-----BEGIN CERTIFICATE----------END CERTIFICATE-----").is_none());
        let cfg = ProxyCertConfig::parse(Some("x-client-cert"), &["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-client-cert", b64.parse().unwrap());
        assert!(cfg.forwarded("127.0.0.1".parse().unwrap(), &h).unwrap().is_some());
        assert!(cfg.forwarded("192.168.1.1".parse().unwrap(), &h).unwrap().is_none(), "untrusted peer: ignored");
        assert!(ProxyCertConfig::parse(None, &["nope".into()]).is_err());
    }
}
