//! The running authorization server's state: configuration, the store, the clock, the keys
//! unsealed in memory and a cache of applications.
//!
//! Caches are reloaded when the store's generation counter moves (every app, user or key change
//! bumps it, whichever process made it); a background task polls it every 250 ms, so a change made
//! by the CLI is seen within a second. Tokens are never cached: their state is read from the store
//! on every use, so a revocation holds at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::crypto::{MacKey, MasterKey};
use crate::error::{OAuthError, StoreError};
use crate::keys::{Alg, KeyRecord, SigningKey};
use crate::model::AppRecord;
use crate::secret::random_bytes;
use crate::store::Store;

/// How long an unlock stays in the store for the other nodes to see: far beyond their 250 ms
/// polls, and a node that was down meanwhile starts with empty throttles anyway.
const UNLOCK_VISIBLE: i64 = 300;

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub issuer: String,
    pub session_lifetime: i64,
    pub session_idle_timeout: i64,
    pub code_lifetime: i64,
    pub id_token_lifetime: i64,
    /// Seconds between purges of dead rows (0 = never).
    pub purge_interval: u64,
    /// Trust anchors for `tls_client_auth` (`[tls] client_ca_file`); `None`: that method fails.
    pub client_trust: Option<std::sync::Arc<dyn crate::cert::ClientCertTrust>>,
    /// Base URL of the listener for mutual TLS, advertised as `mtls_endpoint_aliases` (RFC 8705
    /// §5); `None` when no listener requests client certificates.
    pub mtls_base: Option<String>,
    /// Fetches clients' `jwks_uri` key sets (`private_key_jwt`); `None`: such clients fail.
    pub jwks_fetcher: Option<std::sync::Arc<dyn crate::client_keys::JwksFetcher>>,
    /// `[oauth] require_par`: every authorization request must be pushed (RFC 9126).
    pub require_par: bool,
    /// `[registration]`: dynamic client registration (`crate::endpoint::registration`).
    pub registration: crate::registration_config::RegistrationConfig,
    /// Posts back-channel logout tokens; `None`: no deliveries are made (`crate::backchannel`).
    pub logout_poster: Option<std::sync::Arc<dyn crate::logout_poster::LogoutPoster>>,
    /// The admin API's own base URL when it has a listener of its own (`admin_url`): the `htu`
    /// of DPoP proofs sent to it. `None`: the admin API is under the issuer.
    pub admin_base: Option<String>,
    /// RFC 8628: lifetime of a device authorization and the minimum polling interval (`[device]`).
    pub device_expires_in: i64,
    pub device_interval: i64,
    /// `[dpop] require_nonce` and `proof_lifetime_seconds`.
    pub dpop_require_nonce: bool,
    pub dpop_proof_lifetime: i64,
    /// `[audit] retention_days` (stored events older than this are purged) and `token_events`.
    pub audit_retention_days: i64,
    pub audit_token_events: bool,
}

impl ProviderConfig {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            session_lifetime: 28800,
            session_idle_timeout: 3600,
            code_lifetime: 60,
            id_token_lifetime: 3600,
            purge_interval: 60,
            client_trust: None,
            mtls_base: None,
            admin_base: None,
            jwks_fetcher: None,
            require_par: false,
            logout_poster: None,
            registration: Default::default(),
            device_expires_in: 600,
            device_interval: 5,
            dpop_require_nonce: false,
            dpop_proof_lifetime: 300,
            audit_retention_days: 90,
            audit_token_events: true,
        }
    }
}

#[derive(Default)]
pub struct KeySet {
    /// Keys signing now, per algorithm.
    pub current: HashMap<&'static str, Arc<SigningKey>>,
    /// Public JWKs to publish (current and rotated-but-still-valid).
    pub jwks: Vec<serde_json::Value>,
}

