//! OpenID Connect ID tokens (Core §2): RS256 by default (`--id-token-alg`), with `nonce`,
//! `at_hash` (§3.1.3.6), `auth_time` and `sid` (a random session id, never the cookie's value).

use serde_json::{Value, json};

use crate::keys::SigningKey;
use crate::model::UserRecord;
use crate::scope;
use crate::secret::{b64url, sha256};

pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub user: &'a UserRecord,
    pub scope: &'a str,
    pub now: i64,
    pub lifetime: i64,
    pub auth_time: Option<i64>,
    pub nonce: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub access_token: &'a str,
}

/// Left half of SHA-256 of the access token (for RS256/ES256), base64url.
pub fn at_hash(access_token: &str) -> String {
    b64url(&sha256(access_token.as_bytes())[..16])
}

/// Claims for the scopes granted (OIDC Core §5.4), shared with userinfo.
pub fn profile_claims(user: &UserRecord, scope_str: &str, into: &mut Value) {
    into["sub"] = json!(user.user.id);
    if scope::contains(scope_str, "profile") {
        into["preferred_username"] = json!(user.user.username);
        if let Some(n) = &user.user.name {
            into["name"] = json!(n);
        }
    }
    if scope::contains(scope_str, "email")
        && let Some(e) = &user.user.email
    {
        into["email"] = json!(e);
        into["email_verified"] = json!(false);
    }
}

pub fn mint(key: &SigningKey, i: &IdTokenInput<'_>) -> String {
    let mut c = json!({
        "iss": i.issuer,
        "aud": i.client_id,
        "azp": i.client_id,
        "iat": i.now,
        "exp": i.now + i.lifetime,
        "auth_time": i.auth_time.unwrap_or(i.now),
        "at_hash": at_hash(i.access_token),
    });
    profile_claims(i.user, i.scope, &mut c);
    if let Some(n) = i.nonce {
        c["nonce"] = json!(n);
    }
    if let Some(s) = i.session_id {
        c["sid"] = json!(s);
        // The login session's key (token-binding.md B-1 `sso-session`), never the cookie value.
        c["isk"] = json!(crate::binding::sso_session::session_key(s));
    }
    key.sign_jwt("JWT", &c)
}
