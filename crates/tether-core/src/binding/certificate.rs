//! `certificate` binding (RFC 8705 §3, token-binding.md B-1/B-2): the token is bound to the
//! SHA-256 thumbprint (`x5t#S256`) of the client certificate of the token request's TLS
//! connection. Self-signed certificates bind too: the certificate need not chain anywhere, the
//! TLS handshake already proved possession of its key. The thumbprint is public and is shown as
//! `cnf` in JWTs and introspection.

use super::{BindContext, TokenBinder};
use crate::error::OAuthError;
use crate::model::BindingType;
use crate::secret::{b64url, sha256};

pub struct Certificate;

/// RFC 8705 §3.1: base64url (no padding) of the SHA-256 of the DER certificate.
pub fn thumbprint(der: &[u8]) -> String {
    b64url(&sha256(der))
}

pub fn not_found() -> OAuthError {
    OAuthError::invalid_request("TLS certificate not found in the request.")
}

/// The thumbprint of the request's certificate, which must be within its validity window: a new
/// token is never bound to an expired certificate.
pub fn presented(ctx: &BindContext<'_>) -> Result<String, OAuthError> {
    let cert = ctx.evidence.peer_cert.ok_or_else(not_found)?;
    cert.check_validity(ctx.now).map_err(|e| OAuthError::invalid_request(format!("{e}; no token is bound to it")))?;
    Ok(cert.thumbprint())
}

impl TokenBinder for Certificate {
    fn kind(&self) -> BindingType {
        BindingType::Certificate
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<String>, OAuthError> {
        presented(ctx).map(Some)
    }
}
