//! Declarative configuration (`tether export` / `tether apply`): the apps and users of a
//! database as one document, and the changes that make a database match a document — what
//! Keycloak's realm import and Kong's decK give their users, so an identity setup can live in
//! git.
//!
//! The document is a JSON value here (the CLI reads and writes it as TOML):
//! `{"version": 1, "apps": [{…app…}], "users": [{…user…}]}`. An app entry has the keys of
//! `tether app show --json` (its `client_id` is kept as is); a user entry `username`, `sub`
//! (the user's id, kept so `sub` claims stay the same), `email`, `name`, `roles`, `disabled`.
//! An entry names only what it sets: a new app starts from the defaults of `tether app
//! create`, an existing one from what it is now. Every app is checked by the same rules as
//! `tether app create` ([`crate::admin::check`]).
//!
//! **Secrets.** Only with `--include-secrets` does an export carry `secret_hash` (and
//! `sealed_secret` for `client_secret_jwt`, which opens only under the same master key) and
//! `password_hash` (argon2id). Without them an app or user created by `apply` has no working
//! credential — a confidential app gets the hash of a secret nobody knows, a user a password
//! hash nothing matches — until an operator runs `tether app secret` / `tether user passwd`.
//! An existing app or user keeps its credential unless the document carries one.
//!
//! The console's built-in app is never exported, changed or pruned.

use serde_json::{Map, Value, json};

use crate::admin_ops::{self as ops, AdminError, CONSOLE_CLIENT_ID, UserChanges};
use crate::audit::Actor;
use crate::model::{App, AppRecord, User, UserRecord};
use crate::provider::Provider;
use crate::secret::{b64url, hash_secret, random_bytes};

/// The document format's version.
pub const VERSION: i64 = 1;

/// A password hash no password matches (a user created without `password_hash`).
pub const NO_PASSWORD: &str = "!no-password: set one with tether user passwd";

const APP_SECRET_KEYS: &[&str] = &["secret_hash", "sealed_secret"];
const USER_KEYS: &[&str] = &["username", "sub", "email", "name", "roles", "disabled", "password_hash"];

fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The document of these apps and users (sorted, so exports of the same data are identical).
pub fn export(apps: &[AppRecord], users: &[UserRecord], include_secrets: bool) -> Value {
    let mut apps: Vec<&AppRecord> = apps.iter().filter(|a| a.app.client_id != CONSOLE_CLIENT_ID).collect();
    apps.sort_by(|a, b| a.app.client_id.cmp(&b.app.client_id));
    let apps: Vec<Value> = apps
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(&a.app).unwrap_or_else(|_| json!({}));
            if include_secrets && let Some(m) = v.as_object_mut() {
                if let Some(h) = &a.secret_hash {
                    m.insert("secret_hash".into(), json!(h));
                }
                if let Some(s) = &a.sealed_secret {
                    m.insert("sealed_secret".into(), json!(s));
                }
            }
            without_nulls(v)
        })
        .collect();
    let mut users: Vec<&UserRecord> = users.iter().collect();
    users.sort_by(|a, b| a.user.username.cmp(&b.user.username));
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut v = json!({
                "username": u.user.username,
                "sub": u.user.id,
                "email": u.user.email,
                "name": u.user.name,
                "roles": u.user.roles,
                "disabled": u.user.disabled,
            });
            if include_secrets && let Some(m) = v.as_object_mut() {
                m.insert("password_hash".into(), json!(u.password_hash));
            }
            without_nulls(v)
        })
        .collect();
    json!({"version": VERSION, "apps": apps, "users": users})
}

/// One change `apply` makes.
pub enum Step {
    CreateApp { rec: AppRecord, credential: bool },
    UpdateApp { rec: AppRecord, fields: Vec<String> },
    DeleteApp { client_id: String, name: String },
    CreateUser { rec: UserRecord, credential: bool },
    UpdateUser { username: String, changes: UserChanges, password_hash: Option<String>, fields: Vec<String> },
    DeleteUser { username: String },
}

