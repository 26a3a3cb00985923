//! `tls_client_auth` (RFC 8705 §2.1): PKI mutual-TLS client authentication. The client presents a
//! certificate that chains to one of the operator's trust anchors (`[tls] client_ca_file`,
//! checked by the server's [`crate::cert::ClientCertTrust`]) and whose subject equals the DN
//! registered for the client (`--tls-subject-dn`), compared as distinguished names
//! ([`crate::dn::Dn::matches`]), not as strings.

use crate::cert::ClientCert;
use crate::dn::Dn;
use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::provider::Provider;

pub fn verify(p: &Provider, app: &AppRecord, peer_cert: Option<&ClientCert>) -> Result<(), OAuthError> {
    let Some(cert) = peer_cert else {
        return Err(OAuthError::invalid_client(
            "this client authenticates with a TLS client certificate (tls_client_auth); none was presented",
        ));
    };
    let Some(trust) = &p.config.client_trust else {
        tracing::warn!(client_id = %app.app.client_id, "tls_client_auth client, but the server has no [tls] client_ca_file");
        return Err(OAuthError::invalid_client(
            "tls_client_auth is not available: the server has no trust anchors for client certificates ([tls] client_ca_file)",
        ));
    };
    trust.verify(cert, p.now()).map_err(OAuthError::invalid_client)?;
    let registered = app.app.tls_subject_dn.as_deref().and_then(|d| Dn::parse(d).ok());
    match registered {
        Some(dn) if dn.matches(&cert.subject) => Ok(()),
        _ => Err(OAuthError::invalid_client(format!(
            "the TLS client certificate's subject '{}' is not the one registered for this client",
            cert.subject
        ))),
    }
}
