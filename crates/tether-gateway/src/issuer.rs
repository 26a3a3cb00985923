//! Talking to the authorization server: discovery, the JWKS (cached, refetched on an unknown
//! `kid` at most once per 10 s), token introspection (RFC 7662, cached per gateway.md G-2) and,
//! for the session method, the token endpoint. Any failure to reach the issuer is
//! [`IssuerError::Unreachable`], which the gateway answers with 503 — never a pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

#[derive(Debug)]
pub enum IssuerError {
    Unreachable(String),
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub jwks_uri: String,
    pub introspection_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
}

struct JwksState {
    keys: Vec<Value>,
    /// When the set was fetched, Unix seconds on the gateway's clock.
    fetched: Option<i64>,
}

/// A JWKS older than this is fetched again on the next use of any key, so keys the issuer has
/// retired stop verifying tokens within this time (and a key it stopped publishing at once when a
/// token names an unknown kid).
pub const JWKS_MAX_AGE: i64 = 300;
/// An unknown kid refetches the JWKS at most this often.
const JWKS_MIN_REFETCH: i64 = 10;

/// At most this many cached introspection results; the table is cleared when it is full.
const MAX_CACHE: usize = 50_000;

pub struct Issuer {
    pub issuer: String,
    http: reqwest::Client,
    client_id: Option<String>,
    client_secret: Option<String>,
    endpoints: tokio::sync::OnceCell<Endpoints>,
    jwks: RwLock<JwksState>,
    jwks_refresh: tokio::sync::Mutex<()>,
    /// token hash → (result, valid until, Unix seconds on the gateway's clock)
    introspection: Mutex<crate::cache::TokenCache>,
    cache_metrics: crate::metrics::CacheMetrics,
    cache_ttl: i64,
    cache_ttl_neg: i64,
}

