//! The things Tether stores and reasons about: applications (clients), users, and the enums that
//! name their settings by their wire values.

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    // `$wire:tt`, not `:literal`: a forwarded literal fragment reaches derive macros wrapped in an
    // invisible group, which utoipa's `ToSchema` does not see through (serde does).
    ($(#[$m:meta])* $name:ident { $($var:ident = $wire:tt),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name { $(#[serde(rename = $wire)] $var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $wire),+ } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($wire => Some($name::$var),)+ _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

wire_enum!(
    /// `grant_type` wire values.
    GrantType {
        AuthorizationCode = "authorization_code",
        RefreshToken = "refresh_token",
        Password = "password",
        ClientCredentials = "client_credentials",
        DeviceCode = "urn:ietf:params:oauth:grant-type:device_code",
        TokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange",
    }
);

impl GrantType {
    /// Wire value or one of the CLI aliases (`device_code`, `token_exchange`).
    pub fn parse_cli(s: &str) -> Option<Self> {
        match s {
            "device_code" => Some(Self::DeviceCode),
            "token_exchange" => Some(Self::TokenExchange),
            other => Self::parse(other),
        }
    }
}

wire_enum!(
    /// `token_endpoint_auth_method` values (RFC 7591 §2, RFC 8705 §2).
    AuthMethod {
        ClientSecretBasic = "client_secret_basic",
        ClientSecretPost = "client_secret_post",
        TlsClientAuth = "tls_client_auth",
        SelfSignedTlsClientAuth = "self_signed_tls_client_auth",
        PrivateKeyJwt = "private_key_jwt",
        ClientSecretJwt = "client_secret_jwt",
        None = "none",
    }
);

wire_enum!(
    TokenType {
        Opaque = "opaque",
        Jwt = "jwt",
    }
);

wire_enum!(
    /// Binding types of token-binding.md B-1.
    BindingType {
        None = "none",
        Cookie = "cookie",
        SsoSession = "sso-session",
        Certificate = "certificate",
        DeviceFlow = "device-flow",
        ClientRequest = "client-request",
        Dpop = "dpop",
    }
);

wire_enum!(
    IdTokenAlg {
        RS256 = "RS256",
        ES256 = "ES256",
    }
);

wire_enum!(
    /// `--profile`: a security profile whose rules the app must follow (`crate::profile`).
    Profile {
        None = "none",
        Fapi2 = "fapi2",
    }
);

#[allow(clippy::derivable_impls)] // the enum is made by `wire_enum!`, which derives no Default
impl Default for Profile {
    fn default() -> Self {
        Profile::None
    }
}

/// An application (OAuth client) as stored and as `tether app show --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub public: bool,
    pub auth_method: AuthMethod,
    pub token_type: TokenType,
    pub binding: BindingType,
    pub validate_binding: bool,
    pub revoke_on_logout: bool,
    pub scopes: Vec<String>,
    pub audience: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub introspect_any: bool,
    pub require_consent: bool,
    pub exchange_from: Vec<String>,
    pub id_token_alg: IdTokenAlg,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_subject_dn: Option<String>,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): x5t#S256 thumbprints of the registered
    /// certificates (from `--cert-file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_client_certificates: Vec<String>,
    /// The client's public keys as a JWK Set (`--jwks FILE`): `private_key_jwt` assertions and
    /// signed request objects verify with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub jwks: Option<serde_json::Value>,
    /// Where the client publishes its JWK Set instead (`--jwks-uri`): fetched and cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `--require-par`: authorization requests must be pushed first (RFC 9126).
    #[serde(default)]
    pub require_par: bool,
    /// `--profile`: `fapi2` applies the FAPI 2.0 Security Profile (`crate::profile`).
    #[serde(default)]
    pub profile: Profile,
    /// OIDC Back-Channel Logout 1.0: where a `logout_token` is posted when a session the app holds
    /// tokens from ends (`crate::backchannel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// The `logout_token` always carries `sid` (it does anyway; advertised to the client).
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// Registered through dynamic client registration (RFC 7591): a third-party client, held to
    /// `crate::endpoint::registration`'s rules by every later change too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub registered: bool,
}

impl App {
    pub fn allows_grant(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }
    /// The `aud` of tokens when the request names no `resource`.
    pub fn default_audience(&self) -> &str {
        self.audience.first().map(String::as_str).unwrap_or(&self.client_id)
    }
    pub fn confidential(&self) -> bool {
        !self.public
    }
    /// Does the FAPI 2.0 Security Profile apply?
    pub fn fapi2(&self) -> bool {
        self.profile == Profile::Fapi2
    }
}

/// An application with the hash of its secret: what the store keeps.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub app: App,
    /// SHA-256 (base64url) of the client secret; `None` for public clients.
    pub secret_hash: Option<String>,
    /// The secret a regeneration replaced, still accepted until its time (rotation without
    /// downtime, admin-api.md A-3 `POST /apps/{id}/secret`).
    pub previous_secret: Option<PreviousSecret>,
    /// `client_secret_jwt` apps only: the secret itself, sealed under the master key
    /// ([`AppRecord::SEAL_PREFIX`] + client_id as associated data), base64url. The HMAC of an
    /// assertion cannot be checked against a hash.
    pub sealed_secret: Option<String>,
}

impl AppRecord {
    /// The associated data a client secret is sealed under: `client-secret:` + client_id (a sealed
    /// secret copied to another app does not open).
    pub const SEAL_PREFIX: &'static str = "client-secret:";
}

/// A replaced client secret's hash and the Unix time it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub hash: String,
    pub until: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: i64,
    /// `admin` (admin:read + admin:write) and/or `viewer` (admin:read), admin-api.md A-2.
    #[serde(default)]
    pub roles: Vec<String>,
    /// A disabled user cannot sign in, use the password grant, refresh or approve a device.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}
