//! Storage, as the protocol needs it: small, atomic operations (ARCHITECTURE.md pattern 9).
//!
//! Every method is one transaction. The ones that decide something under concurrency — redeeming a
//! code, rotating a refresh token, "one active token per reuse key" (token-binding.md B-3) — decide
//! it inside the store, so that two requests racing on one node or on two nodes cannot both win.
//! One implementation per backend lives in `tether-store`; there are no backend branches here.
//!
//! The decisions themselves are written once, here, as data and sans-IO flows that every backend
//! executes with its own SQL: issuance ([`issue_flow`]), the revocation cascades ([`flow`]), the
//! conditions of a bulk revocation ([`RevokeFilter::conditions`]) and the reading of stored values
//! ([`rows`]).

pub mod flow;
pub mod issue_flow;
pub mod rows;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::keys::KeyRecord;
use crate::model::{AppRecord, BindingType, TokenType, UserRecord};

pub type StoreResult<T> = Result<T, StoreError>;

/// What a token is bound to (B-1). `value_hash` is SHA-256 of the binding value, never the value.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    pub kind: BindingType,
    /// Binding reference: lowercase hex MD5 of the value (B-0); an identifier, not a check.
    pub reference: String,
    pub value_hash: String,
    /// The value itself when it is public (a certificate thumbprint, a JWK thumbprint): what the
    /// token's `cnf` claim shows. `None` for secret values, which are kept only as hashes.
    pub cnf: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    /// Random id. For opaque tokens the token is HMAC(opaque key, id), so it can be produced again
    /// for reuse (B-3) without being kept: the database alone never yields a usable token.
    pub id: String,
    pub token_hash: String,
    pub jti: String,
    pub client_id: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    /// Canonical scope (sorted, space-joined).
    pub scope: String,
    pub audience: Vec<String>,
    pub token_type: TokenType,
    pub binding: Option<BindingRecord>,
    /// B-3 reuse key; `None` for apps without a binding type.
    pub reuse_key: Option<String>,
    /// The authorization code this token descends from, if any (a replayed code revokes it).
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Option<i64>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// RFC 8693 §4.1 `act` claim as JSON text (exchanged tokens with an actor).
    pub act: Option<String>,
}

impl AccessTokenRecord {
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub id: String,
    pub token_hash: String,
    /// Rotation family: every refresh token descending from one issuance. Presenting a rotated
    /// member revokes the whole family.
    pub family_id: String,
    /// The `token_hash` of the access token issued together with this refresh token ("the pair"
    /// of RFC 7009 §2.1). Tokens are keyed by their hash: one index fewer on the hot insert path.
    pub access_id: String,
    pub client_id: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub scope: String,
    pub audience: Vec<String>,
    pub binding: Option<BindingRecord>,
    pub grant_id: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Option<i64>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl RefreshTokenRecord {
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.used_at.is_none() && self.expires_at > now
    }
}

/// A pushed authorization request (RFC 9126) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ParRecord {
    /// SHA-256 of the request_uri's random part.
    pub uri_hash: String,
    pub client_id: String,
    /// The pushed parameters, in order.
    pub params: Vec<(String, String)>,
    /// Before its first use, usable until then.
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub audience: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub session_id: String,
    pub auth_time: i64,
    pub grant_id: String,
    pub binding: Option<BindingRecord>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Random public id (`sid`), never the cookie value.
    pub id: String,
    pub cookie_hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub expires_at: i64,
    pub last_seen: i64,
    pub ended_at: Option<i64>,
    /// The client address and `User-Agent` the session was started from (at most 256 bytes).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An audit event (admin-api.md A-4). `client_id` / `username` are the actor; what was acted on
/// is in `detail.target`. Never holds a token, secret, password or code.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    /// Sortable and unique: `time` in microseconds, then random (see `crate::audit`).
    pub id: String,
    /// Unix seconds.
    pub time: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Any of these types (empty: every type).
    pub types: Vec<String>,
    /// `time >= since`, `time < until`.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Only events with an id below this one (the cursor: the last id of the previous page).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// Which tokens to list (metadata only), by public id ascending.
#[derive(Debug, Clone, Default)]
pub struct TokenQuery {
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub binding: Option<BindingType>,
    /// Only tokens whose public id is above this one (the cursor).
    pub after_id: Option<String>,
    pub limit: u32,
}

