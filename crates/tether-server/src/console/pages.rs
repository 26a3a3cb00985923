//! The console's pages and forms. Each handler reads through the store and changes through
//! `tether_core::admin_ops`, exactly as the admin API does (same checks, same audit events,
//! the console user as actor); a refusal is shown on the page it came from.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tether_core::admin::AppChanges;
use tether_core::admin_ops::{self as ops, AdminError, CONSOLE_CLIENT_ID, NewUser, SessionView, UserChanges};
use tether_core::audit::kind;
use tether_core::error::StoreError;
use tether_core::form::Form;
use tether_core::model::AppRecord;
use tether_core::model::BindingType;
use tether_core::secret::Secret;
use tether_core::store::{EventQuery, EventRecord, TokenQuery};

use super::session::{Console, PREFIX, urlencoding};
use super::view::{self, *};
use crate::pages::common::redirect;

type Page = Result<Response, Response>;

fn page(c: &Console, status: StatusCode, html: Result<String, askama::Error>) -> Response {
    view::render(&c.s.p, status, html)
}

fn problem(c: &Console, e: &AdminError) -> (StatusCode, String) {
    match e {
        AdminError::Invalid { detail, .. } => (StatusCode::BAD_REQUEST, detail.clone()),
        AdminError::NotFound(d) => (StatusCode::NOT_FOUND, d.clone()),
        AdminError::Conflict(d) => (StatusCode::CONFLICT, d.clone()),
        AdminError::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable; try again in a moment.".into())
        }
        AdminError::Internal(d) => {
            tracing::error!(error = %d, user = %c.username, "console action failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on the server; see its log.".into())
        }
    }
}

fn failed(c: &Console, e: AdminError) -> Response {
    let (status, text) = problem(c, &e);
    view::message(&c.s.p, status, "Not done", &text)
}

fn store_failed(c: &Console, e: StoreError) -> Response {
    failed(c, AdminError::from(e))
}

fn parse_form(c: &Console, body: &Bytes) -> Result<Form, Response> {
    Form::parse(body).map_err(|e| view::message(&c.s.p, StatusCode::BAD_REQUEST, "Form refused", &e.description))
}

/// A change form: parsed, from an `admin`, with a valid CSRF value.
fn change(c: &Console, body: &Bytes) -> Result<Form, Response> {
    let form = parse_form(c, body)?;
    c.writer(&form)?;
    Ok(form)
}

/// A page only administrators see (forms that change something).
fn admin_only(c: &Console) -> Result<(), Response> {
    if c.can_write {
        return Ok(());
    }
    Err(view::message(
        &c.s.p,
        StatusCode::FORBIDDEN,
        "Read-only access",
        "Your role lets you look, not change anything: ask an administrator for the admin role.",
    ))
}

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The outcome named by `?done=` after a redirect (fixed texts: nothing from the URL is shown).
fn done(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "app-deleted" => "Application deleted.",
        "user-created" => "User created.",
        "token-revoked" => "Token revoked.",
        "rotated" => "Keys rotated: new keys sign from now on; the old ones stay published until their tokens expire.",
        "retired" => "Key retired: it left the JWKS and its tokens no longer verify.",
        _ => return None,
    };
    Some(text.to_string())
}

#[derive(Deserialize, Default)]
pub(crate) struct DoneQuery {
    done: Option<String>,
    q: Option<String>,
}

// ---------- overview ----------

