//! PostgreSQL backend, for several Tether nodes behind a load balancer: one truth in the database,
//! nothing cached that a revocation on another node could make stale (tokens are read on every use;
//! the app/key cache follows the `meta.generation` counter every node polls).
//!
//! Every write is one transaction, run on its own task so that a cancelled request cannot leave
//! it half-done. Decisions under concurrency are taken by the database across nodes: a code or a
//! refresh token is consumed by a conditional `UPDATE` (the loser of a race sees zero rows under
//! READ COMMITTED's re-check), and issuance for one reuse key is serialised by a transaction-scoped
//! advisory lock on the key, backed by the partial unique index "one active token per key".
//! Migrations are applied under an advisory lock, so nodes starting together do not race.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use tether_core::error::StoreError;
use tether_core::keys::{Alg, KeyRecord};
use tether_core::model::{App, AppRecord, BindingType, TokenType, User, UserRecord};
use tether_core::store::*;

use crate::errors::map_pg as map;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_purge_indexes.sql")),
    (3, include_str!("../migrations/postgres/0003_binding_cnf.sql")),
    (4, include_str!("../migrations/postgres/0004_act.sql")),
    (5, include_str!("../migrations/postgres/0005_device.sql")),
    (6, include_str!("../migrations/postgres/0006_dpop_jti.sql")),
];
/// Arbitrary constant naming the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x7465_7468_6572;

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, String> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| format!("bad PostgreSQL URL: {e}"))?
            .application_name("tether")
            // Never wait forever: a lock or a statement that takes this long answers 503.
            .options([("lock_timeout", "5s"), ("statement_timeout", "15s")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), String> {
        let mut c = self.pool.acquire().await.map_err(|e| e.to_string())?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *c)
            .await
            .map_err(|e| e.to_string())?;
        let res = async {
            sqlx::query("CREATE TABLE IF NOT EXISTS tether_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                .execute(&mut *c)
                .await
                .map_err(|e| e.to_string())?;
            for (version, sql) in MIGRATIONS {
                let done: Option<i64> = sqlx::query_scalar("SELECT version FROM tether_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(|e| e.to_string())?;
                if done.is_some() {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(|e| e.to_string())?;
                sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|e| format!("database migration {version} failed: {e}"))?;
                sqlx::query("INSERT INTO tether_migrations (version, applied_at) VALUES ($1, extract(epoch from now())::bigint)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }
        .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *c).await;
        res
    }

    /// Run a write transaction on its own task (see the module docs).
    async fn write<R, F>(&self, f: impl FnOnce(PgPool) -> F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: std::future::Future<Output = StoreResult<R>> + Send + 'static,
    {
        tokio::spawn(f(self.pool.clone())).await.map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
    }
}

fn aud_json(a: &[String]) -> String {
    serde_json::to_string(a).unwrap_or_else(|_| "[]".into())
}

fn aud_parse(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn binding_from(r: &PgRow) -> Result<Option<BindingRecord>, sqlx::Error> {
    let kind: Option<String> = r.try_get("binding_type")?;
    Ok(match kind.as_deref().and_then(BindingType::parse) {
        Some(kind) => {
            // `codes` has no binding_cnf column: absent reads as None.
            Some(BindingRecord {
                kind,
                reference: r.try_get("binding_ref")?,
                value_hash: r.try_get("binding_hash")?,
                cnf: r.try_get::<Option<String>, _>("binding_cnf").unwrap_or(None),
            })
        }
        None => None,
    })
}

fn app_from(r: &PgRow) -> Result<AppRecord, sqlx::Error> {
    let settings: String = r.try_get("settings")?;
    let app: App = serde_json::from_str(&settings).map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(AppRecord { app, secret_hash: r.try_get("secret_hash")? })
}

fn user_from(r: &PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        user: User {
            id: r.try_get("id")?,
            username: r.try_get("username")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            created_at: r.try_get("created_at")?,
        },
        password_hash: r.try_get("password_hash")?,
    })
}

fn access_from(r: &PgRow) -> Result<AccessTokenRecord, sqlx::Error> {
    let tt: String = r.try_get("token_type")?;
    Ok(AccessTokenRecord {
        token_hash: r.try_get("token_hash")?,
        id: r.try_get("id")?,
        jti: r.try_get("jti")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        scope: r.try_get("scope")?,
        audience: aud_parse(r.try_get("audience")?),
        token_type: TokenType::parse(&tt).unwrap_or(TokenType::Opaque),
        binding: binding_from(r)?,
        reuse_key: r.try_get("reuse_key")?,
        grant_id: r.try_get("grant_id")?,
        session_id: r.try_get("session_id")?,
        auth_time: r.try_get("auth_time")?,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        act: r.try_get("act")?,
    })
}

fn refresh_from(r: &PgRow) -> Result<RefreshTokenRecord, sqlx::Error> {
    Ok(RefreshTokenRecord {
        id: r.try_get("id")?,
        token_hash: r.try_get("token_hash")?,
        family_id: r.try_get("family_id")?,
        access_id: r.try_get("access_id")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        scope: r.try_get("scope")?,
        audience: aud_parse(r.try_get("audience")?),
        binding: binding_from(r)?,
        grant_id: r.try_get("grant_id")?,
        session_id: r.try_get("session_id")?,
        auth_time: r.try_get("auth_time")?,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn code_from(r: &PgRow) -> Result<CodeRecord, sqlx::Error> {
    Ok(CodeRecord {
        code_hash: r.try_get("code_hash")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        scope: r.try_get("scope")?,
        audience: aud_parse(r.try_get("audience")?),
        nonce: r.try_get("nonce")?,
        code_challenge: r.try_get("code_challenge")?,
        code_challenge_method: r.try_get("code_challenge_method")?,
        session_id: r.try_get("session_id")?,
        auth_time: r.try_get("auth_time")?,
        grant_id: r.try_get("grant_id")?,
        binding: binding_from(r)?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
    })
}

fn session_from(r: &PgRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id: r.try_get("id")?,
        cookie_hash: r.try_get("cookie_hash")?,
        user_id: r.try_get("user_id")?,
        auth_time: r.try_get("auth_time")?,
        expires_at: r.try_get("expires_at")?,
        last_seen: r.try_get("last_seen")?,
        ended_at: r.try_get("ended_at")?,
    })
}

fn device_from(r: &PgRow) -> Result<DeviceRecord, sqlx::Error> {
    let status: String = r.try_get("status")?;
    let status = DeviceStatus::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("corrupt device status: {status}").into()))?;
    Ok(DeviceRecord {
        device_hash: r.try_get("device_hash")?,
        user_code_hash: r.try_get("user_code_hash")?,
        client_id: r.try_get("client_id")?,
        scope: r.try_get("scope")?,
        audience: aud_parse(r.try_get("audience")?),
        expires_at: r.try_get("expires_at")?,
        interval: r.try_get("interval")?,
        last_polled: r.try_get("last_polled")?,
        status,
        user_id: r.try_get("user_id")?,
        session_id: r.try_get("session_id")?,
        auth_time: r.try_get("auth_time")?,
    })
}

fn key_from(r: &PgRow) -> Result<KeyRecord, sqlx::Error> {
    let alg: String = r.try_get("alg")?;
    Ok(KeyRecord {
        kid: r.try_get("kid")?,
        alg: Alg::parse(&alg).unwrap_or(Alg::ES256),
        private_sealed: r.try_get("private_sealed")?,
        public_jwk: r.try_get("public_jwk")?,
        created_at: r.try_get("created_at")?,
        rotated_at: r.try_get("rotated_at")?,
        publish_until: r.try_get("publish_until")?,
    })
}

fn b_type(b: &Option<BindingRecord>) -> Option<&'static str> {
    b.as_ref().map(|b| b.kind.as_str())
}
fn b_ref(b: &Option<BindingRecord>) -> Option<String> {
    b.as_ref().map(|b| b.reference.clone())
}
fn b_hash(b: &Option<BindingRecord>) -> Option<String> {
    b.as_ref().map(|b| b.value_hash.clone())
}
fn b_cnf(b: &Option<BindingRecord>) -> Option<String> {
    b.as_ref().and_then(|b| b.cnf.clone())
}

async fn bump(c: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'generation'").execute(c).await.map_err(map)?;
    Ok(())
}

async fn insert_access(c: &mut PgConnection, a: &AccessTokenRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, id, jti, client_id, user_id, username, scope, audience, token_type, \
         binding_type, binding_ref, binding_hash, reuse_key, grant_id, session_id, auth_time, issued_at, expires_at, revoked_at, \
         binding_cnf, act) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,NULL,$19,$20)",
    )
    .bind(&a.token_hash)
    .bind(&a.id)
    .bind(&a.jti)
    .bind(&a.client_id)
    .bind(&a.user_id)
    .bind(&a.username)
    .bind(&a.scope)
    .bind(aud_json(&a.audience))
    .bind(a.token_type.as_str())
    .bind(b_type(&a.binding))
    .bind(b_ref(&a.binding))
    .bind(b_hash(&a.binding))
    .bind(&a.reuse_key)
    .bind(&a.grant_id)
    .bind(&a.session_id)
    .bind(a.auth_time)
    .bind(a.issued_at)
    .bind(a.expires_at)
    .bind(b_cnf(&a.binding))
    .bind(&a.act)
    .execute(c)
    .await
    .map_err(map)?;
    Ok(())
}

