//! The operator's acts, shared by the admin REST API and the CLI (admin-api.md A-3): every check
//! of [`crate::admin`] (B-10, redirect URIs, unique names, secrets shown once), the store write,
//! what the act implies (a disabled user's sessions end, a deleted app's tokens stop working), and
//! its `admin.change` audit event naming the actor, the action, the target and, for updates, the
//! fields that changed (secrets never shown).

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::admin::{self, AppChanges};
use crate::audit::{Actor, kind};
use crate::error::StoreError;
use crate::keys::KeyRecord;
use crate::model::{AppRecord, AuthMethod, PreviousSecret, User, UserRecord};
use crate::provider::Provider;
use crate::secret::Secret;
use crate::store::{RevokeFilter, SessionRecord, UserCascade};

/// Why an act was refused; the adapter maps each to its status.
#[derive(Debug)]
pub enum AdminError {
    /// 400: invalid input, with the JSON pointer of the field when known (`#/redirect_uris/0`).
    Invalid { detail: String, pointer: Option<String> },
    /// 404.
    NotFound(String),
    /// 409: a name that exists, the only active key, …
    Conflict(String),
    /// 500 (the detail goes to the log only).
    Internal(String),
    /// 503: the database is unavailable.
    Unavailable(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(d) => AdminError::Unavailable(d),
            StoreError::Conflict(d) => AdminError::Conflict(d),
            StoreError::NotFound => AdminError::NotFound("not found".into()),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

fn invalid(detail: impl Into<String>) -> AdminError {
    let detail = detail.into();
    let pointer = pointer_for(&detail);
    AdminError::Invalid { detail, pointer }
}

/// The field a validation message names (`--redirect-uri` → `#/redirect_uris`).
fn pointer_for(detail: &str) -> Option<String> {
    const FIELDS: &[(&str, &str)] = &[
        ("redirect uri", "redirect_uris"),
        ("--redirect-uri", "redirect_uris"),
        ("--name", "name"),
        ("--grant-types", "grant_types"),
        ("grant type", "grant_types"),
        ("--binding", "binding"),
        ("--auth-method", "auth_method"),
        ("--public", "public"),
        ("--token-type", "token_type"),
        ("--scopes", "scopes"),
        ("scope", "scopes"),
        ("audience", "audience"),
        ("allowed origin", "allowed_origins"),
        ("--validate-binding", "validate_binding"),
        ("--require-consent", "require_consent"),
        ("--access-token-ttl", "access_token_ttl"),
        ("--refresh-token-ttl", "refresh_token_ttl"),
        ("--tls-subject-dn", "tls_subject_dn"),
        ("--cert-file", "cert_file"),
        ("--id-token-alg", "id_token_alg"),
        ("token exchange", "grant_types"),
        ("authorization_code", "grant_types"),
        ("device_code", "grant_types"),
        ("client_credentials", "grant_types"),
    ];
    let lower = detail.to_lowercase();
    FIELDS.iter().find(|(needle, _)| lower.contains(needle)).map(|(_, f)| format!("#/{f}"))
}

/// The JSON of an app as `tether app create --json` prints it (no secret).
pub fn app_json(a: &AppRecord) -> Value {
    serde_json::to_value(&a.app).unwrap_or_else(|_| json!({}))
}

/// Field-by-field differences between two JSON objects: `{"field": {"before": …, "after": …}}`.
fn changes(before: &Value, after: &Value) -> Value {
    let mut out = Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, av) in a {
            let bv = b.get(k).unwrap_or(&Value::Null);
            if bv != av {
                out.insert(k.clone(), json!({"before": bv, "after": av}));
            }
        }
    }
    Value::Object(out)
}

/// The web console's built-in app (admin-api.md A-6): created and kept in shape by the server
/// at every start, hidden from app lists and exports; no one changes or deletes it.
pub const CONSOLE_CLIENT_ID: &str = "tether-console";

fn not_console(client_id: &str) -> Result<(), AdminError> {
    if client_id == CONSOLE_CLIENT_ID {
        return Err(AdminError::Conflict(
            "tether-console is the web console's built-in app: the server manages it, it cannot be changed or deleted"
                .into(),
        ));
    }
    Ok(())
}

