//! Security profiles an app opts into with `--profile`. One exists: `fapi2`, the FAPI 2.0
//! Security Profile (final), for clients that need the strongest protection the OAuth family
//! offers (open banking and the like).
//!
//! Every rule is enforced twice: [`check_app`] refuses, at `app create`/`update` (CLI and admin
//! API alike), settings that break the profile, so no request ever meets a half-FAPI app; and the
//! request paths check what only a request can show, each where the rule belongs:
//!
//! | rule | where |
//! |---|---|
//! | PAR, with `redirect_uri` in the pushed request; no front-channel parameters | `endpoint::authorize` |
//! | `response_type=code`; PKCE with S256 | `endpoint::authorize` |
//! | confidential client, `private_key_jwt` / `tls_client_auth` / `self_signed_tls_client_auth` | [`check_app`] |
//! | no password grant | [`check_app`] |
//! | sender-constrained tokens: binding `dpop` or `certificate` | [`check_app`]; the binders |
//! | client assertion `aud` = the issuer, as a string | `client_auth::jwt_bearer` |
//! | PS256, ES256, EdDSA only ([`ALGS`]) | ID tokens: [`check_app`]; DPoP proofs: `endpoint::{token, par}`; assertions: `client_auth::private_key_jwt`; request objects: `endpoint::request_object` |
//! | `iat`/`nbf` up to 10 s ahead | everywhere already (`dpop::FUTURE_SKEW`, `jwt_bearer::FUTURE_SKEW`) |
//! | codes live at most [`CODE_LIFETIME`] s | `endpoint::authorize` |
//! | exact `https` redirect URIs | [`check_app`]; matching is exact for every app |
//! | refresh tokens not rotated (§5.3.2.1) | `grant::refresh_token` |
//!
//! Why a per-app profile rather than a server mode (node-oidc-provider's `fapi.profile`): one
//! server usually hosts FAPI clients next to ordinary ones (a bank's own apps, partners' back
//! ends); a server-wide switch would force every app into FAPI or none.

use crate::model::{App, AuthMethod, BindingType, GrantType, IdTokenAlg};

/// The signing algorithms FAPI 2.0 §5.4 allows.
pub const ALGS: [&str; 3] = ["PS256", "ES256", "EdDSA"];

/// FAPI 2.0 §5.3.2.1: authorization codes live at most 60 s.
pub const CODE_LIFETIME: i64 = 60;

/// May `app` use a JWS signed with `alg` (proofs, assertions, request objects)?
pub fn alg_allowed(app: &App, alg: &str) -> bool {
    !app.fapi2() || ALGS.contains(&alg)
}

/// The refusal of an algorithm the profile does not allow, naming the thing signed.
pub fn alg_refused(what: &str, alg: &str) -> String {
    format!("{what} alg {alg} is not allowed for a FAPI 2.0 client (only {})", ALGS.join(", "))
}

/// How long `app`'s codes live, given the server's setting.
pub fn code_lifetime(app: &App, configured: i64) -> i64 {
    if app.fapi2() { configured.min(CODE_LIFETIME) } else { configured }
}

/// Every rule of the app's profile that its settings can break, with a message naming the flag.
pub fn check_app(app: &App) -> Result<(), String> {
    if !app.fapi2() {
        return Ok(());
    }
    let fapi = "--profile fapi2";
    if app.public {
        return Err(format!("{fapi} needs a confidential client (FAPI 2.0 §5.3.2.1); drop --public"));
    }
    if !matches!(
        app.auth_method,
        AuthMethod::PrivateKeyJwt | AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
    ) {
        return Err(format!(
            "{fapi} needs --auth-method private_key_jwt, tls_client_auth or self_signed_tls_client_auth (not {})",
            app.auth_method
        ));
    }
    if app.allows_grant(GrantType::Password) {
        return Err(format!("{fapi} does not allow the password grant; drop it from --grant-types"));
    }
    if !matches!(app.binding, BindingType::Dpop | BindingType::Certificate) {
        return Err(format!(
            "{fapi} needs sender-constrained access tokens: --binding dpop or --binding certificate (not {})",
            app.binding
        ));
    }
    if !app.require_par {
        return Err(format!("{fapi} requires pushed authorization requests; drop --no-require-par"));
    }
    if app.id_token_alg == IdTokenAlg::RS256 {
        return Err(format!("{fapi} allows ID tokens signed with {} only: use --id-token-alg ES256", ALGS.join(", ")));
    }
    if let Some(u) = app.redirect_uris.iter().find(|u| !u.starts_with("https://")) {
        return Err(format!("{fapi} needs https redirect URIs (FAPI 2.0 §5.3.2.2): {u:?}"));
    }
    Ok(())
}
