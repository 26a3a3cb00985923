//! `certificate` binding (RFC 8705 §3, token-binding.md B-1/B-2): the token is bound to the
//! SHA-256 thumbprint (`x5t#S256`) of the client certificate of the token request's TLS
//! connection. Self-signed certificates bind too: the certificate need not chain anywhere, the
//! TLS handshake already proved possession of its key. The thumbprint is public and is shown as
//! `cnf` in JWTs and introspection. Sender-constrained: every use of the token presents the
//! certificate.

use async_trait::async_trait;

use super::{BindContext, Evidence, TokenBinder, matches, rebind_key, record};
use crate::error::OAuthError;
use crate::model::{App, BindingType};
use crate::provider::Provider;
use crate::store::BindingRecord;

pub struct Certificate;

pub fn not_found() -> OAuthError {
    OAuthError::invalid_request("TLS certificate not found in the request.")
}

/// The thumbprint of the request's certificate, which must be within its validity window: a new
/// token is never bound to an expired certificate.
fn presented(ctx: &BindContext<'_>) -> Result<String, OAuthError> {
    let cert = ctx.evidence.peer_cert.ok_or_else(not_found)?;
    cert.check_validity(ctx.now).map_err(|e| OAuthError::invalid_request(format!("{e}; no token is bound to it")))?;
    Ok(cert.thumbprint())
}

#[async_trait]
impl TokenBinder for Certificate {
    fn kind(&self) -> BindingType {
        BindingType::Certificate
    }

    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError> {
        Ok(Some(record(BindingType::Certificate, &presented(ctx)?, true)))
    }

    async fn rebind(
        &self,
        _: &Provider,
        app: &App,
        bound: &BindingRecord,
        ctx: &BindContext<'_>,
    ) -> Result<BindingRecord, OAuthError> {
        rebind_key(app, bound, presented(ctx)?)
    }

    async fn proven(&self, _: &Provider, b: &BindingRecord, ev: &Evidence<'_>) -> Result<bool, OAuthError> {
        Ok(ev.peer_cert.is_some_and(|c| matches(b, &c.thumbprint())))
    }

    fn unproven(&self) -> &'static str {
        "is bound to a client certificate that this request did not present"
    }

    fn sender_constrained(&self) -> bool {
        true
    }

    fn cnf_member(&self) -> Option<&'static str> {
        Some("x5t#S256")
    }
}
