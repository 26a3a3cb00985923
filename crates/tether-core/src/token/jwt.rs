//! JWT access tokens (RFC 9068): `typ: at+jwt`, ES256, `kid` in the header.

use serde_json::{Value, json};

use crate::keys::SigningKey;
use crate::store::AccessTokenRecord;

pub const TYP: &str = "at+jwt";

pub fn claims(issuer: &str, rec: &AccessTokenRecord) -> Value {
    let aud: Value = if rec.audience.len() == 1 { json!(rec.audience[0]) } else { json!(rec.audience) };
    let mut c = json!({
        "iss": issuer,
        "sub": rec.user_id.as_deref().unwrap_or(&rec.client_id),
        "aud": aud,
        "client_id": rec.client_id,
        "jti": rec.jti,
        "iat": rec.issued_at,
        "nbf": rec.issued_at,
        "exp": rec.expires_at,
    });
    // RFC 9068 §2.2.3 and RFC 6749's scope grammar: no scope, no claim (never `""`).
    if !rec.scope.is_empty() {
        c["scope"] = json!(rec.scope);
    }
    if let Some(at) = rec.auth_time {
        c["auth_time"] = json!(at);
    }
    if let Some(u) = &rec.username {
        c["username"] = json!(u);
    }
    if let Some(sid) = &rec.session_id {
        c["sid"] = json!(sid);
    }
    if let Some(act) = rec.act.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
        c["act"] = act;
    }
    if let Some(b) = &rec.binding {
        c["binding_type"] = json!(b.kind.as_str());
        c["binding_ref"] = json!(b.reference);
        if let Some(cnf) = crate::binding::registry::cnf(b) {
            c["cnf"] = cnf;
        }
    }
    c
}

pub fn mint(key: &SigningKey, issuer: &str, rec: &AccessTokenRecord) -> String {
    key.sign_jwt(TYP, &claims(issuer, rec))
}