/// What an access or refresh token is, never what it is worth: no value, hash or derivation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMeta {
    /// Public id: the `jti` of an access token, the row id of a refresh token.
    pub id: String,
    pub refresh: bool,
    /// The access token's format (refresh tokens are always opaque).
    pub format: TokenType,
    pub client_id: String,
    pub username: Option<String>,
    pub binding_type: Option<BindingType>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A device authorization (RFC 8628). Both codes are kept only as hashes (B-11).
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    /// Hash of the `device_code` ([`crate::secret::hash_secret`]); primary key.
    pub device_hash: String,
    /// Hash of the normalised user code (8 letters, no dash, upper case); unique among live rows.
    pub user_code_hash: String,
    pub client_id: String,
    /// Canonical scope.
    pub scope: String,
    pub audience: Vec<String>,
    pub expires_at: i64,
    /// Seconds the client must wait between polls (grows by 5 on `slow_down`).
    pub interval: i64,
    pub last_polled: Option<i64>,
    pub status: DeviceStatus,
    /// Set when the user decides.
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub auth_time: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    /// Tokens were issued (a device code yields tokens once).
    Used,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "used" => Self::Used,
            _ => return None,
        })
    }
}

/// What ends with a user change or an operator's logout ([`Store::end_user`],
/// [`Store::update_user`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserCascade {
    #[default]
    Nothing,
    /// Every token of the user, whatever its binding type; sessions stay.
    Tokens,
    /// Every session and every token of the user.
    SessionsAndTokens,
}

impl UserCascade {
    pub fn sessions(self) -> bool {
        self == UserCascade::SessionsAndTokens
    }
    pub fn tokens(self) -> bool {
        self != UserCascade::Nothing
    }
    /// The bulk revocation that hits every token of `user_id`.
    pub fn token_filter(user_id: &str) -> RevokeFilter {
        RevokeFilter { user_id: Some(user_id.to_string()), ..Default::default() }
    }
}

/// How many sessions and tokens a [`UserCascade`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ended {
    pub sessions: u64,
    pub tokens: u64,
}

/// Which tokens a bulk revocation hits (logout, B-6). Every `Some` condition must hold; a filter
/// with no condition at all is refused by the stores (it would revoke everything).
#[derive(Debug, Clone, Default)]
pub struct RevokeFilter {
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub binding_kind: Option<BindingType>,
    pub binding_ref: Option<String>,
    /// Only tokens of these clients (an empty list matches nothing).
    pub client_ids: Option<Vec<String>>,
    /// Tokens bound with one of these types are left alone (B-6: a browser logout never revokes
    /// `client-request` or `device-flow` tokens). Unbound tokens are never spared. Not a condition
    /// by itself: a filter with only this is still refused. Empty: spare nothing.
    pub spare_binding_kinds: Vec<BindingType>,
}

/// A column a bulk revocation can test; each backend names it in its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeField {
    SessionId,
    UserId,
    BindingType,
    BindingRef,
    ClientId,
}

/// One condition of a bulk revocation ([`RevokeFilter::conditions`]), as data: each backend writes
/// it in its SQL dialect with every value a bound parameter, never SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeCondition<'a> {
    /// `field = value`.
    Is(RevokeField, &'a str),
    /// `field IN (values)`; never empty.
    OneOf(RevokeField, Vec<&'a str>),
    /// `field IS NULL OR field NOT IN (values)`; never empty.
    NullOrNoneOf(RevokeField, Vec<&'a str>),
}

impl RevokeFilter {
    /// The conditions a token must all meet to be revoked (besides being unrevoked). `Ok(None)`
    /// when the filter matches nothing (an empty client list); an error for a filter without any
    /// condition, which would revoke everything.
    pub fn conditions(&self) -> StoreResult<Option<Vec<RevokeCondition<'_>>>> {
        let mut conds = Vec::new();
        for (field, value) in [
            (RevokeField::SessionId, self.session_id.as_deref()),
            (RevokeField::UserId, self.user_id.as_deref()),
            (RevokeField::BindingType, self.binding_kind.map(BindingType::as_str)),
            (RevokeField::BindingRef, self.binding_ref.as_deref()),
        ] {
            if let Some(v) = value {
                conds.push(RevokeCondition::Is(field, v));
            }
        }
        if let Some(ids) = &self.client_ids {
            if ids.is_empty() {
                return Ok(None);
            }
            conds.push(RevokeCondition::OneOf(RevokeField::ClientId, ids.iter().map(String::as_str).collect()));
        }
        if conds.is_empty() {
            return Err(StoreError::Other("refusing to revoke without a condition".into()));
        }
        if !self.spare_binding_kinds.is_empty() {
            let kinds = self.spare_binding_kinds.iter().map(|k| k.as_str()).collect();
            conds.push(RevokeCondition::NullOrNoneOf(RevokeField::BindingType, kinds));
        }
        Ok(Some(conds))
    }
}

/// How issuance treats existing tokens of the same reuse key (B-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReusePolicy {
    /// Binding `none`: independent tokens, nothing reused or revoked.
    Independent,
    /// Opaque app: return the active token of the key if there is one (with the new refresh token).
    ReuseActive,
    /// JWT app / refresh grant: revoke the key's active token (and its refresh families if set).
    RevokePrevious { with_refresh: bool },
}

