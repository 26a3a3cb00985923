//! Token binding (token-binding.md): what a token is bound to, and the reuse key of B-3.
//!
//! A binding is a property of the token, at most one per token ([`BindingRecord`]). Each binding
//! type is one module implementing [`TokenBinder`]; the issuance pipeline in
//! [`crate::endpoint::token`] asks the app's binder for the value and never branches on the type.
//! Types whose modules do not exist yet are refused when an app is configured (B-10), so no
//! request can reach a missing binder.

pub mod certificate;
pub mod client_request;
pub mod cookie;
pub mod device_flow;
pub mod dpop;
pub mod sso_session;

use md5::{Digest, Md5};

use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{BindingType, GrantType};
use crate::secret::{b64url, hash_secret, hex, sha256};
use crate::store::BindingRecord;

/// What a binder may look at when a token is issued.
pub struct BindContext<'a> {
    pub grant: GrantType,
    pub form: &'a Form,
    /// What the request presents (its client certificate, cookies).
    pub evidence: Evidence<'a>,
    /// Unix seconds, from the provider's clock.
    pub now: i64,
}

/// What a request presents that can prove a binding (B-5).
#[derive(Debug, Default, Clone, Copy)]
pub struct Evidence<'a> {
    /// The client certificate (TLS handshake, or a trusted proxy's header).
    pub peer_cert: Option<&'a crate::cert::ClientCert>,
    /// The `atbv` cookie.
    pub atbv: Option<&'a str>,
    /// The SSO session cookie.
    pub session_cookie: Option<&'a str>,
    /// The request's DPoP proof, already verified (RFC 9449 §4.3, replay included).
    pub dpop: Option<&'a crate::dpop::ProofOk>,
}

/// The checks of B-5: does the request prove the token's binding? `certificate`: the same
/// certificate; `cookie`: an `atbv` cookie whose value matches; `sso-session`: the cookie of a
/// live session whose key matches; `device-flow`, `client-request`: always. Hashes are compared
/// in constant time (B-12).
pub async fn proven(p: &crate::provider::Provider, b: &BindingRecord, ev: &Evidence<'_>) -> Result<bool, OAuthError> {
    Ok(match b.kind {
        BindingType::Certificate => ev.peer_cert.is_some_and(|c| matches(b, &c.thumbprint())),
        BindingType::Cookie => ev.atbv.is_some_and(|v| matches(b, v)),
        BindingType::SsoSession => match crate::endpoint::authorize::current_session(p, ev.session_cookie).await? {
            Some(s) => matches(b, &sso_session::session_key(&s.id)),
            None => false,
        },
        BindingType::Dpop => ev.dpop.is_some_and(|d| matches(b, &d.jkt)),
        BindingType::DeviceFlow | BindingType::ClientRequest | BindingType::None => true,
    })
}

pub trait TokenBinder: Send + Sync {
    fn kind(&self) -> BindingType;
    /// The binding value for this request, or `None` when the token is issued unbound.
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<String>, OAuthError>;
}

/// The binder of a binding type, or `None` for `none` (and for types not built yet).
pub fn binder(kind: BindingType) -> Option<&'static dyn TokenBinder> {
    match kind {
        BindingType::ClientRequest => Some(&client_request::ClientRequest),
        BindingType::Certificate => Some(&certificate::Certificate),
        BindingType::Cookie => Some(&cookie::Cookie),
        BindingType::SsoSession => Some(&sso_session::SsoSession),
        BindingType::DeviceFlow => Some(&device_flow::DeviceFlow),
        BindingType::Dpop => Some(&dpop::Dpop),
        BindingType::None => None,
    }
}

/// Binding types this build implements (the CLI refuses the others).
pub fn supported(kind: BindingType) -> bool {
    kind == BindingType::None || binder(kind).is_some()
}

/// Binding reference: lowercase hex MD5 of the value — an identifier for lookup and display
/// (WSO2-compatible), never the security check (B-12).
pub fn binding_ref(value: &str) -> String {
    hex(&Md5::digest(value.as_bytes()))
}

pub fn record(kind: BindingType, value: &str) -> BindingRecord {
    let public = matches!(kind, BindingType::Certificate | BindingType::Dpop);
    BindingRecord {
        kind,
        reference: binding_ref(value),
        value_hash: hash_secret(value),
        cnf: public.then(|| value.to_string()),
    }
}

/// The `cnf` claim (RFC 7800) of a bound token, for the binding types that have one (B-4).
pub fn cnf(b: &BindingRecord) -> Option<serde_json::Value> {
    let v = b.cnf.as_ref()?;
    match b.kind {
        BindingType::Certificate => Some(serde_json::json!({"x5t#S256": v})),
        BindingType::Dpop => Some(serde_json::json!({"jkt": v})),
        _ => None,
    }
}

/// Does a presented binding value match the bound one? Hashes compared in constant time (B-12).
pub fn matches(b: &BindingRecord, presented: &str) -> bool {
    crate::secret::verify_secret(presented, &b.value_hash)
}

/// B-3 reuse key: (client, user, scope set, audience, BR or NONE), hashed to a fixed width.
pub fn reuse_key(client_id: &str, user: Option<&str>, scope: &str, audience: &[String], br: Option<&str>) -> String {
    let mut aud: Vec<&str> = audience.iter().map(String::as_str).collect();
    aud.sort_unstable();
    let material = format!(
        "{client_id}\u{0}{}\u{0}{scope}\u{0}{}\u{0}{}",
        user.unwrap_or(""),
        aud.join(" "),
        br.unwrap_or("NONE")
    );
    b64url(&sha256(material.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn binding_ref_is_md5_hex() {
        assert_eq!(binding_ref("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
    #[test]
    fn reuse_key_distinguishes_every_part() {
        let a = vec!["x".to_string()];
        let base = reuse_key("c", Some("u"), "s", &a, None);
        assert_ne!(base, reuse_key("c2", Some("u"), "s", &a, None));
        assert_ne!(base, reuse_key("c", Some("u2"), "s", &a, None));
        assert_ne!(base, reuse_key("c", Some("u"), "s t", &a, None));
        assert_ne!(base, reuse_key("c", Some("u"), "s", &["y".to_string()], None));
        assert_ne!(base, reuse_key("c", Some("u"), "s", &a, Some("br")));
    }
}
