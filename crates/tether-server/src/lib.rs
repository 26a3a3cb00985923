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
//! ones only; the connection limits of `[http]` come from `tether_tls::limits`.

pub mod config;
mod cookies;
mod cors;
mod csrf;
mod endpoints;
mod error;
mod extract;
mod health;
mod pages;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tether_core::clock::SharedClock;
use tether_core::crypto::MasterKey;
use tether_core::provider::{Provider, ProviderConfig};
use tether_core::store::Store;
use tether_tls::{accept as tls, client_cert, pki};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{FileConfig, Overrides, Settings};

/// Read the master key from `TETHER_MASTER_KEY` or the key file, creating the file (0600) on
/// first start.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey, String> {
    if let Ok(v) = std::env::var("TETHER_MASTER_KEY")
        && !v.trim().is_empty()
    {
        return MasterKey::from_text(&v).map_err(|e| format!("TETHER_MASTER_KEY: {e}"));
    }
    let path = &settings.master_key_file;
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            pki::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let text = format!("{}\n", tether_core::secret::hex(&MasterKey::generate()));
        pki::write_private(path, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "created a new master key; keep it safe and outside the database backups");
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    MasterKey::from_text(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Open the data directory's store (creating the directory, 0700, and running migrations; a new
/// SQLite database is created 0600 by `tether-store`).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    pki::create_private_dir(&settings.data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", settings.data_dir.display()))?;
    tether_store::open(&settings.database_url, settings.database_pool_size).await
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
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let b = PrometheusBuilder::new()
            .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match b.install_recorder() {
            Ok(h) => h,
            // Another recorder is installed (an embedding program's): render an empty registry.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
    .clone()
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// The `[tls] mtls_listen` listener.
    pub mtls_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub issuer: String,
    pub provider: Arc<Provider>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
    purger: Option<JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish, close the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.refresher.abort();
        if let Some(p) = self.purger {
            p.abort();
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// Start `tether serve`: open everything, bind every listener, serve in the background.
pub async fn start(settings: Settings, clock: SharedClock) -> Result<Running, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let master = load_master_key(&settings)?;
    let store = open_store(&settings).await?;

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
    let mut pcfg = ProviderConfig::new(issuer.clone());
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
    if let Some(ca) = &settings.tls.client_ca_file {
        pcfg.client_trust = Some(Arc::new(client_cert::CaTrust::load(ca)?));
    }
    pcfg.session_lifetime = settings.session_lifetime;
    pcfg.session_idle_timeout = settings.session_idle_timeout;
    pcfg.purge_interval = settings.purge_interval_seconds;
    pcfg.device_expires_in = settings.device_expires_in;
    pcfg.device_interval = settings.device_interval;
    pcfg.dpop_require_nonce = settings.dpop_require_nonce;
    pcfg.dpop_proof_lifetime = settings.dpop_proof_lifetime;
    let provider = Provider::open(pcfg, store, clock, master).await?;
    let refresher = provider.spawn_refresher();
    let purger = provider.spawn_purger();

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
    let app = routes::router(provider.clone(), state::Options { secure_cookies: true, proxy_cert });
    let app = nosniff(app);
    let https_app = hsts(app.clone(), settings.http.hsts_max_age);
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
        tasks.push(serve(l, None, nosniff(routes::metrics_router(metrics_handle()))));
    }
    Ok(Running { addr, http_addr, mtls_addr, metrics_addr, issuer, provider, shutdown: tx, tasks, refresher, purger })
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
