//! The token endpoint (RFC 6749 §3.2) and the one issuance pipeline every grant goes through
//! (ARCHITECTURE.md pattern 2): authenticate the client, let the grant validate, resolve the
//! binding, apply the reuse/renewal rules of token-binding.md B-3, mint, persist atomically, and
//! answer. Adding a grant or a binding type adds a module, not a branch here.

use serde_json::{Value, json};

use crate::binding::{self, BindContext, certificate};
use crate::client_auth;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::grant::{self, Validated};
use crate::keys::Alg;
use crate::model::{App, BindingType, GrantType, IdTokenAlg, TokenType};
use crate::provider::Provider;
use crate::scope;
use crate::secret::{b64url, hash_secret, random_bytes, random_token};
use crate::store::{AccessTokenRecord, BindingRecord, IssueOutcome, IssueRequest, RefreshTokenRecord, ReusePolicy};
use crate::token::{id_token, jwt, opaque};

pub struct TokenRequest<'a> {
    pub form: &'a Form,
    /// The raw `Authorization` header.
    pub authorization: Option<&'a str>,
    /// What the request presents: its client certificate (TLS handshake, or a trusted proxy's
    /// header) and cookies.
    pub evidence: binding::Evidence<'a>,
    /// The request's `DPoP` header (RFC 9449), unverified.
    pub dpop: Option<&'a str>,
}

pub async fn handle(p: &Provider, req: TokenRequest<'_>) -> Result<Value, OAuthError> {
    let gt = req.form.require("grant_type")?;
    let app = client_auth::authenticate(p, req.form, req.authorization, req.evidence.peer_cert).await?;
    let grant = GrantType::parse(gt).ok_or_else(|| {
        OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type {gt:?} is not supported"))
    })?;
    if !app.app.allows_grant(grant) {
        return Err(OAuthError::unauthorized_client(format!("this client is not allowed the {gt} grant")));
    }
    // The DPoP proof is verified (and its jti spent) before any grant runs: token exchange needs
    // it to prove a DPoP-bound subject token, and every binding reads it.
    let proof = match req.dpop {
        Some(h) => Some(binding::dpop::check_proof(p, h, "POST", "/oauth2/token", None).await?),
        None => None,
    };
    let validated = match grant {
        GrantType::Password => grant::password::handle(p, &app.app, req.form).await?,
        GrantType::ClientCredentials => grant::client_credentials::handle(&app.app, req.form)?,
        GrantType::AuthorizationCode => grant::authorization_code::handle(p, &app.app, req.form).await?,
        GrantType::RefreshToken => grant::refresh_token::handle(p, &app.app, req.form).await?,
        GrantType::TokenExchange => {
            grant::token_exchange::handle(p, &app.app, req.form, req.evidence.peer_cert, proof.as_ref()).await?
        }
        GrantType::DeviceCode => grant::device_code::handle(p, &app.app, req.form).await?,
    };
    let evidence = binding::Evidence { dpop: proof.as_ref(), ..req.evidence };
    let ctx = BindContext { grant, form: req.form, evidence, now: p.now() };
    issue(p, &app.app, validated, &ctx).await
}

/// B-1 for a certificate-bound refresh: every refresh presents a certificate. A confidential client
/// without `--validate-binding` may present a new one (RFC 8705 §6.3: certificates rotate) and the
/// new access token is bound to it; a public client, or one with `--validate-binding`, must present
/// the same certificate.
/// B-1 for a DPoP-bound refresh, the same rule with the proof key (RFC 9449 §5).
fn rebind_dpop(app: &App, bound: &BindingRecord, ctx: &BindContext<'_>) -> Result<BindingRecord, OAuthError> {
    let presented = ctx.evidence.dpop.map(|d| d.jkt.clone()).ok_or_else(|| {
        OAuthError::new(ErrorCode::InvalidDpopProof, "the refresh token is DPoP-bound: a DPoP proof is required")
    })?;
    if app.public || app.validate_binding {
        if !binding::matches(bound, &presented) {
            return Err(OAuthError::invalid_grant("Invalid token binding value is present in the request."));
        }
        return Ok(bound.clone());
    }
    Ok(binding::record(BindingType::Dpop, &presented))
}

