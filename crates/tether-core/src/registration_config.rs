//! `[registration]`, the settings of dynamic client registration (`crate::endpoint::registration`),
//! and the scopes no registered client may hold. Apart from the endpoint so that the provider's
//! configuration can hold it without depending on the endpoint.

/// The scopes no dynamically registered client may hold: the admin API's, registration itself.
pub const PRIVILEGED_SCOPES: [&str; 3] = ["admin:read", "admin:write", "client:register"];

/// `[registration]`.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Registration without a token.
    pub open: bool,
    /// The scopes a registered client may ask for (and gets when it names none).
    pub allowed_scopes: Vec<String>,
    /// Registered clients' `jwks_uri` / `backchannel_logout_uri` may name private and loopback
    /// addresses (and `http` on loopback): for development only.
    pub allow_private_uris: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            open: false,
            allowed_scopes: vec!["openid".into(), "profile".into(), "email".into()],
            allow_private_uris: false,
        }
    }
}

impl RegistrationConfig {
    /// A configuration that would let registered clients escalate is refused at start.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = self.allowed_scopes.iter().find(|s| PRIVILEGED_SCOPES.contains(&s.as_str())) {
            return Err(format!(
                "[registration] allowed_scopes may not hold {s:?}: registered clients are third parties"
            ));
        }
        if let Some(s) = self.allowed_scopes.iter().find(|s| !crate::scope::valid_token(s)) {
            return Err(format!("[registration] allowed_scopes: {s:?} is not a valid scope"));
        }
        Ok(())
    }
}
