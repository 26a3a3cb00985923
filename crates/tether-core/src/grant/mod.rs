//! Grants: one module per `grant_type` wire value, all the same shape (ARCHITECTURE.md pattern 1):
//! a unit struct implementing [`Grant`] — its wire value, and `validate`, which parses its
//! parameters from the form (missing → `invalid_request`), checks them against the
//! [`GrantContext`] and returns a [`Validated`] grant. No grant mints or stores a token; that
//! happens once, for all of them, in [`crate::endpoint::token`]. [`registry`] lists them: the
//! token endpoint's dispatch and discovery's `grant_types_supported` both come from it.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod password;
pub mod refresh_token;
pub mod registry;
pub mod token_exchange;

use async_trait::async_trait;

use crate::binding::Evidence;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::provider::Provider;
use crate::scope;
use crate::store::{BindingRecord, Precondition};

/// What a grant may look at: the authenticated client, the request's form and evidence.
pub struct GrantContext<'a> {
    pub p: &'a Provider,
    pub app: &'a App,
    pub form: &'a Form,
    /// The client certificate and the verified DPoP proof (token exchange proves a bound subject
    /// token with them).
    pub evidence: Evidence<'a>,
    /// The client's address (after the trusted-proxy rule), for the password grant's throttles.
    pub addr: Option<&'a str>,
}

#[async_trait]
pub trait Grant: Send + Sync {
    /// The `grant_type` wire value this module handles.
    fn grant_type(&self) -> GrantType;
    /// Parse and check the request; nothing is written except what the grant's own protocol
    /// requires (a device poll, revoking the family of a replayed refresh token).
    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError>;
}

#[derive(Debug, Clone)]
pub struct Subject {
    pub user_id: String,
    pub username: String,
}

/// A grant that passed its checks: everything the issuance pipeline needs.
#[derive(Debug)]
pub struct Validated {
    pub grant: GrantType,
    pub subject: Option<Subject>,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    /// The authorization code the tokens descend from (`None` for grants without one).
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Option<i64>,
    pub nonce: Option<String>,
    pub issue_refresh: bool,
    pub precondition: Precondition,
    /// For `refresh_token`: the binding the new tokens inherit (B-1) and the family they join.
    pub inherited: Option<Inherited>,
    /// RFC 8693 §4.1 `act` claim (JSON), for exchanged tokens with an actor.
    pub act: Option<String>,
    /// A binding fixed before the token request (B-2: `cookie` and `sso-session` with the code).
    pub preset_binding: Option<BindingRecord>,
}

#[derive(Debug)]
pub struct Inherited {
    /// The presented refresh token when it is kept rather than rotated (FAPI 2.0 §5.3.2.1): it
    /// is answered again, and no new one is minted.
    pub kept: Option<String>,
    pub binding: Option<BindingRecord>,
    pub family_id: String,
    pub refresh_scope: String,
    pub refresh_expires_at: i64,
}

/// Scopes about a user (OIDC Core §5.4); meaningless on a token without one.
pub const USER_SCOPES: &[&str] = &["openid", "profile", "email", "address", "phone", "offline_access"];

/// The scope a request asks for, checked against what the app may get. Absent: the app's scopes
/// (without `openid`, which must be asked for since it yields an ID token). `offline_access`
/// (OIDC Core §11) is dropped unless the app lists it: refresh tokens follow the app's
/// `refresh_token` grant, and RFC 6749 §3.3 lets the server grant less than asked.
pub fn requested_scopes(app: &App, form: &Form) -> Result<Vec<String>, OAuthError> {
    match form.get("scope") {
        None => Ok(app.scopes.iter().filter(|s| *s != "openid").cloned().collect()),
        Some(s) => {
            let mut req = scope::parse(s)?;
            if !app.scopes.iter().any(|s| s == "offline_access") {
                req.retain(|s| s != "offline_access");
            }
            if let Some(bad) = req.iter().find(|s| !app.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("scope {bad:?} is not allowed for this client")));
            }
            Ok(req)
        }
    }
}

/// RFC 8707 §2.2 at the token endpoint: `resource` values narrow the audience to a subset of what
/// was `authorized` (absent: all of it); anything outside it is `invalid_target`. `what` names
/// the grant for the message.
pub fn narrow_audience(authorized: &[String], form: &Form, what: &str) -> Result<Vec<String>, OAuthError> {
    let resources = form.get_all("resource");
    if resources.is_empty() {
        return Ok(authorized.to_vec());
    }
    if let Some(bad) = resources.iter().find(|r| !authorized.iter().any(|a| a == *r)) {
        return Err(OAuthError::new(
            crate::error::ErrorCode::InvalidTarget,
            format!("resource {bad:?} was not granted to {what}"),
        ));
    }
    let mut narrowed: Vec<String> = resources.iter().map(|s| s.to_string()).collect();
    narrowed.dedup();
    Ok(narrowed)
}

/// RFC 8707 `resource` values, each within the app's `--audience`; absent: the app's default.
pub fn requested_audience(app: &App, form: &Form) -> Result<Vec<String>, OAuthError> {
    resolve_audience(app, &form.get_all("resource"))
}

pub fn resolve_audience(app: &App, resources: &[&str]) -> Result<Vec<String>, OAuthError> {
    if resources.is_empty() {
        return Ok(vec![app.default_audience().to_string()]);
    }
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        let ok_uri = url::Url::parse(r).map(|u| u.fragment().is_none()).unwrap_or(false);
        if !ok_uri {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("resource {r:?} must be an absolute URI without a fragment"),
            ));
        }
        if !app.audience.iter().any(|a| a == r) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("resource {r:?} is not an audience this client may ask for"),
            ));
        }
        if !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    Ok(out)
}

pub fn new_grant_id() -> String {
    crate::secret::b64url(&crate::secret::random_bytes::<16>())
}