async fn insert_refresh(c: &mut PgConnection, r: &RefreshTokenRecord, access_id: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, id, family_id, access_id, client_id, user_id, username, scope, audience, \
         binding_type, binding_ref, binding_hash, grant_id, session_id, auth_time, issued_at, expires_at, used_at, revoked_at, \
         binding_cnf) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,NULL,NULL,$18)",
    )
    .bind(&r.token_hash)
    .bind(&r.id)
    .bind(&r.family_id)
    .bind(access_id)
    .bind(&r.client_id)
    .bind(&r.user_id)
    .bind(&r.username)
    .bind(&r.scope)
    .bind(aud_json(&r.audience))
    .bind(b_type(&r.binding))
    .bind(b_ref(&r.binding))
    .bind(b_hash(&r.binding))
    .bind(&r.grant_id)
    .bind(&r.session_id)
    .bind(r.auth_time)
    .bind(r.issued_at)
    .bind(r.expires_at)
    .bind(b_cnf(&r.binding))
    .execute(c)
    .await
    .map_err(map)?;
    Ok(())
}

async fn revoke_family_tx(c: &mut PgConnection, family_id: &str, now: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE access_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND token_hash IN \
         (SELECT access_id FROM refresh_tokens WHERE family_id = $2)",
    )
    .bind(now)
    .bind(family_id)
    .execute(&mut *c)
    .await
    .map_err(map)?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = $2")
        .bind(now)
        .bind(family_id)
        .execute(&mut *c)
        .await
        .map_err(map)?;
    Ok(())
}