pub(crate) async fn overview(c: Console) -> Response {
    let p = &c.s.p;
    let now = p.now();
    let apps = match p.store.list_apps().await {
        Ok(a) => a.into_iter().filter(|a| a.app.client_id != CONSOLE_CLIENT_ID).count(),
        Err(e) => return store_failed(&c, e),
    };
    let users = match p.store.list_users().await {
        Ok(u) => u,
        Err(e) => return store_failed(&c, e),
    };
    let tq = TokenQuery { limit: 5000, ..Default::default() };
    let active_tokens = match p.store.list_tokens(&tq).await {
        Ok(t) => t.iter().filter(|t| t.revoked_at.is_none() && t.expires_at > now).count(),
        Err(e) => return store_failed(&c, e),
    };
    let keys = match p.store.list_keys().await {
        Ok(k) => k,
        Err(e) => return store_failed(&c, e),
    };
    let admins: Vec<&str> = users
        .iter()
        .filter(|u| !u.user.disabled && u.user.roles.iter().any(|r| r == "admin"))
        .map(|u| u.user.username.as_str())
        .collect();
    let mut warnings = Vec::new();
    if let Some(path) = &c.s.opts.master_key_file {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "The master key file {} has mode {mode:04o}: others on the server can read it. Run chmod 600 {}.",
                    path.display(),
                    path.display()
                ));
            }
        }
    }
    if admins.len() == 1 && admins[0] == c.username {
        warnings.push(
            "No administrator other than you: if you lose your password, only the CLI on the server can let you back in."
                .into(),
        );
    }
    for k in keys.iter().filter(|k| ops::key_state(k, now) == ops::KeyState::Active) {
        if now - k.created_at > 90 * 86_400 {
            warnings.push(format!("Signing key {} is {} old: rotate the keys.", k.kid, age(now - k.created_at)));
        }
    }
    p.audit.flush(&*p.store).await;
    let eq = EventQuery { limit: 8, ..Default::default() };
    let events = match p.store.list_events(&eq).await {
        Ok(e) => e.iter().map(event_row).collect(),
        Err(e) => return store_failed(&c, e),
    };
    let t = OverviewPage {
        nav: c.nav("overview"),
        apps,
        users: users.len(),
        active_tokens,
        admins: admins.len(),
        warnings,
        keys: key_rows(&keys, now),
        events,
    };
    page(&c, StatusCode::OK, t.render())
}

// ---------- applications ----------

fn app_row(a: &AppRecord) -> AppRow {
    AppRow {
        client_id: a.app.client_id.clone(),
        name: a.app.name.clone(),
        grants: a
            .app
            .grant_types
            .iter()
            .map(|g| g.as_str().rsplit(':').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", "),
        binding: a.app.binding.as_str().to_string(),
        token_type: a.app.token_type.as_str().to_string(),
        public: a.app.public,
    }
}

pub(crate) async fn apps(c: Console, Query(q): Query<DoneQuery>) -> Response {
    let list = match c.s.p.store.list_apps().await {
        Ok(l) => l,
        Err(e) => return store_failed(&c, e),
    };
    let needle = q.q.clone().unwrap_or_default();
    let lower = needle.trim().to_lowercase();
    let mut rows: Vec<AppRow> = list
        .iter()
        .filter(|a| a.app.client_id != CONSOLE_CLIENT_ID)
        .filter(|a| {
            lower.is_empty()
                || a.app.name.to_lowercase().contains(&lower)
                || a.app.client_id.to_lowercase().contains(&lower)
        })
        .map(app_row)
        .collect();
    rows.sort_by_key(|a| a.name.to_lowercase());
    let t = AppsPage { nav: c.nav("apps"), q: needle, apps: rows, flash: done(q.done.as_deref()) };
    page(&c, StatusCode::OK, t.render())
}

fn app_form(a: &AppRecord) -> AppForm {
    AppForm {
        client_id: a.app.client_id.clone(),
        name: a.app.name.clone(),
        grants: grant_choices(&a.app.grant_types),
        redirect_uris: a.app.redirect_uris.join("\n"),
        public: a.app.public,
        auth_method: a.app.auth_method.as_str().to_string(),
        token_type: a.app.token_type.as_str().to_string(),
        bindings: binding_choices(a.app.binding),
        validate_binding: a.app.validate_binding,
        revoke_on_logout: a.app.revoke_on_logout,
        scopes: a.app.scopes.join(" "),
        profile: serde_json::to_value(a.app.profile)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    }
}

