//! Pushed authorization requests (RFC 9126) at [`paths::PAR`]: a client authenticates as at the
//! token endpoint and posts the parameters of an authorization request; they are validated exactly
//! as the authorization endpoint validates them (so a bad request is refused here, in JSON, rather
//! than later in the user's browser) and stored. The answer is `201 {request_uri, expires_in}`;
//! the client then sends the user to the authorization endpoint with only `client_id` and
//! `request_uri` ([`super::pushed::take`]).
//!
//! Lifetime ([`super::pushed`], which the authorization endpoint uses): [`LIFETIME`] seconds from
//! the push to the first use; then [`USE_WINDOW`] seconds (the user signs in; a reload of the login
//! page sends the same `request_uri` again) until it is consumed — when a code or an error goes
//! back to the client. Only a hash of the `request_uri` is stored.
//!
//! A DPoP proof sent with the push (RFC 9449 §10.1) binds the code to its key, as `dpop_jkt`
//! would; a `dpop_jkt` parameter that names another key is refused.

use serde_json::{Value, json};

use super::authorize::{self, AuthzError};
use super::paths;
use crate::binding::dpop;
use crate::client_auth;
use crate::error::OAuthError;
use crate::form::Form;
use crate::provider::Provider;
use crate::secret::{b64url, hash_secret, random_bytes};
use crate::store::ParRecord;

pub use super::pushed::{LIFETIME, URN_PREFIX, USE_WINDOW};

/// Client authentication parameters: they authenticate the push, they are not part of the
/// authorization request.
const AUTH_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// The answer and the client that authenticated (for the access log).
pub async fn handle(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    dpop_header: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
) -> (Option<String>, Result<Value, OAuthError>) {
    let mut client_id = None;
    let answer = push(p, form, authorization, dpop_header, peer_cert, &mut client_id).await;
    (client_id, answer)
}

async fn push(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    dpop_header: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
    client_id: &mut Option<String>,
) -> Result<Value, OAuthError> {
    let app = client_auth::authenticate(p, form, authorization, peer_cert, paths::PAR).await?;
    *client_id = Some(app.app.client_id.clone());
    if form.has("request_uri") {
        return Err(OAuthError::invalid_request("request_uri cannot be pushed (RFC 9126 §2.1)"));
    }
    let mut params: Vec<(String, String)> =
        form.pairs().iter().filter(|(k, _)| !AUTH_PARAMS.contains(&k.as_str()) && k != "client_id").cloned().collect();
    params.insert(0, ("client_id".into(), app.app.client_id.clone()));
    let mut dpop_jkt = None;
    if let Some(h) = dpop_header {
        let proof = super::token::fapi_proof(&app.app, dpop::check_proof(p, h, "POST", paths::PAR, None).await?)?;
        match form.get("dpop_jkt") {
            Some(j) if j != proof.jkt => {
                return Err(OAuthError::invalid_request("dpop_jkt names another key than the DPoP proof's"));
            }
            Some(_) => {}
            None => dpop_jkt = Some(proof.jkt),
        }
    }
    // Validated as the authorization endpoint will; its errors are answered here, in JSON. A
    // pushed request object is stored unpacked (its parameters only, RFC 9101 §6.3).
    let pushed = Form::from_pairs(params);
    let (_, _, inner) = authorize::validate_pushed(p, &pushed).await.map_err(|e| match e {
        AuthzError::Page(e) => e,
        AuthzError::Redirect { error, .. } => error,
    })?;
    let mut params = inner.pairs().to_vec();
    if let (Some(jkt), false) = (dpop_jkt, inner.has("dpop_jkt")) {
        params.push(("dpop_jkt".into(), jkt));
    }
    let random = b64url(&random_bytes::<32>());
    let rec = ParRecord {
        uri_hash: hash_secret(&random),
        client_id: app.app.client_id.clone(),
        params,
        expires_at: p.now() + LIFETIME,
    };
    p.store.insert_par(&rec).await?;
    Ok(json!({"request_uri": format!("{URN_PREFIX}{random}"), "expires_in": LIFETIME}))
}