async fn revoke_access_tx(c: &mut PgConnection, hash: &str, now: i64, with_families: bool) -> StoreResult<()> {
    sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(hash)
        .execute(&mut *c)
        .await
        .map_err(map)?;
    if with_families {
        let fams: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT family_id FROM refresh_tokens WHERE access_id = $1")
                .bind(hash)
                .fetch_all(&mut *c)
                .await
                .map_err(map)?;
        for f in fams {
            revoke_family_tx(c, &f, now).await?;
        }
    }
    Ok(())
}

async fn revoke_grant_tx(c: &mut PgConnection, grant_id: &str, now: i64) -> StoreResult<()> {
    for sql in [
        "UPDATE access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
    ] {
        sqlx::query(sql).bind(now).bind(grant_id).execute(&mut *c).await.map_err(map)?;
    }
    Ok(())
}

/// The WHERE conditions of a bulk revocation: the SQL (placeholders only, never a value) numbered
/// from `$2` (`$1` is the revocation time), the text values in order, then the client list bound
/// as one array (`client_id = ANY(..)`, the `IN` list of the SQLite backend). `None` when the
/// filter matches nothing (an empty client list).
type RevokeConditions = (String, Vec<String>, Option<Vec<String>>);

fn revoke_conditions(f: &RevokeFilter) -> StoreResult<Option<RevokeConditions>> {
    let mut conds: Vec<String> = Vec::new();
    let mut vals: Vec<String> = Vec::new();
    for (col, v) in [
        ("session_id", f.session_id.as_deref()),
        ("user_id", f.user_id.as_deref()),
        ("binding_type", f.binding_kind.map(|k| k.as_str())),
        ("binding_ref", f.binding_ref.as_deref()),
    ] {
        if let Some(v) = v {
            vals.push(v.to_string());
            conds.push(format!("{col} = ${}", vals.len() + 1));
        }
    }
    let ids = match &f.client_ids {
        Some(ids) if ids.is_empty() => return Ok(None),
        Some(ids) => {
            conds.push(format!("client_id = ANY(${})", vals.len() + 2));
            Some(ids.clone())
        }
        None => None,
    };
    if conds.is_empty() {
        return Err(StoreError::Other("refusing to revoke without a condition".into()));
    }
    if !f.spare_binding_kinds.is_empty() {
        // Constant text, no client input.
        conds.push("(binding_type IS NULL OR binding_type NOT IN ('client-request', 'device-flow'))".into());
    }
    Ok(Some((conds.join(" AND "), vals, ids)))
}