impl Step {
    /// One line for the `--dry-run` diff and the report.
    pub fn describe(&self) -> String {
        match self {
            Step::CreateApp { rec, credential } => format!(
                "+ app {} ({}){}",
                rec.app.name,
                rec.app.client_id,
                if *credential || rec.app.public { "" } else { " without a working secret (tether app secret)" }
            ),
            Step::UpdateApp { rec, fields } => {
                format!("~ app {} ({}): {}", rec.app.name, rec.app.client_id, fields.join(", "))
            }
            Step::DeleteApp { client_id, name } => format!("- app {name} ({client_id})"),
            Step::CreateUser { rec, credential } => format!(
                "+ user {}{}",
                rec.user.username,
                if *credential { "" } else { " without a password (tether user passwd)" }
            ),
            Step::UpdateUser { username, fields, .. } => format!("~ user {username}: {}", fields.join(", ")),
            Step::DeleteUser { username } => format!("- user {username}"),
        }
    }
}

fn entries<'a>(doc: &'a Value, key: &str) -> Result<Vec<&'a Map<String, Value>>, String> {
    match doc.get(key) {
        None => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, e)| e.as_object().ok_or_else(|| format!("{key}[{i}] must be a table")))
            .collect(),
        Some(_) => Err(format!("{key} must be an array of tables ([[{key}]])")),
    }
}

/// The app an entry describes: `base` (the existing app, or the defaults) with the entry's keys.
fn app_of(i: usize, e: &Map<String, Value>, base: &App) -> Result<App, String> {
    let at = |k: &str| format!("apps[{i}].{k}");
    let mut v = serde_json::to_value(base).map_err(|e| e.to_string())?;
    let known: Vec<String> = crate::admin::defaults(String::new())
        .pipe_json()
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let m = v.as_object_mut().ok_or("app is not an object")?;
    for (k, val) in e {
        if APP_SECRET_KEYS.contains(&k.as_str()) {
            continue;
        }
        if !known.contains(k) {
            return Err(format!("{}: unknown key (the keys are those of `tether app show --json`)", at(k)));
        }
        m.insert(k.clone(), val.clone());
    }
    let app: App = serde_json::from_value(v).map_err(|e| format!("apps[{i}]: {e}"))?;
    if app.name.trim().is_empty() {
        return Err(format!("{} is required", at("name")));
    }
    crate::admin::check(&app).map_err(|e| format!("apps[{i}] ({}): {e}", app.client_id))?;
    Ok(app)
}

trait PipeJson {
    fn pipe_json(&self) -> Value;
}

impl PipeJson for App {
    fn pipe_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

fn str_field(e: &Map<String, Value>, k: &str, at: &str) -> Result<Option<String>, String> {
    match e.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{at}.{k} must be a string")),
    }
}

/// Fields whose JSON differs between two apps.
fn diff(before: &Value, after: &Value) -> Vec<String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else { return vec![] };
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}

