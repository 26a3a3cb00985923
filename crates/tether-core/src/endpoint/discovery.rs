//! Authorization server metadata (RFC 8414) and OpenID Provider metadata (Discovery 1.0 §3).

use serde_json::{Value, json};

use super::paths;
use crate::client_auth::jwt_bearer::HMAC_ALGS;
use crate::client_auth::private_key_jwt;
use crate::model::AuthMethod;
use crate::provider::Provider;

pub fn metadata(p: &Provider) -> Value {
    let iss = p.issuer();
    let grants: Vec<&str> = crate::grant::registry::all().iter().map(|g| g.grant_type().as_str()).collect();
    let auth = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::ClientSecretJwt,
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
        AuthMethod::None,
    ]
    .map(AuthMethod::as_str);
    let confidential_auth = &auth[..auth.len() - 1];
    // The algorithms a client assertion may use (RFC 8414 §2: one list per endpoint).
    let assertion_algs: Vec<&str> = private_key_jwt::ALGS.iter().chain(HMAC_ALGS.iter()).copied().collect();
    let mut m = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}{}", paths::AUTHORIZE),
        "token_endpoint": format!("{iss}{}", paths::TOKEN),
        "jwks_uri": format!("{iss}{}", paths::JWKS),
        "userinfo_endpoint": format!("{iss}{}", paths::USERINFO),
        "introspection_endpoint": format!("{iss}{}", paths::INTROSPECT),
        "revocation_endpoint": format!("{iss}{}", paths::REVOKE),
        "device_authorization_endpoint": format!("{iss}{}", paths::DEVICE_AUTHORIZE),
        "pushed_authorization_request_endpoint": format!("{iss}{}", paths::PAR),
        "require_pushed_authorization_requests": p.config.require_par,
        "end_session_endpoint": format!("{iss}{}", paths::LOGOUT),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grants,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": auth,
        "revocation_endpoint_auth_methods_supported": auth,
        "introspection_endpoint_auth_methods_supported": confidential_auth,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "isk", "name", "preferred_username", "email", "email_verified"],
        "authorization_response_iss_parameter_supported": true,
        "registration_endpoint": format!("{iss}{}", paths::REGISTER),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": super::request_object::algs(),
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "access_token_signing_alg_values_supported": ["ES256"],
        "tls_client_certificate_bound_access_tokens": p.config.mtls_base.is_some(),
        "dpop_signing_alg_values_supported": crate::dpop::ALGS,
    });
    // RFC 8705 §5: where clients send mutual-TLS requests. The main listener's own URLs when it
    // requests certificates itself; the `[tls] mtls_listen` listener's when there is one.
    if let Some(base) = &p.config.mtls_base {
        m["mtls_endpoint_aliases"] = json!({
            "token_endpoint": format!("{base}{}", paths::TOKEN),
            "revocation_endpoint": format!("{base}{}", paths::REVOKE),
            "introspection_endpoint": format!("{base}{}", paths::INTROSPECT),
            "userinfo_endpoint": format!("{base}{}", paths::USERINFO),
            "pushed_authorization_request_endpoint": format!("{base}{}", paths::PAR),
        });
    }
    m
}
