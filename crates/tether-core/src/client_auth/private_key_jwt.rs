//! `private_key_jwt` (OpenID Connect Core §9, RFC 7523): the client signs its assertion with an
//! asymmetric key whose public half it registered, either as a JWK Set (`--jwks FILE`) or at a
//! URL (`--jwks-uri`), fetched and cached by [`crate::client_keys`].
//!
//! The claims and the replay check are [`super::jwt_bearer`]'s.

use std::sync::Arc;

use serde_json::Value;

use super::jwt_bearer;
use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::provider::Provider;

/// The asymmetric algorithms accepted (the discovery document lists them).
pub const ALGS: [&str; 10] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
/// Verify a `private_key_jwt` assertion sent to `endpoint` (a path).
pub async fn verify(p: &Provider, app: &AppRecord, raw: &str, endpoint: &str) -> Result<(), OAuthError> {
    let a = jwt_bearer::parse(raw)?;
    if !ALGS.contains(&a.alg.as_str()) {
        return Err(OAuthError::invalid_client(format!(
            "client_assertion alg {} is not one of private_key_jwt's ({})",
            a.alg,
            ALGS.join(", ")
        )));
    }
    if !crate::profile::alg_allowed(&app.app, &a.alg) {
        return Err(OAuthError::invalid_client(crate::profile::alg_refused("client_assertion", &a.alg)));
    }
    let keys = registered_keys(p, app, a.kid.as_deref()).await?;
    let input = a.signing_input.as_bytes();
    let verified = candidates(&keys, a.kid.as_deref(), &a.alg)
        .any(|jwk| crate::keys::verify_with_jwk(jwk, &a.alg, input, &a.signature));
    if !verified {
        return Err(OAuthError::invalid_client(match &a.kid {
            Some(k) => format!("client_assertion signature does not verify with the client's key {k:?}"),
            None => "client_assertion signature does not verify with any of the client's keys".into(),
        }));
    }
    let (replay_key, until) = jwt_bearer::check_claims(p, &a, &app.app.client_id, endpoint, app.app.fapi2())?;
    jwt_bearer::spend(p, &replay_key, until).await
}

/// The registered keys that may have signed: the `kid` when the JWS names one, never an
/// encryption key, and only keys whose own `alg` (when they say) is the one used.
pub fn candidates<'a>(keys: &'a [Value], kid: Option<&'a str>, alg: &'a str) -> impl Iterator<Item = &'a Value> {
    keys.iter().filter(move |k| {
        kid.is_none_or(|kid| k["kid"].as_str() == Some(kid))
            && k["use"].as_str() != Some("enc")
            && k["alg"].as_str().is_none_or(|a| a == alg)
    })
}

/// The client's public keys: registered inline, or fetched from its `jwks_uri`.
pub async fn registered_keys(p: &Provider, app: &AppRecord, kid: Option<&str>) -> Result<Arc<Vec<Value>>, OAuthError> {
    if let Some(set) = &app.app.jwks {
        return Ok(Arc::new(set["keys"].as_array().cloned().unwrap_or_default()));
    }
    match &app.app.jwks_uri {
        Some(uri) => {
            let guarded = app.app.registered && !p.config.registration.allow_private_uris;
            p.client_jwks.keys(p.now(), p.config.jwks_fetcher.as_deref(), uri, kid, guarded).await
        }
        None => Err(OAuthError::invalid_client("the client registered no keys (jwks or jwks_uri)")),
    }
}