/// A queued back-channel logout (OIDC Back-Channel Logout 1.0): one app, one ended session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutDelivery {
    /// Also the logout token's `jti` (every attempt is signed anew with it).
    pub id: String,
    pub client_id: String,
    pub uri: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub created_at: i64,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The id of the delivery of `session_id`'s logout to `client_id`: derived, so queueing it twice
/// (two nodes at once) stores it once; random to anyone without the session id.
pub fn logout_delivery_id(session_id: &str, client_id: &str) -> String {
    crate::secret::hash_secret(&format!("logout\u{0}{session_id}\u{0}{client_id}"))[..32].to_string()
}

/// What must hold, atomically with issuance.
#[derive(Debug, Clone)]
pub enum Precondition {
    None,
    /// The code (by hash) is unused; it becomes used. If it was used, the tokens of its grant are
    /// revoked (RFC 6749 §4.1.2) and nothing is issued.
    ConsumeCode(String),
    /// The refresh token (by token hash) is active; it becomes used. If it had been used already, its whole
    /// family is revoked (reuse detection) and nothing is issued.
    RotateRefresh(String),
    /// The refresh token (by token hash) is active and stays so, now linked to the new access
    /// token (not rotated: FAPI 2.0 §5.3.2.1). If it is not active, nothing is issued and nothing
    /// revoked.
    KeepRefresh(String),
    /// The device authorization (by device hash) is `approved`; it becomes `used`. If it is not
    /// approved any more (used by a concurrent poll), nothing is issued ([`IssueOutcome::Replayed`]).
    ConsumeDevice(String),
}