/// The form as submitted (shown again with the error when a change is refused).
fn submitted(form: &Form, client_id: &str) -> AppForm {
    let grants: Vec<tether_core::model::GrantType> =
        form.get_all("grant_types").iter().filter_map(|g| tether_core::model::GrantType::parse(g)).collect();
    let binding = form.get("binding").and_then(BindingType::parse).unwrap_or(BindingType::None);
    AppForm {
        client_id: client_id.to_string(),
        name: form.get("name").unwrap_or("").to_string(),
        grants: grant_choices(&grants),
        redirect_uris: form.get("redirect_uris").unwrap_or("").to_string(),
        public: form.has("public"),
        auth_method: form.get("auth_method").unwrap_or("").to_string(),
        token_type: form.get("token_type").unwrap_or("jwt").to_string(),
        bindings: binding_choices(binding),
        validate_binding: form.has("validate_binding"),
        revoke_on_logout: form.has("revoke_on_logout"),
        scopes: form.get("scopes").unwrap_or("").to_string(),
        profile: String::new(),
    }
}

/// The changes a submitted application form asks for: every field of the form, as set.
fn changes_of(form: &Form) -> AppChanges {
    let list = |k: &str| -> Vec<String> {
        form.get(k)
            .unwrap_or("")
            .split(|c: char| c.is_whitespace() || c == ',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let public = form.has("public");
    AppChanges {
        name: opt(form.get("name")),
        grant_types: Some(form.get_all("grant_types").iter().map(|s| s.to_string()).collect()),
        redirect_uris: Some(list("redirect_uris")),
        public: Some(public),
        auth_method: if public { None } else { opt(form.get("auth_method")) },
        token_type: opt(form.get("token_type")),
        binding: opt(form.get("binding")),
        validate_binding: Some(form.has("validate_binding")),
        revoke_on_logout: Some(form.has("revoke_on_logout")),
        scopes: Some(list("scopes")).filter(|s| !s.is_empty()),
        ..Default::default()
    }
}

fn app_page(
    c: &Console,
    status: StatusCode,
    new: bool,
    app: AppForm,
    error: Option<String>,
    flash: Option<String>,
) -> Response {
    let t = AppPage { nav: c.nav("apps"), new, app, auth_methods: AUTH_METHODS, error, flash };
    page(c, status, t.render())
}

pub(crate) async fn new_app(c: Console) -> Page {
    admin_only(&c)?;
    let mut blank = submitted(&Form::from_pairs(vec![]), "");
    blank.grants = grant_choices(&[]);
    blank.auth_method = "client_secret_basic".into();
    blank.bindings = binding_choices(BindingType::None);
    blank.validate_binding = true;
    Ok(app_page(&c, StatusCode::OK, true, blank, None, None))
}

pub(crate) async fn create_app(c: Console, body: Bytes) -> Page {
    let form = change(&c, &body)?;
    match ops::create_app(&c.s.p, &c.actor, &changes_of(&form)).await {
        Ok((rec, secret)) => {
            let t = SecretPage {
                nav: c.nav("apps"),
                client_id: rec.app.client_id.clone(),
                name: rec.app.name.clone(),
                secret: secret.map(|s| s.expose().to_string()),
                created: true,
            };
            Ok(page(&c, StatusCode::OK, t.render()))
        }
        Err(e) => {
            let (status, text) = problem(&c, &e);
            Ok(app_page(&c, status, true, submitted(&form, ""), Some(text), None))
        }
    }
}

async fn find_app(c: &Console, id: &str) -> Result<AppRecord, Response> {
    if id == CONSOLE_CLIENT_ID {
        return Err(view::message(
            &c.s.p,
            StatusCode::NOT_FOUND,
            "Not found",
            "The console's own app is managed by Tether and is not listed here.",
        ));
    }
    ops::get_app(&c.s.p, id).await.map_err(|e| failed(c, e))
}

pub(crate) async fn app(c: Console, Path(id): Path<String>) -> Page {
    let a = find_app(&c, &id).await?;
    Ok(app_page(&c, StatusCode::OK, false, app_form(&a), None, None))
}

pub(crate) async fn update_app(c: Console, Path(id): Path<String>, body: Bytes) -> Page {
    let form = change(&c, &body)?;
    find_app(&c, &id).await?;
    match ops::update_app(&c.s.p, &c.actor, &id, &changes_of(&form)).await {
        Ok((rec, Some(secret))) => {
            let t = SecretPage {
                nav: c.nav("apps"),
                client_id: rec.app.client_id.clone(),
                name: rec.app.name.clone(),
                secret: Some(secret.expose().to_string()),
                created: false,
            };
            Ok(page(&c, StatusCode::OK, t.render()))
        }
        Ok((rec, None)) => Ok(app_page(&c, StatusCode::OK, false, app_form(&rec), None, Some("Saved.".into()))),
        Err(e) => {
            let (status, text) = problem(&c, &e);
            Ok(app_page(&c, status, false, submitted(&form, &id), Some(text), None))
        }
    }
}

pub(crate) async fn app_secret(c: Console, Path(id): Path<String>, body: Bytes) -> Page {
    change(&c, &body)?;
    let a = find_app(&c, &id).await?;
    match ops::regenerate_secret(&c.s.p, &c.actor, &id, 0).await {
        Ok(secret) => {
            let t = SecretPage {
                nav: c.nav("apps"),
                client_id: id,
                name: a.app.name,
                secret: Some(secret.expose().to_string()),
                created: false,
            };
            Ok(page(&c, StatusCode::OK, t.render()))
        }
        Err(e) => Err(failed(&c, e)),
    }
}

fn confirm(
    c: &Console,
    status: StatusCode,
    title: String,
    text: String,
    action: String,
    button: &str,
    back: String,
) -> Response {
    let t = ConfirmPage {
        nav: c.nav(if action.contains("/keys/") { "keys" } else { "apps" }),
        title,
        text,
        reauth: format!("{PREFIX}/signin?reauth=1&return={}", urlencoding(&action)),
        action,
        button: button.to_string(),
        back,
        fresh: c.fresh(),
    };
    page(c, status, t.render())
}

pub(crate) async fn confirm_delete_app(c: Console, Path(id): Path<String>) -> Page {
    admin_only(&c)?;
    let a = find_app(&c, &id).await?;
    Ok(confirm(
        &c,
        StatusCode::OK,
        format!("Delete {}?", a.app.name),
        format!(
            "The application {} ({}) and everything it was given go away: its tokens stop working at once. This cannot be undone.",
            a.app.name, a.app.client_id
        ),
        format!("{PREFIX}/apps/{}/delete", urlencoding(&id)),
        "Delete application",
        format!("{PREFIX}/apps/{}", urlencoding(&id)),
    ))
}

pub(crate) async fn delete_app(c: Console, Path(id): Path<String>, body: Bytes) -> Page {
    change(&c, &body)?;
    let a = find_app(&c, &id).await?;
    if !c.fresh() {
        return Ok(confirm(
            &c,
            StatusCode::FORBIDDEN,
            format!("Delete {}?", a.app.name),
            "Deleting an application needs a recent sign-in.".into(),
            format!("{PREFIX}/apps/{}/delete", urlencoding(&id)),
            "Delete application",
            format!("{PREFIX}/apps/{}", urlencoding(&id)),
        ));
    }
    ops::delete_app(&c.s.p, &c.actor, &id).await.map_err(|e| failed(&c, e))?;
    Ok(redirect(&format!("{PREFIX}/apps?done=app-deleted"), StatusCode::SEE_OTHER))
}

// ---------- users ----------

fn user_row(u: &tether_core::model::User) -> UserRow {
    UserRow {
        username: u.username.clone(),
        email: u.email.clone().unwrap_or_default(),
        name: u.name.clone().unwrap_or_default(),
        roles: u.roles.clone(),
        disabled: u.disabled,
        created: time(u.created_at),
    }
}

pub(crate) async fn users(c: Console, Query(q): Query<DoneQuery>) -> Response {
    let list = match c.s.p.store.list_users().await {
        Ok(l) => l,
        Err(e) => return store_failed(&c, e),
    };
    let needle = q.q.clone().unwrap_or_default();
    let lower = needle.trim().to_lowercase();
    let mut rows: Vec<UserRow> = list
        .iter()
        .filter(|u| {
            lower.is_empty()
                || u.user.username.to_lowercase().contains(&lower)
                || u.user.email.as_deref().is_some_and(|e| e.to_lowercase().contains(&lower))
                || u.user.name.as_deref().is_some_and(|n| n.to_lowercase().contains(&lower))
        })
        .map(|u| user_row(&u.user))
        .collect();
    rows.sort_by(|a, b| a.username.cmp(&b.username));
    let t = UsersPage { nav: c.nav("users"), q: needle, users: rows, flash: done(q.done.as_deref()) };
    page(&c, StatusCode::OK, t.render())
}

pub(crate) async fn new_user(c: Console) -> Page {
    admin_only(&c)?;
    let t = UserNewPage {
        nav: c.nav("users"),
        username: String::new(),
        email: String::new(),
        name: String::new(),
        admin: false,
        viewer: false,
        error: None,
    };
    Ok(page(&c, StatusCode::OK, t.render()))
}

fn roles_of(form: &Form) -> Vec<String> {
    form.get_all("roles").iter().filter(|r| matches!(**r, "admin" | "viewer")).map(|r| r.to_string()).collect()
}

pub(crate) async fn create_user(c: Console, body: Bytes) -> Page {
    let form = change(&c, &body)?;
    let username = form.get("username").unwrap_or("").trim().to_string();
    let roles = roles_of(&form);
    let n = NewUser {
        username: username.clone(),
        password: Secret::new(form.get("password").unwrap_or("")),
        email: opt(form.get("email")),
        name: opt(form.get("name")),
        roles: roles.clone(),
    };
    let refused = if form.get("password").unwrap_or("").is_empty() {
        Some((StatusCode::BAD_REQUEST, "Enter a password for the new user.".to_string()))
    } else {
        match ops::create_user(&c.s.p, &c.actor, n).await {
            Ok(_) => None,
            Err(e) => Some(problem(&c, &e)),
        }
    };
    match refused {
        None => {
            Ok(redirect(&format!("{PREFIX}/users/{}?done=user-created", urlencoding(&username)), StatusCode::SEE_OTHER))
        }
        Some((status, text)) => {
            let t = UserNewPage {
                nav: c.nav("users"),
                username,
                email: form.get("email").unwrap_or("").to_string(),
                name: form.get("name").unwrap_or("").to_string(),
                admin: roles.iter().any(|r| r == "admin"),
                viewer: roles.iter().any(|r| r == "viewer"),
                error: Some(text),
            };
            Ok(page(&c, status, t.render()))
        }
    }
}

async fn user_page(c: &Console, name: &str, status: StatusCode, flash: Option<String>, error: Option<String>) -> Page {
    let p = &c.s.p;
    let u = ops::get_user(p, name).await.map_err(|e| failed(c, e))?;
    let (now, idle) = (p.now(), p.config.session_idle_timeout);
    let sessions = p.store.list_sessions(&u.user.id).await.map_err(|e| store_failed(c, e))?;
    let sessions = sessions
        .iter()
        .map(|s| SessionView::new(s, now, idle))
        .map(|s| SessionRow {
            id: s.id,
            created: time(s.created_at),
            last_seen: time(s.last_seen),
            ip: s.ip.unwrap_or_default(),
            user_agent: s.user_agent.unwrap_or_default(),
            live: s.live,
        })
        .collect();
    let t = UserPage { nav: c.nav("users"), user: user_row(&u.user), sessions, flash, error };
    Ok(page(c, status, t.render()))
}

pub(crate) async fn user(c: Console, Path(name): Path<String>, Query(q): Query<DoneQuery>) -> Page {
    user_page(&c, &name, StatusCode::OK, done(q.done.as_deref()), None).await
}

async fn user_change(c: &Console, name: &str, ch: UserChanges, ok: &str) -> Page {
    match ops::update_user(&c.s.p, &c.actor, name, ch, c.s.opts.revoke_on_password_change).await {
        Ok(_) => user_page(c, name, StatusCode::OK, Some(ok.to_string()), None).await,
        Err(AdminError::NotFound(d)) => Err(view::message(&c.s.p, StatusCode::NOT_FOUND, "Not found", &d)),
        Err(e) => {
            let (status, text) = problem(c, &e);
            user_page(c, name, status, None, Some(text)).await
        }
    }
}

pub(crate) async fn update_user(c: Console, Path(name): Path<String>, body: Bytes) -> Page {
    let form = change(&c, &body)?;
    let ch = UserChanges {
        email: Some(opt(form.get("email"))),
        name: Some(opt(form.get("name"))),
        roles: Some(roles_of(&form)),
        password: None,
        disabled: Some(form.has("disabled")),
    };
    user_change(&c, &name, ch, "Saved.").await
}

pub(crate) async fn set_password(c: Console, Path(name): Path<String>, body: Bytes) -> Page {
    let form = change(&c, &body)?;
    let pw = form.get("password").unwrap_or("");
    if pw.is_empty() {
        return user_page(&c, &name, StatusCode::BAD_REQUEST, None, Some("Enter the new password.".into())).await;
    }
    let ch = UserChanges { password: Some(Secret::new(pw)), ..Default::default() };
    user_change(&c, &name, ch, "Password changed.").await
}

pub(crate) async fn logout_user(c: Console, Path(name): Path<String>, body: Bytes) -> Page {
    change(&c, &body)?;
    match ops::logout_user(&c.s.p, &c.actor, &name).await {
        Ok(r) => {
            let text = format!(
                "{name} was signed out everywhere: {} session(s) ended, {} token(s) revoked.",
                r.sessions_ended, r.tokens_revoked
            );
            user_page(&c, &name, StatusCode::OK, Some(text), None).await
        }
        Err(e) => Err(failed(&c, e)),
    }
}

pub(crate) async fn end_session(c: Console, Path((name, id)): Path<(String, String)>, body: Bytes) -> Page {
    change(&c, &body)?;
    match ops::end_session(&c.s.p, &c.actor, &name, &id).await {
        Ok(()) => user_page(&c, &name, StatusCode::OK, Some("Session ended.".into()), None).await,
        Err(e) => Err(failed(&c, e)),
    }
}

// ---------- tokens ----------

#[derive(Deserialize, Default)]
pub(crate) struct TokenFilter {
    client_id: Option<String>,
    username: Option<String>,
    binding: Option<String>,
    done: Option<String>,
}

pub(crate) async fn tokens(c: Console, Query(f): Query<TokenFilter>) -> Response {
    let p = &c.s.p;
    let now = p.now();
    let mut error = None;
    let binding = match opt(f.binding.as_deref()) {
        None => None,
        Some(b) => match BindingType::parse(&b) {
            Some(b) => Some(b),
            None => {
                error = Some(format!("Unknown binding type {b:?}."));
                None
            }
        },
    };
    let user_id = match opt(f.username.as_deref()) {
        None => None,
        Some(u) => match ops::get_user(p, &u).await {
            Ok(u) => Some(u.user.id),
            Err(_) => {
                error = Some(format!("No user {u:?}."));
                Some(String::new())
            }
        },
    };
    let tq = TokenQuery { client_id: opt(f.client_id.as_deref()), user_id, binding, after_id: None, limit: 200 };
    let list = if error.is_some() { Vec::new() } else { p.store.list_tokens(&tq).await.unwrap_or_default() };
    let rows = list
        .iter()
        .rev()
        .map(|t| TokenRow {
            id: t.id.clone(),
            kind: if t.refresh { "refresh token" } else { "access token" },
            format: t.format.as_str(),
            client_id: t.client_id.clone(),
            username: t.username.clone().unwrap_or_default(),
            binding: t.binding_type.map(BindingType::as_str).unwrap_or("none"),
            issued: time(t.issued_at),
            expires: time(t.expires_at),
            state: match (t.revoked_at, t.expires_at > now) {
                (Some(_), _) => "revoked",
                (None, false) => "expired",
                (None, true) => "active",
            },
        })
        .collect();
    let t = TokensPage {
        nav: c.nav("tokens"),
        client_id: f.client_id.unwrap_or_default(),
        username: f.username.unwrap_or_default(),
        binding: f.binding.unwrap_or_default(),
        bindings: BindingType::ALL,
        tokens: rows,
        flash: done(f.done.as_deref()),
        error: error.clone(),
    };
    page(&c, if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, t.render())
}

pub(crate) async fn revoke_token(c: Console, Path(id): Path<String>, body: Bytes) -> Page {
    let form = change(&c, &body)?;
    ops::revoke_token(&c.s.p, &c.actor, &id).await.map_err(|e| failed(&c, e))?;
    // Back to the same filtered list.
    let back = form.get("back").filter(|b| b.starts_with("?") && !b.contains('#')).unwrap_or("?");
    let sep = if back.len() > 1 { "&" } else { "" };
    Ok(redirect(&format!("{PREFIX}/tokens{back}{sep}done=token-revoked"), StatusCode::SEE_OTHER))
}

// ---------- keys ----------

fn key_rows(keys: &[tether_core::keys::KeyRecord], now: i64) -> Vec<KeyRow> {
    let mut rows: Vec<KeyRow> = keys
        .iter()
        .map(|k| KeyRow {
            kid: k.kid.clone(),
            alg: serde_json::to_value(k.alg).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            state: match ops::key_state(k, now) {
                ops::KeyState::Active => "active",
                ops::KeyState::Published => "published",
                ops::KeyState::Retired => "retired",
            },
            created: time(k.created_at),
            age: age(now - k.created_at),
        })
        .collect();
    rows.sort_by(|a, b| (a.state == "retired").cmp(&(b.state == "retired")).then(b.created.cmp(&a.created)));
    rows
}

async fn keys_page(c: &Console, status: StatusCode, flash: Option<String>, error: Option<String>) -> Response {
    let p = &c.s.p;
    match p.store.list_keys().await {
        Ok(k) => {
            let t = KeysPage { nav: c.nav("keys"), keys: key_rows(&k, p.now()), flash, error };
            page(c, status, t.render())
        }
        Err(e) => store_failed(c, e),
    }
}

pub(crate) async fn keys(c: Console, Query(q): Query<DoneQuery>) -> Response {
    keys_page(&c, StatusCode::OK, done(q.done.as_deref()), None).await
}

pub(crate) async fn rotate_keys(c: Console, body: Bytes) -> Page {
    change(&c, &body)?;
    ops::rotate_keys(&c.s.p, &c.actor).await.map_err(|e| failed(&c, e))?;
    Ok(redirect(&format!("{PREFIX}/keys?done=rotated"), StatusCode::SEE_OTHER))
}

pub(crate) async fn confirm_retire(c: Console, Path(kid): Path<String>) -> Page {
    admin_only(&c)?;
    Ok(confirm(
        &c,
        StatusCode::OK,
        format!("Retire key {kid}?"),
        "The key leaves the JWKS at once and every token it signed stops verifying, here and at every resource server. The only active key of an algorithm cannot be retired: rotate first.".into(),
        format!("{PREFIX}/keys/{}/retire", urlencoding(&kid)),
        "Retire key",
        format!("{PREFIX}/keys"),
    ))
}

pub(crate) async fn retire_key(c: Console, Path(kid): Path<String>, body: Bytes) -> Page {
    change(&c, &body)?;
    if !c.fresh() {
        return Ok(confirm(
            &c,
            StatusCode::FORBIDDEN,
            format!("Retire key {kid}?"),
            "Retiring a key needs a recent sign-in.".into(),
            format!("{PREFIX}/keys/{}/retire", urlencoding(&kid)),
            "Retire key",
            format!("{PREFIX}/keys"),
        ));
    }
    match ops::retire_key(&c.s.p, &c.actor, &kid).await {
        Ok(()) => Ok(redirect(&format!("{PREFIX}/keys?done=retired"), StatusCode::SEE_OTHER)),
        Err(e) => {
            let (status, text) = problem(&c, &e);
            Ok(keys_page(&c, status, None, Some(text)).await)
        }
    }
}

// ---------- events ----------

fn event_row(e: &EventRecord) -> EventRow {
    let d = &e.detail;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let mismatch = e.kind == kind::BINDING_MISMATCH;
    let summary = match (s("action"), s("target"), s("reason"), s("where")) {
        _ if mismatch => format!(
            "refused at {}: a {}-bound token was presented without its proof",
            s("where").unwrap_or_else(|| "a resource".into()),
            s("binding_type").unwrap_or_else(|| "bound".into())
        ),
        (Some(a), Some(t), _, _) => format!("{a} {t}"),
        (_, _, Some(r), _) => r,
        (_, _, _, Some(w)) => format!("at {w}"),
        _ if e.kind == kind::TOKEN_ISSUED || e.kind == kind::TOKEN_REFRESHED => format!(
            "{} {}{}",
            s("grant_type").unwrap_or_default(),
            s("token_type").unwrap_or_default(),
            s("binding_type").map(|b| format!(", {b} binding")).unwrap_or_default()
        ),
        _ => String::new(),
    };
    EventRow {
        id: e.id.clone(),
        time: time(e.time),
        kind: e.kind.clone(),
        client_id: e.client_id.clone().unwrap_or_default(),
        username: e.username.clone().unwrap_or_default(),
        ip: e.ip.clone().unwrap_or_default(),
        summary,
        detail: serde_json::to_string_pretty(d).unwrap_or_default(),
        token_app: e.client_id.clone().filter(|_| mismatch),
        token_user: e.username.clone().filter(|_| mismatch),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct EventFilter {
    #[serde(rename = "type")]
    kind: Option<String>,
    username: Option<String>,
    client_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

fn parse_time(v: &str) -> Option<i64> {
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    let v = v.trim();
    // `<input type="datetime-local">` sends `2026-11-30T08:00` (taken as UTC).
    let full = if v.len() == 16 { format!("{v}:00Z") } else { v.to_string() };
    time::OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

pub(crate) async fn events(c: Console, Query(f): Query<EventFilter>) -> Response {
    let p = &c.s.p;
    let mut error = None;
    let mut eq = EventQuery { limit: 200, ..Default::default() };
    if let Some(t) = opt(f.kind.as_deref()) {
        if tether_core::audit::kind::ALL.contains(&t.as_str()) {
            eq.types = vec![t];
        } else {
            error = Some(format!("Unknown event type {t:?}."));
        }
    }
    eq.username = opt(f.username.as_deref());
    eq.client_id = opt(f.client_id.as_deref());
    for (name, v, slot) in [("since", &f.since, &mut eq.since), ("until", &f.until, &mut eq.until)] {
        if let Some(v) = opt(v.as_deref()) {
            match parse_time(&v) {
                Some(t) => *slot = Some(t),
                None => error = Some(format!("{name} must be a time such as 2026-11-30T08:00:00Z.")),
            }
        }
    }
    p.audit.flush(&*p.store).await;
    let rows = if error.is_some() {
        Vec::new()
    } else {
        match p.store.list_events(&eq).await {
            Ok(l) => l.iter().map(event_row).collect(),
            Err(e) => return store_failed(&c, e),
        }
    };
    let t = EventsPage {
        nav: c.nav("events"),
        kind: f.kind.unwrap_or_default(),
        username: f.username.unwrap_or_default(),
        client_id: f.client_id.unwrap_or_default(),
        since: f.since.unwrap_or_default(),
        until: f.until.unwrap_or_default(),
        kinds: tether_core::audit::kind::ALL,
        events: rows,
        error: error.clone(),
    };
    page(&c, if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, t.render())
}
