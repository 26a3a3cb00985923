//! `self_signed_tls_client_auth` (RFC 8705 §2.2): the client proves itself with a TLS client
//! certificate registered for it (`tether app create --cert-file PEM`); the certificate need not
//! chain anywhere. Compared by x5t#S256 thumbprint, in constant time.

use crate::binding::certificate::thumbprint;
use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::secret::ct_eq;

pub fn verify(app: &AppRecord, peer_cert: Option<&[u8]>) -> Result<(), OAuthError> {
    let Some(der) = peer_cert else {
        return Err(OAuthError::invalid_client(
            "this client authenticates with a TLS client certificate (self_signed_tls_client_auth); none was presented",
        ));
    };
    let presented = thumbprint(der);
    let known =
        app.app.tls_client_certificates.iter().fold(false, |acc, t| acc | ct_eq(t.as_bytes(), presented.as_bytes()));
    if known {
        Ok(())
    } else {
        Err(OAuthError::invalid_client("the TLS client certificate is not one registered for this client"))
    }
}
