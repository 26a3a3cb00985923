//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592), locked down:
//! registration is the easiest way to turn an identity server into an attacker's tool.
//!
//! - **Who registers.** A bearer token (any of this Tether's access tokens, its binding proven)
//!   carrying the scope `client:register`, which an operator grants to an app like any scope; or
//!   anyone, with `[registration] open = true`.
//! - **What a registered client is.** A third party (`App::registered`, held by
//!   `admin::check` on every later change as well): consent is always asked; it never holds
//!   `admin:*`, `client:register`, `introspect_any`, `exchange_from` or the password grant; its
//!   scopes come from `[registration] allowed_scopes`; the URLs the server itself fetches
//!   (`jwks_uri`, `backchannel_logout_uri`) must be `https` to a public address, checked again on
//!   every fetch at connect time (the server crate's `outbound` guard), unless `[registration]
//!   allow_private_uris = true`. Everything else is validated by exactly the rules of
//!   `app create` (the same `admin` module), and reported with RFC 7591 §3.2.2's codes.
//! - **Management.** `registration_client_uri` (`{issuer}/api/identity/oauth2/dcr/v1.1/register/
//!   {client_id}`) with the `registration_access_token` (shown once, stored only as a hash):
//!   GET reads, PUT replaces (validated as a registration), DELETE deletes the client and revokes
//!   its tokens. A wrong token, or a client that does not exist, is 401 alike (RFC 7592 §2).
//! - Every registration, update and deletion is an `admin.change` event (`app.register`,
//!   `app.register_update`, `app.register_delete`), its actor the registering token's client, or
//!   `anonymous`.

use serde_json::{Map, Value, json};

use super::admin::{Presented, proven_token};
use super::paths;
use super::userinfo::Proofs;
use crate::admin::{self as settings, AppChanges};
use crate::admin_ops::{self, AdminError};
use crate::audit::Actor;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{AppRecord, AuthMethod, BindingType, GrantType};
use crate::provider::Provider;
pub use crate::registration_config::RegistrationConfig;
use crate::secret::{Secret, ct_eq, hash_secret};

/// The scope that lets a token register clients.
pub const SCOPE: &str = "client:register";

/// An answer that is not a success: the RFC 7591 §3.2.2 JSON error (or RFC 6750's for tokens).
#[derive(Debug)]
pub struct RegError {
    pub status: u16,
    pub error: OAuthError,
}

impl RegError {
    fn metadata(d: impl Into<String>) -> Self {
        RegError { status: 400, error: OAuthError::new(ErrorCode::InvalidClientMetadata, d) }
    }
    fn token(e: OAuthError) -> Self {
        let status = match e.code {
            ErrorCode::InsufficientScope => 403,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::ServerError => 500,
            ErrorCode::InvalidRequest => 400,
            _ => 401,
        };
        RegError { status, error: e }
    }
    /// The management protocol's refusal: a wrong token and an unknown client read alike.
    fn unauthorized() -> Self {
        RegError::token(OAuthError::invalid_token("the registration access token is not valid for this client"))
    }
}

impl From<AdminError> for RegError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid { detail, .. } => {
                let code = if detail.to_lowercase().contains("redirect") {
                    ErrorCode::InvalidRedirectUri
                } else {
                    ErrorCode::InvalidClientMetadata
                };
                RegError { status: 400, error: OAuthError::new(code, detail) }
            }
            AdminError::Conflict(d) => RegError::metadata(d),
            AdminError::NotFound(_) => RegError::unauthorized(),
            AdminError::Unavailable(d) => {
                RegError { status: 503, error: OAuthError::new(ErrorCode::TemporarilyUnavailable, d) }
            }
            AdminError::Internal(d) => {
                tracing::error!(error = %d, "client registration failed");
                RegError { status: 500, error: OAuthError::new(ErrorCode::ServerError, "internal error") }
            }
        }
    }
}

impl From<crate::error::StoreError> for RegError {
    fn from(e: crate::error::StoreError) -> Self {
        AdminError::from(e).into()
    }
}