pub struct Provider {
    pub config: ProviderConfig,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub(crate) master: MasterKey,
    /// Derives opaque tokens from stored ids.
    pub opaque_key: MacKey,
    /// Signs hidden form state on pages (CSRF, pending authorization requests).
    pub form_key: MacKey,
    /// Makes and checks stateless DPoP nonces (shared by every node through the database).
    pub dpop_nonce_key: MacKey,
    keys: RwLock<Arc<KeySet>>,
    apps: RwLock<Arc<HashMap<String, Arc<AppRecord>>>>,
    generation: AtomicI64,
    /// When the next published key leaves the JWKS (a reload is due then, without a change).
    keys_due: AtomicI64,
    healthy: AtomicBool,
    /// Failure throttles for passwords and device user codes (per node).
    pub throttles: crate::throttle::Throttles,
    /// Key sets fetched from clients' `jwks_uri`s.
    pub client_jwks: crate::client_keys::JwksCache,
    /// The operators' unlocks ([`Store::live_unlocks`]) this node has applied to its throttles.
    unlocks_applied: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Bounded password checks (one per core, reused working memory).
    pub passwords: crate::password::Verifier,
    /// Audit events: logged at once, stored in batches ([`crate::audit`]).
    pub audit: crate::audit::Auditor,
}

impl Provider {
    /// Load (creating on first start) the server secrets and signing keys, and the app cache.
    pub async fn open(
        config: ProviderConfig,
        store: Arc<dyn Store>,
        clock: SharedClock,
        master: MasterKey,
    ) -> Result<Arc<Self>, String> {
        let opaque_key = load_secret(&*store, &master, "opaque-token-key").await?;
        let form_key = load_secret(&*store, &master, "form-key").await?;
        let dpop_nonce_key = load_secret(&*store, &master, "dpop-nonce-key").await?;
        let token_events = config.audit_token_events;
        let p = Arc::new(Self {
            config,
            store,
            clock,
            master,
            opaque_key,
            form_key,
            dpop_nonce_key,
            keys: RwLock::new(Arc::new(KeySet::default())),
            apps: RwLock::new(Arc::new(HashMap::new())),
            generation: AtomicI64::new(i64::MIN),
            keys_due: AtomicI64::new(i64::MAX),
            healthy: AtomicBool::new(true),
            throttles: Default::default(),
            unlocks_applied: Default::default(),
            client_jwks: Default::default(),
            passwords: crate::password::Verifier::for_this_machine(),
            audit: crate::audit::Auditor::new(token_events),
        });
        ensure_keys(&*p.store, &p.master, p.clock.now()).await?;
        p.reload().await.map_err(|e| e.to_string())?;
        Ok(p)
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    pub fn signing_key(&self, alg: Alg) -> Result<Arc<SigningKey>, OAuthError> {
        self.keys()
            .current
            .get(alg.as_str())
            .cloned()
            .ok_or_else(|| OAuthError::server(format!("no {} key", alg.as_str())))
    }

    pub fn app(&self, client_id: &str) -> Option<Arc<AppRecord>> {
        self.apps.read().ok().and_then(|a| a.get(client_id).cloned())
    }

    /// The cached app, or — on a miss — the store's (an app created a moment ago by the CLI is
    /// usable at once, before the next cache refresh).
    pub async fn find_app(&self, client_id: &str) -> Result<Option<Arc<AppRecord>>, StoreError> {
        if let Some(a) = self.app(client_id) {
            return Ok(Some(a));
        }
        // No stored id is empty, that long, or holds a control character (PostgreSQL would refuse
        // a NUL in a text parameter outright): such an id names no app.
        if client_id.is_empty() || client_id.len() > 256 || client_id.chars().any(char::is_control) {
            return Ok(None);
        }
        Ok(self.store.get_app(client_id).await?.map(Arc::new))
    }

    /// May a browser at `origin` send a preflight to the token, userinfo and revocation endpoints
    /// (CORS)? Yes if any app registered it: a preflight names no app. The actual request is
    /// checked against its own app with [`Self::origin_allowed_for`].
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.apps
            .read()
            .map(|a| a.values().any(|app| app.app.allowed_origins.iter().any(|o| o == origin)))
            .unwrap_or(false)
    }