/// The steps that make the database match `doc` (nothing is written).
pub async fn plan(p: &Provider, doc: &Value, prune: bool) -> Result<Vec<Step>, String> {
    match doc.get("version").and_then(Value::as_i64) {
        Some(VERSION) | None => {}
        Some(v) => return Err(format!("version = {v}: this Tether reads version {VERSION} documents")),
    }
    if let Some(k) =
        doc.as_object().and_then(|m| m.keys().find(|k| !["version", "apps", "users"].contains(&k.as_str())))
    {
        return Err(format!("unknown top-level key {k:?} (version, apps, users)"));
    }
    let existing_apps = p.store.list_apps().await.map_err(|e| e.to_string())?;
    let existing_users = p.store.list_users().await.map_err(|e| e.to_string())?;
    let mut steps = Vec::new();
    let mut seen_apps = Vec::new();
    for (i, e) in entries(doc, "apps")?.into_iter().enumerate() {
        let Some(client_id) = str_field(e, "client_id", &format!("apps[{i}]"))? else {
            return Err(format!("apps[{i}].client_id is required"));
        };
        if client_id == CONSOLE_CLIENT_ID {
            return Err(format!("apps[{i}]: {CONSOLE_CLIENT_ID} is the console's built-in app, managed by the server"));
        }
        if seen_apps.contains(&client_id) {
            return Err(format!("apps[{i}]: client_id {client_id} appears twice"));
        }
        seen_apps.push(client_id.clone());
        let secret_hash = str_field(e, "secret_hash", &format!("apps[{i}]"))?;
        let sealed = str_field(e, "sealed_secret", &format!("apps[{i}]"))?;
        match existing_apps.iter().find(|a| a.app.client_id == client_id) {
            Some(old) => {
                let app = app_of(i, e, &old.app)?;
                let mut rec = old.clone();
                let mut fields = diff(&old.app.pipe_json(), &app.pipe_json());
                rec.app = app;
                if let Some(h) = secret_hash.filter(|h| Some(h) != old.secret_hash.as_ref()) {
                    rec.secret_hash = Some(h);
                    fields.push("secret".into());
                }
                if sealed.is_some() && sealed != old.sealed_secret {
                    rec.sealed_secret = sealed;
                    fields.push("sealed secret".into());
                }
                if rec.app.public && rec.secret_hash.is_some() {
                    rec.secret_hash = None;
                    rec.sealed_secret = None;
                } else if !rec.app.public && rec.secret_hash.is_none() {
                    rec.secret_hash = Some(hash_secret(&b64url(&random_bytes::<32>())));
                }
                if !fields.is_empty() {
                    steps.push(Step::UpdateApp { rec, fields });
                }
            }
            None => {
                let app = app_of(i, e, &crate::admin::defaults(client_id.clone()))?;
                if app.client_id != client_id {
                    return Err(format!("apps[{i}].client_id cannot change"));
                }
                if let Some(other) = existing_apps.iter().find(|a| a.app.name == app.name) {
                    return Err(format!(
                        "apps[{i}]: an app named {:?} exists with another client_id ({})",
                        app.name, other.app.client_id
                    ));
                }
                let credential = secret_hash.is_some();
                let secret_hash = match (app.public, secret_hash) {
                    (true, _) => None,
                    (false, Some(h)) => Some(h),
                    // Nobody knows this secret: the app needs `tether app secret` to be used.
                    (false, None) => Some(hash_secret(&b64url(&random_bytes::<32>()))),
                };
                let rec = AppRecord { app, secret_hash, previous_secret: None, sealed_secret: sealed };
                steps.push(Step::CreateApp { rec, credential });
            }
        }
    }
    let mut seen_users = Vec::new();
    for (i, e) in entries(doc, "users")?.into_iter().enumerate() {
        let at = format!("users[{i}]");
        if let Some(k) = e.keys().find(|k| !USER_KEYS.contains(&k.as_str())) {
            return Err(format!("{at}.{k}: unknown key ({})", USER_KEYS.join(", ")));
        }
        let Some(username) = str_field(e, "username", &at)? else { return Err(format!("{at}.username is required")) };
        if !ops::valid_username(&username) {
            return Err(format!("{at}.username {username:?} is not a valid username"));
        }
        if seen_users.contains(&username) {
            return Err(format!("{at}: user {username} appears twice"));
        }
        seen_users.push(username.clone());
        let email = str_field(e, "email", &at)?;
        let name = str_field(e, "name", &at)?;
        let roles: Option<Vec<String>> = match e.get("roles") {
            None => None,
            Some(v) => {
                Some(serde_json::from_value(v.clone()).map_err(|_| format!("{at}.roles must be a list of strings"))?)
            }
        };
        if let Some(r) = roles.iter().flatten().find(|r| !["admin", "viewer"].contains(&r.as_str())) {
            return Err(format!("{at}.roles: unknown role {r:?} (admin, viewer)"));
        }
        let disabled = match e.get("disabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(format!("{at}.disabled must be true or false")),
        };
        let password_hash = str_field(e, "password_hash", &at)?;
        let sub = str_field(e, "sub", &at)?;
        match existing_users.iter().find(|u| u.user.username == username) {
            Some(old) => {
                let mut fields = Vec::new();
                let mut ch = UserChanges::default();
                if email.is_some() && email != old.user.email {
                    ch.email = Some(email);
                    fields.push("email".into());
                }
                if name.is_some() && name != old.user.name {
                    ch.name = Some(name);
                    fields.push("name".into());
                }
                if let Some(r) = roles.filter(|r| *r != old.user.roles) {
                    ch.roles = Some(r);
                    fields.push("roles".into());
                }
                if let Some(d) = disabled.filter(|d| *d != old.user.disabled) {
                    ch.disabled = Some(d);
                    fields.push("disabled".into());
                }
                let password_hash = password_hash.filter(|h| *h != old.password_hash);
                if password_hash.is_some() {
                    fields.push("password".into());
                }
                if sub.as_ref().is_some_and(|s| *s != old.user.id) {
                    return Err(format!("{at}.sub: user {username} exists with another sub ({})", old.user.id));
                }
                if !fields.is_empty() {
                    steps.push(Step::UpdateUser { username, changes: ch, password_hash, fields });
                }
            }
            None => {
                let credential = password_hash.is_some();
                let rec = UserRecord {
                    user: User {
                        id: sub.unwrap_or_else(|| b64url(&random_bytes::<16>())),
                        username,
                        email,
                        name,
                        created_at: p.now(),
                        roles: roles.unwrap_or_default(),
                        disabled: disabled.unwrap_or(false),
                    },
                    password_hash: password_hash.unwrap_or_else(|| NO_PASSWORD.into()),
                };
                steps.push(Step::CreateUser { rec, credential });
            }
        }
    }
    if prune {
        for a in existing_apps.iter().filter(|a| a.app.client_id != CONSOLE_CLIENT_ID) {
            if !seen_apps.contains(&a.app.client_id) {
                steps.push(Step::DeleteApp { client_id: a.app.client_id.clone(), name: a.app.name.clone() });
            }
        }
        for u in &existing_users {
            if !seen_users.contains(&u.user.username) {
                steps.push(Step::DeleteUser { username: u.user.username.clone() });
            }
        }
    }
    Ok(steps)
}