/// Who registers: the token's client (its `client:register` scope checked), or `anonymous`
/// when registration is open and no token came.
pub async fn registrar(p: &Provider, token: Option<Presented<'_>>) -> Result<Actor, RegError> {
    let Some(req) = token else {
        if p.config.registration.open {
            return Ok(Actor::client("anonymous"));
        }
        return Err(RegError::token(OAuthError::invalid_token(format!(
            "registration needs an access token with the {SCOPE} scope (Authorization: Bearer)"
        ))));
    };
    let rec = proven_token(p, req, &Proofs(p), "registration", |_| Ok(())).await.map_err(RegError::token)?;
    if !rec.scope.split(' ').any(|s| s == SCOPE) {
        return Err(RegError::token(OAuthError::new(
            ErrorCode::InsufficientScope,
            format!("registration needs the {SCOPE} scope"),
        )));
    }
    Ok(Actor::client(&rec.client_id).with_user(rec.username.as_deref()))
}

/// Register a client (RFC 7591 §3.1): the 201 body.
pub async fn register(p: &Provider, actor: &Actor, metadata: &Value) -> Result<Value, RegError> {
    let changes = free_name(p, changes_from(p, metadata, None)?, None).await?;
    let (rec, secret) = admin_ops::create_app_as(p, actor, &changes, "app.register").await?;
    let rat = Secret::generate();
    if let Err(e) = p.store.set_registration_token(&rec.app.client_id, &rat.hash()).await {
        // Never a client nobody can manage: undo the registration.
        let _ = p.store.delete_app(&rec.app.client_id, p.now()).await;
        return Err(e.into());
    }
    let mut body = metadata_of(p, &rec, secret.as_ref());
    body["registration_access_token"] = json!(rat.expose());
    body["client_id_issued_at"] = json!(p.now());
    Ok(body)
}

/// Check a management request's token for `client_id`; the app.
async fn managed(p: &Provider, client_id: &str, token: Option<&str>) -> Result<AppRecord, RegError> {
    let token = token.ok_or_else(RegError::unauthorized)?;
    let stored = p.store.registration_token(client_id).await?;
    let ok = stored.is_some_and(|h| ct_eq(h.as_bytes(), hash_secret(token).as_bytes()));
    if !ok {
        return Err(RegError::unauthorized());
    }
    Ok(admin_ops::get_app(p, client_id).await?)
}

/// App names are unique (they identify apps to people), but a `client_name` is only a display
/// name a third party chose: one that is taken gets a suffix (RFC 7591 §3.2.1 lets the server
/// replace a value and say so in its answer), rather than an error that would name the other
/// app, or let anyone reserve names.
async fn free_name(p: &Provider, mut changes: AppChanges, except: Option<&str>) -> Result<AppChanges, RegError> {
    let Some(name) = changes.name.clone() else { return Ok(changes) };
    let mut candidate = name.clone();
    while settings::name_taken(&*p.store, &candidate, except).await?.is_some() {
        candidate = format!("{name} ({})", crate::secret::b64url(&crate::secret::random_bytes::<4>()));
    }
    changes.name = Some(candidate);
    Ok(changes)
}

/// RFC 7592 §2.1: read.
pub async fn read(p: &Provider, client_id: &str, token: Option<&str>) -> Result<Value, RegError> {
    let rec = managed(p, client_id, token).await?;
    Ok(metadata_of(p, &rec, None))
}

/// RFC 7592 §2.2: replace every setting with the request's (absent ones take their defaults).
pub async fn replace(p: &Provider, client_id: &str, token: Option<&str>, metadata: &Value) -> Result<Value, RegError> {
    let existing = managed(p, client_id, token).await?;
    if metadata.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(RegError::metadata("the body's client_id must be the client's (RFC 7592 §2.2)"));
    }
    if let Some(s) = metadata.get("client_secret").and_then(Value::as_str) {
        let matches = existing.secret_hash.as_ref().is_some_and(|h| ct_eq(h.as_bytes(), hash_secret(s).as_bytes()));
        if !matches {
            return Err(RegError::metadata("client_secret does not match the client's (it cannot be chosen)"));
        }
    }
    let changes = free_name(p, changes_from(p, metadata, Some(&existing))?, Some(client_id)).await?;
    let actor = Actor::client(client_id);
    let (rec, secret) = admin_ops::update_app_as(p, &actor, client_id, &changes, "app.register_update").await?;
    Ok(metadata_of(p, &rec, secret.as_ref()))
}

/// RFC 7592 §2.3: delete the client; its tokens are revoked with it.
pub async fn delete(p: &Provider, client_id: &str, token: Option<&str>) -> Result<(), RegError> {
    managed(p, client_id, token).await?;
    admin_ops::delete_app_as(p, &Actor::client(client_id), client_id, "app.register_delete").await?;
    Ok(())
}

