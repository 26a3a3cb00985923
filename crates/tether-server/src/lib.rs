//! Tether's HTTP adapter: configuration, routes and pages around `tether-core`.
//!
//! **Owns** turning HTTP into core calls and core results into responses (status codes, headers,
//! cookies, pages), and starting `tether serve`. **Must not** decide protocol questions, and must
//! not be depended on by `tether-gateway` (which shares only `tether-core` and `tether-tls`). TLS
//! listeners come from `tether-tls`, storage from `tether-store`.
//!
//! Nothing here decides protocol questions; handlers turn requests into core calls and core
//! results (or [`tether_core::error::OAuthError`]s) into responses.
//!
//! `routes` builds the router from `endpoints` (the JSON endpoints) and `pages` (the browser
//! pages); below them, with no module depending on one that uses it: `health`, `cors`, `csrf`,
//! `extract`, `cookies`, `error` and `state`.
//!
//! `start` also puts the transport's headers on every response: `X-Content-Type-Options:
//! nosniff` on every listener, `Strict-Transport-Security` (`[http] hsts_max_age`) on the HTTPS
//! ones only; the connection limits of `[http]` come from `tether_tls::limits`. Every listener
//! (the metrics one too) writes the access log (`tether_tls::access`, `[log] access`), with the
//! client's address by the `[tls] trusted_proxies` rule; the endpoints that authenticate a
//! client tag their answers with it (`AuthenticatedClient`).

mod admin_api;
pub mod config;
mod console;
mod cookies;
mod cors;
mod csrf;
mod endpoints;
mod error;
mod extract;
mod health;
mod jwks_fetch;
mod logout_post;
mod outbound;
mod pages;
mod registration;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS};
use metrics_exporter_prometheus::PrometheusHandle;
use tether_core::clock::SharedClock;
use tether_core::crypto::MasterKey;
use tether_core::provider::{Provider, ProviderConfig};
use tether_core::store::Store;
use tether_tls::access::AccessLogLayer;
use tether_tls::{accept as tls, client_cert, pki};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{FileConfig, Overrides, Settings};

/// Read the master key from `TETHER_MASTER_KEY` or the key file. Never creates one.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey, String> {
    match read_master_key(settings)? {
        Some(k) => Ok(k),
        None => Err(format!(
            "no master key at {} (run `tether init`, or set TETHER_MASTER_KEY)",
            settings.master_key_file.display()
        )),
    }
}

