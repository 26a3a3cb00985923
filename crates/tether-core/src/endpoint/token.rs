//! The token endpoint (RFC 6749 §3.2) and the one issuance pipeline every grant goes through
//! (ARCHITECTURE.md pattern 2): authenticate the client, let the grant validate, resolve the
//! binding, apply the reuse/renewal rules of token-binding.md B-3, mint, persist atomically, and
//! answer. Grants come from [`grant::registry`] and bindings from [`registry`]: adding a grant or
//! a binding type adds a module and a registry line, not a branch here.

use serde_json::{Value, json};

use crate::audit::{Actor, kind};
use crate::binding::registry;
use crate::binding::{self, BindContext, dpop};
use crate::client_auth;
use crate::endpoint::paths;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::grant::{self, GrantContext, Validated};
use crate::keys::Alg;
use crate::model::{App, BindingType, GrantType, IdTokenAlg, TokenType};
use crate::provider::Provider;
use crate::scope;
use crate::secret::{Secret, b64url, hash_secret, random_bytes};
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
    /// The client's address (after the trusted-proxy rule).
    pub addr: Option<&'a str>,
}

/// The answer, and the client that authenticated (`None` when none did), for the access log.
pub async fn handle(p: &Provider, req: TokenRequest<'_>) -> (Option<String>, Result<Value, OAuthError>) {
    let mut client_id = None;
    let answer = run(p, req, &mut client_id).await;
    (client_id, answer)
}

async fn run(p: &Provider, req: TokenRequest<'_>, client_id: &mut Option<String>) -> Result<Value, OAuthError> {
    // Enumerated values are trimmed: the seeds' curl commands, as printed, send `grant_type=password &…`.
    let gt = req.form.require("grant_type")?.trim();
    let app = client_auth::authenticate(p, req.form, req.authorization, req.evidence.peer_cert, paths::TOKEN).await?;
    *client_id = Some(app.app.client_id.clone());
    let grant = grant::registry::find(gt).ok_or_else(|| {
        OAuthError::new(ErrorCode::UnsupportedGrantType, format!("grant_type {gt:?} is not supported"))
    })?;
    if !app.app.allows_grant(grant.grant_type()) {
        return Err(OAuthError::unauthorized_client(format!("this client is not allowed the {gt} grant")));
    }
    // The DPoP proof is verified (and its jti spent) before any grant runs: token exchange needs
    // it to prove a DPoP-bound subject token, and every binding reads it.
    let proof = match req.dpop {
        Some(h) => Some(fapi_proof(&app.app, dpop::check_proof(p, h, "POST", paths::TOKEN, None).await?)?),
        None => None,
    };
    let evidence = binding::Evidence { dpop: proof.as_ref(), ..req.evidence };
    let validated =
        grant.validate(&GrantContext { p, app: &app.app, form: req.form, evidence, addr: req.addr }).await?;
    let ctx = BindContext { grant: grant.grant_type(), form: req.form, evidence, now: p.now() };
    issue(p, &app.app, validated, &ctx).await
}

/// A DPoP proof the app's profile accepts (FAPI 2.0: PS256, ES256, EdDSA only).
pub fn fapi_proof(app: &App, proof: crate::dpop::ProofOk) -> Result<crate::dpop::ProofOk, OAuthError> {
    if !crate::profile::alg_allowed(app, proof.alg) {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            crate::profile::alg_refused("the DPoP proof's", proof.alg),
        ));
    }
    Ok(proof)
}

/// B-1/B-2: the new token's binding. A refresh re-binds per its token's binder; a binding fixed
/// with the code is confirmed by its binder; anything else asks the app's binder.
async fn resolve_binding(
    p: &Provider,
    app: &App,
    v: &Validated,
    ctx: &BindContext<'_>,
) -> Result<Option<BindingRecord>, OAuthError> {
    if let Some(inherited) = &v.inherited {
        return match &inherited.binding {
            Some(b) => match registry::binder(b.kind).rebind(p, app, b, ctx).await {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    // A bound refresh token without its proof: probably stolen.
                    let actor =
                        Actor::client(&app.client_id).with_user(v.subject.as_ref().map(|s| s.username.as_str()));
                    let detail = json!({"where": "refresh", "binding_type": b.kind.as_str()});
                    p.event(kind::BINDING_MISMATCH, &actor, detail);
                    Err(e)
                }
            },
            None => Ok(None),
        };
    }
    match &v.preset_binding {
        Some(b) => Ok(Some(registry::binder(b.kind).confirm_preset(b, ctx)?)),
        None => registry::binder(app.binding).bind(ctx),
    }
}

