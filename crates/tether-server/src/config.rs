//! `tether serve` configuration: the TOML file (every key optional, unknown keys refused with
//! their name), flags and `TETHER_*` variables. Precedence: flag > variable > file > default
//! (interface.md §1). Validated once, at start. `[http]` (timeouts, connection cap, HSTS) is
//! Tether's own section, documented in the README; `[log] access` is the admin spec's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub issuer: Option<String>,
    pub database_url: Option<String>,
    /// PostgreSQL connection pool size per node (default 16). Not in the pinned list: Tether's own.
    pub database_pool_size: Option<u32>,
    /// Seconds between background purges of expired and revoked rows (default 60; 0 = off).
    pub purge_interval_seconds: Option<u64>,
    pub master_key_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub session: SessionSection,
    #[serde(default)]
    pub device: DeviceSection,
    #[serde(default)]
    pub dpop: DpopSection,
    #[serde(default)]
    pub http: HttpSection,
    /// The admin API's own listener (admin-api.md A-1); when set, the main listener hides it.
    pub admin_listen: Option<String>,
    /// The admin listener's public URL (default `https://` + `admin_listen`): DPoP proofs sent to
    /// the admin API name it as `htu`.
    pub admin_url: Option<String>,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub oauth: OauthSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub registration: RegistrationSection,
}

/// `[registration]`: dynamic client registration (RFC 7591).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RegistrationSection {
    /// Registration without a token (default false: a token with `client:register` is needed).
    pub open: Option<bool>,
    /// The scopes registered clients may ask for (default openid, profile, email).
    pub allowed_scopes: Option<Vec<String>>,
    /// Registered clients' jwks_uri / backchannel_logout_uri may name internal addresses
    /// (default false; development only).
    pub allow_private_uris: Option<bool>,
}

/// `[audit]` (admin-api.md A-4).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Stored events are kept this many days (default 90).
    pub retention_days: Option<i64>,
    /// Record `token.issued` / `token.refreshed` (default true).
    pub token_events: Option<bool>,
}

/// `[oauth]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct OauthSection {
    /// Every authorization request must be pushed first (RFC 9126; default false; per app:
    /// `--require-par`).
    pub require_par: Option<bool>,
}

/// `[security]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// A password change over the admin API revokes the user's tokens (default true).
    pub revoke_on_password_change: Option<bool>,
}

/// `[log]`: `access = false` turns the access log (one `info` line per request on the log
/// target `access`) off; it is on by default.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub access: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub request_client_cert: Option<bool>,
    pub mtls_listen: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub client_cert_header: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    pub lifetime_seconds: Option<i64>,
    pub idle_timeout_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub expires_in_seconds: Option<i64>,
    pub interval_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DpopSection {
    pub require_nonce: Option<bool>,
    pub proof_lifetime_seconds: Option<i64>,
}

/// `[http]`: connection timeouts and cap (all listeners), HSTS (HTTPS listeners).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub header_read_timeout_seconds: Option<u64>,
    pub body_read_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
    pub hsts_max_age: Option<u64>,
}

/// `[http]`, resolved.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub header_read_timeout_seconds: u64,
    pub body_read_timeout_seconds: u64,
    pub idle_timeout_seconds: u64,
    /// `None`: min(10000, open-file soft limit − 64), after raising the soft limit to the hard one.
    pub max_connections: Option<usize>,
    /// `Strict-Transport-Security: max-age=…` on the HTTPS listeners; 0 = not sent.
    pub hsts_max_age: u64,
}

impl HttpSettings {
    fn resolve(h: &HttpSection) -> Result<Self, String> {
        use tether_tls::limits as l;
        let s = HttpSettings {
            header_read_timeout_seconds: h
                .header_read_timeout_seconds
                .unwrap_or(l::DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
            body_read_timeout_seconds: h.body_read_timeout_seconds.unwrap_or(l::DEFAULT_BODY_READ_TIMEOUT_SECONDS),
            idle_timeout_seconds: h.idle_timeout_seconds.unwrap_or(l::DEFAULT_IDLE_TIMEOUT_SECONDS),
            max_connections: h.max_connections,
            hsts_max_age: h.hsts_max_age.unwrap_or(31_536_000),
        };
        l::check(
            s.header_read_timeout_seconds,
            s.body_read_timeout_seconds,
            s.idle_timeout_seconds,
            s.max_connections,
        )?;
        Ok(s)
    }

    /// The running limits (raises the open-file limit; see `tether_tls::limits`).
    pub fn limits(&self) -> tether_tls::limits::HttpLimits {
        tether_tls::limits::HttpLimits::new(
            self.header_read_timeout_seconds,
            self.body_read_timeout_seconds,
            self.idle_timeout_seconds,
            self.max_connections,
        )
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            format!("config {}: {}", path.display(), tether_core::config_text::locate(&text, at, e.message()))
        })
    }
}

/// Values given on the command line or in the environment (clap reads both).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub database_url: Option<String>,
    pub issuer: Option<String>,
    pub admin_listen: Option<String>,
}