/// The master key from `TETHER_MASTER_KEY` or the key file, `None` when neither exists.
fn read_master_key(settings: &Settings) -> Result<Option<MasterKey>, String> {
    if let Ok(v) = std::env::var("TETHER_MASTER_KEY")
        && !v.trim().is_empty()
    {
        return MasterKey::from_text(&v).map(Some).map_err(|e| format!("TETHER_MASTER_KEY: {e}"));
    }
    let path = &settings.master_key_file;
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    MasterKey::from_text(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// The master key, created (0600) when there is none and the database holds nothing sealed under
/// another one. A database with sealed keys and no master key is refused before anything is
/// written: a new key could never open it.
fn master_key_for(settings: &Settings, probe: &tether_store::Probe) -> Result<MasterKey, String> {
    if let Some(k) = read_master_key(settings)? {
        return Ok(k);
    }
    let path = &settings.master_key_file;
    if probe.sealed_keys {
        return Err(format!(
            "the database holds sealed keys but no master key was found at {}; restore it or set TETHER_MASTER_KEY",
            path.display()
        ));
    }
    {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            pki::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let text = format!("{}\n", tether_core::secret::hex(&MasterKey::generate()));
        pki::write_private(path, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "created a new master key; keep it safe and outside the database backups");
    }
    load_master_key(settings)
}

/// The provider configuration these settings make, for `issuer`: what `serve` and the admin
/// commands share (listener-specific parts, mTLS aliases and client trust, are `start`'s).
pub fn provider_config(settings: &Settings, issuer: String) -> ProviderConfig {
    let mut c = ProviderConfig::new(issuer);
    c.session_lifetime = settings.session_lifetime;
    c.session_idle_timeout = settings.session_idle_timeout;
    c.purge_interval = settings.purge_interval_seconds;
    c.device_expires_in = settings.device_expires_in;
    c.device_interval = settings.device_interval;
    c.dpop_require_nonce = settings.dpop_require_nonce;
    c.dpop_proof_lifetime = settings.dpop_proof_lifetime;
    c.audit_retention_days = settings.audit_retention_days;
    c.audit_token_events = settings.audit_token_events;
    c.require_par = settings.require_par;
    c.registration = settings.registration.clone();
    c
}

/// The existing store of these settings, for the commands that must not create one (everything
/// but `serve` and `init`). Refuses an unknown URL scheme and a missing database (on
/// PostgreSQL: no Tether schema), naming it.
pub async fn open_existing_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    let backend = tether_store::Backend::parse(&settings.database_url)?;
    if !tether_store::probe(&backend).await?.exists {
        return Err(format!(
            "no Tether database at {} (run `tether init`, or pass --data-dir / --database-url)",
            backend.display()
        ));
    }
    tether_store::open(&settings.database_url, settings.database_pool_size).await
}

/// Open the store and master key of `serve` and `init`, creating what is missing: the data
/// directory (0700), the database (SQLite file 0600, or the PostgreSQL schema) and the master
/// key. Refuses, before writing anything, an unknown URL scheme and a database with sealed keys
/// but no master key.
pub async fn create_or_open(settings: &Settings) -> Result<(Arc<dyn Store>, MasterKey), String> {
    let backend = tether_store::Backend::parse(&settings.database_url)?;
    let probe = tether_store::probe(&backend).await?;
    let master = master_key_for(settings, &probe)?;
    pki::create_private_dir(&settings.data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", settings.data_dir.display()))?;
    let store = tether_store::open(&settings.database_url, settings.database_pool_size).await?;
    Ok((store, master))
}

/// `tether init`: create the data directory, database, master key, signing keys and (unless the
/// config names a certificate) the local CA and server certificate, then return what exists.
pub async fn init(settings: &Settings) -> Result<Vec<String>, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (store, master) = create_or_open(settings).await?;
    let now = tether_core::clock::Clock::now(&tether_core::clock::SystemClock);
    tether_core::provider::ensure_keys(&*store, &master, now).await?;
    tether_core::provider::ensure_secrets(&*store, &master).await?;
    let backend = tether_store::Backend::parse(&settings.database_url)?;
    let mut made = vec![format!("database: {}", backend.display())];
    if std::env::var("TETHER_MASTER_KEY").map(|v| v.trim().is_empty()).unwrap_or(true) {
        made.push(format!("master key: {}", settings.master_key_file.display()));
    }
    if settings.tls.cert_file.is_none() {
        pki::ensure_local(&settings.data_dir)?;
        made.push(format!("local CA: {}", settings.data_dir.join("tls/ca.pem").display()));
    }
    Ok(made)
}

/// Hold the SQLite database file's lock for the life of this server: a second `serve` on the
/// same file would otherwise run beside it, each with its own caches and throttles.
fn lock_sqlite(settings: &Settings) -> Result<Option<std::fs::File>, String> {
    let tether_store::Backend::Sqlite(path) = tether_store::Backend::parse(&settings.database_url)? else {
        return Ok(None);
    };
    let f = std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `tether serve` is using the SQLite database {} (one process per SQLite database; \
             use PostgreSQL for several nodes)",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Warn about anything in the data directory (and the master key file) that the group or others
/// may access: it holds password and token hashes and the keys that protect them.
fn warn_wide_permissions(settings: &Settings) {
    let mut wide = pki::wider_than_private(&settings.data_dir);
    if !settings.master_key_file.starts_with(&settings.data_dir) && settings.master_key_file.exists() {
        wide.extend(pki::wider_than_private(&settings.master_key_file));
    }
    for (path, mode) in wide {
        let want = if path.is_dir() { "0700" } else { "0600" };
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "{} has mode {mode:04o}: the group or others can access it; it should be {want} (chmod {want} {})",
            path.display(),
            path.display(),
        );
    }
}

fn metrics_handle() -> PrometheusHandle {
    tether_tls::prometheus::handle()
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// The `[tls] mtls_listen` listener.
    pub mtls_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The `admin_listen` listener (the admin API only).
    pub admin_addr: Option<SocketAddr>,
    pub issuer: String,
    pub provider: Arc<Provider>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
    auditor: JoinHandle<()>,
    purger: Option<JoinHandle<()>>,
    backchannel: Option<JoinHandle<()>>,
    /// The SQLite database file's lock, held while serving.
    _db_lock: Option<std::fs::File>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish, close the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.refresher.abort();
        self.provider.audit.flush(&*self.provider.store).await;
        self.auditor.abort();
        for t in [self.purger, self.backchannel].into_iter().flatten() {
            t.abort();
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// Start `tether serve`: open everything, bind every listener, serve in the background.
pub async fn start(settings: Settings, clock: SharedClock) -> Result<Running, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (store, master) = create_or_open(&settings).await?;
    let db_lock = lock_sqlite(&settings)?;

    let listener = bind(settings.listen, "listen").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let issuer = settings.issuer.clone().unwrap_or_else(|| {
        if addr.port() == 9443 {
            "https://localhost:9443".to_string()
        } else {
            format!("https://localhost:{}", addr.port())
        }
    });
    let mtls_listener = match settings.tls.mtls_listen.as_deref() {
        Some(a) => Some(bind(config::addr("[tls] mtls_listen", a)?, "[tls] mtls_listen").await?),
        None => None,
    };
    let mtls_addr = mtls_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(|e| e.to_string())?;
    let request_client_cert = settings.tls.request_client_cert.unwrap_or(true);
    let mut pcfg = provider_config(&settings, issuer.clone());
    // RFC 8705 §5 aliases: the mTLS listener's URLs (the issuer's host with that port), else the
    // issuer's own when the main listener (or a trusted proxy) supplies client certificates.
    pcfg.mtls_base = match mtls_addr {
        Some(a) => {
            let mut u = url::Url::parse(&issuer).map_err(|e| format!("issuer: {e}"))?;
            let _ = u.set_port(Some(a.port()));
            Some(u.as_str().trim_end_matches('/').to_string())
        }
        None if request_client_cert || settings.tls.client_cert_header.is_some() => Some(issuer.clone()),
        None => None,
    };
    let admin_listener = match settings.admin_listen {
        Some(a) => Some(bind(a, "admin_listen").await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(|e| e.to_string())?;
    pcfg.admin_base = admin_addr.map(|a| settings.admin_url.clone().unwrap_or_else(|| format!("https://{a}")));
    pcfg.jwks_fetcher = Some(Arc::new(jwks_fetch::HttpJwks::new()?));
    pcfg.logout_poster = Some(Arc::new(logout_post::HttpLogoutPoster::new()?));
    if let Some(ca) = &settings.tls.client_ca_file {
        pcfg.client_trust = Some(Arc::new(client_cert::CaTrust::load(ca)?));
    }
    let provider = Provider::open(pcfg, store, clock, master).await?;
    console::ensure_app(&provider).await?;
    let refresher = provider.spawn_refresher();
    let purger = provider.spawn_purger();
    let auditor = provider.spawn_auditor();
    let backchannel = tether_core::backchannel::spawn(&provider);

    let material = match (&settings.tls.cert_file, &settings.tls.key_file) {
        (Some(c), Some(k)) => pki::from_files(c, k)?,
        _ => pki::ensure_local(&settings.data_dir)?,
    };
    warn_wide_permissions(&settings);
    let tls_cfg = tls::server_config(&material, request_client_cert)?;
    let proxy_cert = client_cert::ProxyCertConfig::parse(
        settings.tls.client_cert_header.as_deref(),
        settings.tls.trusted_proxies.as_deref().unwrap_or_default(),
    )?;

    let (tx, rx) = watch::channel(false);
    let grace = Duration::from_secs(20);
    // One connection cap for every listener of the process.
    let limits = settings.http.limits();
    let access = settings.access_log.then(|| AccessLogLayer::new(&proxy_cert.trusted));
    let opts = || state::Options {
        secure_cookies: true,
        proxy_cert: proxy_cert.clone(),
        revoke_on_password_change: settings.revoke_on_password_change,
        master_key_file: std::env::var_os("TETHER_MASTER_KEY").is_none().then(|| settings.master_key_file.clone()),
    };
    let app = routes::router(provider.clone(), opts(), settings.admin_listen.is_none());
    let app = nosniff(app);
    let https_app = access_log(hsts(app.clone(), settings.http.hsts_max_age), &access);
    let app = access_log(app, &access);
    let serve = |l, tls, app| tokio::spawn(tls::serve(l, tls, app, rx.clone(), grace, limits.clone()));
    let mut tasks = vec![serve(listener, Some(tls_cfg), https_app.clone())];
    if let Some(l) = mtls_listener {
        let cfg = tls::server_config(&material, true)?;
        tasks.push(serve(l, Some(cfg), https_app));
    }
    let mut http_addr = None;
    if let Some(a) = settings.http_listen {
        let l = bind(a, "http_listen").await?;
        http_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
        tasks.push(serve(l, None, app));
    }
    let mut metrics_addr = None;
    if let Some(a) = settings.metrics_listen {
        let l = bind(a, "metrics_listen").await?;
        metrics_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
        tasks.push(serve(l, None, access_log(nosniff(routes::metrics_router(metrics_handle())), &access)));
    }
    if let Some(l) = admin_listener {
        let cfg = tls::server_config(&material, true)?;
        let admin = hsts(nosniff(routes::admin_router(provider.clone(), opts())), settings.http.hsts_max_age);
        let admin = access_log(admin, &access);
        tasks.push(serve(l, Some(cfg), admin));
    }
    Ok(Running {
        admin_addr,
        addr,
        http_addr,
        mtls_addr,
        metrics_addr,
        issuer,
        provider,
        shutdown: tx,
        tasks,
        refresher,
        auditor,
        purger,
        backchannel,
        _db_lock: db_lock,
    })
}

/// The access log around every route of a listener (`[log] access`; `None`: off).
fn access_log(app: Router, layer: &Option<AccessLogLayer>) -> Router {
    match layer {
        Some(l) => app.layer(l.clone()),
        None => app,
    }
}

/// `X-Content-Type-Options: nosniff` on every response of a listener.
fn nosniff(app: Router) -> Router {
    app.layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
}

/// `Strict-Transport-Security` on every response of an HTTPS listener (`[http] hsts_max_age`;
/// 0 sends none). Never on the plain `http_listen` listener.
fn hsts(app: Router, max_age: u64) -> Router {
    match HeaderValue::from_str(&format!("max-age={max_age}")) {
        Ok(v) if max_age > 0 => app.layer(SetResponseHeaderLayer::overriding(STRICT_TRANSPORT_SECURITY, v)),
        _ => app,
    }
}

/// Is `path` inside a directory we may create? (Used by the CLI for friendlier errors.)
pub fn data_dir_exists(p: &Path) -> bool {
    p.join("tether.db").exists()
}
