//! The gateway's TOML configuration (interface.md §3): every pinned key, unknown keys refused by
//! name, and the start-time checks of gateway.md G-2 (a bad combination stops the gateway with a
//! message naming the key, instead of surprising someone at request time).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub upstream: Option<String>,
    pub issuer: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub auth_methods: Option<Vec<String>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub proof_of_possession_mtls: Option<String>,
    pub proof_of_possession_dpop: Option<String>,
    pub proof_of_possession_auth_methods_validation: Option<bool>,
    pub client_ca_file: Option<PathBuf>,
    pub client_cert_header: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub cache_ttl: Option<u64>,
    pub cache_ttl_neg: Option<u64>,
    pub audience: Option<String>,
    pub required_scopes: Option<Vec<String>>,
    pub accept_untyped_jwt: Option<bool>,
    pub introspect_jwt_tokens: Option<bool>,
    pub dpop_use_nonce: Option<bool>,
    pub dpop_proof_lifetime: Option<u64>,
    pub replay_store: Option<String>,
    pub session_secret: Option<String>,
    pub redirect_uri: Option<String>,
    pub upstream_access_token_header: Option<String>,
    /// Trust anchors for `https://` upstreams (default: the system's).
    pub upstream_ca_file: Option<PathBuf>,
    /// `/healthz`, `/readyz` and `/metrics` (default `127.0.0.1:9465`; `off`).
    pub metrics_listen: Option<String>,
    /// Worker threads, each serving its own share of the connections (default: one per CPU).
    pub workers: Option<usize>,
    /// `[[routes]]`: several APIs, each with its upstreams and policy (`crate::routes`).
    #[serde(default)]
    pub routes: Vec<crate::routes::RouteFile>,
    /// `[http]`: connection timeouts and cap (Tether's own section, as for `tether serve`).
    #[serde(default)]
    pub http: HttpSection,
    /// `[log]`: the access log (as for `tether serve`).
    #[serde(default)]
    pub log: LogSection,
}

/// `[log]` of the gateway's file: `access = false` turns the access log off (default on).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub access: Option<bool>,
}

/// `[http]` of the gateway's file: the same timeouts and cap as `tether serve`'s (no HSTS: the
/// gateway's responses are mostly the upstream's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub header_read_timeout_seconds: Option<u64>,
    pub body_read_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
}

pub use crate::policy::{AuthMethod, PopMode};
use crate::policy::{parse_auth_methods, pop_mode};

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// The top-level `upstream` (the route of paths no `[[routes]]` claims); `None` with routes
    /// only.
    pub upstream: Option<String>,
    pub routes: Vec<crate::routes::RouteFile>,
    pub upstream_ca_file: Option<PathBuf>,
    /// `None`: `metrics_listen = "off"`.
    pub metrics_listen: Option<SocketAddr>,
    pub workers: usize,
    pub issuer: String,
    pub ca_file: Option<PathBuf>,
    pub auth_methods: Vec<AuthMethod>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub pop_mtls: PopMode,
    pub pop_dpop: PopMode,
    pub pop_auth_methods_validation: bool,
    pub client_ca_file: Option<PathBuf>,
    pub client_cert_header: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub cache_ttl: u64,
    pub cache_ttl_neg: u64,
    pub audience: Option<String>,
    pub required_scopes: Vec<String>,
    pub accept_untyped_jwt: bool,
    pub introspect_jwt_tokens: bool,
    pub dpop_use_nonce: bool,
    pub dpop_proof_lifetime: u64,
    pub replay_store: String,
    pub session_secret: Option<String>,
    pub redirect_uri: Option<url::Url>,
    /// Header name, and the scheme to put before the token (`None`: the bare token).
    pub upstream_token_header: (http::HeaderName, Option<String>),
    /// `[http]`, defaults filled in (`max_connections` `None`: derived from the open-file limit).
    pub http: HttpSection,
    /// `[log] access`: one `info` line per request on the log target `access` (default on).
    pub access_log: bool,
}

