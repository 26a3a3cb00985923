//! The admin commands: `app`, `user`, `keys`. They open the database themselves; a running server
//! notices their changes through the store's generation counter within a second.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tether_core::admin::{self as core_admin, AppChanges};
use tether_core::clock::{Clock, SystemClock};
use tether_core::error::StoreError;
use tether_core::model::{AppRecord, User, UserRecord};
use tether_core::secret::Secret;
use tether_server::Overrides;

use crate::cli::{Global, runtime_error, settings, usage_error};

#[derive(Subcommand)]
pub enum AppCmd {
    /// Register an application
    Create(AppFlags),
    /// Change an application's settings
    Update {
        /// The app's client_id (one that starts with '-' goes after --: `app update --name x -- -Ab3`)
        client_id: String,
        #[command(flatten)]
        flags: AppFlags,
        #[arg(long)]
        no_validate_binding: bool,
        #[arg(long)]
        no_revoke_on_logout: bool,
        #[arg(long)]
        no_introspect_any: bool,
        #[arg(long)]
        no_require_consent: bool,
        /// Allow a change that deletes something (--public on a confidential app deletes its secret)
        #[arg(long)]
        force: bool,
    },
    /// Show one application
    Show {
        /// The app's client_id (one that starts with '-' goes after --: `app show -- -Ab3`)
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// List applications
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an application and revoke its tokens
    Delete {
        /// The app's client_id (one that starts with '-' goes after --: `app delete -- -Ab3`)
        client_id: String,
    },
}

#[derive(Args)]
pub struct AppFlags {
    #[arg(long)]
    name: Option<String>,
    /// Comma-separated grant types (wire values, or the aliases device_code, token_exchange)
    #[arg(long, value_delimiter = ',')]
    grant_types: Option<Vec<String>>,
    /// Redirect URI (repeatable)
    #[arg(long = "redirect-uri")]
    redirect_uri: Vec<String>,
    /// Public client: no secret, PKCE required
    #[arg(long)]
    public: bool,
    #[arg(long)]
    auth_method: Option<String>,
    /// For tls_client_auth: the subject DN of the client's certificate, RFC 4514 form ("CN=svc,O=Acme")
    #[arg(long)]
    tls_subject_dn: Option<String>,
    /// For self_signed_tls_client_auth: the client's certificate(s), a PEM file or a JWKS with x5c
    #[arg(long)]
    cert_file: Option<String>,
    /// jwt or opaque
    #[arg(long)]
    token_type: Option<String>,
    /// none, cookie, sso-session, certificate, device-flow, client-request, dpop
    #[arg(long)]
    binding: Option<String>,
    #[arg(long)]
    validate_binding: bool,
    #[arg(long)]
    revoke_on_logout: bool,
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    audience: Option<Vec<String>>,
    /// CORS origin (repeatable)
    #[arg(long = "allowed-origin")]
    allowed_origin: Vec<String>,
    #[arg(long)]
    introspect_any: bool,
    #[arg(long)]
    require_consent: bool,
    #[arg(long, value_delimiter = ',')]
    exchange_from: Option<Vec<String>>,
    #[arg(long)]
    id_token_alg: Option<String>,
    #[arg(long)]
    access_token_ttl: Option<i64>,
    #[arg(long)]
    refresh_token_ttl: Option<i64>,
    #[arg(long)]
    json: bool,
}

fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

impl AppFlags {
    fn changes(&self, offs: [bool; 4]) -> Result<AppChanges, String> {
        let cert_pem = match &self.cert_file {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("cannot read --cert-file {p}: {e}"))?),
            None => None,
        };
        for (on, off, name) in [
            (self.validate_binding, offs[0], "validate-binding"),
            (self.revoke_on_logout, offs[1], "revoke-on-logout"),
            (self.introspect_any, offs[2], "introspect-any"),
            (self.require_consent, offs[3], "require-consent"),
        ] {
            if on && off {
                return Err(format!("--{name} and --no-{name} contradict each other"));
            }
        }
        Ok(AppChanges {
            name: self.name.clone(),
            grant_types: self.grant_types.clone(),
            redirect_uris: (!self.redirect_uri.is_empty()).then(|| self.redirect_uri.clone()),
            public: self.public.then_some(true),
            auth_method: self.auth_method.clone(),
            tls_subject_dn: self.tls_subject_dn.clone(),
            cert_file: cert_pem,
            token_type: self.token_type.clone(),
            binding: self.binding.clone(),
            validate_binding: flag(self.validate_binding, offs[0]),
            revoke_on_logout: flag(self.revoke_on_logout, offs[1]),
            scopes: self.scopes.clone(),
            audience: self.audience.clone(),
            allowed_origins: (!self.allowed_origin.is_empty()).then(|| self.allowed_origin.clone()),
            introspect_any: flag(self.introspect_any, offs[2]),
            require_consent: flag(self.require_consent, offs[3]),
            exchange_from: self.exchange_from.clone(),
            id_token_alg: self.id_token_alg.clone(),
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            force: false,
        })
    }
}