/// Revoke the active access and refresh tokens matching the conditions of [`revoke_conditions`].
/// Revoked access tokens leave the "one active token per reuse key" index, as in [`revoke_access_tx`].
async fn revoke_matching_tx(c: &mut PgConnection, w: &RevokeConditions, now: i64) -> StoreResult<u64> {
    let (cond, vals, ids) = w;
    let mut n = 0u64;
    for table in ["access_tokens", "refresh_tokens"] {
        let sql = format!("UPDATE {table} SET revoked_at = $1 WHERE revoked_at IS NULL AND {cond}");
        let mut q = sqlx::query(&sql).bind(now);
        for v in vals {
            q = q.bind(v);
        }
        if let Some(ids) = ids {
            q = q.bind(ids);
        }
        n += q.execute(&mut *c).await.map_err(map)?.rows_affected();
    }
    Ok(n)
}

async fn issue_tx(c: &mut PgConnection, req: &IssueRequest) -> StoreResult<IssueOutcome> {
    let now = req.now;
    match &req.precondition {
        Precondition::None => {}
        Precondition::ConsumeCode(hash) => {
            let r = sqlx::query("UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
                .bind(now)
                .bind(hash)
                .execute(&mut *c)
                .await
                .map_err(map)?;
            if r.rows_affected() == 0 {
                let grant: Option<String> = sqlx::query_scalar("SELECT grant_id FROM codes WHERE code_hash = $1")
                    .bind(hash)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(map)?;
                if let Some(g) = grant {
                    revoke_grant_tx(c, &g, now).await?;
                }
                return Ok(IssueOutcome::Replayed);
            }
        }
        Precondition::RotateRefresh(hash) => {
            let r = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(hash)
            .execute(&mut *c)
            .await
            .map_err(map)?;
            if r.rows_affected() == 0 {
                let fam: Option<String> =
                    sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                        .bind(hash)
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(map)?;
                if let Some(f) = fam {
                    revoke_family_tx(c, &f, now).await?;
                }
                return Ok(IssueOutcome::Replayed);
            }
        }
        Precondition::ConsumeDevice(hash) => {
            let r =
                sqlx::query("UPDATE device_codes SET status = 'used' WHERE device_hash = $1 AND status = 'approved'")
                    .bind(hash)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
            if r.rows_affected() == 0 {
                // Not approved any more: a concurrent poll got the tokens. Nothing to revoke.
                return Ok(IssueOutcome::Replayed);
            }
        }
    }
    if let Some(key) = &req.access.reuse_key {
        // Serialise issuance for this key across every node until this transaction ends.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *c)
            .await
            .map_err(map)?;
        sqlx::query(
            "UPDATE access_tokens SET revoked_at = expires_at WHERE reuse_key = $1 AND revoked_at IS NULL AND expires_at <= $2",
        )
        .bind(key)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(map)?;
        let existing = sqlx::query("SELECT * FROM access_tokens WHERE reuse_key = $1 AND revoked_at IS NULL")
            .bind(key)
            .fetch_optional(&mut *c)
            .await
            .map_err(map)?;
        if let Some(row) = existing {
            let existing = access_from(&row).map_err(map)?;
            match req.policy {
                ReusePolicy::ReuseActive => {
                    if let Some(r) = &req.refresh {
                        insert_refresh(c, r, &existing.token_hash).await?;
                    }
                    return Ok(IssueOutcome::Reused(Box::new(existing)));
                }
                ReusePolicy::RevokePrevious { with_refresh } => {
                    revoke_access_tx(c, &existing.token_hash, now, with_refresh).await?
                }
                ReusePolicy::Independent => {}
            }
        }
    }
    insert_access(c, &req.access).await?;
    if let Some(r) = &req.refresh {
        insert_refresh(c, r, &req.access.token_hash).await?;
    }
    Ok(IssueOutcome::Issued)
}

macro_rules! tx {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let mut tx = $pool.begin().await.map_err(map)?;
        let out = {
            let $c: &mut PgConnection = &mut tx;
            $body
        };
        tx.commit().await.map_err(map)?;
        Ok(out)
    }};
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map)?;
        Ok(())
    }

    async fn generation(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'generation'").fetch_one(&self.pool).await.map_err(map)
    }

    async fn create_app(&self, a: &AppRecord) -> StoreResult<()> {
        let settings = serde_json::to_string(&a.app).map_err(|e| StoreError::Other(e.to_string()))?;
        let (id, hash) = (a.app.client_id.clone(), a.secret_hash.clone());
        self.write(move |pool| async move {
            tx!(pool, |c| {
                sqlx::query(
                    "INSERT INTO apps (client_id, secret_hash, settings, created_at) VALUES ($1, $2, $3, extract(epoch from now())::bigint)",
                )
                .bind(id)
                .bind(hash)
                .bind(settings)
                .execute(&mut *c)
                .await
                .map_err(map)?;
                bump(c).await?
            })
        })
        .await
    }

    async fn update_app(&self, a: &AppRecord) -> StoreResult<()> {
        let settings = serde_json::to_string(&a.app).map_err(|e| StoreError::Other(e.to_string()))?;
        let (id, hash) = (a.app.client_id.clone(), a.secret_hash.clone());
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let r = sqlx::query("UPDATE apps SET secret_hash = $1, settings = $2 WHERE client_id = $3")
                    .bind(hash)
                    .bind(settings)
                    .bind(id)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                bump(c).await?
            })
        })
        .await
    }

    async fn get_app(&self, client_id: &str) -> StoreResult<Option<AppRecord>> {
        let row = sqlx::query("SELECT * FROM apps WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(app_from).transpose().map_err(map)
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        let rows = sqlx::query("SELECT * FROM apps ORDER BY created_at, client_id")
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        rows.iter().map(app_from).collect::<Result<_, _>>().map_err(map)
    }

    async fn delete_app(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        let id = client_id.to_string();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let r = sqlx::query("DELETE FROM apps WHERE client_id = $1")
                    .bind(&id)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                if r.rows_affected() == 0 {
                    false
                } else {
                    for sql in [
                        "UPDATE access_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
                        "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
                        "UPDATE codes SET used_at = $1 WHERE client_id = $2 AND used_at IS NULL",
                    ] {
                        sqlx::query(sql).bind(now).bind(&id).execute(&mut *c).await.map_err(map)?;
                    }
                    bump(c).await?;
                    true
                }
            })
        })
        .await
    }

    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                sqlx::query("INSERT INTO users (id, username, password_hash, email, name, created_at) VALUES ($1,$2,$3,$4,$5,$6)")
                    .bind(&u.user.id)
                    .bind(&u.user.username)
                    .bind(&u.password_hash)
                    .bind(&u.user.email)
                    .bind(&u.user.name)
                    .bind(u.user.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                bump(c).await?
            })
        })
        .await
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<bool> {
        let (name, hash) = (username.to_string(), password_hash.to_string());
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                    .bind(hash)
                    .bind(name)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                bump(c).await?;
                r.rows_affected() > 0
            })
        })
        .await
    }

    async fn get_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose().map_err(map)
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await.map_err(map)?;
        row.as_ref().map(user_from).transpose().map_err(map)
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username").fetch_all(&self.pool).await.map_err(map)?;
        rows.iter().map(user_from).collect::<Result<_, _>>().map_err(map)
    }

    async fn delete_user(&self, username: &str, now: i64) -> StoreResult<bool> {
        let name = username.to_string();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let id: Option<String> = sqlx::query_scalar("DELETE FROM users WHERE username = $1 RETURNING id")
                    .bind(&name)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(map)?;
                match id {
                    None => false,
                    Some(id) => {
                        for sql in [
                            "UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                            "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL",
                            "UPDATE codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
                        ] {
                            sqlx::query(sql).bind(now).bind(&id).execute(&mut *c).await.map_err(map)?;
                        }
                        bump(c).await?;
                        true
                    }
                }
            })
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        rows.iter().map(key_from).collect::<Result<_, _>>().map_err(map)
    }

    async fn add_keys(&self, keys: &[KeyRecord], now: i64, publish_until: i64) -> StoreResult<()> {
        let keys = keys.to_vec();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                for k in &keys {
                    sqlx::query(
                        "UPDATE signing_keys SET rotated_at = $1, publish_until = $2 WHERE alg = $3 AND rotated_at IS NULL",
                    )
                    .bind(now)
                    .bind(publish_until)
                    .bind(k.alg.as_str())
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                    sqlx::query(
                        "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, rotated_at, publish_until) \
                         VALUES ($1,$2,$3,$4,$5,NULL,NULL)",
                    )
                    .bind(&k.kid)
                    .bind(k.alg.as_str())
                    .bind(&k.private_sealed)
                    .bind(&k.public_jwk)
                    .bind(k.created_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                }
                bump(c).await?
            })
        })
        .await
    }

    async fn get_or_init_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, sealed) = (name.to_string(), sealed.to_vec());
        self.write(move |pool| async move {
            tx!(pool, |c| {
                sqlx::query("INSERT INTO server_secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(&name)
                    .bind(&sealed)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                sqlx::query_scalar::<_, Vec<u8>>("SELECT sealed FROM server_secrets WHERE name = $1")
                    .bind(&name)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(map)?
            })
        })
        .await
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |pool| async move {
            sqlx::query(
                "INSERT INTO sessions (id, cookie_hash, user_id, auth_time, expires_at, last_seen, ended_at) VALUES ($1,$2,$3,$4,$5,$6,NULL)",
            )
            .bind(&s.id)
            .bind(&s.cookie_hash)
            .bind(&s.user_id)
            .bind(s.auth_time)
            .bind(s.expires_at)
            .bind(s.last_seen)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, cookie_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE cookie_hash = $1")
            .bind(cookie_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(session_from).transpose().map_err(map)
    }

    async fn touch_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |pool| async move {
            sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
                .bind(now)
                .bind(id)
                .execute(&pool)
                .await
                .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn end_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |pool| async move {
            sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&pool)
                .await
                .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn find_session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(session_from).transpose().map_err(map)
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        let k = code.clone();
        self.write(move |pool| async move {
            sqlx::query(
                "INSERT INTO codes (code_hash, client_id, user_id, redirect_uri, scope, audience, nonce, code_challenge, \
                 code_challenge_method, session_id, auth_time, grant_id, binding_type, binding_ref, binding_hash, expires_at, used_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,NULL)",
            )
            .bind(&k.code_hash)
            .bind(&k.client_id)
            .bind(&k.user_id)
            .bind(&k.redirect_uri)
            .bind(&k.scope)
            .bind(aud_json(&k.audience))
            .bind(&k.nonce)
            .bind(&k.code_challenge)
            .bind(&k.code_challenge_method)
            .bind(&k.session_id)
            .bind(k.auth_time)
            .bind(&k.grant_id)
            .bind(b_type(&k.binding))
            .bind(b_ref(&k.binding))
            .bind(b_hash(&k.binding))
            .bind(k.expires_at)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn find_code(&self, code_hash: &str) -> StoreResult<Option<CodeRecord>> {
        let row = sqlx::query("SELECT * FROM codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(code_from).transpose().map_err(map)
    }

    async fn issue(&self, req: &IssueRequest) -> StoreResult<IssueOutcome> {
        let req = req.clone();
        self.write(move |pool| async move { tx!(pool, |c| issue_tx(c, &req).await?) }).await
    }

    async fn find_access(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>> {
        let row = sqlx::query("SELECT * FROM access_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(access_from).transpose().map_err(map)
    }

    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(refresh_from).transpose().map_err(map)
    }

    async fn revoke_access(&self, token_hash: &str, now: i64) -> StoreResult<()> {
        let h = token_hash.to_string();
        self.write(move |pool| async move { tx!(pool, |c| revoke_access_tx(c, &h, now, true).await?) }).await
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()> {
        let f = family_id.to_string();
        self.write(move |pool| async move { tx!(pool, |c| revoke_family_tx(c, &f, now).await?) }).await
    }

    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()> {
        let g = grant_id.to_string();
        self.write(move |pool| async move { tx!(pool, |c| revoke_grant_tx(c, &g, now).await?) }).await
    }

    async fn revoke_matching(&self, filter: &RevokeFilter, now: i64) -> StoreResult<u64> {
        let Some(w) = revoke_conditions(filter)? else { return Ok(0) };
        self.write(move |pool| async move { tx!(pool, |c| revoke_matching_tx(c, &w, now).await?) }).await
    }

    async fn binding_in_use(&self, kind: BindingType, reference: &str) -> StoreResult<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM access_tokens WHERE binding_ref = $2 AND binding_type = $1) \
             OR EXISTS (SELECT 1 FROM refresh_tokens WHERE binding_ref = $2 AND binding_type = $1)",
        )
        .bind(kind.as_str())
        .bind(reference)
        .fetch_one(&self.pool)
        .await
        .map_err(map)
    }

    async fn dpop_jti_fresh(&self, replay_key: &str, expires_at: i64) -> StoreResult<bool> {
        let key = replay_key.to_string();
        self.write(move |pool| async move {
            let r = sqlx::query("INSERT INTO dpop_jti (replay_key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&key)
                .bind(expires_at)
                .execute(&pool)
                .await
                .map_err(map)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn insert_device(&self, d: &DeviceRecord) -> StoreResult<()> {
        let d = d.clone();
        self.write(move |pool| async move {
            sqlx::query(
                "INSERT INTO device_codes (device_hash, user_code_hash, client_id, scope, audience, expires_at, \"interval\", \
                 last_polled, status, user_id, session_id, auth_time) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
            )
            .bind(&d.device_hash)
            .bind(&d.user_code_hash)
            .bind(&d.client_id)
            .bind(&d.scope)
            .bind(aud_json(&d.audience))
            .bind(d.expires_at)
            .bind(d.interval)
            .bind(d.last_polled)
            .bind(d.status.as_str())
            .bind(&d.user_id)
            .bind(&d.session_id)
            .bind(d.auth_time)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn find_device(&self, device_hash: &str) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query("SELECT * FROM device_codes WHERE device_hash = $1")
            .bind(device_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)?;
        row.as_ref().map(device_from).transpose().map_err(map)
    }

    async fn find_device_by_user_code(&self, user_code_hash: &str, now: i64) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(
            "SELECT * FROM device_codes WHERE user_code_hash = $1 AND expires_at > $2 ORDER BY expires_at DESC LIMIT 1",
        )
        .bind(user_code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(device_from).transpose().map_err(map)
    }

    async fn decide_device(
        &self,
        device_hash: &str,
        approve: bool,
        user_id: &str,
        session_id: &str,
        auth_time: i64,
    ) -> StoreResult<bool> {
        let status = if approve { DeviceStatus::Approved } else { DeviceStatus::Denied };
        let (hash, user, sid) = (device_hash.to_string(), user_id.to_string(), session_id.to_string());
        self.write(move |pool| async move {
            let r = sqlx::query(
                "UPDATE device_codes SET status = $1, user_id = $2, session_id = $3, auth_time = $4 \
                 WHERE device_hash = $5 AND status = 'pending'",
            )
            .bind(status.as_str())
            .bind(user)
            .bind(sid)
            .bind(auth_time)
            .bind(hash)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(r.rows_affected() > 0)
        })
        .await
    }

    async fn poll_device(&self, device_hash: &str, now: i64, interval: i64) -> StoreResult<()> {
        let hash = device_hash.to_string();
        self.write(move |pool| async move {
            sqlx::query("UPDATE device_codes SET last_polled = $1, \"interval\" = $2 WHERE device_hash = $3")
                .bind(now)
                .bind(interval)
                .bind(hash)
                .execute(&pool)
                .await
                .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn purge(&self, now: i64, grace: i64, limit: u32) -> StoreResult<u64> {
        let before = now - grace;
        // SKIP LOCKED: nodes purging at the same time take different rows instead of waiting.
        self.write(move |pool| async move {
            let mut n = 0u64;
            for (table, cond) in [
                ("access_tokens", "expires_at < $1"),
                ("access_tokens", "revoked_at < $1"),
                ("refresh_tokens", "expires_at < $1"),
                ("refresh_tokens", "revoked_at < $1"),
                ("codes", "expires_at < $1"),
                ("sessions", "expires_at < $1 OR ended_at < $1"),
                ("device_codes", "expires_at < $1"),
                ("dpop_jti", "expires_at < $1"),
            ] {
                let sql = format!(
                    "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {cond} LIMIT $2 FOR UPDATE SKIP LOCKED)"
                );
                let r = sqlx::query(&sql).bind(before).bind(limit as i64).execute(&pool).await.map_err(map)?;
                n += r.rows_affected();
            }
            Ok(n)
        })
        .await
    }
}