fn change_event(p: &Provider, actor: &Actor, action: &str, target: &str, extra: Value) {
    let mut detail = json!({"action": action, "target": target});
    if let (Some(d), Some(e)) = (detail.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    p.event(kind::ADMIN_CHANGE, actor, detail);
}

async fn ensure_unique_name(p: &Provider, name: &str, except: Option<&str>) -> Result<(), AdminError> {
    if let Some(other) = admin::name_taken(&*p.store, name, except).await? {
        return Err(AdminError::Conflict(format!("an app named {name:?} exists (client_id {other})")));
    }
    Ok(())
}

pub async fn create_app(
    p: &Provider,
    actor: &Actor,
    changes: &AppChanges,
) -> Result<(AppRecord, Option<Secret>), AdminError> {
    create_app_as(p, actor, changes, "app.create").await
}

/// [`create_app`], recorded as `action` (dynamic registration's `app.register`).
pub async fn create_app_as(
    p: &Provider,
    actor: &Actor,
    changes: &AppChanges,
    action: &str,
) -> Result<(AppRecord, Option<Secret>), AdminError> {
    let (mut rec, secret) = admin::create(changes).map_err(invalid)?;
    seal_secret(p, &mut rec, secret.as_ref());
    ensure_unique_name(p, &rec.app.name, None).await?;
    p.store.create_app(&rec).await?;
    p.refresh().await?;
    change_event(p, actor, action, &rec.app.client_id, json!({}));
    Ok((rec, secret))
}

pub async fn get_app(p: &Provider, client_id: &str) -> Result<AppRecord, AdminError> {
    p.store.get_app(client_id).await?.ok_or_else(|| AdminError::NotFound(format!("no app with client_id {client_id}")))
}

pub async fn update_app(
    p: &Provider,
    actor: &Actor,
    client_id: &str,
    changes: &AppChanges,
) -> Result<(AppRecord, Option<Secret>), AdminError> {
    update_app_as(p, actor, client_id, changes, "app.update").await
}

/// [`update_app`], recorded as `action`.
pub async fn update_app_as(
    p: &Provider,
    actor: &Actor,
    client_id: &str,
    changes: &AppChanges,
    action: &str,
) -> Result<(AppRecord, Option<Secret>), AdminError> {
    not_console(client_id)?;
    let existing = get_app(p, client_id).await?;
    let (mut rec, secret) = admin::update(&existing, changes).map_err(invalid)?;
    seal_secret(p, &mut rec, secret.as_ref());
    if rec.app.name != existing.app.name {
        ensure_unique_name(p, &rec.app.name, Some(client_id)).await?;
    }
    p.store.update_app(&rec).await?;
    p.refresh().await?;
    let diff = changes_of(&existing, &rec);
    change_event(p, actor, action, client_id, json!({"changes": diff}));
    Ok((rec, secret))
}

/// A `client_secret_jwt` app keeps its new secret sealed under the master key (the HMAC of its
/// assertions needs the secret itself); every other app keeps none.
pub fn seal_secret(p: &Provider, rec: &mut AppRecord, new: Option<&Secret>) {
    if rec.app.auth_method != AuthMethod::ClientSecretJwt {
        rec.sealed_secret = None;
    } else if let Some(s) = new {
        rec.sealed_secret = Some(crate::client_auth::client_secret_jwt::seal(p, &rec.app.client_id, s.expose()));
    }
}

fn changes_of(before: &AppRecord, after: &AppRecord) -> Value {
    let mut diff = changes(&app_json(before), &app_json(after));
    if before.secret_hash != after.secret_hash
        && let Some(d) = diff.as_object_mut()
    {
        d.insert("client_secret".into(), json!("changed"));
    }
    diff
}

pub async fn delete_app(p: &Provider, actor: &Actor, client_id: &str) -> Result<(), AdminError> {
    delete_app_as(p, actor, client_id, "app.delete").await
}

/// [`delete_app`], recorded as `action`.
pub async fn delete_app_as(p: &Provider, actor: &Actor, client_id: &str, action: &str) -> Result<(), AdminError> {
    not_console(client_id)?;
    if !p.store.delete_app(client_id, p.now()).await? {
        return Err(AdminError::NotFound(format!("no app with client_id {client_id}")));
    }
    p.refresh().await?;
    change_event(p, actor, action, client_id, json!({}));
    Ok(())
}

/// A new client secret, shown once; the old one stays valid `grace` more seconds.
pub async fn regenerate_secret(p: &Provider, actor: &Actor, client_id: &str, grace: i64) -> Result<Secret, AdminError> {
    not_console(client_id)?;
    if !(0..=30 * 86_400).contains(&grace) {
        return Err(AdminError::Invalid {
            detail: "grace_seconds must be between 0 and 2592000".into(),
            pointer: Some("#/grace_seconds".into()),
        });
    }
    let mut rec = get_app(p, client_id).await?;
    let Some(old) = rec.secret_hash.clone() else {
        return Err(AdminError::Conflict(format!("{client_id} is a public client or authenticates without a secret")));
    };
    if grace > 0 && rec.app.auth_method == AuthMethod::ClientSecretJwt {
        return Err(AdminError::Invalid {
            detail: format!(
                "{client_id} uses client_secret_jwt, whose old secret cannot stay valid (only the current one is \
                 kept sealed): regenerate with grace_seconds 0"
            ),
            pointer: Some("#/grace_seconds".into()),
        });
    }
    let secret = admin::new_secret(&rec.app);
    rec.secret_hash = Some(secret.hash());
    rec.previous_secret = (grace > 0).then(|| PreviousSecret { hash: old, until: p.now() + grace });
    seal_secret(p, &mut rec, Some(&secret));
    p.store.update_app(&rec).await?;
    p.refresh().await?;
    change_event(p, actor, "app.secret", client_id, json!({"grace_seconds": grace}));
    Ok(secret)
}

/// The user object of the admin API (never the password or the internal id).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = User))]
pub struct UserView {
    pub username: String,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub name: Option<String>,
    /// `admin` (admin:read and admin:write) and/or `viewer` (admin:read).
    pub roles: Vec<String>,
    /// A disabled user cannot sign in; their sessions and tokens were ended.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            username: u.username.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            roles: u.roles.clone(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// The user object of the admin API, as JSON.
pub fn user_json(u: &User) -> Value {
    serde_json::to_value(UserView::from(u)).unwrap_or_else(|_| json!({}))
}

pub const ROLES: &[&str] = &["admin", "viewer"];

/// An email or display name: at most 256 characters, no control characters.
fn check_text(field: &str, v: &Option<String>) -> Result<(), AdminError> {
    match v {
        Some(s) if s.len() > 256 || s.chars().any(char::is_control) => Err(AdminError::Invalid {
            detail: format!("{field} must be at most 256 characters, without control characters"),
            pointer: Some(format!("#/{field}")),
        }),
        _ => Ok(()),
    }
}

fn check_roles(roles: &[String]) -> Result<(), AdminError> {
    for (i, r) in roles.iter().enumerate() {
        if !ROLES.contains(&r.as_str()) {
            return Err(AdminError::Invalid {
                detail: format!("unknown role {r:?} (admin or viewer)"),
                pointer: Some(format!("#/roles/{i}")),
            });
        }
    }
    Ok(())
}

/// Usernames as the CLI accepts them.
pub fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 128 && !u.chars().any(|c| c.is_control() || c.is_whitespace())
}

async fn hash_password(password: Secret) -> Result<String, AdminError> {
    if password.expose().is_empty() {
        return Err(AdminError::Invalid { detail: "the password is empty".into(), pointer: Some("#/password".into()) });
    }
    tokio::task::spawn_blocking(move || crate::password::hash(password.expose()))
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?
        .map_err(AdminError::Internal)
}

/// A new user.
pub struct NewUser {
    pub username: String,
    pub password: Secret,
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Vec<String>,
}

pub async fn create_user(p: &Provider, actor: &Actor, n: NewUser) -> Result<UserRecord, AdminError> {
    if !valid_username(&n.username) {
        return Err(AdminError::Invalid {
            detail: "the username must be 1 to 128 characters without spaces or control characters".into(),
            pointer: Some("#/username".into()),
        });
    }
    check_roles(&n.roles)?;
    check_text("email", &n.email)?;
    check_text("name", &n.name)?;
    if p.store.get_user_by_name(&n.username).await?.is_some() {
        return Err(AdminError::Conflict(format!("a user named {:?} exists", n.username)));
    }
    let rec = UserRecord {
        user: User {
            id: crate::secret::b64url(&crate::secret::random_bytes::<16>()),
            username: n.username,
            email: n.email,
            name: n.name,
            created_at: p.now(),
            roles: n.roles,
            disabled: false,
        },
        password_hash: hash_password(n.password).await?,
    };
    p.store.create_user(&rec).await?;
    change_event(p, actor, "user.create", &rec.user.username, json!({}));
    Ok(rec)
}

pub async fn get_user(p: &Provider, username: &str) -> Result<UserRecord, AdminError> {
    let found = if valid_username(username) { p.store.get_user_by_name(username).await? } else { None };
    found.ok_or_else(|| AdminError::NotFound(format!("no user named {username:?}")))
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserChanges {
    pub email: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub password: Option<Secret>,
    pub disabled: Option<bool>,
}

/// Change a user. Disabling ends their sessions and revokes their tokens; removing a role or
/// changing the password (with `revoke_on_password_change`) revokes their tokens.
pub async fn update_user(
    p: &Provider,
    actor: &Actor,
    username: &str,
    c: UserChanges,
    revoke_on_password_change: bool,
) -> Result<UserRecord, AdminError> {
    let before = get_user(p, username).await?;
    let mut rec = before.clone();
    if let Some(e) = c.email {
        check_text("email", &e)?;
        rec.user.email = e;
    }
    if let Some(n) = c.name {
        check_text("name", &n)?;
        rec.user.name = n;
    }
    if let Some(r) = c.roles {
        check_roles(&r)?;
        rec.user.roles = r;
    }
    if let Some(d) = c.disabled {
        rec.user.disabled = d;
    }
    let password_changed = c.password.is_some();
    if let Some(pw) = c.password {
        rec.password_hash = hash_password(pw).await?;
    }
    let lost_role = before.user.roles.iter().any(|r| !rec.user.roles.contains(r));
    let disabled_now = rec.user.disabled && !before.user.disabled;
    let then = if disabled_now {
        UserCascade::SessionsAndTokens
    } else if lost_role || (password_changed && revoke_on_password_change) {
        UserCascade::Tokens
    } else {
        UserCascade::Nothing
    };
    if p.store.update_user(&rec, then, p.now()).await?.is_none() {
        return Err(AdminError::NotFound(format!("no user named {username}")));
    }
    let mut diff = changes(&user_json(&before.user), &user_json(&rec.user));
    if password_changed && let Some(d) = diff.as_object_mut() {
        d.insert("password".into(), json!("changed"));
    }
    change_event(p, actor, "user.update", username, json!({"changes": diff}));
    Ok(rec)
}

pub async fn delete_user(p: &Provider, actor: &Actor, username: &str) -> Result<(), AdminError> {
    if !p.store.delete_user(username, p.now()).await? {
        return Err(AdminError::NotFound(format!("no user named {username}")));
    }
    change_event(p, actor, "user.delete", username, json!({}));
    Ok(())
}

/// What `POST /users/{username}/logout` ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = LoggedOut))]
pub struct LogoutResult {
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
}

/// `POST /users/{username}/logout`: every session ended, every token revoked.
pub async fn logout_user(p: &Provider, actor: &Actor, username: &str) -> Result<LogoutResult, AdminError> {
    let u = get_user(p, username).await?;
    let ended = p.store.end_user(&u.user.id, UserCascade::SessionsAndTokens, p.now()).await?;
    change_event(p, actor, "user.logout", username, json!({"sessions": ended.sessions, "tokens": ended.tokens}));
    Ok(LogoutResult { sessions_ended: ended.sessions, tokens_revoked: ended.tokens })
}

/// Clear the user's sign-in throttles on every node.
pub async fn unlock_user(p: &Provider, actor: &Actor, username: &str) -> Result<(), AdminError> {
    get_user(p, username).await?;
    p.unlock_everywhere(username).await?;
    change_event(p, actor, "user.unlock", username, json!({}));
    Ok(())
}

/// A login session as the admin API shows it (never its cookie).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Session))]
pub struct SessionView {
    /// The session's public id (`sid`).
    pub id: String,
    /// Unix seconds (the authentication time).
    pub created_at: i64,
    /// Unix seconds.
    pub last_seen: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The client address the session was started from.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub ip: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub user_agent: Option<String>,
    /// Not ended, not expired, not idle longer than the idle timeout.
    pub live: bool,
}

impl SessionView {
    pub fn new(s: &SessionRecord, now: i64, idle_timeout: i64) -> Self {
        let live = s.ended_at.is_none() && s.expires_at > now && s.last_seen + idle_timeout > now;
        SessionView {
            id: s.id.clone(),
            created_at: s.auth_time,
            last_seen: s.last_seen,
            expires_at: s.expires_at,
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            live,
        }
    }
}

pub async fn end_session(p: &Provider, actor: &Actor, username: &str, sid: &str) -> Result<(), AdminError> {
    let u = get_user(p, username).await?;
    let s = p.store.find_session_by_id(sid).await?.filter(|s| s.user_id == u.user.id && s.ended_at.is_none());
    let Some(s) = s else { return Err(AdminError::NotFound(format!("no open session {sid} of {username}"))) };
    crate::endpoint::logout::end_session(p, &s, &crate::binding::Evidence::default())
        .await
        .map_err(|e| AdminError::Internal(e.description))?;
    change_event(p, actor, "session.end", sid, json!({"username": username}));
    Ok(())
}

/// A signing key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs new tokens.
    Active,
    /// Replaced, still in the JWKS until the tokens it signed expire.
    Published,
    /// Out of the JWKS; its tokens no longer verify.
    Retired,
}

/// The key's state at `now`.
pub fn key_state(k: &KeyRecord, now: i64) -> KeyState {
    match (k.rotated_at, k.publish_until) {
        (None, _) => KeyState::Active,
        (Some(_), Some(t)) if t > now => KeyState::Published,
        _ => KeyState::Retired,
    }
}

pub async fn rotate_keys(p: &Provider, actor: &Actor) -> Result<Vec<KeyRecord>, AdminError> {
    let new = crate::provider::rotate_keys(&*p.store, &p.master, p.now()).await.map_err(AdminError::Internal)?;
    p.refresh().await?;
    let kids: Vec<&str> = new.iter().map(|k| k.kid.as_str()).collect();
    change_event(p, actor, "key.rotate", &kids.join(","), json!({}));
    Ok(new)
}

/// Retire a key now: it leaves the JWKS and its tokens stop verifying. The only active key of an
/// algorithm cannot be retired (409).
pub async fn retire_key(p: &Provider, actor: &Actor, kid: &str) -> Result<(), AdminError> {
    let keys = p.store.list_keys().await?;
    let now = p.now();
    let Some(k) = keys.iter().find(|k| k.kid == kid) else {
        return Err(AdminError::NotFound(format!("no key {kid}")));
    };
    if key_state(k, now) == KeyState::Active
        && !keys.iter().any(|o| o.kid != k.kid && o.alg == k.alg && key_state(o, now) == KeyState::Active)
    {
        return Err(AdminError::Conflict(format!(
            "{kid} is the only active {} key; rotate first (POST /keys/rotate), then retire it",
            k.alg.as_str()
        )));
    }
    p.store.retire_key(kid, now).await?;
    p.refresh().await?;
    change_event(p, actor, "key.retire", kid, json!({}));
    Ok(())
}

/// Revoke every token of a client and/or user; an empty filter is refused.
pub async fn revoke_tokens(
    p: &Provider,
    actor: &Actor,
    client_id: Option<&str>,
    username: Option<&str>,
) -> Result<u64, AdminError> {
    if client_id.is_none() && username.is_none() {
        return Err(AdminError::Invalid {
            detail: "name a client_id and/or a username: an empty filter would revoke every token".into(),
            pointer: Some("#".into()),
        });
    }
    let user_id = match username {
        Some(u) => Some(get_user(p, u).await?.user.id),
        None => None,
    };
    let f = RevokeFilter { user_id, client_ids: client_id.map(|c| vec![c.to_string()]), ..Default::default() };
    let n = p.store.revoke_matching(&f, p.now()).await?;
    let target = [client_id, username].iter().flatten().copied().collect::<Vec<_>>().join(",");
    change_event(p, actor, "token.revoke_all", &target, json!({"revoked": n}));
    Ok(n)
}

pub async fn revoke_token(p: &Provider, actor: &Actor, id: &str) -> Result<(), AdminError> {
    if !p.store.revoke_by_public_id(id, p.now()).await? {
        return Err(AdminError::NotFound(format!("no active token {id}")));
    }
    change_event(p, actor, "token.revoke", id, json!({}));
    Ok(())
}