/// The existing database of these settings (admin commands never create one).
async fn open(g: &Global) -> Result<std::sync::Arc<dyn tether_core::store::Store>, ExitCode> {
    let s = settings(g, Overrides::default()).map_err(usage_error)?;
    say_database(g, &s);
    tether_server::open_existing_store(&s).await.map_err(runtime_error)
}

/// `--verbose`: which database a command uses.
pub(crate) fn say_database(g: &Global, s: &tether_server::Settings) {
    if g.verbose {
        let shown = tether_store::Backend::parse(&s.database_url).map(|b| b.display()).unwrap_or_default();
        eprintln!("database: {shown}");
    }
}

fn app_json(a: &AppRecord, secret: Option<&Secret>) -> Value {
    let mut v = serde_json::to_value(&a.app).unwrap_or_else(|_| json!({}));
    if let Some(s) = secret {
        v["client_secret"] = json!(s.expose());
    }
    v
}

fn print_app(a: &AppRecord, secret: Option<&Secret>, as_json: bool) {
    if as_json {
        println!("{}", app_json(a, secret));
        return;
    }
    let x = &a.app;
    println!("client_id:          {}", x.client_id);
    if let Some(s) = secret {
        println!("client_secret:      {}   (shown once: store it now)", s.expose());
    }
    let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(",") };
    println!("name:               {}", x.name);
    println!("grant_types:        {}", x.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(","));
    println!("redirect_uris:      {}", list(&x.redirect_uris));
    println!("public:             {}", x.public);
    println!("auth_method:        {}", x.auth_method);
    println!("token_type:         {}", x.token_type);
    println!("binding:            {}", x.binding);
    println!("validate_binding:   {}", x.validate_binding);
    println!("revoke_on_logout:   {}", x.revoke_on_logout);
    println!("scopes:             {}", list(&x.scopes));
    println!("audience:           {}", list(&x.audience));
    println!("allowed_origins:    {}", list(&x.allowed_origins));
    println!("introspect_any:     {}", x.introspect_any);
    println!("require_consent:    {}", x.require_consent);
    println!("exchange_from:      {}", list(&x.exchange_from));
    println!("id_token_alg:       {}", x.id_token_alg);
    println!("access_token_ttl:   {}", x.access_token_ttl);
    println!("refresh_token_ttl:  {}", x.refresh_token_ttl);
}

fn store_err(e: StoreError) -> ExitCode {
    runtime_error(e)
}