/// The members a registration may carry; anything else is ignored (RFC 7591 §2), except the
/// ones that name powers a registered client may not have, which are refused.
const FORBIDDEN: [&str; 4] = ["introspect_any", "exchange_from", "admin", "roles"];

fn string_list(v: &Value, member: &str) -> Result<Option<Vec<String>>, RegError> {
    match v.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| RegError::metadata(format!("{member} must hold strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(RegError::metadata(format!("{member} must be an array of strings"))),
    }
}

fn string(v: &Value, member: &str) -> Result<Option<String>, RegError> {
    match v.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RegError::metadata(format!("{member} must be a string"))),
    }
}

fn boolean(v: &Value, member: &str) -> Result<Option<bool>, RegError> {
    match v.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(RegError::metadata(format!("{member} must be true or false"))),
    }
}

/// A URL the server itself will fetch for the client: https to a public address, unless
/// `allow_private_uris` (then loopback http too).
fn fetched_url(p: &Provider, member: &str, u: &str) -> Result<(), RegError> {
    if p.config.registration.allow_private_uris {
        return Ok(());
    }
    let parsed = url::Url::parse(u).map_err(|_| RegError::metadata(format!("{member} is not an absolute URL")))?;
    if parsed.scheme() != "https" {
        return Err(RegError::metadata(format!("{member} must be an https URL")));
    }
    let internal = match parsed.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => crate::net::internal(ip.into()),
        Some(url::Host::Ipv6(ip)) => crate::net::internal(ip.into()),
        None => true,
    };
    if internal {
        return Err(RegError::metadata(format!(
            "{member} must name a public address (loopback, private, link-local and metadata addresses are refused)"
        )));
    }
    Ok(())
}

