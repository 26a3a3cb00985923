//! Token exchange (RFC 8693, token-binding.md B-9): a confidential client trades an active Tether
//! access token (the subject token) for a new access token of its own, for the same user, with at
//! most the subject token's scopes.
//!
//! Guard rails, so that exchange cannot launder a stolen token:
//! - only confidential clients exchange (checked at `app create` and again here);
//! - the subject token must be meant for the exchanging client (its audience names the client) or
//!   come from a client the exchanging app lists in `--exchange-from`;
//! - a subject token bound to a certificate or a DPoP key must be proven on the exchange request,
//!   exactly as if it were presented to a resource server — so a thief holding only the token gets
//!   nothing;
//! - the new token is bound per the exchanging app's own binding type by the issuance pipeline, and
//!   carries `act` (RFC 8693 §4.1) when an actor token is given.
//!
//! RFC 8693 §2.2.2 makes every unacceptable subject or actor token an `invalid_request`. No refresh
//! token is issued: the exchanged token lives no longer than the exchanging app's access token TTL
//! and never outlives what a refresh of the subject would allow.

use serde_json::{Value, json};

use async_trait::async_trait;

use super::{Grant, GrantContext, Subject, Validated, resolve_audience};
use crate::binding::Evidence;
use crate::binding::registry;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::model::{App, GrantType};
use crate::provider::Provider;
use crate::scope;
use crate::store::{AccessTokenRecord, Precondition};
use crate::token::{self, Found};

pub const GRANT_TYPE: GrantType = GrantType::TokenExchange;
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// An active access token named by `param`, or `invalid_request` saying why not.
async fn active_access(p: &Provider, form: &Form, param: &str) -> Result<AccessTokenRecord, OAuthError> {
    let value = form.require(param)?;
    let type_param = format!("{param}_type");
    // Enumerated values are trimmed (seed commands put spaces before `&`); tokens never are.
    match form.get(&type_param).map(str::trim) {
        Some(ACCESS_TOKEN_TYPE) | Some(JWT_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "{type_param} {other:?} is not supported; Tether exchanges access tokens ({ACCESS_TOKEN_TYPE})"
            )));
        }
        None => return Err(OAuthError::invalid_request(format!("{type_param} is required with {param}"))),
    }
    if value.len() > token::MAX_TOKEN_LEN {
        return Err(OAuthError::invalid_request(format!("{param} is not an active access token")));
    }
    match token::find(p, value, Some("access_token")).await? {
        // A token whose login session ended is not active, even if nobody has noticed yet (B-4).
        Some(Found::Access(a)) if a.active(p.now()) && crate::token::liveness::access_alive(p, &a).await? => Ok(a),
        _ => Err(OAuthError::invalid_request(format!(
            "{param} is not an active access token of this server (unknown, expired or revoked)"
        ))),
    }
}

/// B-9: a bound subject token is proven on the exchange request as it would be at a resource:
/// its binder's own check, for the sender-constrained types.
async fn prove_binding(p: &Provider, subject: &AccessTokenRecord, ev: &Evidence<'_>) -> Result<(), OAuthError> {
    let Some(b) = &subject.binding else { return Ok(()) };
    let binder = registry::binder(b.kind);
    if binder.sender_constrained() && !binder.proven(p, b, ev).await? {
        return Err(OAuthError::invalid_request(format!("the subject_token {}", binder.unproven())));
    }
    Ok(())
}

pub struct TokenExchange;

#[async_trait]
impl Grant for TokenExchange {
    fn grant_type(&self) -> GrantType {
        GRANT_TYPE
    }

    async fn validate(&self, ctx: &GrantContext<'_>) -> Result<Validated, OAuthError> {
        handle(ctx.p, ctx.app, ctx.form, &ctx.evidence).await
    }
}

async fn handle(p: &Provider, app: &App, form: &Form, ev: &Evidence<'_>) -> Result<Validated, OAuthError> {
    if app.public {
        return Err(OAuthError::unauthorized_client("public clients cannot exchange tokens"));
    }
    match form.get("requested_token_type").map(str::trim) {
        None | Some(ACCESS_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type {other:?} is not supported; Tether issues {ACCESS_TOKEN_TYPE}"
            )));
        }
    }
    let subject = active_access(p, form, "subject_token").await?;
    let meant_for_us = subject.audience.iter().any(|a| a == &app.client_id);
    let trusted_issuer = app.exchange_from.iter().any(|c| c == &subject.client_id);
    if !meant_for_us && !trusted_issuer {
        return Err(OAuthError::invalid_request(
            "the subject_token was neither issued for this client (aud) nor by a client it lists in --exchange-from",
        ));
    }
    prove_binding(p, &subject, ev).await?;

    let granted: Vec<&str> = subject.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let scopes: Vec<String> = match form.get("scope") {
        None => granted.iter().filter(|s| app.scopes.iter().any(|a| a == *s)).map(|s| s.to_string()).collect(),
        Some(s) => {
            let req = scope::parse(s)?;
            if let Some(bad) = req.iter().find(|s| !granted.contains(&s.as_str())) {
                return Err(OAuthError::invalid_scope(format!("scope {bad:?} is not in the subject_token's scope")));
            }
            if let Some(bad) = req.iter().find(|s| !app.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!("scope {bad:?} is not allowed for this client")));
            }
            req
        }
    };
    let scopes: Vec<String> = scopes.into_iter().filter(|s| s != "openid").collect();

    // `resource` (absolute URIs, RFC 8707) and `audience` (logical names, RFC 8693 §2.1) both name
    // where the new token may be used; both are limited to the app's --audience.
    let audience_names = form.get_all("audience");
    if let Some(bad) = audience_names.iter().find(|a| !app.audience.iter().any(|x| x == *a)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("audience {bad:?} is not an audience this client may ask for"),
        ));
    }
    let mut targets = form.get_all("resource");
    targets.extend(audience_names.iter().filter(|a| !targets.contains(a)).copied().collect::<Vec<_>>());
    let audience = resolve_audience(app, &targets)?;

    let act = match form.get("actor_token") {
        None => {
            if form.get("actor_token_type").is_some() {
                return Err(OAuthError::invalid_request("actor_token_type given without actor_token"));
            }
            None
        }
        Some(_) => {
            let actor = active_access(p, form, "actor_token").await?;
            let sub = actor.user_id.clone().unwrap_or_else(|| actor.client_id.clone());
            Some(json!({"sub": sub, "client_id": actor.client_id}))
        }
    };

    let subject_user = match (&subject.user_id, &subject.username) {
        (Some(id), Some(name)) => Some(Subject { user_id: id.clone(), username: name.clone() }),
        _ => None,
    };
    Ok(Validated {
        grant: GRANT_TYPE,
        subject: subject_user,
        scopes,
        audience,
        grant_id: None,
        session_id: None,
        auth_time: subject.auth_time,
        nonce: None,
        issue_refresh: false,
        precondition: Precondition::None,
        inherited: None,
        act: act.map(|a: Value| a.to_string()),
        preset_binding: None,
    })
}