pub async fn app(g: &Global, cmd: AppCmd) -> ExitCode {
    let store = match open(g).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        AppCmd::Create(f) => {
            let changes = match f.changes([false; 4]) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let (rec, secret) = match core_admin::create(&changes) {
                Ok(x) => x,
                Err(e) => return usage_error(e),
            };
            match core_admin::name_taken(&*store, &rec.app.name, None).await {
                Ok(Some(other)) => {
                    return runtime_error(format!("an app named {:?} exists (client_id {other})", rec.app.name));
                }
                Ok(None) => {}
                Err(e) => return store_err(e),
            }
            if let Err(e) = store.create_app(&rec).await {
                return store_err(e);
            }
            print_app(&rec, secret.as_ref(), f.json);
            ExitCode::SUCCESS
        }
        AppCmd::Update {
            client_id,
            flags,
            no_validate_binding,
            no_revoke_on_logout,
            no_introspect_any,
            no_require_consent,
            force,
        } => {
            let changes = match flags.changes([
                no_validate_binding,
                no_revoke_on_logout,
                no_introspect_any,
                no_require_consent,
            ]) {
                Ok(c) => AppChanges { force, ..c },
                Err(e) => return usage_error(e),
            };
            let existing = match store.get_app(&client_id).await {
                Ok(Some(a)) => a,
                Ok(None) => return runtime_error(format!("no app with client_id {client_id}")),
                Err(e) => return store_err(e),
            };
            let (rec, secret) = match core_admin::update(&existing, &changes) {
                Ok(x) => x,
                Err(e) => return usage_error(e),
            };
            if rec.app.name != existing.app.name {
                match core_admin::name_taken(&*store, &rec.app.name, Some(&client_id)).await {
                    Ok(Some(other)) => {
                        return runtime_error(format!("an app named {:?} exists (client_id {other})", rec.app.name));
                    }
                    Ok(None) => {}
                    Err(e) => return store_err(e),
                }
            }
            if let Err(e) = store.update_app(&rec).await {
                return store_err(e);
            }
            print_app(&rec, secret.as_ref(), flags.json);
            ExitCode::SUCCESS
        }
        AppCmd::Show { client_id, json } => match store.get_app(&client_id).await {
            Ok(Some(a)) => {
                print_app(&a, None, json);
                ExitCode::SUCCESS
            }
            Ok(None) => runtime_error(format!("no app with client_id {client_id}")),
            Err(e) => store_err(e),
        },
        AppCmd::List { json } => match store.list_apps().await {
            Ok(apps) => {
                if json {
                    println!("{}", Value::Array(apps.iter().map(|a| app_json(a, None)).collect()));
                } else {
                    println!("{:<24} {:<24} {:<8} {:<16} GRANT TYPES", "CLIENT_ID", "NAME", "TOKEN", "BINDING");
                    for a in &apps {
                        let x = &a.app;
                        let gts: Vec<&str> = x.grant_types.iter().map(|g| g.as_str()).collect();
                        println!(
                            "{:<24} {:<24} {:<8} {:<16} {}",
                            x.client_id,
                            x.name,
                            x.token_type,
                            x.binding,
                            gts.join(",")
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => store_err(e),
        },
        AppCmd::Delete { client_id } => match store.delete_app(&client_id, SystemClock.now()).await {
            Ok(true) => {
                println!("deleted app {client_id}; its tokens are revoked");
                ExitCode::SUCCESS
            }
            Ok(false) => runtime_error(format!("no app with client_id {client_id}")),
            Err(e) => store_err(e),
        },
    }
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user; the password is read from standard input
    Add {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Set a user's password from standard input
    Passwd {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user, ending their sessions and revoking their tokens
    Delete { username: String },
}

fn read_password() -> Result<Secret, String> {
    let mut line = Secret::new(String::new());
    let read = std::io::stdin().lock().read_line(line.expose_mut());
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    let pw = Secret::new(line.expose().trim_end_matches(['\n', '\r']));
    if pw.expose().is_empty() {
        return Err("the password read from standard input is empty".into());
    }
    Ok(pw)
}

/// Read the password line from standard input and hash it (argon2id, on a blocking thread).
async fn password_from_stdin() -> Result<String, ExitCode> {
    let pw = read_password().map_err(usage_error)?;
    tokio::task::spawn_blocking(move || tether_core::password::hash(pw.expose()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(runtime_error)
}

fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 128 && !u.chars().any(|c| c.is_control() || c.is_whitespace())
}

pub async fn user(g: &Global, cmd: UserCmd) -> ExitCode {
    if let UserCmd::Add { username, .. } | UserCmd::Passwd { username, .. } = &cmd
        && !valid_username(username)
    {
        return usage_error("usernames are 1 to 128 characters without spaces or control characters");
    }
    let store = match open(g).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        UserCmd::Add { username, email, name, .. } => {
            let password_hash = match password_from_stdin().await {
                Ok(h) => h,
                Err(code) => return code,
            };
            let rec = UserRecord {
                user: User {
                    id: uuid_v4(),
                    username: username.clone(),
                    email,
                    name,
                    created_at: SystemClock.now(),
                    roles: vec![],
                    disabled: false,
                },
                password_hash,
            };
            match store.create_user(&rec).await {
                Ok(()) => {
                    println!("added user {username} (sub {})", rec.user.id);
                    ExitCode::SUCCESS
                }
                Err(StoreError::Conflict(_)) => runtime_error(format!("user {username} already exists")),
                Err(e) => store_err(e),
            }
        }
        UserCmd::Passwd { username, .. } => {
            let password_hash = match password_from_stdin().await {
                Ok(h) => h,
                Err(code) => return code,
            };
            match store.set_password(&username, &password_hash).await {
                Ok(true) => {
                    println!("password changed for {username}");
                    ExitCode::SUCCESS
                }
                Ok(false) => runtime_error(format!("no user {username}")),
                Err(e) => store_err(e),
            }
        }
        UserCmd::List { json } => match store.list_users().await {
            Ok(users) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&users.iter().map(|u| &u.user).collect::<Vec<_>>()).unwrap_or_default()
                    );
                } else {
                    println!("{:<24} {:<38} {:<28} NAME", "USERNAME", "SUB", "EMAIL");
                    for u in &users {
                        let x = &u.user;
                        println!(
                            "{:<24} {:<38} {:<28} {}",
                            x.username,
                            x.id,
                            x.email.as_deref().unwrap_or("-"),
                            x.name.as_deref().unwrap_or("-")
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => store_err(e),
        },
        UserCmd::Delete { username } => match store.delete_user(&username, SystemClock.now()).await {
            Ok(true) => {
                println!("deleted user {username}; their sessions ended and tokens are revoked");
                ExitCode::SUCCESS
            }
            Ok(false) => runtime_error(format!("no user {username}")),
            Err(e) => store_err(e),
        },
    }
}

fn uuid_v4() -> String {
    let mut b = tether_core::secret::random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = tether_core::secret::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Add new signing keys; old ones stay in the JWKS until their tokens expire
    Rotate {
        #[arg(long)]
        json: bool,
    },
    /// List signing keys
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn keys(g: &Global, cmd: KeysCmd) -> ExitCode {
    let s = match settings(g, Overrides::default()) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    say_database(g, &s);
    let store = match tether_server::open_existing_store(&s).await {
        Ok(st) => st,
        Err(e) => return runtime_error(e),
    };
    let master = match tether_server::load_master_key(&s) {
        Ok(m) => m,
        Err(e) => return runtime_error(e),
    };
    let now = SystemClock.now();
    if let Err(e) = tether_core::provider::ensure_keys(&*store, &master, now).await {
        return runtime_error(e);
    }
    let as_json = match &cmd {
        KeysCmd::Rotate { json } | KeysCmd::List { json } => *json,
    };
    if let KeysCmd::Rotate { .. } = cmd {
        match tether_core::provider::rotate_keys(&*store, &master, now).await {
            Ok(new) => {
                if !as_json {
                    for k in &new {
                        println!("new {} key {}", k.alg.as_str(), k.kid);
                    }
                }
            }
            Err(e) => return runtime_error(e),
        }
    }
    let keys = match store.list_keys().await {
        Ok(k) => k,
        Err(e) => return store_err(e),
    };
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            let status = match (k.rotated_at, k.publish_until) {
                (None, _) => "current",
                (Some(_), Some(t)) if t > now => "published",
                _ => "retired",
            };
            json!({"kid": k.kid, "alg": k.alg.as_str(), "status": status, "created_at": k.created_at, "publish_until": k.publish_until})
        })
        .collect();
    if as_json {
        println!("{}", Value::Array(rows));
    } else if matches!(cmd, KeysCmd::List { .. }) {
        println!("{:<45} {:<6} {:<10} CREATED", "KID", "ALG", "STATUS");
        for r in &rows {
            println!(
                "{:<45} {:<6} {:<10} {}",
                r["kid"].as_str().unwrap_or(""),
                r["alg"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                r["created_at"]
            );
        }
    }
    ExitCode::SUCCESS
}