/// Carry out the steps (each an audit event with `actor`); the number done.
pub async fn apply(
    p: &Provider,
    actor: &Actor,
    steps: Vec<Step>,
    revoke_on_password_change: bool,
) -> Result<usize, AdminError> {
    let mut n = 0;
    for s in steps {
        match s {
            Step::CreateApp { rec, .. } => {
                p.store.create_app(&rec).await?;
                p.event(
                    crate::audit::kind::ADMIN_CHANGE,
                    actor,
                    json!({"action": "app.create", "target": rec.app.client_id, "via": "apply"}),
                );
            }
            Step::UpdateApp { rec, fields } => {
                p.store.update_app(&rec).await?;
                p.event(
                    crate::audit::kind::ADMIN_CHANGE,
                    actor,
                    json!({"action": "app.update", "target": rec.app.client_id, "via": "apply", "fields": fields}),
                );
            }
            Step::DeleteApp { client_id, .. } => ops::delete_app(p, actor, &client_id).await?,
            Step::CreateUser { rec, .. } => {
                if p.store.get_user(&rec.user.id).await?.is_some() {
                    return Err(AdminError::Conflict(format!(
                        "user {}: another user has sub {}",
                        rec.user.username, rec.user.id
                    )));
                }
                p.store.create_user(&rec).await?;
                p.event(
                    crate::audit::kind::ADMIN_CHANGE,
                    actor,
                    json!({"action": "user.create", "target": rec.user.username, "via": "apply"}),
                );
            }
            Step::UpdateUser { username, changes, password_hash, .. } => {
                let c = &changes;
                if c.email.is_some() || c.name.is_some() || c.roles.is_some() || c.disabled.is_some() {
                    ops::update_user(p, actor, &username, changes, revoke_on_password_change).await?;
                }
                if let Some(h) = password_hash {
                    p.store.set_password(&username, &h).await?;
                    p.event(
                        crate::audit::kind::ADMIN_CHANGE,
                        actor,
                        json!({"action": "user.password", "target": username, "via": "apply"}),
                    );
                }
            }
            Step::DeleteUser { username } => ops::delete_user(p, actor, &username).await?,
        }
        n += 1;
    }
    p.refresh().await?;
    Ok(n)
}