#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub access: AccessTokenRecord,
    pub refresh: Option<RefreshTokenRecord>,
    pub policy: ReusePolicy,
    pub precondition: Precondition,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub enum IssueOutcome {
    /// The new access token (and refresh token) were stored.
    Issued,
    /// An active token of the key was found and is to be returned again; only the refresh token
    /// (linked to it) was stored.
    Reused(Box<AccessTokenRecord>),
    /// The code was already redeemed / the refresh token already rotated or revoked: the
    /// descendant tokens were revoked and nothing was issued.
    Replayed,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap liveness check.
    async fn ping(&self) -> StoreResult<()>;
    /// A counter bumped by every change of apps, users or keys, so caches know when to reload.
    async fn generation(&self) -> StoreResult<i64>;

    // Apps.
    async fn create_app(&self, app: &AppRecord) -> StoreResult<()>;
    /// Replace an app's settings (and its secret hash when `Some`).
    async fn update_app(&self, app: &AppRecord) -> StoreResult<()>;
    async fn get_app(&self, client_id: &str) -> StoreResult<Option<AppRecord>>;
    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>>;
    /// Delete an app and revoke every token it holds. Returns false if it did not exist.
    async fn delete_app(&self, client_id: &str, now: i64) -> StoreResult<bool>;

    // Users.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<bool>;
    async fn get_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Delete a user, end their sessions and revoke their tokens.
    async fn delete_user(&self, username: &str, now: i64) -> StoreResult<bool>;

    // Keys and server secrets (sealed under the master key by the caller).
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Insert new keys; mark the current keys of the same algorithms rotated, published until
    /// `publish_until`.
    async fn add_keys(&self, keys: &[KeyRecord], now: i64, publish_until: i64) -> StoreResult<()>;
    /// Store `sealed` under `name` unless a value exists; return the stored value either way.
    async fn get_or_init_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>>;

    // Sessions and codes.
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()>;
    async fn find_session(&self, cookie_hash: &str) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: &str, now: i64) -> StoreResult<()>;
    async fn end_session(&self, id: &str, now: i64) -> StoreResult<()>;
    /// The same user signed in again in this session: a new cookie hash (the old value stops
    /// working), `auth_time` and `last_seen` now, lifetime from now. False when the session had
    /// ended meanwhile.
    async fn reauthenticate_session(&self, id: &str, cookie_hash: &str, now: i64, expires_at: i64)
    -> StoreResult<bool>;
    async fn find_session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// The user's sessions that have not ended (live or expired), newest first.
    async fn list_sessions(&self, user_id: &str) -> StoreResult<Vec<SessionRecord>>;
    /// End what `what` names of the user (sessions, tokens of every binding type) in one
    /// transaction; returns how much.
    async fn end_user(&self, user_id: &str, what: UserCascade, now: i64) -> StoreResult<Ended>;
    /// Change a user's email, name, roles, disabled flag and password hash (found by id; the
    /// username never changes) and end what `then` names, in one transaction: a disabled user
    /// never keeps a session for a moment, a failed revocation leaves the user unchanged. `None`
    /// when there is no such user (nothing changed).
    async fn update_user(&self, user: &UserRecord, then: UserCascade, now: i64) -> StoreResult<Option<Ended>>;
    /// Record an operator's unlock of `username`'s sign-in throttles under a fresh `id`, seen by
    /// every node until `expires_at` ([`Store::live_unlocks`]); moves the generation.
    async fn record_unlock(&self, id: &str, username: &str, expires_at: i64) -> StoreResult<()>;
    /// The unlocks not yet expired at `now`: `(id, username)`.
    async fn live_unlocks(&self, now: i64) -> StoreResult<Vec<(String, String)>>;
    /// Retire a signing key now: it stops signing and leaves the JWKS. False when unknown.
    async fn retire_key(&self, kid: &str, now: i64) -> StoreResult<bool>;
    /// Token metadata matching the query.
    async fn list_tokens(&self, q: &TokenQuery) -> StoreResult<Vec<TokenMeta>>;
    /// Revoke the token with this public id (an access token's `jti` or a refresh token's id)
    /// and its pair. False when there is no such unrevoked token.
    async fn revoke_by_public_id(&self, id: &str, now: i64) -> StoreResult<bool>;
    /// Store audit events (one transaction). Their ids begin with [`crate::audit::id_floor`] of
    /// their time, as [`crate::audit::event_us`] makes them: time ranges (listing, purge) select
    /// through the primary key.
    async fn insert_events(&self, events: &[EventRecord]) -> StoreResult<()>;
    /// Audit events matching the query, newest first.
    async fn list_events(&self, q: &EventQuery) -> StoreResult<Vec<EventRecord>>;
    /// Delete at most `limit` events older than `before`; returns how many.
    async fn purge_events(&self, before: i64, limit: u32) -> StoreResult<u64>;
    async fn insert_code(&self, c: &CodeRecord) -> StoreResult<()>;
    async fn insert_par(&self, r: &ParRecord) -> StoreResult<()>;
    /// Dynamic registration (RFC 7592): the hash of a registered client's registration access
    /// token (set or replaced). Deleting the app deletes it.
    async fn set_registration_token(&self, client_id: &str, token_hash: &str) -> StoreResult<()>;
    async fn registration_token(&self, client_id: &str) -> StoreResult<Option<String>>;
    /// Back-channel logout, step 1 (`crate::backchannel`): the sessions still marked
    /// `logout_pending` that have ended — `ended_at` set, `expires_at <= now`, or idle since
    /// `last_seen <= idle_before` — at most `limit` of them. For each, in one transaction: a
    /// delivery ([`logout_delivery_id`]) for every app of `targets` (client_id, URI) that holds an
    /// access or refresh token of the session, then the mark cleared. Returns the deliveries queued.
    async fn queue_logouts(
        &self,
        now: i64,
        idle_before: i64,
        targets: &[(String, String)],
        limit: u32,
    ) -> StoreResult<u64>;
    /// Step 2: claim at most `limit` deliveries that are due (`next_at <= now`) and not claimed
    /// (`lease_until <= now`) until `lease_until`; no other node gets them meanwhile.
    async fn claim_logouts(&self, now: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<LogoutDelivery>>;
    /// A delivery done (or given up): removed from the queue.
    async fn finish_logout(&self, id: &str) -> StoreResult<()>;
    /// A delivery to try again at `next_at`: one more attempt counted, the claim released.
    async fn retry_logout(&self, id: &str, next_at: i64, error: &str) -> StoreResult<()>;
    /// Use a pushed request of `client_id`: found, not consumed, and either unused and before its
    /// `expires_at` or used before and still before its use window; the first use opens the
    /// window (`now + window`). `None` otherwise (another client's request is not touched).
    async fn use_par(&self, uri_hash: &str, client_id: &str, now: i64, window: i64) -> StoreResult<Option<ParRecord>>;
    /// Mark a pushed request consumed (a code or an error was issued for it). False when it
    /// already was, or is unknown.
    async fn consume_par(&self, uri_hash: &str, now: i64) -> StoreResult<bool>;
    async fn find_code(&self, code_hash: &str) -> StoreResult<Option<CodeRecord>>;

    // Tokens.
    async fn issue(&self, req: &IssueRequest) -> StoreResult<IssueOutcome>;
    async fn find_access(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>>;
    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Revoke an access token (by token hash) and the refresh families issued with it.
    async fn revoke_access(&self, token_hash: &str, now: i64) -> StoreResult<()>;
    /// Revoke a refresh family and every access token issued with its members.
    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()>;
    /// Revoke every token descending from one authorization (a replayed code).
    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()>;
    /// Revoke every active access and refresh token matching `filter`; returns how many were
    /// revoked. Refused (`StoreError::Other`) for a filter without any condition.
    async fn revoke_matching(&self, filter: &RevokeFilter, now: i64) -> StoreResult<u64>;
    /// Is any stored (not yet purged) access or refresh token bound with this type and reference?
    async fn binding_in_use(&self, kind: BindingType, reference: &str) -> StoreResult<bool>;

    // Device authorization (RFC 8628).
    async fn insert_device(&self, d: &DeviceRecord) -> StoreResult<()>;
    async fn find_device(&self, device_hash: &str) -> StoreResult<Option<DeviceRecord>>;
    /// The live (unexpired at `now`) authorization with this user code hash.
    async fn find_device_by_user_code(&self, user_code_hash: &str, now: i64) -> StoreResult<Option<DeviceRecord>>;
    /// The user's decision: `pending` → `approved` / `denied`, with who decided. Returns false
    /// when the authorization was no longer pending.
    async fn decide_device(
        &self,
        device_hash: &str,
        approve: bool,
        user_id: &str,
        session_id: &str,
        auth_time: i64,
    ) -> StoreResult<bool>;
    /// Record a poll: `last_polled = now`, `interval = interval`.
    async fn poll_device(&self, device_hash: &str, now: i64, interval: i64) -> StoreResult<()>;

    /// DPoP replay cache: remember `replay_key` until `expires_at`. True when it was new, false
    /// when it had been seen (a replayed proof).
    async fn dpop_jti_fresh(&self, replay_key: &str, expires_at: i64) -> StoreResult<bool>;

    /// Delete up to `limit` rows per table that can no longer matter: expired or revoked access
    /// tokens, expired or revoked refresh tokens (a used-but-live one stays, for reuse detection),
    /// codes and sessions past `now - grace`. Safe to run on several nodes at once. Returns the
    /// number of rows deleted.
    async fn purge(&self, now: i64, grace: i64, limit: u32) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_filter_conditions() {
        assert!(RevokeFilter::default().conditions().is_err(), "no condition: refused");
        let spare_only = RevokeFilter { spare_binding_kinds: vec![BindingType::ClientRequest], ..Default::default() };
        assert!(spare_only.conditions().is_err(), "sparing is not a condition");
        let no_clients = RevokeFilter { user_id: Some("u".into()), client_ids: Some(vec![]), ..Default::default() };
        assert_eq!(no_clients.conditions().unwrap(), None, "an empty client list matches nothing");
        let logout = RevokeFilter {
            session_id: Some("s".into()),
            client_ids: Some(vec!["a".into(), "b".into()]),
            spare_binding_kinds: vec![BindingType::ClientRequest, BindingType::DeviceFlow],
            ..Default::default()
        };
        assert_eq!(
            logout.conditions().unwrap().unwrap(),
            vec![
                RevokeCondition::Is(RevokeField::SessionId, "s"),
                RevokeCondition::OneOf(RevokeField::ClientId, vec!["a", "b"]),
                RevokeCondition::NullOrNoneOf(RevokeField::BindingType, vec!["client-request", "device-flow"]),
            ]
        );
        let by_binding = RevokeFilter {
            user_id: Some("u".into()),
            binding_kind: Some(BindingType::Cookie),
            binding_ref: Some("r".into()),
            ..Default::default()
        };
        assert_eq!(
            by_binding.conditions().unwrap().unwrap(),
            vec![
                RevokeCondition::Is(RevokeField::UserId, "u"),
                RevokeCondition::Is(RevokeField::BindingType, "cookie"),
                RevokeCondition::Is(RevokeField::BindingRef, "r"),
            ]
        );
    }
}