    /// May a browser at `origin` read an answer given for the app `client_id` (CORS)? Only an
    /// origin registered for that very app (`--allowed-origin`).
    pub fn origin_allowed_for(&self, client_id: &str, origin: &str) -> bool {
        self.app(client_id).is_some_and(|app| app.app.allowed_origins.iter().any(|o| o == origin))
    }

    /// Reload caches if the store's generation moved. Returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let g = self.store.generation().await?;
        if g == self.generation.load(Ordering::Acquire) && self.now() < self.keys_due.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.reload().await?;
        self.generation.store(g, Ordering::Release);
        Ok(true)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let apps = self.store.list_apps().await?;
        let map: HashMap<String, Arc<AppRecord>> =
            apps.into_iter().map(|a| (a.app.client_id.clone(), Arc::new(a))).collect();
        if let Ok(mut w) = self.apps.write() {
            *w = Arc::new(map);
        }
        let records = self.store.list_keys().await?;
        let now = self.now();
        let mut set = KeySet::default();
        let mut due = i64::MAX;
        for rec in &records {
            match rec.publish_until {
                Some(t) if t <= now => continue,
                Some(t) => due = due.min(t),
                None => {}
            }
            let Ok(jwk) = serde_json::from_str::<serde_json::Value>(&rec.public_jwk) else { continue };
            let mut jwk = jwk;
            jwk["kid"] = serde_json::json!(rec.kid);
            set.jwks.push(jwk);
            if rec.rotated_at.is_none() {
                match SigningKey::from_record(rec, &self.master) {
                    Ok(k) => {
                        set.current.insert(rec.alg.as_str(), Arc::new(k));
                    }
                    Err(e) => tracing::error!(kid = %rec.kid, error = %e, "cannot unseal signing key"),
                }
            }
        }
        if let Ok(mut w) = self.keys.write() {
            *w = Arc::new(set);
        }
        self.keys_due.store(due, Ordering::Release);
        self.apply_unlocks().await
    }

    /// An operator unlocked a user (on any node): clear the user's throttles here too. Each
    /// unlock is applied once; it stays visible long enough for every node to reload.
    async fn apply_unlocks(&self) -> Result<(), StoreError> {
        let live = self.store.live_unlocks(self.now()).await?;
        let Ok(mut applied) = self.unlocks_applied.lock() else { return Ok(()) };
        for (id, username) in &live {
            if !applied.contains(id) {
                self.throttles.unlock_user(username);
            }
        }
        *applied = live.into_iter().map(|(id, _)| id).collect();
        Ok(())
    }

    /// Unlock a user's sign-in throttles on every node: here at once, elsewhere when their
    /// caches reload (within a second).
    pub async fn unlock_everywhere(&self, username: &str) -> Result<(), StoreError> {
        let id = crate::secret::random_token();
        self.store.record_unlock(&id, username, self.now() + UNLOCK_VISIBLE).await?;
        self.throttles.unlock_user(username);
        if let Ok(mut applied) = self.unlocks_applied.lock() {
            applied.insert(id);
        }
        Ok(())
    }

    /// Delete dead rows in bounded batches (see [`Store::purge`]); returns how many.
    pub async fn purge_once(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for _ in 0..PURGE_BATCHES_PER_RUN {
            let n = self.store.purge(self.now(), PURGE_GRACE, PURGE_BATCH).await?;
            total += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        let before = self.now() - self.config.audit_retention_days.max(1) * 86_400;
        for _ in 0..PURGE_BATCHES_PER_RUN {
            let n = self.store.purge_events(before, PURGE_BATCH).await?;
            total += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(total)
    }

    /// Record an audit event at the provider's `now` ([`crate::audit`]).
    pub fn event(&self, kind: &str, actor: &crate::audit::Actor, detail: serde_json::Value) {
        self.audit.record(crate::audit::event_us(self.clock.now_micros(), kind, actor, detail));
    }

    /// The background writer of audit events.
    pub fn spawn_auditor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(p) = weak.upgrade() else { return };
                p.audit.flush(&*p.store).await;
            }
        })
    }

    /// The background purge: on by default, every `purge_interval` seconds, on every node (the
    /// stores make concurrent purges safe).
    pub fn spawn_purger(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.config.purge_interval;
        if every == 0 {
            return None;
        }
        let weak = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                match p.purge_once().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "purged expired and revoked rows"),
                    Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
                }
            }
        }))
    }

    /// Poll the store forever: keeps caches fresh and the health flag true to the database.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                let ok = match tokio::time::timeout(Duration::from_secs(2), p.refresh()).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "database check failed");
                        false
                    }
                    Err(_) => {
                        tracing::warn!("database check timed out");
                        false
                    }
                };
                let was = p.healthy.swap(ok, Ordering::Relaxed);
                if was != ok {
                    if ok {
                        tracing::info!("database reachable again");
                    } else {
                        tracing::error!("database unreachable: answering 503 until it is back");
                    }
                }
            }
        })
    }
}

