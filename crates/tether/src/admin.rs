//! The admin commands: `app`, `user`, `keys`, `events`. They open the database themselves; a
//! running server notices their changes through the store's generation counter within a second.
//!
//! Every command that changes something goes through a [`Provider`] over the existing database and
//! calls the same `tether_core::admin_ops` function as the admin REST API, so the two never
//! disagree, and records the same `admin.change` audit event, naming the actor `tether-cli` (and
//! the operating-system user, `$USER`). Those commands need the master key (`TETHER_MASTER_KEY` or
//! the key file), as `keys` always did; reading (`show`, `list`, `events`) needs only the database.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tether_core::admin::AppChanges;
use tether_core::admin_ops::{self as ops, AdminError, NewUser, UserChanges};
use tether_core::audit::{Actor, kind};
use tether_core::clock::SystemClock;
use tether_core::error::StoreError;
use tether_core::model::AppRecord;
use tether_core::provider::{Provider, ProviderConfig};
use tether_core::secret::Secret;
use tether_core::store::{EventQuery, EventRecord, Store};
use tether_server::{Overrides, Settings};

use crate::cli::{Global, runtime_error, settings, usage_error};

#[derive(Subcommand)]
pub enum AppCmd {
    /// Register an application
    ///
    /// Example: tether app create --name web --grant-types authorization_code,refresh_token --redirect-uri https://app.example/cb --binding sso-session
    Create(AppFlags),
    /// Change an application's settings
    ///
    /// Example: tether app update --binding dpop --validate-binding CLIENT_ID
    Update {
        /// The app's client_id (one that starts with '-' goes after --: `app update --name x -- -Ab3`)
        client_id: String,
        #[command(flatten)]
        flags: AppFlags,
        /// Stop refusing bound tokens presented without their proof
        #[arg(long)]
        no_validate_binding: bool,
        /// Keep the app's tokens when the user signs out
        #[arg(long)]
        no_revoke_on_logout: bool,
        /// Let the app introspect only its own tokens again
        #[arg(long)]
        no_introspect_any: bool,
        /// Stop asking users for consent
        #[arg(long)]
        no_require_consent: bool,
        /// Accept authorization requests that were not pushed first
        #[arg(long)]
        no_require_par: bool,
        /// Stop advertising that the logout_token always carries sid
        #[arg(long)]
        no_backchannel_logout_session_required: bool,
        /// Allow a change that deletes something (--public on a confidential app deletes its secret)
        #[arg(long)]
        force: bool,
    },
    /// Show one application
    ///
    /// Example: tether app show --json CLIENT_ID
    Show {
        /// The app's client_id (one that starts with '-' goes after --: `app show -- -Ab3`)
        client_id: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// List applications
    ///
    /// Example: tether app list --json
    List {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete an application and revoke its tokens
    ///
    /// Example: tether app delete CLIENT_ID
    Delete {
        /// The app's client_id (one that starts with '-' goes after --: `app delete -- -Ab3`)
        client_id: String,
    },
    /// Give a confidential application a new client secret (shown once)
    ///
    /// Example: tether app secret --grace 3600 CLIENT_ID
    Secret {
        /// The app's client_id (one that starts with '-' goes after --: `app secret -- -Ab3`)
        client_id: String,
        /// Seconds the old secret stays valid (0 to 2592000; 0: it stops working now)
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        grace: i64,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AppFlags {
    /// The app's name, unique (shown on the sign-in and consent pages)
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
    /// How a confidential client authenticates: client_secret_basic (default), client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, self_signed_tls_client_auth
    #[arg(long)]
    auth_method: Option<String>,
    /// For tls_client_auth: the subject DN of the client's certificate, RFC 4514 form ("CN=svc,O=Acme")
    #[arg(long)]
    tls_subject_dn: Option<String>,
    /// For self_signed_tls_client_auth: the client's certificate(s), a PEM file or a JWKS with x5c
    #[arg(long)]
    cert_file: Option<String>,
    /// The client's public keys for private_key_jwt (and signed request objects): a JWK Set file
    #[arg(long)]
    jwks: Option<String>,
    /// Where the client publishes its JWK Set (https; fetched and cached) instead of --jwks
    #[arg(long)]
    jwks_uri: Option<String>,
    /// jwt or opaque
    #[arg(long)]
    token_type: Option<String>,
    /// none, cookie, sso-session, certificate, device-flow, client-request, dpop
    #[arg(long)]
    binding: Option<String>,
    /// Refuse a bound token presented without its proof (WSO2's "Validate token bindings")
    #[arg(long)]
    validate_binding: bool,
    /// Revoke the app's tokens when the user signs out (WSO2's "Revoke tokens upon user logout")
    #[arg(long)]
    revoke_on_logout: bool,
    /// Comma-separated scopes the app may ask for (admin:read,admin:write make admin tokens)
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// Comma-separated audiences (aud) of the app's access tokens
    #[arg(long, value_delimiter = ',')]
    audience: Option<Vec<String>>,
    /// CORS origin (repeatable)
    #[arg(long = "allowed-origin")]
    allowed_origin: Vec<String>,
    /// Let the app introspect any app's tokens (a resource server or gateway)
    #[arg(long)]
    introspect_any: bool,
    /// Ask users for consent before issuing the app's tokens
    #[arg(long)]
    require_consent: bool,
    /// Authorization requests must be pushed first (RFC 9126 PAR)
    #[arg(long)]
    require_par: bool,
    /// A security profile the app must follow: fapi2 (FAPI 2.0 Security Profile) or none
    #[arg(long)]
    profile: Option<String>,
    /// OIDC Back-Channel Logout: where a logout_token is posted when a session ends (https; "" removes)
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// Advertise that the logout_token always carries sid
    #[arg(long)]
    backchannel_logout_session_required: bool,
    /// Comma-separated client_ids whose tokens this app may exchange (RFC 8693)
    #[arg(long, value_delimiter = ',')]
    exchange_from: Option<Vec<String>>,
    /// RS256 or ES256 (default RS256; ES256 for --profile fapi2)
    #[arg(long)]
    id_token_alg: Option<String>,
    /// Access token lifetime in seconds (default from [tokens] access_token_ttl)
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// Refresh token lifetime in seconds (default from [tokens] refresh_token_ttl)
    #[arg(long)]
    refresh_token_ttl: Option<i64>,
    /// Print the result as JSON
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
    fn changes(&self, offs: [bool; 6]) -> Result<AppChanges, String> {
        let cert_pem = match &self.cert_file {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("cannot read --cert-file {p}: {e}"))?),
            None => None,
        };
        let jwks = match &self.jwks {
            Some(p) if p.is_empty() => Some(String::new()),
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("cannot read --jwks {p}: {e}"))?),
            None => None,
        };
        for (on, off, name) in [
            (self.validate_binding, offs[0], "validate-binding"),
            (self.revoke_on_logout, offs[1], "revoke-on-logout"),
            (self.introspect_any, offs[2], "introspect-any"),
            (self.require_consent, offs[3], "require-consent"),
            (self.require_par, offs[4], "require-par"),
            (self.backchannel_logout_session_required, offs[5], "backchannel-logout-session-required"),
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
            require_par: flag(self.require_par, offs[4]),
            exchange_from: self.exchange_from.clone(),
            id_token_alg: self.id_token_alg.clone(),
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            jwks,
            jwks_uri: self.jwks_uri.clone(),
            profile: self.profile.clone(),
            backchannel_logout_uri: self.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: flag(self.backchannel_logout_session_required, offs[5]),
            registered: None,
            force: false,
        })
    }
}