/// RFC 7591 metadata as the settings `app create` takes, every setting given (so an update is a
/// replacement), with the third-party rules applied.
fn changes_from(p: &Provider, m: &Value, existing: Option<&AppRecord>) -> Result<AppChanges, RegError> {
    if !m.is_object() {
        return Err(RegError::metadata("the body must be a JSON object of client metadata"));
    }
    if let Some(f) = FORBIDDEN.iter().find(|f| m.get(**f).is_some_and(|v| !v.is_null() && v != &json!(false))) {
        return Err(RegError::metadata(format!("{f} cannot be registered: registered clients are third parties")));
    }
    let grant_types = string_list(m, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    for g in &grant_types {
        match GrantType::parse_cli(g) {
            Some(GrantType::Password) => {
                return Err(RegError::metadata("the password grant cannot be registered (third-party clients)"));
            }
            Some(GrantType::TokenExchange) => {
                return Err(RegError::metadata("token exchange cannot be registered (third-party clients)"));
            }
            Some(_) => {}
            None => return Err(RegError::metadata(format!("grant type {g:?} is not supported"))),
        }
    }
    let code = grant_types.iter().any(|g| g == "authorization_code");
    if let Some(rt) = string_list(m, "response_types")? {
        let ok = if code { rt == ["code"] } else { rt.is_empty() };
        if !ok {
            return Err(RegError::metadata("response_types must be [\"code\"] with authorization_code, else empty"));
        }
    }
    let allowed = &p.config.registration.allowed_scopes;
    let scopes: Vec<String> = match string(m, "scope")? {
        Some(s) => s.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect(),
        None => allowed.clone(),
    };
    if let Some(bad) = scopes.iter().find(|s| !allowed.contains(s)) {
        return Err(RegError::metadata(format!(
            "scope {bad:?} may not be registered (allowed: {})",
            allowed.join(" ")
        )));
    }
    let auth_method = string(m, "token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    let method = AuthMethod::parse(&auth_method)
        .ok_or_else(|| RegError::metadata(format!("token_endpoint_auth_method {auth_method:?} is not supported")))?;
    let jwks = match m.get("jwks") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => return Err(RegError::metadata("jwks must be a JWK Set (a JSON object)")),
    };
    let jwks_uri = string(m, "jwks_uri")?;
    if let Some(u) = &jwks_uri {
        fetched_url(p, "jwks_uri", u)?;
    }
    let backchannel = string(m, "backchannel_logout_uri")?;
    if let Some(u) = &backchannel {
        fetched_url(p, "backchannel_logout_uri", u)?;
    }
    // Binding: the two RFC members, or Tether's own `token_binding_type`; they must agree.
    let mut binding = string(m, "token_binding_type")?;
    for (member, kind) in [
        ("tls_client_certificate_bound_access_tokens", BindingType::Certificate),
        ("dpop_bound_access_tokens", BindingType::Dpop),
    ] {
        if boolean(m, member)? == Some(true) {
            match &binding {
                Some(b) if b != kind.as_str() => {
                    return Err(RegError::metadata(format!("{member} contradicts token_binding_type {b:?}")));
                }
                _ => binding = Some(kind.as_str().to_string()),
            }
        }
    }
    let name = match string(m, "client_name")? {
        Some(n) => n,
        None => existing
            .map(|e| e.app.name.clone())
            .unwrap_or_else(|| format!("registered-{}", &crate::secret::b64url(&crate::secret::random_bytes::<6>()))),
    };
    // A self-signed certificate client registers its certificates as `x5c` in its JWK Set.
    let cert_file = (method == AuthMethod::SelfSignedTlsClientAuth).then(|| jwks.clone()).flatten();
    Ok(AppChanges {
        name: Some(name),
        grant_types: Some(grant_types),
        redirect_uris: Some(string_list(m, "redirect_uris")?.unwrap_or_default()),
        public: Some(method == AuthMethod::None),
        auth_method: Some(auth_method),
        tls_subject_dn: string(m, "tls_client_auth_subject_dn")?,
        cert_file,
        token_type: Some(string(m, "access_token_type")?.unwrap_or_else(|| "opaque".into())),
        binding: Some(binding.unwrap_or_else(|| "none".into())),
        validate_binding: Some(false),
        revoke_on_logout: Some(false),
        scopes: Some(scopes),
        audience: Some(vec![]),
        allowed_origins: Some(vec![]),
        introspect_any: Some(false),
        require_consent: Some(code),
        exchange_from: Some(vec![]),
        id_token_alg: Some(string(m, "id_token_signed_response_alg")?.unwrap_or_else(|| "RS256".into())),
        access_token_ttl: None,
        refresh_token_ttl: None,
        jwks: Some(jwks.unwrap_or_default()),
        jwks_uri: Some(jwks_uri.unwrap_or_default()),
        require_par: Some(boolean(m, "require_pushed_authorization_requests")?.unwrap_or(false)),
        profile: Some("none".into()),
        backchannel_logout_uri: Some(backchannel.unwrap_or_default()),
        backchannel_logout_session_required: Some(boolean(m, "backchannel_logout_session_required")?.unwrap_or(false)),
        registered: Some(true),
        // A replacement may drop the secret (a switch to private_key_jwt): the client asked.
        force: true,
    })
}

/// The registered client's metadata (RFC 7591 §3.2.1), with its secret when one was just made.
pub fn metadata_of(p: &Provider, rec: &AppRecord, secret: Option<&Secret>) -> Value {
    let a = &rec.app;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("client_id", json!(a.client_id));
    if let Some(s) = secret {
        put("client_secret", json!(s.expose()));
    }
    if settings::uses_secret(a) {
        put("client_secret_expires_at", json!(0));
    }
    put("registration_client_uri", json!(format!("{}{}/{}", p.issuer(), paths::REGISTER, a.client_id)));
    put("client_name", json!(a.name));
    put("redirect_uris", json!(a.redirect_uris));
    put("grant_types", json!(a.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>()));
    let code = a.allows_grant(GrantType::AuthorizationCode);
    put("response_types", if code { json!(["code"]) } else { json!([]) });
    put("token_endpoint_auth_method", json!(a.auth_method.as_str()));
    put("scope", json!(a.scopes.join(" ")));
    if let Some(j) = &a.jwks {
        put("jwks", j.clone());
    }
    if let Some(u) = &a.jwks_uri {
        put("jwks_uri", json!(u));
    }
    if let Some(dn) = &a.tls_subject_dn {
        put("tls_client_auth_subject_dn", json!(dn));
    }
    put("token_binding_type", json!(a.binding.as_str()));
    put("tls_client_certificate_bound_access_tokens", json!(a.binding == BindingType::Certificate));
    put("dpop_bound_access_tokens", json!(a.binding == BindingType::Dpop));
    put("access_token_type", json!(a.token_type.as_str()));
    put("id_token_signed_response_alg", json!(a.id_token_alg.as_str()));
    put("require_pushed_authorization_requests", json!(a.require_par));
    if let Some(u) = &a.backchannel_logout_uri {
        put("backchannel_logout_uri", json!(u));
        put("backchannel_logout_session_required", json!(a.backchannel_logout_session_required));
    }
    Value::Object(m)
}
