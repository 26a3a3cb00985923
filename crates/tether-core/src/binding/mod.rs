//! Token binding (token-binding.md): what a token is bound to, the reuse key of B-3, and the
//! [`TokenBinder`] trait that carries a binding type's whole life.
//!
//! A binding is a property of the token, at most one per token ([`BindingRecord`]). Each binding
//! type is one module implementing [`TokenBinder`] — what it fixes at the authorization endpoint,
//! what it binds at issuance, how a refresh re-binds, how a request proves it, its `cnf` member
//! and `token_type`, how it relates to the login session (B-4, B-6) and which apps it fits
//! (B-10) — and one line in [`registry`]. Nothing outside those modules branches on the type:
//! adding a binding type is one module, one [`BindingType`] variant and one registry line.
//!
//! This file holds only the shared vocabulary; it never names a binding module (the registry
//! does), so the modules can use it without a cycle.

pub mod certificate;
pub mod client_request;
pub mod cookie;
pub mod device_flow;
pub mod dpop;
pub mod none;
pub mod registry;
pub mod sso_session;

use async_trait::async_trait;
use md5::{Digest, Md5};

use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{App, BindingType, GrantType};
use crate::provider::Provider;
use crate::secret::{b64url, hash_secret, hex, sha256};
use crate::store::{BindingRecord, RevokeFilter, SessionRecord};

/// What a binder may look at when a token is issued.
pub struct BindContext<'a> {
    pub grant: GrantType,
    pub form: &'a Form,
    /// What the request presents (its client certificate, cookies, verified DPoP proof).
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

/// What the authorization endpoint knows when it issues a code.
pub struct AuthzContext<'a> {
    /// The live login session the code is issued through.
    pub session: &'a SessionRecord,
    /// The browser's current `atbv` cookie.
    pub atbv: Option<&'a str>,
    /// RFC 9449 §10 `dpop_jkt` of the authorization request.
    pub dpop_jkt: Option<&'a str>,
}

/// What a binder fixes at the authorization endpoint (B-2): the binding that travels with the
/// code, and a cookie value the browser must be given.
#[derive(Debug, Default)]
pub struct AuthzBinding {
    pub binding: Option<BindingRecord>,
    /// A new `atbv` cookie value to set (B-7).
    pub set_atbv: Option<crate::secret::Secret>,
}

/// How a token's life relates to the login session it was issued through (B-4, B-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTie {
    /// The token lives and dies with the session (`sso-session`), whatever the app's flags.
    Always,
    /// Only for apps with `--revoke-on-logout`.
    IfRevokeOnLogout,
    /// Never ended by a browser session (`client-request`, `device-flow`).
    Never,
}

/// B-10 for a binding type that binds the tokens of one grant: the app must have that grant.
/// `name`: the grant as the CLI names it.
pub fn requires_grant(app: &App, grant: GrantType, name: &str) -> Result<(), String> {
    if !app.allows_grant(grant) {
        return Err(format!(
            "--binding {} binds tokens of the {name} grant, which this app does not have (--grant-types)",
            app.binding
        ));
    }
    Ok(())
}

/// The error of a refresh (or other re-use) that does not prove its token's binding (B-1, B-5).
pub fn invalid_binding() -> OAuthError {
    OAuthError::invalid_grant("Invalid token binding value is present in the request.")
}

/// One binding type's whole life. Methods with a default are the common behaviour; a type
/// overrides what it does differently.
#[async_trait]
pub trait TokenBinder: Send + Sync {
    fn kind(&self) -> BindingType;

    /// B-10: refuse an app configuration this binding type cannot work with (a message naming
    /// the flag).
    fn check_app(&self, _app: &App) -> Result<(), String> {
        Ok(())
    }

    /// B-2: what is fixed at the authorization endpoint and travels with the code.
    async fn at_authorization(&self, _p: &Provider, _ctx: &AuthzContext<'_>) -> Result<AuthzBinding, OAuthError> {
        Ok(AuthzBinding::default())
    }

