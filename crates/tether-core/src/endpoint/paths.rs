//! Every endpoint's path, defined once (interface.md §2): the router, discovery, DPoP `htu`
//! checks and the pages all use these.

pub const AUTHORIZE: &str = "/oauth2/authorize";
pub const TOKEN: &str = "/oauth2/token";
pub const USERINFO: &str = "/oauth2/userinfo";
pub const REVOKE: &str = "/oauth2/revoke";
pub const INTROSPECT: &str = "/oauth2/introspect";
/// Pushed authorization requests (RFC 9126; WSO2's path).
pub const PAR: &str = "/oauth2/par";
pub const JWKS: &str = "/oauth2/jwks";
pub const DEVICE_AUTHORIZE: &str = "/oauth2/device_authorize";
pub const DEVICE: &str = "/oauth2/device";
pub const LOGOUT: &str = "/oidc/logout";
pub const OIDC_DISCOVERY: &str = "/.well-known/openid-configuration";
pub const OAUTH_DISCOVERY: &str = "/.well-known/oauth-authorization-server";
pub const HEALTH: &str = "/healthz";
pub const METRICS: &str = "/metrics";
/// Dynamic client registration (RFC 7591; WSO2's path). A client's own URL (RFC 7592) is this
/// plus `/{client_id}`.
pub const REGISTER: &str = "/api/identity/oauth2/dcr/v1.1/register";
/// The admin REST API (admin-api.md A-1).
pub const ADMIN_API: &str = "/api/admin/v1";