/// Rows deleted per table per batch, and batches per purge run: bounded work per run.
pub const PURGE_BATCH: u32 = 1000;
const PURGE_BATCHES_PER_RUN: u32 = 50;
/// Dead rows are kept this long after they expire or are revoked: a replayed code or refresh
/// token within it is still recognised (and its descendants revoked) instead of being unknown.
pub const PURGE_GRACE: i64 = 3600;

async fn load_secret(store: &dyn Store, master: &MasterKey, name: &str) -> Result<MacKey, String> {
    let fresh = master.seal(name, &random_bytes::<32>());
    let sealed = store.get_or_init_secret(name, &fresh).await.map_err(|e| e.to_string())?;
    let bytes = master.open(name, &sealed).map_err(|e| e.to_string())?;
    Ok(MacKey::new(&bytes))
}

/// The server secrets (opaque-token, form and DPoP-nonce keys), created sealed when missing;
/// fails when the master key cannot open them.
pub async fn ensure_secrets(store: &dyn Store, master: &MasterKey) -> Result<(), String> {
    for name in ["opaque-token-key", "form-key", "dpop-nonce-key"] {
        load_secret(store, master, name).await?;
    }
    Ok(())
}

/// Create the ES256 and RS256 keys on first start; check the master key opens the existing ones.
pub async fn ensure_keys(store: &dyn Store, master: &MasterKey, now: i64) -> Result<(), String> {
    let existing = store.list_keys().await.map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    for alg in [Alg::ES256, Alg::RS256] {
        match existing.iter().find(|k| k.alg == alg && k.rotated_at.is_none()) {
            Some(rec) => {
                SigningKey::from_record(rec, master).map_err(|e| e.to_string())?;
            }
            None => missing.push(alg),
        }
    }
    if !missing.is_empty() {
        let mut recs: Vec<KeyRecord> = Vec::new();
        for alg in missing {
            recs.push(SigningKey::generate(alg, master, now)?.1);
        }
        store.add_keys(&recs, now, now).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `tether keys rotate`: new ES256 and RS256 keys; the old ones stay published for as long as a
/// token they signed can live (the longest access-token lifetime of any app, at least an hour).
pub async fn rotate_keys(store: &dyn Store, master: &MasterKey, now: i64) -> Result<Vec<KeyRecord>, String> {
    let apps = store.list_apps().await.map_err(|e| e.to_string())?;
    let longest = apps.iter().map(|a| a.app.access_token_ttl).max().unwrap_or(0).max(3600);
    let mut recs = Vec::new();
    for alg in [Alg::ES256, Alg::RS256] {
        recs.push(SigningKey::generate(alg, master, now)?.1);
    }
    store.add_keys(&recs, now, now + longest).await.map_err(|e| e.to_string())?;
    Ok(recs)
}
