//! A request's client certificate as the protocol layer sees it (RFC 8705).
//!
//! The HTTP layer parses the certificate once (from the TLS handshake, or from a trusted proxy's
//! header) into a [`ClientCert`]: its DER, validity window and subject. The protocol modules then
//! decide what it proves:
//! - binding (`certificate`, B-2) and `self_signed_tls_client_auth` need no chain, but a
//!   certificate outside its validity window does not establish anything new (no token is bound to
//!   it, no client authenticates with it);
//! - `tls_client_auth` additionally needs a chain to the operator's trust anchors, which the
//!   server checks through [`ClientCertTrust`] (this crate does no X.509 path building);
//! - using an already bound token (B-5) compares thumbprints only, as RFC 8705 §3 prescribes.

use std::fmt::Debug;

use crate::dn::Dn;

#[derive(Debug, Clone)]
pub struct ClientCert {
    pub der: Vec<u8>,
    /// Validity window, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub subject: Dn,
}

impl ClientCert {
    /// RFC 8705 §3.1 `x5t#S256`: base64url (no padding) of the SHA-256 of the DER certificate.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.der)
    }

    /// Refuse a certificate outside its validity window at `now`, saying which bound it misses.
    pub fn check_validity(&self, now: i64) -> Result<(), String> {
        if now > self.not_after {
            return Err(format!("the client certificate expired at {}", rfc3339(self.not_after)));
        }
        if now < self.not_before {
            return Err(format!("the client certificate is not valid before {}", rfc3339(self.not_before)));
        }
        Ok(())
    }
}

/// RFC 8705 §3.1 `x5t#S256` of a DER certificate: base64url (no padding) of its SHA-256.
pub fn thumbprint(der: &[u8]) -> String {
    crate::secret::b64url(&crate::secret::sha256(der))
}

/// Chain verification for `tls_client_auth`, implemented by the server over its configured
/// trust anchors (`[tls] client_ca_file`).
pub trait ClientCertTrust: Send + Sync + Debug {
    /// `Ok` when `cert` chains to a trust anchor and is valid at `now` (Unix seconds).
    fn verify(&self, cert: &ClientCert, now: i64) -> Result<(), String>;
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (proleptic Gregorian, UTC).
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_793_491_200), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
