//! JWT-secured authorization requests (RFC 9101): a `request` parameter holding the authorization
//! request's parameters as the claims of a JWT the client signed — at the authorization endpoint
//! and inside a pushed request. The object is verified with the client's registered keys (its
//! JWK Set or `jwks_uri`, as `private_key_jwt`; an HMAC under the secret for a `client_secret_jwt`
//! app), never `alg: none`, and its claims must say who made it and for whom: `iss` = the
//! client_id, `aud` naming the issuer, an `exp` at most an hour ahead, `nbf`/`iat` not in the
//! future. Then only the object's parameters count (RFC 9101 §6.3: those outside it are ignored,
//! except `client_id`, which must agree).

use aws_lc_rs::hmac;
use serde_json::Value;

use crate::client_auth::jwt_bearer::{self, FUTURE_SKEW, MAX_LIFETIME};
use crate::client_auth::{client_secret_jwt, private_key_jwt};
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::model::AppRecord;
use crate::provider::Provider;

/// The JWT claims that are about the object itself, not authorization request parameters.
const ENVELOPE: [&str; 6] = ["iss", "aud", "exp", "iat", "nbf", "jti"];

fn bad(why: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestObject, why)
}

/// The algorithms a request object may be signed with (discovery).
pub fn algs() -> Vec<&'static str> {
    private_key_jwt::ALGS.iter().chain(jwt_bearer::HMAC_ALGS.iter()).copied().collect()
}

/// Verify `app`'s request object and return the authorization request it carries.
pub async fn unpack(p: &Provider, app: &AppRecord, jwt: &str) -> Result<Form, OAuthError> {
    let a = jwt_bearer::parse(jwt).map_err(|e| bad(e.description.replace("client_assertion", "the request object")))?;
    if !crate::profile::alg_allowed(&app.app, &a.alg) {
        return Err(bad(crate::profile::alg_refused("the request object's", &a.alg)));
    }
    let input = a.signing_input.as_bytes();
    let verified = if let Some(algo) = match a.alg.as_str() {
        "HS256" => Some(hmac::HMAC_SHA256),
        "HS384" => Some(hmac::HMAC_SHA384),
        "HS512" => Some(hmac::HMAC_SHA512),
        _ => None,
    } {
        let secret = client_secret_jwt::unseal(p, app)
            .ok_or_else(|| bad("an HMAC-signed request object needs a client_secret_jwt client"))?;
        hmac::verify(&hmac::Key::new(algo, &secret), input, &a.signature).is_ok()
    } else if private_key_jwt::ALGS.contains(&a.alg.as_str()) {
        let keys = private_key_jwt::registered_keys(p, app, a.kid.as_deref())
            .await
            .map_err(|_| bad("the client registered no keys to verify request objects with (jwks or jwks_uri)"))?;
        private_key_jwt::candidates(&keys, a.kid.as_deref(), &a.alg)
            .any(|jwk| crate::keys::verify_with_jwk(jwk, &a.alg, input, &a.signature))
    } else {
        return Err(bad(format!("request object alg {:?} is not accepted (signed objects only)", a.alg)));
    };
    if !verified {
        return Err(bad("the request object's signature does not verify with the client's keys"));
    }
    let c = &a.claims;
    let client_id = app.app.client_id.as_str();
    if c["iss"].as_str() != Some(client_id) {
        return Err(bad(format!("the request object's iss must be the client_id {client_id:?}")));
    }
    if c.get("client_id").is_some_and(|v| v.as_str() != Some(client_id)) {
        return Err(bad("the request object's client_id differs from the request's"));
    }
    let iss = p.issuer();
    let for_us = match &c["aud"] {
        Value::String(s) => s == iss,
        Value::Array(v) => v.iter().any(|s| s.as_str() == Some(iss)),
        _ => false,
    };
    if !for_us {
        return Err(bad(format!("the request object's aud must be the issuer {iss}")));
    }
    let now = p.now();
    let exp = c["exp"].as_i64().ok_or_else(|| bad("the request object has no exp"))?;
    if exp <= now {
        return Err(bad("the request object has expired"));
    }
    if exp - now > MAX_LIFETIME {
        return Err(bad(format!("the request object lives too long: exp at most {MAX_LIFETIME} s ahead")));
    }
    for claim in ["iat", "nbf"] {
        if c.get(claim).is_some_and(|v| v.as_i64().is_none_or(|t| t > now + FUTURE_SKEW)) {
            return Err(bad(format!("the request object's {claim} is in the future (or not a number)")));
        }
    }
    let Some(obj) = c.as_object() else { return Err(bad("the request object has no claims")) };
    let mut pairs = vec![("client_id".to_string(), client_id.to_string())];
    for (k, v) in obj {
        if ENVELOPE.contains(&k.as_str()) || k == "client_id" {
            continue;
        }
        if k == "request" || k == "request_uri" {
            return Err(bad(format!("a request object cannot hold {k}")));
        }
        let mut push = |v: &Value| match v {
            Value::String(s) => pairs.push((k.clone(), s.clone())),
            Value::Number(n) => pairs.push((k.clone(), n.to_string())),
            Value::Bool(b) => pairs.push((k.clone(), b.to_string())),
            // Structured parameters (`claims`) travel as JSON text.
            other => pairs.push((k.clone(), other.to_string())),
        };
        match v {
            // RFC 8707 `resource` (and any repeated parameter) as an array.
            Value::Array(items) => items.iter().for_each(&mut push),
            other => push(other),
        }
    }
    Ok(Form::from_pairs(pairs))
}
