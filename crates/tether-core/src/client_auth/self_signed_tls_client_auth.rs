//! `self_signed_tls_client_auth` (RFC 8705 §2.2): the client proves itself with a TLS client
//! certificate registered for it (`tether app create --cert-file PEM`); the certificate need not
//! chain anywhere. Compared by x5t#S256 thumbprint, in constant time.

use crate::cert::ClientCert;
use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::provider::Provider;
use crate::secret::ct_eq;

pub fn verify(p: &Provider, app: &AppRecord, peer_cert: Option<&ClientCert>) -> Result<(), OAuthError> {
    let Some(cert) = peer_cert else {
        return Err(OAuthError::invalid_client(
            "this client authenticates with a TLS client certificate (self_signed_tls_client_auth); none was presented",
        ));
    };
    cert.check_validity(p.now()).map_err(OAuthError::invalid_client)?;
    let presented = cert.thumbprint();
    let known =
        app.app.tls_client_certificates.iter().fold(false, |acc, t| acc | ct_eq(t.as_bytes(), presented.as_bytes()));
    if known {
        Ok(())
    } else {
        Err(OAuthError::invalid_client("the TLS client certificate is not one registered for this client"))
    }
}