impl Config {
    /// The running connection limits (raises the open-file limit; see `tether_tls::limits`).
    pub fn limits(&self) -> tether_tls::limits::HttpLimits {
        let h = &self.http;
        tether_tls::limits::HttpLimits::new(
            h.header_read_timeout_seconds.unwrap_or(tether_tls::limits::DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
            h.body_read_timeout_seconds.unwrap_or(tether_tls::limits::DEFAULT_BODY_READ_TIMEOUT_SECONDS),
            h.idle_timeout_seconds.unwrap_or(tether_tls::limits::DEFAULT_IDLE_TIMEOUT_SECONDS),
            h.max_connections,
        )
    }

    /// How long the gateway waits for the next byte of a request body.
    pub fn body_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.http.body_read_timeout_seconds.unwrap_or(tether_tls::limits::DEFAULT_BODY_READ_TIMEOUT_SECONDS),
        )
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            format!("config {}: {}", path.display(), tether_core::config_text::locate(&text, at, e.message()))
        })?;
        Self::from_file(file)
    }

    pub fn from_file(f: FileConfig) -> Result<Self, String> {
        let listen_s = f.listen.clone().unwrap_or_else(|| "127.0.0.1:8443".into());
        let listen: SocketAddr =
            listen_s.parse().map_err(|_| format!("listen = {listen_s:?} is not an address like 127.0.0.1:8443"))?;
        let public_url = f.public_url.clone().unwrap_or_else(|| format!("https://{listen_s}"));
        let pu = url::Url::parse(&public_url).map_err(|_| format!("public_url = {public_url:?} is not a URL"))?;
        if pu.scheme() != "https" && pu.scheme() != "http" {
            return Err(format!("public_url = {public_url:?} must be an https URL"));
        }
        if f.upstream.is_none() && f.routes.is_empty() {
            return Err(
                "upstream is required (e.g. upstream = \"http://127.0.0.1:9000\"), or at least one [[routes]]".into()
            );
        }
        let issuer = f.issuer.clone().ok_or("issuer is required (the authorization server's URL)")?;
        url::Url::parse(&issuer).map_err(|_| format!("issuer = {issuer:?} is not a URL"))?;
        let issuer = issuer.trim_end_matches('/').to_string();
        let names = f.auth_methods.clone().unwrap_or_else(|| vec!["bearer".into(), "introspection".into()]);
        let auth_methods = parse_auth_methods("auth_methods", &names)?;
        let pop_mtls = pop_mode("proof_of_possession_mtls", f.proof_of_possession_mtls.as_deref())?;
        let pop_dpop = pop_mode("proof_of_possession_dpop", f.proof_of_possession_dpop.as_deref())?;
        if pop_mtls == PopMode::Strict && pop_dpop == PopMode::Strict {
            return Err(
                "proof_of_possession_mtls and proof_of_possession_dpop cannot both be strict: a token carries one confirmation (G-3)"
                    .into(),
            );
        }
        let route_methods: Vec<AuthMethod> = f
            .routes
            .iter()
            .filter_map(|r| r.auth_methods.as_ref())
            .filter_map(|n| parse_auth_methods("routes.auth_methods", n).ok())
            .flatten()
            .collect();
        if route_methods.contains(&AuthMethod::Session) && !auth_methods.contains(&AuthMethod::Session) {
            return Err("a route's auth_methods may name session only when the top-level auth_methods does (one session, one callback)".into());
        }
        let needs_introspection = auth_methods.contains(&AuthMethod::Introspection)
            || route_methods.contains(&AuthMethod::Introspection)
            || f.introspect_jwt_tokens == Some(true)
            || auth_methods.contains(&AuthMethod::Session);
        if needs_introspection && (f.client_id.is_none() || f.client_secret.is_none()) {
            return Err("client_id and client_secret are required for introspection and session (the gateway's app, registered with --introspect-any)".into());
        }
        let redirect_uri = match (&f.redirect_uri, auth_methods.contains(&AuthMethod::Session)) {
            (Some(r), _) => Some(url::Url::parse(r).map_err(|_| format!("redirect_uri = {r:?} is not a URL"))?),
            (None, true) => Some(pu.join("/callback").map_err(|e| e.to_string())?),
            (None, false) => None,
        };
        if auth_methods.contains(&AuthMethod::Session) && f.session_secret.as_deref().is_none_or(|s| s.len() < 32) {
            return Err("session_secret (at least 32 characters) is required with the session auth method".into());
        }
        let header_spec = f.upstream_access_token_header.clone().unwrap_or_else(|| "authorization:bearer".into());
        let (hname, scheme) = match header_spec.split_once(':') {
            Some((h, s)) => (h.trim().to_string(), Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            None => (header_spec.trim().to_string(), None),
        };
        let hname = http::HeaderName::from_bytes(hname.as_bytes())
            .map_err(|_| format!("upstream_access_token_header = {header_spec:?}: not a header name"))?;
        let scheme = scheme.map(|s| {
            let mut c = s.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        });
        let replay_store = f.replay_store.clone().unwrap_or_else(|| "memory".into());
        let metrics_listen = match f.metrics_listen.as_deref().unwrap_or("127.0.0.1:9465") {
            "off" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| format!("metrics_listen = {a:?} is not an address (or \"off\")"))?,
            ),
        };
        let mut http = f.http.clone();
        {
            use tether_tls::limits as l;
            http.header_read_timeout_seconds.get_or_insert(l::DEFAULT_HEADER_READ_TIMEOUT_SECONDS);
            http.body_read_timeout_seconds.get_or_insert(l::DEFAULT_BODY_READ_TIMEOUT_SECONDS);
            http.idle_timeout_seconds.get_or_insert(l::DEFAULT_IDLE_TIMEOUT_SECONDS);
            l::check(
                http.header_read_timeout_seconds.unwrap_or_default(),
                http.body_read_timeout_seconds.unwrap_or_default(),
                http.idle_timeout_seconds.unwrap_or_default(),
                http.max_connections,
            )?;
        }
        Ok(Config {
            listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            cert_file: f.cert_file,
            key_file: f.key_file,
            data_dir: f.data_dir.unwrap_or_else(|| PathBuf::from("tether-gateway-data")),
            upstream: f.upstream,
            routes: f.routes,
            upstream_ca_file: f.upstream_ca_file,
            metrics_listen,
            workers: match f.workers {
                Some(0) => return Err("workers must be at least 1".into()),
                Some(n) => n.min(256),
                None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            },
            issuer,
            ca_file: f.ca_file,
            auth_methods,
            client_id: f.client_id,
            client_secret: f.client_secret,
            pop_mtls,
            pop_dpop,
            pop_auth_methods_validation: f.proof_of_possession_auth_methods_validation.unwrap_or(true),
            client_ca_file: f.client_ca_file,
            client_cert_header: f.client_cert_header,
            trusted_proxies: f.trusted_proxies.unwrap_or_default(),
            cache_ttl: f.cache_ttl.unwrap_or(30),
            cache_ttl_neg: f.cache_ttl_neg.unwrap_or(10),
            audience: f.audience,
            required_scopes: f.required_scopes.unwrap_or_default(),
            accept_untyped_jwt: f.accept_untyped_jwt.unwrap_or(false),
            introspect_jwt_tokens: f.introspect_jwt_tokens.unwrap_or(false),
            dpop_use_nonce: f.dpop_use_nonce.unwrap_or(false),
            dpop_proof_lifetime: f.dpop_proof_lifetime.unwrap_or(300),
            replay_store,
            session_secret: f.session_secret,
            redirect_uri,
            upstream_token_header: (hname, scheme),
            http,
            access_log: f.log.access.unwrap_or(true),
        })
        .and_then(|c: Config| {
            // Routes are checked now (a mistake stops the gateway, naming the key); the running
            // gateway builds them again from the same tables.
            c.routes()?;
            Ok(c)
        })
    }

    /// The top-level policy keys: the defaults of every route.
    pub fn defaults(&self) -> crate::routes::Defaults<'_> {
        crate::routes::Defaults {
            auth_methods: &self.auth_methods,
            pop_mtls: self.pop_mtls,
            pop_dpop: self.pop_dpop,
            required_scopes: &self.required_scopes,
            audience: self.audience.as_deref(),
            public_url: &self.public_url,
        }
    }

    /// Every route, with fresh health counters.
    pub fn routes(&self) -> Result<crate::routes::Routes, String> {
        crate::routes::build(&self.routes, self.upstream.as_deref(), &self.defaults())
    }
}