    /// The binding of a new token (every grant but `refresh_token`) when nothing was fixed
    /// before the token request; `None` issues it unbound.
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Option<BindingRecord>, OAuthError>;

    /// A binding fixed at the authorization endpoint, at the token request that redeems the
    /// code. The default keeps it (the browser bindings); a proof-of-possession type checks the
    /// request proves it.
    fn confirm_preset(&self, preset: &BindingRecord, _ctx: &BindContext<'_>) -> Result<BindingRecord, OAuthError> {
        Ok(preset.clone())
    }

    /// B-1: the binding of the access token a refresh issues. The default inherits the refresh
    /// token's binding, which the request must prove when the app has `--validate-binding` (B-5).
    async fn rebind(
        &self,
        p: &Provider,
        app: &App,
        bound: &BindingRecord,
        ctx: &BindContext<'_>,
    ) -> Result<BindingRecord, OAuthError> {
        if app.validate_binding && !self.proven(p, bound, &ctx.evidence).await? {
            return Err(invalid_binding());
        }
        Ok(bound.clone())
    }

    /// B-5: does the request's evidence prove `bound`? Hashes are compared in constant time
    /// (B-12). Used wherever Tether itself checks a presented token: userinfo, revocation, token
    /// exchange, refresh.
    async fn proven(&self, p: &Provider, bound: &BindingRecord, ev: &Evidence<'_>) -> Result<bool, OAuthError>;

    /// What a request that does not prove this binding lacks, after "the token …" (for errors).
    fn unproven(&self) -> &'static str {
        "is bound to a value this request does not present"
    }

    /// Sender-constrained types (`certificate`, `dpop`) are proven on every use of the token,
    /// whatever the app's flags; the others only with `--validate-binding`.
    fn sender_constrained(&self) -> bool {
        false
    }

    /// The member of the `cnf` claim (RFC 7800) that carries the public binding value, for
    /// types whose value is public (B-4); `None` for secret values, kept only as hashes.
    fn cnf_member(&self) -> Option<&'static str> {
        None
    }

    /// The `token_type` of its access tokens, at the token endpoint and at introspection.
    fn token_type(&self) -> &'static str {
        "Bearer"
    }

    /// B-4/B-6: how its tokens relate to the login session they were issued through.
    fn session_tie(&self) -> SessionTie {
        SessionTie::IfRevokeOnLogout
    }

    /// B-6: besides the session's own tokens, what a browser logout also revokes in apps with
    /// `--revoke-on-logout` (the `atbv` cookie's tokens). The caller restricts it to those apps.
    fn on_logout(&self, _session: &SessionRecord, _ev: &Evidence<'_>) -> Option<RevokeFilter> {
        None
    }
}

/// Binding reference: lowercase hex MD5 of the value — an identifier for lookup and display
/// (WSO2-compatible), never the security check (B-12).
pub fn binding_ref(value: &str) -> String {
    hex(&Md5::digest(value.as_bytes()))
}

/// The stored form of a binding value: its reference and hash, and the value itself only when
/// `public` (a thumbprint shown as `cnf`).
pub fn record(kind: BindingType, value: &str, public: bool) -> BindingRecord {
    BindingRecord {
        kind,
        reference: binding_ref(value),
        value_hash: hash_secret(value),
        cnf: public.then(|| value.to_string()),
    }
}

/// B-1 for a refresh of a key-bound token (certificate, DPoP): every refresh presents the key. A
/// confidential client without `--validate-binding` may present a new one (RFC 8705 §6.3,
/// RFC 9449 §5: keys rotate) and the new access token is bound to it; a public client, or one
/// with `--validate-binding`, must present the same one.
pub fn rebind_key(app: &App, bound: &BindingRecord, presented: String) -> Result<BindingRecord, OAuthError> {
    if app.public || app.validate_binding {
        if !matches(bound, &presented) {
            return Err(invalid_binding());
        }
        return Ok(bound.clone());
    }
    Ok(record(bound.kind, &presented, true))
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