/// B-3: how issuance treats the key's existing tokens.
fn reuse_policy(app: &App, grant: GrantType) -> ReusePolicy {
    match (app.binding != BindingType::None, grant, app.token_type) {
        (false, _, _) => ReusePolicy::Independent,
        (true, GrantType::RefreshToken, _) => ReusePolicy::RevokePrevious { with_refresh: false },
        (true, _, TokenType::Opaque) => ReusePolicy::ReuseActive,
        (true, _, TokenType::Jwt) => ReusePolicy::RevokePrevious { with_refresh: true },
    }
}

/// The admin API's scopes (admin-api.md A-2): `admin:read` (every GET) and `admin:write`.
pub const ADMIN_READ: &str = "admin:read";
pub const ADMIN_WRITE: &str = "admin:write";

/// The audience of every token carrying an admin scope, and the only one the admin API accepts.
pub fn admin_audience(issuer: &str) -> String {
    format!("{issuer}{}", paths::ADMIN_API)
}

/// a user's token carries admin scopes only as far as the user's roles allow (`admin`: both,
/// `viewer`: `admin:read`), re-checked at every issuance including refresh; a token with any admin
/// scope is audience-restricted to the admin API alone.
async fn admin_scopes(p: &Provider, mut v: Validated) -> Result<Validated, OAuthError> {
    if !v.scopes.iter().any(|s| s == ADMIN_READ || s == ADMIN_WRITE) {
        return Ok(v);
    }
    if let Some(subject) = &v.subject {
        let roles = p.store.get_user(&subject.user_id).await?.map(|u| u.user.roles).unwrap_or_default();
        let admin = roles.iter().any(|r| r == "admin");
        let viewer = admin || roles.iter().any(|r| r == "viewer");
        v.scopes.retain(|s| (s != ADMIN_WRITE || admin) && (s != ADMIN_READ || viewer));
    }
    if v.scopes.iter().any(|s| s == ADMIN_READ || s == ADMIN_WRITE) {
        v.audience = vec![admin_audience(p.issuer())];
    }
    Ok(v)
}

/// A new `jti`: the issuance second in 10 hex digits, then 96 random bits. The prefix makes the
/// store's index of public ids grow at its end, as time goes (a fully random key lands on a
/// random index page at every issuance: measured, the busiest writer's largest extra cost); the
/// time it reveals is the token's `iat` anyway.
pub fn new_jti(now: i64) -> String {
    format!("{:010x}{}", now.max(0), b64url(&random_bytes::<12>()))
}

/// Mint, store and answer. Every grant ends here.
pub async fn issue(p: &Provider, app: &App, v: Validated, ctx: &BindContext<'_>) -> Result<Value, OAuthError> {
    let v = admin_scopes(p, v).await?;
    let now = p.now();
    let binding = resolve_binding(p, app, &v, ctx).await?;
    let mut access = access_record(app, &v, binding, now);
    let token = match app.token_type {
        TokenType::Opaque => opaque::derive(&p.opaque_key, &access.id),
        TokenType::Jwt => jwt::mint(&*p.signing_key(Alg::ES256)?, p.issuer(), &access),
    };
    access.token_hash = hash_secret(&token);
    let refresh_value = v.issue_refresh.then(Secret::generate);
    let refresh = refresh_value.as_ref().map(|rt| refresh_record(app, &v, &access, rt));
    let token_type = registry::token_type(access.binding.as_ref());
    let scope = access.scope.clone();
    let (jti, binding_kind) = (access.jti.clone(), access.binding.as_ref().map(|b| b.kind.as_str()));
    let policy = reuse_policy(app, v.grant);
    let req = IssueRequest { access, refresh, policy, precondition: v.precondition.clone(), now };
    let (token, expires_in) = match p.store.issue(&req).await? {
        IssueOutcome::Issued => (token, app.access_token_ttl),
        IssueOutcome::Reused(existing) => {
            (opaque::derive(&p.opaque_key, &existing.id), (existing.expires_at - now).max(0))
        }
        IssueOutcome::Replayed if v.inherited.as_ref().is_some_and(|i| i.kept.is_some()) => {
            return Err(OAuthError::invalid_grant("the refresh token has been revoked"));
        }
        IssueOutcome::Replayed => {
            if v.grant == GrantType::RefreshToken {
                let actor = Actor::client(&app.client_id).with_user(v.subject.as_ref().map(|s| s.username.as_str()));
                p.event(kind::TOKEN_REFRESH_REUSE, &actor, json!({"family_revoked": true}));
            }
            return Err(replayed(v.grant));
        }
    };
    if p.audit.token_events {
        let event = if v.grant == GrantType::RefreshToken { kind::TOKEN_REFRESHED } else { kind::TOKEN_ISSUED };
        let actor = Actor::client(&app.client_id).with_user(v.subject.as_ref().map(|s| s.username.as_str()));
        let detail = json!({
            "target": jti,
            "grant_type": v.grant.as_str(),
            "token_type": app.token_type.as_str(),
            "binding_type": binding_kind,
        });
        p.event(event, &actor, detail);
    }
    metrics::counter!("tether_tokens_issued_total", "grant_type" => v.grant.as_str(), "token_type" => app.token_type.as_str())
        .increment(1);
    let mut body = json!({"access_token": token, "token_type": token_type, "expires_in": expires_in});
    if !scope.is_empty() {
        body["scope"] = json!(scope);
    }
    if let Some(rt) = refresh_value {
        body["refresh_token"] = json!(rt.expose());
    } else if let Some(kept) = v.inherited.as_ref().and_then(|i| i.kept.as_deref()) {
        body["refresh_token"] = json!(kept);
    }
    if v.grant == GrantType::TokenExchange {
        body["issued_token_type"] = json!(grant::token_exchange::ACCESS_TOKEN_TYPE);
    }
    if let Some(subject) = &v.subject
        && scope::contains(&scope, "openid")
    {
        body["id_token"] = json!(mint_id_token(p, app, &v, subject, &scope, &token).await?);
    }
    Ok(body)
}

