//! Client authentication with a signed JWT (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID Connect
//! Core §9): `client_assertion_type` = [`ASSERTION_TYPE`] and `client_assertion` in the form. The
//! two methods differ only in the key: `private_key_jwt` ([`super::private_key_jwt`]) signs with
//! the client's registered asymmetric key, `client_secret_jwt` ([`super::client_secret_jwt`])
//! with an HMAC under its secret. Everything else is checked here, once:
//!
//! - `iss` = `sub` = the client_id;
//! - `aud` (a string or an array) names this server: its issuer identifier, its token endpoint
//!   URL, or the URL of the endpoint receiving the assertion (also under the mTLS alias); for a
//!   FAPI 2.0 client only the issuer identifier, as a string;
//! - `exp` is required, not passed, and at most [`MAX_LIFETIME`] ahead (Authlib signs for an hour
//!   by default); `iat` and `nbf`, when present, at most [`FUTURE_SKEW`] seconds ahead;
//! - `jti` is required and single-use: it is spent in the database (every node shares it) only
//!   after the signature verified, so a forger cannot burn an honest client's `jti`, and kept
//!   until `exp`.

use serde_json::Value;

use crate::error::OAuthError;
use crate::provider::Provider;
use crate::secret::b64url_decode;

/// RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may still be valid when it arrives.
pub const MAX_LIFETIME: i64 = 3600;
/// How far in the future `iat` and `nbf` may be (clock skew).
pub const FUTURE_SKEW: i64 = 10;
/// The HMAC algorithms of `client_secret_jwt`.
pub const HMAC_ALGS: [&str; 3] = ["HS256", "HS384", "HS512"];

/// A compact JWS taken apart; nothing verified yet.
pub struct Assertion<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Value,
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Take a `client_assertion` apart. The reason of a failure is for the log (the caller answers
/// `invalid_client`).
pub fn parse(raw: &str) -> Result<Assertion<'_>, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("client_assertion {why}"));
    let mut parts = raw.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("is not a compact JWS (three base64url parts)"));
    };
    let json = |part: &str| -> Option<Value> {
        b64url_decode(part).and_then(|b| serde_json::from_slice::<Value>(&b).ok()).filter(Value::is_object)
    };
    let header = json(h).ok_or_else(|| bad("has no JSON object header"))?;
    let claims = json(c).ok_or_else(|| bad("has no JSON object claims"))?;
    let signature = b64url_decode(s).ok_or_else(|| bad("has a signature that is not base64url"))?;
    let alg = header["alg"].as_str().ok_or_else(|| bad("header has no alg"))?.to_string();
    if header.get("crit").is_some() {
        return Err(bad("has a crit header, which this server does not understand"));
    }
    let kid = header["kid"].as_str().map(str::to_string);
    Ok(Assertion { alg, kid, claims, signing_input: &raw[..h.len() + 1 + c.len()], signature })
}

/// The client an assertion names (`sub`, else `iss`), unverified: only to find the client whose
/// key then verifies it.
pub fn named_client(raw: &str) -> Option<String> {
    let claims = raw.split('.').nth(1).and_then(b64url_decode)?;
    let v: Value = serde_json::from_slice(&claims).ok()?;
    v["sub"].as_str().or(v["iss"].as_str()).map(str::to_string)
}

/// Check the claims of an assertion whose signature verified; returns the replay key and the
/// time until which it must be kept.
pub fn check_claims(
    p: &Provider,
    a: &Assertion<'_>,
    client_id: &str,
    endpoint: &str,
    issuer_only: bool,
) -> Result<(String, i64), OAuthError> {
    let bad = |why: String| OAuthError::invalid_client(format!("client_assertion {why}"));
    let c = &a.claims;
    let now = p.now();
    for claim in ["iss", "sub"] {
        if c[claim].as_str() != Some(client_id) {
            return Err(bad(format!("{claim} must be the client_id {client_id:?}")));
        }
    }
    if issuer_only {
        // FAPI 2.0 §5.3.2.1 (and RFC 7523bis): the issuer identifier, alone, as a string.
        if c["aud"].as_str() != Some(p.issuer()) {
            return Err(bad(format!("aud must be exactly the issuer {:?}, as a string (FAPI 2.0)", p.issuer())));
        }
    }
    let accepted = audiences(p, endpoint);
    let aud_ok = match &c["aud"] {
        Value::String(s) => accepted.iter().any(|a| a == s),
        Value::Array(v) => v.iter().filter_map(Value::as_str).any(|s| accepted.iter().any(|a| a == s)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad(format!("aud must name this server: {}", accepted.join(" or "))));
    }
    let exp = c["exp"].as_i64().ok_or_else(|| bad("has no exp (a number)".into()))?;
    if exp <= now {
        return Err(bad("has expired".into()));
    }
    if exp - now > MAX_LIFETIME {
        return Err(bad(format!("lives too long: exp must be at most {MAX_LIFETIME} s ahead")));
    }
    for claim in ["iat", "nbf"] {
        match c.get(claim) {
            None => {}
            Some(v) => match v.as_i64() {
                Some(t) if t <= now + FUTURE_SKEW => {}
                Some(_) => return Err(bad(format!("{claim} is in the future"))),
                None => return Err(bad(format!("{claim} is not a number"))),
            },
        }
    }
    let jti = c["jti"].as_str().filter(|j| !j.is_empty()).ok_or_else(|| bad("has no jti".into()))?;
    if jti.len() > 256 {
        return Err(bad("has a jti longer than 256 characters".into()));
    }
    // Hashed: a jti is the client's text (PostgreSQL refuses a NUL in it; its length is the
    // client's choice), the key is fixed-size and plain.
    Ok((format!("jwt-bearer:{}", crate::secret::hash_secret(&format!("{client_id}\u{0}{jti}"))), exp))
}

/// The `aud` values this server accepts for an assertion sent to `endpoint` (a path).
pub fn audiences(p: &Provider, endpoint: &str) -> Vec<String> {
    let iss = p.issuer();
    let mut v = vec![iss.to_string(), format!("{iss}{}", crate::endpoint::paths::TOKEN), format!("{iss}{endpoint}")];
    if let Some(m) = &p.config.mtls_base {
        v.push(format!("{m}{}", crate::endpoint::paths::TOKEN));
        v.push(format!("{m}{endpoint}"));
    }
    v.dedup();
    v
}

/// Spend the assertion's `jti` (after its signature verified): a second use fails on every node.
pub async fn spend(p: &Provider, replay_key: &str, until: i64) -> Result<(), OAuthError> {
    if !p.store.dpop_jti_fresh(replay_key, until).await? {
        return Err(OAuthError::invalid_client("client_assertion was already used (jti replay)"));
    }
    Ok(())
}