fn rebind_certificate(app: &App, bound: &BindingRecord, ctx: &BindContext<'_>) -> Result<BindingRecord, OAuthError> {
    let presented = certificate::presented(ctx)?;
    if app.public || app.validate_binding {
        if !binding::matches(bound, &presented) {
            return Err(OAuthError::invalid_grant("Invalid token binding value is present in the request."));
        }
        return Ok(bound.clone());
    }
    Ok(binding::record(BindingType::Certificate, &presented))
}

/// Mint, store and answer. Every grant ends here.
pub async fn issue(p: &Provider, app: &App, v: Validated, ctx: &BindContext<'_>) -> Result<Value, OAuthError> {
    let now = p.now();
    // B-1/B-2: a refresh inherits its token's binding; anything else asks the app's binder.
    let binding = match &v.inherited {
        Some(inh) => match &inh.binding {
            Some(b) if b.kind == BindingType::Certificate => Some(rebind_certificate(app, b, ctx)?),
            Some(b) if b.kind == BindingType::Dpop => Some(rebind_dpop(app, b, ctx)?),
            // B-5: with --validate-binding the refresh request proves the binding too.
            Some(b) if app.validate_binding && !binding::proven(p, b, &ctx.evidence).await? => {
                return Err(OAuthError::invalid_grant("Invalid token binding value is present in the request."));
            }
            other => other.clone(),
        },
        // RFC 9449 §10: `dpop_jkt` on the authorization request fixed the key for the code.
        None if v.preset_binding.as_ref().is_some_and(|b| b.kind == BindingType::Dpop) => {
            let b = v.preset_binding.clone();
            let proven = match (&b, ctx.evidence.dpop) {
                (Some(b), Some(d)) => binding::matches(b, &d.jkt),
                _ => false,
            };
            if !proven {
                return Err(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "the DPoP proof's key is not the dpop_jkt of the authorization request",
                ));
            }
            // A fresh record from the proven key: the code's copy carries no public `cnf`.
            ctx.evidence.dpop.map(|d| binding::record(BindingType::Dpop, &d.jkt))
        }
        // B-2: bindings fixed before the token request (cookie, sso-session: with the code).
        None if v.preset_binding.is_some() => v.preset_binding.clone(),
        // A DPoP proof sent to an app without a binding type binds the token to it (RFC 9449:
        // standard clients send proofs and expect DPoP tokens).
        None if app.binding == BindingType::None && ctx.evidence.dpop.is_some() => {
            ctx.evidence.dpop.map(|d| binding::record(BindingType::Dpop, &d.jkt))
        }
        None => match binding::binder(app.binding) {
            Some(b) => b.bind(ctx)?.map(|value| binding::record(app.binding, &value)),
            None => None,
        },
    };
    let scope = scope::canonical(&v.scopes);
    let user_id = v.subject.as_ref().map(|s| s.user_id.clone());
    let bound_app = app.binding != BindingType::None;
    let reuse_key = bound_app.then(|| {
        binding::reuse_key(
            &app.client_id,
            user_id.as_deref(),
            &scope,
            &v.audience,
            binding.as_ref().map(|b| b.reference.as_str()),
        )
    });
    let policy = match (bound_app, v.grant, app.token_type) {
        (false, _, _) => ReusePolicy::Independent,
        (true, GrantType::RefreshToken, _) => ReusePolicy::RevokePrevious { with_refresh: false },
        (true, _, TokenType::Opaque) => ReusePolicy::ReuseActive,
        (true, _, TokenType::Jwt) => ReusePolicy::RevokePrevious { with_refresh: true },
    };

    let mut access = AccessTokenRecord {
        id: opaque::new_id(),
        token_hash: String::new(),
        jti: b64url(&random_bytes::<16>()),
        client_id: app.client_id.clone(),
        user_id: user_id.clone(),
        username: v.subject.as_ref().map(|s| s.username.clone()),
        scope: scope.clone(),
        audience: v.audience.clone(),
        token_type: app.token_type,
        binding: binding.clone(),
        reuse_key,
        grant_id: v.grant_id.clone(),
        session_id: v.session_id.clone(),
        auth_time: v.auth_time,
        issued_at: now,
        expires_at: now + app.access_token_ttl,
        revoked_at: None,
        act: v.act.clone(),
    };
    let token = match app.token_type {
        TokenType::Opaque => opaque::derive(&p.opaque_key, &access.id),
        TokenType::Jwt => jwt::mint(&*p.signing_key(Alg::ES256)?, p.issuer(), &access),
    };
    access.token_hash = hash_secret(&token);

    let refresh_value = v.issue_refresh.then(random_token);
    let refresh = refresh_value.as_ref().map(|rt| RefreshTokenRecord {
        id: opaque::new_id(),
        token_hash: hash_secret(rt),
        family_id: v.inherited.as_ref().map(|i| i.family_id.clone()).unwrap_or_else(opaque::new_id),
        access_id: access.token_hash.clone(),
        client_id: app.client_id.clone(),
        user_id: user_id.clone(),
        username: access.username.clone(),
        scope: v.inherited.as_ref().map(|i| i.refresh_scope.clone()).unwrap_or_else(|| scope.clone()),
        audience: v.audience.clone(),
        binding: binding.clone(),
        grant_id: v.grant_id.clone(),
        session_id: v.session_id.clone(),
        auth_time: v.auth_time,
        issued_at: now,
        expires_at: now + app.refresh_token_ttl,
        used_at: None,
        revoked_at: None,
    });

    let req = IssueRequest { access, refresh, policy, precondition: v.precondition.clone(), now };
    let (token, expires_in) = match p.store.issue(&req).await? {
        IssueOutcome::Issued => (token, app.access_token_ttl),
        IssueOutcome::Reused(existing) => {
            (opaque::derive(&p.opaque_key, &existing.id), (existing.expires_at - now).max(0))
        }
        IssueOutcome::Replayed => {
            return Err(OAuthError::invalid_grant(match v.grant {
                GrantType::AuthorizationCode => {
                    "the authorization code has already been used; tokens issued from it have been revoked"
                }
                GrantType::DeviceCode => "the device_code has already been used",
                _ => "the refresh token was already used; as a precaution every token of its family has been revoked",
            }));
        }
    };
    metrics::counter!("tether_tokens_issued_total", "grant_type" => v.grant.as_str(), "token_type" => app.token_type.as_str())
        .increment(1);

    let token_type = if binding.as_ref().is_some_and(|b| b.kind == BindingType::Dpop) { "DPoP" } else { "Bearer" };
    let mut body = json!({
        "access_token": token,
        "token_type": token_type,
        "expires_in": expires_in,
    });
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    if let Some(rt) = refresh_value {
        body["refresh_token"] = json!(rt);
    }
    if v.grant == GrantType::TokenExchange {
        body["issued_token_type"] = json!(grant::token_exchange::ACCESS_TOKEN_TYPE);
    }
    if let Some(subject) = &v.subject
        && scope::contains(&scope, "openid")
    {
        let user = p
            .store
            .get_user(&subject.user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))?;
        let alg = match app.id_token_alg {
            IdTokenAlg::RS256 => Alg::RS256,
            IdTokenAlg::ES256 => Alg::ES256,
        };
        let key = p.signing_key(alg)?;
        body["id_token"] = json!(id_token::mint(
            &key,
            &id_token::IdTokenInput {
                issuer: p.issuer(),
                client_id: &app.client_id,
                user: &user,
                scope: &scope,
                now,
                lifetime: p.config.id_token_lifetime,
                auth_time: v.auth_time,
                nonce: v.nonce.as_deref(),
                session_id: v.session_id.as_deref(),
                access_token: body["access_token"].as_str().unwrap_or_default(),
            }
        ));
    }
    Ok(body)
}