/// The error of a precondition that no longer held when the store tried it (a raced replay).
fn replayed(grant: GrantType) -> OAuthError {
    OAuthError::invalid_grant(match grant {
        GrantType::AuthorizationCode => {
            "the authorization code has already been used; tokens issued from it have been revoked"
        }
        GrantType::DeviceCode => "the device_code has already been used",
        _ => "the refresh token was already used; as a precaution every token of its family has been revoked",
    })
}

fn access_record(app: &App, v: &Validated, binding: Option<BindingRecord>, now: i64) -> AccessTokenRecord {
    let scope = scope::canonical(&v.scopes);
    let user_id = v.subject.as_ref().map(|s| s.user_id.clone());
    let reuse_key = (app.binding != BindingType::None).then(|| {
        binding::reuse_key(
            &app.client_id,
            user_id.as_deref(),
            &scope,
            &v.audience,
            binding.as_ref().map(|b| b.reference.as_str()),
        )
    });
    AccessTokenRecord {
        id: opaque::new_id(),
        token_hash: String::new(),
        jti: new_jti(now),
        client_id: app.client_id.clone(),
        user_id,
        username: v.subject.as_ref().map(|s| s.username.clone()),
        scope,
        audience: v.audience.clone(),
        token_type: app.token_type,
        binding,
        reuse_key,
        grant_id: v.grant_id.clone(),
        session_id: v.session_id.clone(),
        auth_time: v.auth_time,
        issued_at: now,
        expires_at: now + app.access_token_ttl,
        revoked_at: None,
        act: v.act.clone(),
    }
}

fn refresh_record(app: &App, v: &Validated, access: &AccessTokenRecord, value: &Secret) -> RefreshTokenRecord {
    RefreshTokenRecord {
        id: opaque::new_id(),
        token_hash: value.hash(),
        family_id: v.inherited.as_ref().map(|i| i.family_id.clone()).unwrap_or_else(opaque::new_id),
        access_id: access.token_hash.clone(),
        client_id: app.client_id.clone(),
        user_id: access.user_id.clone(),
        username: access.username.clone(),
        scope: v.inherited.as_ref().map(|i| i.refresh_scope.clone()).unwrap_or_else(|| access.scope.clone()),
        audience: v.audience.clone(),
        binding: access.binding.clone(),
        grant_id: v.grant_id.clone(),
        session_id: v.session_id.clone(),
        auth_time: v.auth_time,
        issued_at: access.issued_at,
        expires_at: access.issued_at + app.refresh_token_ttl,
        used_at: None,
        revoked_at: None,
    }
}

async fn mint_id_token(
    p: &Provider,
    app: &App,
    v: &Validated,
    subject: &grant::Subject,
    scope: &str,
    access_token: &str,
) -> Result<String, OAuthError> {
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
    Ok(id_token::mint(
        &key,
        &id_token::IdTokenInput {
            issuer: p.issuer(),
            client_id: &app.client_id,
            user: &user,
            scope,
            now: p.now(),
            lifetime: p.config.id_token_lifetime,
            auth_time: v.auth_time,
            nonce: v.nonce.as_deref(),
            session_id: v.session_id.as_deref(),
            access_token,
        },
    ))
}