/// Everything `serve` (and the admin commands) need, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub issuer: Option<String>,
    pub database_url: String,
    pub database_pool_size: u32,
    pub purge_interval_seconds: u64,
    pub master_key_file: PathBuf,
    pub tls: TlsSection,
    pub session_lifetime: i64,
    pub session_idle_timeout: i64,
    /// `[device]`: RFC 8628 `expires_in` and `interval`.
    pub device_expires_in: i64,
    pub device_interval: i64,
    /// `[dpop]`.
    pub dpop_require_nonce: bool,
    pub dpop_proof_lifetime: i64,
    /// `[http]`.
    pub http: HttpSettings,
    /// `admin_listen`: the admin API on its own listener only.
    pub admin_listen: Option<SocketAddr>,
    /// `admin_url`: the admin listener's public URL (only with `admin_listen`).
    pub admin_url: Option<String>,
    /// `[audit]`.
    pub audit_retention_days: i64,
    pub audit_token_events: bool,
    /// `[security] revoke_on_password_change`.
    pub revoke_on_password_change: bool,
    /// `[oauth] require_par`.
    pub require_par: bool,
    /// `[log] access`: the access log (default on).
    pub access_log: bool,
    /// `[registration]`.
    pub registration: tether_core::endpoint::registration::RegistrationConfig,
}

/// A base URL (`issuer`, `admin_url`): https (or http), no query, no fragment.
fn base_url(what: &str, s: &str) -> Result<(), String> {
    let u = url::Url::parse(s).map_err(|_| format!("{what} {s:?} is not a URL"))?;
    if u.scheme() != "https" && u.scheme() != "http" || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{what} {s:?} must be an https URL without query or fragment"));
    }
    Ok(())
}

pub(crate) fn addr(what: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("{what} {s:?} is not an address like 127.0.0.1:9443"))
}

impl Settings {
    pub fn resolve(o: &Overrides, file: FileConfig) -> Result<Self, String> {
        let data_dir = o.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("tether-data"));
        let listen = addr("listen", o.listen.as_deref().or(file.listen.as_deref()).unwrap_or("127.0.0.1:9443"))?;
        let http_listen =
            o.http_listen.as_deref().or(file.http_listen.as_deref()).map(|s| addr("http_listen", s)).transpose()?;
        let metrics = o.metrics_listen.as_deref().or(file.metrics_listen.as_deref()).unwrap_or("127.0.0.1:9464");
        let metrics_listen = if metrics == "off" { None } else { Some(addr("metrics_listen", metrics)?) };
        let issuer = o.issuer.clone().or(file.issuer);
        if let Some(i) = &issuer {
            base_url("issuer", i)?;
        }
        if let Some(a) = &file.admin_url {
            base_url("admin_url", a)?;
        }
        let database_url = o
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tether.db").display()));
        let master_key_file = file.master_key_file.unwrap_or_else(|| data_dir.join("master.key"));
        let database_pool_size = file.database_pool_size.unwrap_or(16);
        if !(1..=1000).contains(&database_pool_size) {
            return Err("database_pool_size must be between 1 and 1000".into());
        }
        let session_lifetime = file.session.lifetime_seconds.unwrap_or(28800);
        let session_idle_timeout = file.session.idle_timeout_seconds.unwrap_or(3600);
        if session_lifetime <= 0 || session_idle_timeout <= 0 {
            return Err("[session] lifetime_seconds and idle_timeout_seconds must be positive".into());
        }
        if let Some(m) = &file.tls.mtls_listen {
            addr("[tls] mtls_listen", m)?;
        }
        let device_expires_in = file.device.expires_in_seconds.unwrap_or(600);
        let device_interval = file.device.interval_seconds.unwrap_or(5);
        if !(10..=86_400).contains(&device_expires_in) || !(1..=3600).contains(&device_interval) {
            return Err("[device] expires_in_seconds must be 10..86400 and interval_seconds 1..3600".into());
        }
        let dpop_proof_lifetime = file.dpop.proof_lifetime_seconds.unwrap_or(300);
        if !(10..=3600).contains(&dpop_proof_lifetime) {
            return Err("[dpop] proof_lifetime_seconds must be between 10 and 3600".into());
        }
        let http = HttpSettings::resolve(&file.http)?;
        let admin_listen = o
            .admin_listen
            .as_deref()
            .or(file.admin_listen.as_deref())
            .filter(|a| *a != "off")
            .map(|a| addr("admin_listen", a))
            .transpose()?;
        let audit_retention_days = file.audit.retention_days.unwrap_or(90);
        if !(1..=36_500).contains(&audit_retention_days) {
            return Err("[audit] retention_days must be between 1 and 36500".into());
        }
        if file.tls.cert_file.is_some() != file.tls.key_file.is_some() {
            return Err("[tls] cert_file and key_file must be given together".into());
        }
        let registration = {
            let d = tether_core::endpoint::registration::RegistrationConfig::default();
            let r = &file.registration;
            let cfg = tether_core::endpoint::registration::RegistrationConfig {
                open: r.open.unwrap_or(d.open),
                allowed_scopes: r.allowed_scopes.clone().unwrap_or(d.allowed_scopes),
                allow_private_uris: r.allow_private_uris.unwrap_or(d.allow_private_uris),
            };
            cfg.check()?;
            cfg
        };
        Ok(Self {
            data_dir,
            listen,
            http_listen,
            metrics_listen,
            issuer: issuer.map(|i| i.trim_end_matches('/').to_string()),
            database_url,
            database_pool_size,
            purge_interval_seconds: file.purge_interval_seconds.unwrap_or(60),
            master_key_file,
            tls: file.tls,
            session_lifetime,
            session_idle_timeout,
            device_expires_in,
            device_interval,
            dpop_require_nonce: file.dpop.require_nonce.unwrap_or(false),
            dpop_proof_lifetime,
            http,
            admin_listen,
            admin_url: file.admin_url.map(|a| a.trim_end_matches('/').to_string()),
            audit_retention_days,
            audit_token_events: file.audit.token_events.unwrap_or(true),
            revoke_on_password_change: file.security.revoke_on_password_change.unwrap_or(true),
            require_par: file.oauth.require_par.unwrap_or(false),
            access_log: file.log.access.unwrap_or(true),
            registration,
        })
    }
}