/// The existing database of these settings (admin commands never create one).
async fn open(g: &Global) -> Result<Arc<dyn Store>, ExitCode> {
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

/// What a command that changes something acts through: a provider over the existing database
/// (never created here), the CLI's actor, and the settings `admin_ops` needs.
struct Ctx {
    p: Arc<Provider>,
    actor: Actor,
    revoke_on_password_change: bool,
}

impl Ctx {
    async fn open(g: &Global) -> Result<Ctx, ExitCode> {
        let s = settings(g, Overrides::default()).map_err(usage_error)?;
        say_database(g, &s);
        let store = tether_server::open_existing_store(&s).await.map_err(runtime_error)?;
        let master = tether_server::load_master_key(&s).map_err(runtime_error)?;
        let p =
            Provider::open(provider_config(&s), store, Arc::new(SystemClock), master).await.map_err(runtime_error)?;
        let actor = Actor {
            client_id: Some("tether-cli".into()),
            username: std::env::var("USER").ok().filter(|u| !u.is_empty()),
            ..Default::default()
        };
        Ok(Ctx { p, actor, revoke_on_password_change: s.revoke_on_password_change })
    }

    /// Store the audit events the command recorded (they are queued and written in batches by a
    /// server; a CLI writes them before it exits, or they would be lost), then exit with `code`.
    async fn done(self, code: ExitCode) -> ExitCode {
        self.p.audit.flush(&*self.p.store).await;
        code
    }
}

/// The provider configuration of these settings, as `tether serve` builds it (the parts the admin
/// acts use). The issuer is `issuer`, else `https://localhost:PORT` of `listen`.
fn provider_config(s: &Settings) -> ProviderConfig {
    let issuer = s.issuer.clone().unwrap_or_else(|| match s.listen.port() {
        0 => "https://localhost:9443".to_string(),
        port => format!("https://localhost:{port}"),
    });
    tether_server::provider_config(s, issuer)
}

/// An admin act's refusal as an exit status: invalid input is a usage error (2), the rest
/// (unknown id, conflict, database) a runtime failure (1).
fn op_err(e: AdminError) -> ExitCode {
    match e {
        AdminError::Invalid { detail, .. } => usage_error(detail),
        AdminError::NotFound(d) | AdminError::Conflict(d) | AdminError::Internal(d) | AdminError::Unavailable(d) => {
            runtime_error(d)
        }
    }
}

/// `Ok` or return the exit status.
macro_rules! tryx {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
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
    println!("require_par:        {}", x.require_par);
    println!("profile:            {}", x.profile);
    println!("backchannel_logout: {}", x.backchannel_logout_uri.as_deref().unwrap_or("-"));
    println!("exchange_from:      {}", list(&x.exchange_from));
    println!("id_token_alg:       {}", x.id_token_alg);
    println!("access_token_ttl:   {}", x.access_token_ttl);
    println!("refresh_token_ttl:  {}", x.refresh_token_ttl);
}

fn store_err(e: StoreError) -> ExitCode {
    runtime_error(e)
}

pub async fn app(g: &Global, cmd: AppCmd) -> ExitCode {
    match cmd {
        AppCmd::Show { client_id, json } => {
            let store = tryx!(open(g).await);
            match store.get_app(&client_id).await {
                Ok(Some(a)) => {
                    print_app(&a, None, json);
                    ExitCode::SUCCESS
                }
                Ok(None) => runtime_error(format!("no app with client_id {client_id}")),
                Err(e) => store_err(e),
            }
        }
        AppCmd::List { json } => {
            let store = tryx!(open(g).await);
            match store.list_apps().await {
                Ok(mut apps) => {
                    // The console's built-in app is the server's own, not the operator's.
                    apps.retain(|a| a.app.client_id != tether_core::admin_ops::CONSOLE_CLIENT_ID);
                    print_apps(&apps, json);
                    ExitCode::SUCCESS
                }
                Err(e) => store_err(e),
            }
        }
        cmd => {
            let ctx = tryx!(Ctx::open(g).await);
            let code = app_change(&ctx, cmd).await;
            ctx.done(code).await
        }
    }
}

fn print_apps(apps: &[AppRecord], json: bool) {
    if json {
        println!("{}", Value::Array(apps.iter().map(|a| app_json(a, None)).collect()));
        return;
    }
    println!("{:<24} {:<24} {:<8} {:<16} GRANT TYPES", "CLIENT_ID", "NAME", "TOKEN", "BINDING");
    for a in apps {
        let x = &a.app;
        let gts: Vec<&str> = x.grant_types.iter().map(|g| g.as_str()).collect();
        println!("{:<24} {:<24} {:<8} {:<16} {}", x.client_id, x.name, x.token_type, x.binding, gts.join(","));
    }
}

async fn app_change(ctx: &Ctx, cmd: AppCmd) -> ExitCode {
    let (p, actor) = (&*ctx.p, &ctx.actor);
    match cmd {
        AppCmd::Create(f) => {
            let changes = match f.changes([false; 6]) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            match ops::create_app(p, actor, &changes).await {
                Ok((rec, secret)) => {
                    print_app(&rec, secret.as_ref(), f.json);
                    ExitCode::SUCCESS
                }
                Err(e) => op_err(e),
            }
        }
        AppCmd::Update {
            client_id,
            flags,
            no_validate_binding,
            no_revoke_on_logout,
            no_introspect_any,
            no_require_consent,
            no_require_par,
            no_backchannel_logout_session_required,
            force,
        } => {
            let changes = match flags.changes([
                no_validate_binding,
                no_revoke_on_logout,
                no_introspect_any,
                no_require_consent,
                no_require_par,
                no_backchannel_logout_session_required,
            ]) {
                Ok(c) => AppChanges { force, ..c },
                Err(e) => return usage_error(e),
            };
            match ops::update_app(p, actor, &client_id, &changes).await {
                Ok((rec, secret)) => {
                    print_app(&rec, secret.as_ref(), flags.json);
                    ExitCode::SUCCESS
                }
                Err(e) => op_err(e),
            }
        }
        AppCmd::Delete { client_id } => match ops::delete_app(p, actor, &client_id).await {
            Ok(()) => {
                println!("deleted app {client_id}; its tokens are revoked");
                ExitCode::SUCCESS
            }
            Err(e) => op_err(e),
        },
        AppCmd::Secret { client_id, grace, json } => match ops::regenerate_secret(p, actor, &client_id, grace).await {
            Ok(secret) => {
                if json {
                    println!(
                        "{}",
                        json!({"client_id": client_id, "client_secret": secret.expose(), "grace_seconds": grace})
                    );
                } else {
                    println!("client_id:          {client_id}");
                    println!("client_secret:      {}   (shown once: store it now)", secret.expose());
                    if grace > 0 {
                        let until = tether_core::cert::rfc3339(p.now() + grace);
                        println!("the old secret works {grace} more seconds (until {until})");
                    } else {
                        println!("the old secret no longer works");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => op_err(e),
        },
        AppCmd::Show { .. } | AppCmd::List { .. } => unreachable!("read-only commands are handled by app()"),
    }
}

fn roles() -> PossibleValuesParser {
    PossibleValuesParser::new(ops::ROLES.iter().copied())
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user; the password is read from standard input
    ///
    /// Example: echo 'correct horse' | tether user add alice --password-stdin --role viewer
    Add {
        /// The username
        username: String,
        /// Read the password from standard input (one line)
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Email address
        #[arg(long)]
        email: Option<String>,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        /// A role (repeatable): admin (admin:read and admin:write) or viewer (admin:read)
        #[arg(long = "role", value_parser = roles())]
        role: Vec<String>,
    },
    /// Change a user's roles, state, email or name
    ///
    /// Example: tether user update alice --role admin
    Update {
        /// The username
        username: String,
        /// A role (repeatable): the user's roles become exactly these
        #[arg(long = "role", value_parser = roles())]
        role: Vec<String>,
        /// Remove every role
        #[arg(long, conflicts_with = "role")]
        no_roles: bool,
        /// Refuse the user's sign-in, password grant, refresh and device approval; ends their
        /// sessions and revokes their tokens
        #[arg(long, conflicts_with = "enabled")]
        disabled: bool,
        /// Let a disabled user sign in again
        #[arg(long)]
        enabled: bool,
        /// New email address ("" removes it)
        #[arg(long)]
        email: Option<String>,
        /// New display name ("" removes it)
        #[arg(long)]
        name: Option<String>,
        /// Print the user as JSON
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password from standard input
    ///
    /// Example: echo 'new password' | tether user passwd alice --password-stdin
    Passwd {
        /// The username
        username: String,
        /// Read the password from standard input (one line)
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// End every session of a user and revoke every token of theirs
    ///
    /// Example: tether user logout alice
    Logout {
        /// The username
        username: String,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Clear a user's sign-in throttles on every running server (within a second)
    ///
    /// Example: tether user unlock alice
    Unlock {
        /// The username
        username: String,
    },
    /// List users
    ///
    /// Example: tether user list --json
    List {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a user, ending their sessions and revoking their tokens
    ///
    /// Example: tether user delete alice
    Delete {
        /// The username
        username: String,
    },
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

/// `""` clears a field, anything else sets it.
fn set_or_clear(v: Option<String>) -> Option<Option<String>> {
    v.map(|s| (!s.is_empty()).then_some(s))
}

pub async fn user(g: &Global, cmd: UserCmd) -> ExitCode {
    if let UserCmd::Add { username, .. } | UserCmd::Passwd { username, .. } = &cmd
        && !ops::valid_username(username)
    {
        return usage_error("usernames are 1 to 128 characters without spaces or control characters");
    }
    match cmd {
        UserCmd::List { json } => {
            let store = tryx!(open(g).await);
            match store.list_users().await {
                Ok(users) => {
                    if json {
                        let list: Vec<_> = users.iter().map(|u| &u.user).collect();
                        println!("{}", serde_json::to_string(&list).unwrap_or_default());
                    } else {
                        println!("{:<24} {:<38} {:<28} {:<14} NAME", "USERNAME", "SUB", "EMAIL", "ROLES");
                        for u in &users {
                            let x = &u.user;
                            let mut roles = if x.roles.is_empty() { "-".to_string() } else { x.roles.join(",") };
                            if x.disabled {
                                roles.push_str(" disabled");
                            }
                            println!(
                                "{:<24} {:<38} {:<28} {:<14} {}",
                                x.username,
                                x.id,
                                x.email.as_deref().unwrap_or("-"),
                                roles,
                                x.name.as_deref().unwrap_or("-")
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => store_err(e),
            }
        }
        cmd => {
            let ctx = tryx!(Ctx::open(g).await);
            let code = user_change(&ctx, cmd).await;
            ctx.done(code).await
        }
    }
}

async fn user_change(ctx: &Ctx, cmd: UserCmd) -> ExitCode {
    let (p, actor) = (&*ctx.p, &ctx.actor);
    match cmd {
        UserCmd::Add { username, email, name, role, .. } => {
            let password = match read_password() {
                Ok(pw) => pw,
                Err(e) => return usage_error(e),
            };
            let n = NewUser { username: username.clone(), password, email, name, roles: role };
            match ops::create_user(p, actor, n).await {
                Ok(rec) => {
                    println!("added user {username} (sub {})", rec.user.id);
                    ExitCode::SUCCESS
                }
                Err(e) => op_err(e),
            }
        }
        UserCmd::Update { username, role, no_roles, disabled, enabled, email, name, json } => {
            let c = UserChanges {
                email: set_or_clear(email),
                name: set_or_clear(name),
                roles: if no_roles { Some(vec![]) } else { (!role.is_empty()).then_some(role) },
                password: None,
                disabled: flag(disabled, enabled),
            };
            if c.email.is_none() && c.name.is_none() && c.roles.is_none() && c.disabled.is_none() {
                return usage_error(
                    "nothing to change: give --role, --no-roles, --disabled, --enabled, --email or --name",
                );
            }
            let was_disabled = match ops::get_user(p, &username).await {
                Ok(u) => u.user.disabled,
                Err(e) => return op_err(e),
            };
            match ops::update_user(p, actor, &username, c, ctx.revoke_on_password_change).await {
                Ok(rec) => {
                    if json {
                        println!("{}", ops::user_json(&rec.user));
                    } else {
                        let u = &rec.user;
                        let roles = if u.roles.is_empty() { "none".to_string() } else { u.roles.join(",") };
                        let state = if u.disabled { "disabled" } else { "enabled" };
                        println!("updated user {username}: roles {roles}; {state}");
                        if u.disabled && !was_disabled {
                            println!("their sessions ended and their tokens are revoked");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => op_err(e),
            }
        }
        UserCmd::Passwd { username, .. } => {
            let password = match read_password() {
                Ok(pw) => pw,
                Err(e) => return usage_error(e),
            };
            let c = UserChanges { password: Some(password), ..Default::default() };
            match ops::update_user(p, actor, &username, c, ctx.revoke_on_password_change).await {
                Ok(_) => {
                    println!("password changed for {username}");
                    ExitCode::SUCCESS
                }
                Err(e) => op_err(e),
            }
        }
        UserCmd::Logout { username, json } => match ops::logout_user(p, actor, &username).await {
            Ok(v) => {
                if json {
                    println!("{}", json!({"sessions_ended": v.sessions_ended, "tokens_revoked": v.tokens_revoked}));
                } else {
                    println!(
                        "logged out {username}: {} sessions ended, {} tokens revoked",
                        v.sessions_ended, v.tokens_revoked
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => op_err(e),
        },
        UserCmd::Delete { username } => match ops::delete_user(p, actor, &username).await {
            Ok(()) => {
                println!("deleted user {username}; their sessions ended and tokens are revoked");
                ExitCode::SUCCESS
            }
            Err(e) => op_err(e),
        },
        UserCmd::Unlock { username } => match ops::unlock_user(p, actor, &username).await {
            Ok(()) => {
                println!("unlocked {username}; running servers clear their sign-in throttles within a second");
                ExitCode::SUCCESS
            }
            Err(e) => op_err(e),
        },
        UserCmd::List { .. } => unreachable!("handled by user()"),
    }
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Add new signing keys; old ones stay in the JWKS until their tokens expire
    ///
    /// Example: tether keys rotate
    Rotate {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// List signing keys
    ///
    /// Example: tether keys list --json
    List {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Retire a key now: it leaves the JWKS and its tokens stop verifying (never the only
    /// current key of its algorithm: rotate first)
    ///
    /// Example: tether keys retire KID
    Retire {
        /// The key's kid (one that starts with '-' goes after --: `keys retire -- -Ab3`)
        kid: String,
    },
}

pub async fn keys(g: &Global, cmd: KeysCmd) -> ExitCode {
    let ctx = tryx!(Ctx::open(g).await);
    let code = keys_change(&ctx, cmd).await;
    ctx.done(code).await
}

async fn keys_change(ctx: &Ctx, cmd: KeysCmd) -> ExitCode {
    let p = &*ctx.p;
    let as_json = match &cmd {
        KeysCmd::Rotate { json } | KeysCmd::List { json } => *json,
        KeysCmd::Retire { kid } => {
            return match ops::retire_key(p, &ctx.actor, kid).await {
                Ok(()) => {
                    println!("retired key {kid}: it left the JWKS and its tokens no longer verify");
                    ExitCode::SUCCESS
                }
                // The API's advice, in the CLI's words.
                Err(AdminError::Conflict(d)) => runtime_error(d.replace("POST /keys/rotate", "`tether keys rotate`")),
                Err(e) => op_err(e),
            };
        }
    };
    if let KeysCmd::Rotate { .. } = cmd {
        match ops::rotate_keys(p, &ctx.actor).await {
            Ok(new) => {
                if !as_json {
                    for k in &new {
                        println!("new {} key {}", k.alg.as_str(), k.kid);
                    }
                }
            }
            Err(e) => return op_err(e),
        }
    }
    let keys = match p.store.list_keys().await {
        Ok(k) => k,
        Err(e) => return store_err(e),
    };
    let now = p.now();
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            let status = match ops::key_state(k, now) {
                ops::KeyState::Active => "current",
                ops::KeyState::Published => "published",
                ops::KeyState::Retired => "retired",
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

#[derive(Args)]
pub struct EventsArgs {
    /// Only these event types (comma-separated, repeatable)
    #[arg(long = "type", value_delimiter = ',', value_parser = PossibleValuesParser::new(kind::ALL.iter().copied()))]
    types: Vec<String>,
    /// Only events at or after this time: RFC 3339 (2026-11-30T08:00:00Z) or Unix seconds
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time: RFC 3339 or Unix seconds
    #[arg(long)]
    until: Option<String>,
    /// Only events whose actor is this user
    #[arg(long)]
    username: Option<String>,
    /// Only events whose actor is this client
    #[arg(long)]
    client_id: Option<String>,
    /// At most this many events (1 to 10000), newest first
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

fn parse_time(flag: &str, v: &str) -> Result<i64, String> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("--{flag} {v:?} is neither an RFC 3339 time (2026-11-30T08:00:00Z) nor Unix seconds"))
}

/// `tether events`: the audit events of the database, newest first.
pub async fn events(g: &Global, a: EventsArgs) -> ExitCode {
    let since = match a.since.as_deref().map(|v| parse_time("since", v)).transpose() {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let until = match a.until.as_deref().map(|v| parse_time("until", v)).transpose() {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let store = tryx!(open(g).await);
    let q = EventQuery {
        types: a.types,
        since,
        until,
        client_id: a.client_id,
        username: a.username,
        before_id: None,
        limit: a.limit,
    };
    let list = match store.list_events(&q).await {
        Ok(l) => l,
        Err(e) => return store_err(e),
    };
    for e in &list {
        if a.json {
            println!("{}", event_json(e));
        } else {
            println!("{}", event_line(e));
        }
    }
    ExitCode::SUCCESS
}

/// An event as the admin API answers it (`time` in RFC 3339).
fn event_json(e: &EventRecord) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    v["time"] = json!(tether_core::cert::rfc3339(e.time));
    v
}

/// One line: time, type, actor (`username@client_id`), address, then what was acted on
/// (`action target`) and the rest of the detail.
fn event_line(e: &EventRecord) -> String {
    let actor = match (&e.username, &e.client_id) {
        (Some(u), Some(c)) => format!("{u}@{c}"),
        (Some(x), None) | (None, Some(x)) => x.clone(),
        (None, None) => "-".into(),
    };
    let mut rest = e.detail.as_object().cloned().unwrap_or_default();
    let mut what: Vec<String> = Vec::new();
    for k in ["action", "target"] {
        if let Some(v) = rest.remove(k) {
            what.push(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    if !rest.is_empty() {
        what.push(Value::Object(rest).to_string());
    }
    format!(
        "{}  {:<19} {:<32} {:<15} {}",
        tether_core::cert::rfc3339(e.time),
        e.kind,
        actor,
        e.ip.as_deref().unwrap_or("-"),
        if what.is_empty() { "-".to_string() } else { what.join(" ") }
    )
    .trim_end()
    .to_string()
}

// ---------- declarative configuration ----------

/// `tether export`: the apps and users as one TOML document.
pub async fn export(g: &Global, include_secrets: bool, out: Option<&std::path::Path>) -> ExitCode {
    let store = match open(g).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (apps, users) = match (store.list_apps().await, store.list_users().await) {
        (Ok(a), Ok(u)) => (a, u),
        (Err(e), _) | (_, Err(e)) => return store_err(e),
    };
    let doc = tether_core::declarative::export(&apps, &users, include_secrets);
    let body = match toml::to_string_pretty(&doc) {
        Ok(t) => t,
        Err(e) => return runtime_error(format!("cannot write TOML: {e}")),
    };
    let header = format!(
        "# Tether apps and users: `tether apply -f FILE` makes a database match this.\n# {}\n\n",
        if include_secrets {
            "Holds client-secret and password hashes: keep it as private as a backup."
        } else {
            "No secrets: apps and users created from it have no working credentials until given new ones."
        }
    );
    let text = header + &body;
    match out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(if include_secrets { 0o600 } else { 0o644 });
            }
            match o.open(path).and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes())) {
                Ok(()) => {
                    eprintln!("exported {} apps and {} users to {}", apps.len(), users.len(), path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => runtime_error(format!("cannot write {}: {e}", path.display())),
            }
        }
    }
}

/// `tether apply -f FILE`: make the database match the document (creating it if needed).
pub async fn apply(g: &Global, file: &std::path::Path, prune: bool, dry_run: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return usage_error(format!("cannot read {}: {e}", file.display())),
    };
    let doc: serde_json::Value = match toml::from_str(&text) {
        Ok(d) => d,
        Err(e) => return usage_error(format!("{}: {e}", file.display())),
    };
    let s = match settings(g, Overrides::default()) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    // Like `tether init`: the database (and master key, keys) when there is none yet.
    if !dry_run && let Err(e) = tether_server::init(&s).await {
        return runtime_error(e);
    }
    let ctx = tryx!(Ctx::open(g).await);
    let steps = match tether_core::declarative::plan(&ctx.p, &doc, prune).await {
        Ok(s) => s,
        Err(e) => return ctx.done(usage_error(format!("{}: {e}", file.display()))).await,
    };
    for st in &steps {
        println!("{}", st.describe());
    }
    if steps.is_empty() {
        println!("no changes: the database matches {}", file.display());
        return ctx.done(ExitCode::SUCCESS).await;
    }
    if dry_run {
        println!("{} change(s) planned; nothing written (--dry-run)", steps.len());
        return ctx.done(ExitCode::SUCCESS).await;
    }
    let code = match tether_core::declarative::apply(&ctx.p, &ctx.actor, steps, ctx.revoke_on_password_change).await {
        Ok(n) => {
            println!("applied {n} change(s)");
            ExitCode::SUCCESS
        }
        Err(e) => op_err(e),
    };
    ctx.done(code).await
}