impl Issuer {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(32);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {} holds no certificate", ca.display()));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        // The issuer is usually addressed by name (https://localhost:9443) while it listens on
        // loopback; resolve localhost to 127.0.0.1 so a v6-first resolver does not stall.
        if let Ok(u) = url::Url::parse(&cfg.issuer)
            && u.host_str() == Some("localhost")
        {
            let port = u.port_or_known_default().unwrap_or(443);
            b = b.resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        }
        Ok(Issuer {
            issuer: cfg.issuer.clone(),
            http: b.build().map_err(|e| format!("HTTP client: {e}"))?,
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            endpoints: tokio::sync::OnceCell::new(),
            jwks: RwLock::new(JwksState { keys: Vec::new(), fetched: None }),
            jwks_refresh: tokio::sync::Mutex::new(()),
            introspection: Mutex::new(HashMap::new()),
            cache_metrics: Default::default(),
            cache_ttl: i64::try_from(cfg.cache_ttl).unwrap_or(i64::MAX),
            cache_ttl_neg: i64::try_from(cfg.cache_ttl_neg).unwrap_or(i64::MAX),
        })
    }

    async fn get_json(&self, url: &str) -> Result<Value, IssuerError> {
        let r = self.http.get(url).send().await.map_err(|e| IssuerError::Unreachable(format!("{url}: {e}")))?;
        if !r.status().is_success() {
            return Err(IssuerError::Unreachable(format!("{url}: HTTP {}", r.status())));
        }
        r.json().await.map_err(|e| IssuerError::Unreachable(format!("{url}: {e}")))
    }

    pub async fn endpoints(&self) -> Result<&Endpoints, IssuerError> {
        self.endpoints
            .get_or_try_init(|| async {
                let d = self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer)).await?;
                if d.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                    return Err(IssuerError::Unreachable(format!(
                        "the discovery document's issuer is {:?}, not {:?}",
                        d.get("issuer"),
                        self.issuer
                    )));
                }
                let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
                Ok(Endpoints {
                    jwks_uri: s("jwks_uri")
                        .ok_or_else(|| IssuerError::Unreachable("discovery has no jwks_uri".into()))?,
                    introspection_endpoint: s("introspection_endpoint"),
                    token_endpoint: s("token_endpoint"),
                    authorization_endpoint: s("authorization_endpoint"),
                })
            })
            .await
    }

    /// Are the issuer's keys loaded (for `/readyz`)? When not, one fetch is tried (rate-limited
    /// like an unknown `kid`).
    pub async fn keys_ready(&self, now: i64) -> bool {
        let loaded = |s: &JwksState| s.fetched.is_some() && !s.keys.is_empty();
        if self.jwks.read().is_ok_and(|s| loaded(&s)) {
            return true;
        }
        let _ = self.key("", now).await;
        self.jwks.read().is_ok_and(|s| loaded(&s))
    }

    /// The key with `kid` at `now` (Unix seconds). The JWKS is fetched again when the kid is
    /// unknown (at most once per 10 s) and when the cached set is older than [`JWKS_MAX_AGE`]; a
    /// refetch replaces the set, so keys the issuer retired are dropped. If that refetch fails, a
    /// cached key keeps working (the issuer being down must not stop the API).
    pub async fn key(&self, kid: &str, now: i64) -> Result<Option<Value>, IssuerError> {
        let find = |s: &JwksState| s.keys.iter().find(|k| k.get("kid").and_then(Value::as_str) == Some(kid)).cloned();
        let fresh = |s: &JwksState| s.fetched.is_some_and(|t| now - t < JWKS_MAX_AGE);
        if let Ok(s) = self.jwks.read()
            && fresh(&s)
            && let Some(k) = find(&s)
        {
            return Ok(Some(k));
        }
        let _guard = self.jwks_refresh.lock().await;
        let cached = match self.jwks.read() {
            Ok(s) => {
                let cached = find(&s);
                let recent = s.fetched.is_some_and(|t| now - t < JWKS_MIN_REFETCH);
                if (cached.is_some() && fresh(&s)) || (cached.is_none() && recent) {
                    return Ok(cached);
                }
                cached
            }
            Err(_) => None,
        };
        let fetched = async {
            let uri = self.endpoints().await?.jwks_uri.clone();
            self.get_json(&uri).await
        }
        .await;
        let jwks = match (fetched, cached) {
            (Ok(j), _) => j,
            (Err(e), Some(k)) => {
                tracing::warn!(error = ?e, "cannot refresh the issuer's JWKS; using the cached key");
                return Ok(Some(k));
            }
            (Err(e), None) => return Err(e),
        };
        let keys = jwks.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
        if let Ok(mut s) = self.jwks.write() {
            s.keys = keys;
            s.fetched = Some(now);
            return Ok(find(&s));
        }
        Ok(None)
    }

    /// RFC 7662 introspection, cached: active results for `min(cache_ttl, exp - now)`, inactive
    /// ones for `cache_ttl_neg`.
    pub async fn introspect(&self, token: &str, now_unix: i64) -> Result<Arc<Value>, IssuerError> {
        let key = crate::cache::token_hash(token);
        if let Ok(c) = self.introspection.lock()
            && let Some((v, until)) = c.get(&key)
            && now_unix < *until
        {
            self.cache_metrics.count(true);
            return Ok(v.clone());
        }
        self.cache_metrics.count(false);
        let endpoint = self
            .endpoints()
            .await?
            .introspection_endpoint
            .clone()
            .ok_or_else(|| IssuerError::Unreachable("the issuer has no introspection_endpoint".into()))?;
        let r = self
            .http
            .post(&endpoint)
            .basic_auth(self.client_id.as_deref().unwrap_or(""), self.client_secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| IssuerError::Unreachable(format!("introspection: {e}")))?;
        if !r.status().is_success() {
            return Err(IssuerError::Unreachable(format!(
                "introspection answered HTTP {} (is the gateway's client registered with --introspect-any?)",
                r.status()
            )));
        }
        let v: Value = r.json().await.map_err(|e| IssuerError::Unreachable(format!("introspection: {e}")))?;
        let active = v.get("active") == Some(&Value::Bool(true));
        let ttl = if active {
            let left = v.get("exp").and_then(Value::as_i64).map(|e| (e - now_unix).max(0));
            left.map_or(self.cache_ttl, |l| self.cache_ttl.min(l))
        } else {
            self.cache_ttl_neg
        };
        let v = Arc::new(v);
        if ttl > 0
            && let Ok(mut c) = self.introspection.lock()
        {
            if c.len() >= MAX_CACHE {
                c.retain(|_, (_, until)| now_unix < *until);
                if c.len() >= MAX_CACHE {
                    c.clear();
                }
            }
            c.insert(key, (v.clone(), now_unix.saturating_add(ttl)));
        }
        Ok(v)
    }

    /// Exchange an authorization code (session method).
    pub async fn redeem_code(&self, code: &str, redirect_uri: &str, verifier: &str) -> Result<Value, IssuerError> {
        let endpoint = self
            .endpoints()
            .await?
            .token_endpoint
            .clone()
            .ok_or_else(|| IssuerError::Unreachable("the issuer has no token_endpoint".into()))?;
        let r = self
            .http
            .post(&endpoint)
            .basic_auth(self.client_id.as_deref().unwrap_or(""), self.client_secret.as_deref())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| IssuerError::Unreachable(format!("token endpoint: {e}")))?;
        r.json().await.map_err(|e| IssuerError::Unreachable(format!("token endpoint: {e}")))
    }
}
