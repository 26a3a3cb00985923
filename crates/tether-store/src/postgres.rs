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
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgExecutor, Postgres, Row};
use tether_core::error::StoreError;
use tether_core::keys::KeyRecord;
use tether_core::model::{AppRecord, BindingType, UserRecord};
use tether_core::store::flow::{Answer, Cascade, Flow, Op, Step};
use tether_core::store::issue_flow::IssueFlow;
use tether_core::store::rows::audience_to_json;
use tether_core::store::*;

use crate::errors::map_pg as map;
use crate::filter::{Dialect, Param, TokenTable, event_listing, merge_tokens, revoke_where, token_listing};
use crate::rows::*;

const MIGRATIONS: &[(i64, &str)] = migrations!("postgres");
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
        // A plain connection first: a refused connection or a failed login is then reported as
        // such (a pool only says it timed out).
        probe(url).await?;
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

impl_columns!(PgRow, try_get, map);

/// A row mapper of [`crate::rows`].
type Mapper<T> = fn(&dyn Columns) -> StoreResult<T>;

/// The row `key` (bound as `$1`) selects, if any, read by `f`.
async fn one<'c, T>(c: impl PgExecutor<'c>, sql: &str, key: &str, f: Mapper<T>) -> StoreResult<Option<T>> {
    let row = sqlx::query(sql).bind(key).fetch_optional(c).await.map_err(map)?;
    row.as_ref().map(|r| f(r)).transpose()
}

async fn all<T>(pool: &PgPool, sql: &str, f: Mapper<T>) -> StoreResult<Vec<T>> {
    let rows = sqlx::query(sql).fetch_all(pool).await.map_err(map)?;
    rows.iter().map(|r| f(r)).collect()
}

/// Bind the values of a clause of [`crate::filter`], in placeholder order.
fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Postgres, PgArguments>,
    vals: &'q [Param],
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    for v in vals {
        q = match v {
            Param::Text(t) => q.bind(t),
            Param::List(l) => q.bind(l),
            Param::Int(i) => q.bind(i),
        };
    }
    q
}

/// Every row a statement built from a [`crate::filter::Clause`] selects, read by `f`.
async fn listed<'c, T>(c: impl PgExecutor<'c>, sql: &str, vals: &[Param], f: Mapper<T>) -> StoreResult<Vec<T>> {
    let rows = bind_all(sqlx::query(sql), vals).fetch_all(c).await.map_err(map)?;
    rows.iter().map(|r| f(r)).collect()
}

/// `UPDATE … SET … = $1 (now) WHERE … = $2 (key)`: how many rows it changed.
async fn update<'c>(c: impl PgExecutor<'c>, sql: &str, now: i64, key: &str) -> StoreResult<u64> {
    Ok(sqlx::query(sql).bind(now).bind(key).execute(c).await.map_err(map)?.rows_affected())
}

async fn bump(c: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'generation'").execute(c).await.map_err(map)?;
    Ok(())
}

async fn insert_access(c: &mut PgConnection, a: &AccessTokenRecord) -> StoreResult<()> {
    let b = binding_cols(&a.binding);
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
    .bind(audience_to_json(&a.audience)?)
    .bind(a.token_type.as_str())
    .bind(b.kind)
    .bind(b.reference)
    .bind(b.hash)
    .bind(&a.reuse_key)
    .bind(&a.grant_id)
    .bind(&a.session_id)
    .bind(a.auth_time)
    .bind(a.issued_at)
    .bind(a.expires_at)
    .bind(b.cnf)
    .bind(&a.act)
    .execute(c)
    .await
    .map_err(map)?;
    Ok(())
}

async fn insert_refresh(c: &mut PgConnection, r: &RefreshTokenRecord, access_id: &str) -> StoreResult<()> {
    let b = binding_cols(&r.binding);
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
    .bind(audience_to_json(&r.audience)?)
    .bind(b.kind)
    .bind(b.reference)
    .bind(b.hash)
    .bind(&r.grant_id)
    .bind(&r.session_id)
    .bind(r.auth_time)
    .bind(r.issued_at)
    .bind(r.expires_at)
    .bind(b.cnf)
    .execute(c)
    .await
    .map_err(map)?;
    Ok(())
}

/// Run one op of a decision flow of `tether_core::store::flow` (the decisions are there; only
/// the SQL is here), inside the flow's transaction. Concurrent transactions on other nodes are
/// told apart by the database: conditional `UPDATE`s (the loser of a race sees zero rows under
/// READ COMMITTED's re-check) and the reuse key's advisory lock.
async fn run_op(c: &mut PgConnection, op: Op<'_>, now: i64) -> StoreResult<Answer> {
    let lookup = |sql| sqlx::query_scalar::<_, String>(sql);
    Ok(match op {
        Op::ConsumeCode(hash) => Answer::Changed(
            update(&mut *c, "UPDATE codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL", now, hash).await?
                > 0,
        ),
        Op::GrantOfCode(hash) => Answer::Id(
            lookup("SELECT grant_id FROM codes WHERE code_hash = $1")
                .bind(hash)
                .fetch_optional(c)
                .await
                .map_err(map)?,
        ),
        Op::RotateRefresh(hash) => Answer::Changed(
            update(
                &mut *c,
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL",
                now,
                hash,
            )
            .await?
                > 0,
        ),
        Op::KeepRefresh { hash, access_id } => Answer::Changed(
            sqlx::query(
                "UPDATE refresh_tokens SET access_id = $1 WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(access_id)
            .bind(hash)
            .execute(&mut *c)
            .await
            .map_err(map)?
            .rows_affected()
                > 0,
        ),
        Op::FamilyOfRefresh(hash) => Answer::Id(
            lookup("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_optional(c)
                .await
                .map_err(map)?,
        ),
        Op::ConsumeDevice(hash) => {
            let r = sqlx::query("UPDATE device_codes SET status = 'used' WHERE device_hash = $1 AND status = 'approved'")
                .bind(hash)
                .execute(c)
                .await
                .map_err(map)?;
            Answer::Changed(r.rows_affected() > 0)
        }
        Op::LockReuseKey(key) => {
            // Serialise issuance for this key across every node until this transaction ends.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(c)
                .await
                .map_err(map)?;
            Answer::Ran
        }
        Op::ExpireStale(key) => {
            sqlx::query(
                "UPDATE access_tokens SET revoked_at = expires_at WHERE reuse_key = $1 AND revoked_at IS NULL AND expires_at <= $2",
            )
            .bind(key)
            .bind(now)
            .execute(c)
            .await
            .map_err(map)?;
            Answer::Ran
        }
        Op::FindActive(key) => Answer::Token(
            one(
                c,
                select!(access_tokens, "WHERE reuse_key = $1 AND revoked_at IS NULL"),
                key,
                access_from,
            )
            .await?
            .map(Box::new),
        ),
        Op::RevokeAccess(hash) => {
            update(c, "UPDATE access_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL", now, &hash)
                .await?;
            Answer::Ran
        }
        Op::FamiliesOfAccess(hash) => Answer::Ids(
            sqlx::query_scalar("SELECT DISTINCT family_id FROM refresh_tokens WHERE access_id = $1")
                .bind(&hash)
                .fetch_all(c)
                .await
                .map_err(map)?,
        ),
        Op::RevokeFamilyAccess(family) => {
            let sql = "UPDATE access_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND token_hash IN \
                       (SELECT access_id FROM refresh_tokens WHERE family_id = $2)";
            update(c, sql, now, &family).await?;
            Answer::Ran
        }
        Op::RevokeFamilyRefresh(family) => {
            let sql = "UPDATE refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = $2";
            update(c, sql, now, &family).await?;
            Answer::Ran
        }
        Op::RevokeGrantAccess(grant) => {
            let sql = "UPDATE access_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL";
            update(c, sql, now, &grant).await?;
            Answer::Ran
        }
        Op::RevokeGrantRefresh(grant) => {
            let sql = "UPDATE refresh_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL";
            update(c, sql, now, &grant).await?;
            Answer::Ran
        }
        Op::InsertAccess(a) => {
            insert_access(c, a).await?;
            Answer::Ran
        }
        Op::InsertRefresh { refresh, access_id } => {
            insert_refresh(c, refresh, &access_id).await?;
            Answer::Ran
        }
    })
}

/// Run a decision flow (`tether_core::store::flow`) to its end, each op with [`run_op`] on the
/// connection `c`. A macro rather than a generic `async fn`: a future generic over a flow that
/// borrows its request trips rustc's `Send` check inside `tokio::spawn` ("implementation of `Flow`
/// is not general enough", rust-lang/rust#64552); expanded in place, every type is concrete.
macro_rules! drive {
    ($c:expr, $flow:expr, $now:expr) => {{
        let mut flow = $flow;
        let mut step = Flow::start(&mut flow);
        loop {
            match step {
                Step::Done(out) => break out,
                Step::Run(op) => step = flow.resume(run_op(&mut *$c, op, $now).await?)?,
            }
        }
    }};
}

/// Revoke the active access and refresh tokens matching `cond` (from [`revoke_where`], numbered
/// from `$2`). Revoked access tokens leave the "one active token per reuse key" index.
async fn revoke_matching_tx(c: &mut PgConnection, cond: &str, vals: &[Param], now: i64) -> StoreResult<u64> {
    let mut n = 0u64;
    for table in ["access_tokens", "refresh_tokens"] {
        let sql = format!("UPDATE {table} SET revoked_at = $1 WHERE revoked_at IS NULL AND {cond}");
        n += bind_all(sqlx::query(&sql).bind(now), vals).execute(&mut *c).await.map_err(map)?.rows_affected();
    }
    Ok(n)
}

/// End what `what` names of the user, inside the caller's transaction.
async fn end_user_tx(c: &mut PgConnection, user_id: &str, what: UserCascade, now: i64) -> StoreResult<Ended> {
    let mut ended = Ended::default();
    if what.sessions() {
        ended.sessions =
            update(&mut *c, "UPDATE sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL", now, user_id)
                .await?;
    }
    if what.tokens() {
        let filter = UserCascade::token_filter(user_id);
        if let Some(conds) = filter.conditions()? {
            let (cond, vals) = revoke_where(&conds, Dialect::Postgres);
            ended.tokens = revoke_matching_tx(c, &cond, &vals, now).await?;
        }
    }
    Ok(ended)
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
        let (prev_hash, prev_until) = previous_secret_cols(a);
        let sealed = a.sealed_secret.clone();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                sqlx::query(
                    "INSERT INTO apps (client_id, secret_hash, settings, created_at, previous_secret_hash, \
                     previous_secret_until, sealed_secret) VALUES ($1, $2, $3, extract(epoch from now())::bigint, $4, $5, $6)",
                )
                .bind(id)
                .bind(hash)
                .bind(settings)
                .bind(prev_hash)
                .bind(prev_until)
                .bind(sealed)
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
        let (prev_hash, prev_until) = previous_secret_cols(a);
        let sealed = a.sealed_secret.clone();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let r = sqlx::query(
                    "UPDATE apps SET secret_hash = $1, settings = $2, previous_secret_hash = $4, previous_secret_until = $5, \
                     sealed_secret = $6 WHERE client_id = $3",
                )
                .bind(hash)
                .bind(settings)
                .bind(id)
                .bind(prev_hash)
                .bind(prev_until)
                .bind(sealed)
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
        one(&self.pool, select!(apps, "WHERE client_id = $1"), client_id, app_from).await
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        all(&self.pool, select!(apps, "ORDER BY created_at, client_id"), app_from).await
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
                    sqlx::query("DELETE FROM client_registrations WHERE client_id = $1")
                        .bind(&id)
                        .execute(&mut *c)
                        .await
                        .map_err(map)?;
                    for sql in [
                        "UPDATE access_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
                        "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
                        "UPDATE codes SET used_at = $1 WHERE client_id = $2 AND used_at IS NULL",
                    ] {
                        update(&mut *c, sql, now, &id).await?;
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
                sqlx::query(
                    "INSERT INTO users (id, username, password_hash, email, name, created_at, roles, disabled) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                )
                .bind(&u.user.id)
                .bind(&u.user.username)
                .bind(&u.password_hash)
                .bind(&u.user.email)
                .bind(&u.user.name)
                .bind(u.user.created_at)
                .bind(roles_col(&u.user))
                .bind(i64::from(u.user.disabled))
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
        one(&self.pool, select!(users, "WHERE username = $1"), username, user_from).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        one(&self.pool, select!(users, "WHERE id = $1"), id, user_from).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        all(&self.pool, select!(users, "ORDER BY username"), user_from).await
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
                            update(&mut *c, sql, now, &id).await?;
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
        all(&self.pool, select!(signing_keys, "ORDER BY created_at, kid"), key_from).await
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
                "INSERT INTO sessions (id, cookie_hash, user_id, auth_time, expires_at, last_seen, ended_at, ip, user_agent, \
                 logout_pending) VALUES ($1,$2,$3,$4,$5,$6,NULL,$7,$8,1)",
            )
            .bind(&s.id)
            .bind(&s.cookie_hash)
            .bind(&s.user_id)
            .bind(s.auth_time)
            .bind(s.expires_at)
            .bind(s.last_seen)
            .bind(&s.ip)
            .bind(&s.user_agent)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, cookie_hash: &str) -> StoreResult<Option<SessionRecord>> {
        one(&self.pool, select!(sessions, "WHERE cookie_hash = $1"), cookie_hash, session_from).await
    }

    async fn touch_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |pool| async move {
            update(&pool, "UPDATE sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1", now, &id).await?;
            Ok(())
        })
        .await
    }

    async fn reauthenticate_session(
        &self,
        id: &str,
        cookie_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let (id, hash) = (id.to_string(), cookie_hash.to_string());
        self.write(move |pool| async move {
            let r = sqlx::query(
                "UPDATE sessions SET cookie_hash = $1, auth_time = $2, last_seen = $2, expires_at = $3 \
                 WHERE id = $4 AND ended_at IS NULL",
            )
            .bind(&hash)
            .bind(now)
            .bind(expires_at)
            .bind(&id)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn end_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |pool| async move {
            update(&pool, "UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL", now, &id).await?;
            Ok(())
        })
        .await
    }

    async fn find_session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        one(&self.pool, select!(sessions, "WHERE id = $1"), id, session_from).await
    }

    async fn list_sessions(&self, user_id: &str) -> StoreResult<Vec<SessionRecord>> {
        let sql = select!(sessions, "WHERE user_id = $1 AND ended_at IS NULL ORDER BY auth_time DESC, id");
        let rows = sqlx::query(sql).bind(user_id).fetch_all(&self.pool).await.map_err(map)?;
        rows.iter().map(|r| session_from(r)).collect()
    }

    async fn end_user(&self, user_id: &str, what: UserCascade, now: i64) -> StoreResult<Ended> {
        let id = user_id.to_string();
        self.write(move |pool| async move { tx!(pool, |c| end_user_tx(c, &id, what, now).await?) }).await
    }

    async fn update_user(&self, u: &UserRecord, then: UserCascade, now: i64) -> StoreResult<Option<Ended>> {
        let u = u.clone();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let r = sqlx::query(
                    "UPDATE users SET email = $1, name = $2, roles = $3, disabled = $4, password_hash = $5 WHERE id = $6",
                )
                .bind(&u.user.email)
                .bind(&u.user.name)
                .bind(roles_col(&u.user))
                .bind(i64::from(u.user.disabled))
                .bind(&u.password_hash)
                .bind(&u.user.id)
                .execute(&mut *c)
                .await
                .map_err(map)?;
                if r.rows_affected() == 0 {
                    None
                } else {
                    bump(c).await?;
                    Some(end_user_tx(c, &u.user.id, then, now).await?)
                }
            })
        })
        .await
    }

    async fn record_unlock(&self, id: &str, username: &str, expires_at: i64) -> StoreResult<()> {
        let (id, username) = (id.to_string(), username.to_string());
        self.write(move |pool| async move {
            tx!(pool, |c| {
                sqlx::query("INSERT INTO unlocks (id, username, expires_at) VALUES ($1, $2, $3)")
                    .bind(&id)
                    .bind(&username)
                    .bind(expires_at)
                    .execute(&mut *c)
                    .await
                    .map_err(map)?;
                bump(c).await?
            })
        })
        .await
    }

    async fn live_unlocks(&self, now: i64) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as("SELECT id, username FROM unlocks WHERE expires_at > $1 ORDER BY id")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(map)
    }

    async fn retire_key(&self, kid: &str, now: i64) -> StoreResult<bool> {
        let kid = kid.to_string();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let sql =
                    "UPDATE signing_keys SET rotated_at = COALESCE(rotated_at, $1), publish_until = $1 WHERE kid = $2";
                if update(&mut *c, sql, now, &kid).await? == 0 {
                    false
                } else {
                    bump(c).await?;
                    true
                }
            })
        })
        .await
    }

    async fn list_tokens(&self, q: &TokenQuery) -> StoreResult<Vec<TokenMeta>> {
        let access = token_listing(q, Dialect::Postgres, TokenTable::Access);
        let refresh = token_listing(q, Dialect::Postgres, TokenTable::Refresh);
        let limit = q.limit;
        // One snapshot for both tables.
        let pool = self.pool.clone();
        tx!(pool, |c| {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *c)
                .await
                .map_err(map)?;
            let mut out = listed(&mut *c, &access.0, &access.1, access_meta_from).await?;
            out.extend(listed(&mut *c, &refresh.0, &refresh.1, refresh_meta_from).await?);
            merge_tokens(out, limit)
        })
    }

    async fn revoke_by_public_id(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |pool| async move {
            tx!(pool, |c| {
                let access: Option<String> = sqlx::query_scalar(
                    "SELECT token_hash FROM access_tokens WHERE jti = $1 AND revoked_at IS NULL LIMIT 1 FOR UPDATE",
                )
                .bind(&id)
                .fetch_optional(&mut *c)
                .await
                .map_err(map)?;
                if let Some(hash) = access {
                    drive!(c, Cascade::access(hash, true), now);
                    true
                } else {
                    let family: Option<String> = sqlx::query_scalar(
                        "SELECT family_id FROM refresh_tokens WHERE id = $1 AND revoked_at IS NULL LIMIT 1 FOR UPDATE",
                    )
                    .bind(&id)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(map)?;
                    match family {
                        Some(family) => {
                            drive!(c, Cascade::family(family), now);
                            true
                        }
                        None => false,
                    }
                }
            })
        })
        .await
    }

    async fn insert_events(&self, events: &[EventRecord]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events.iter().map(|e| Ok((e.clone(), detail_json(e)?))).collect::<StoreResult<Vec<_>>>()?;
        self.write(move |pool| async move {
            // One statement and one round trip for the whole batch (arrays unnested), not one
            // per event: a busy server records an event per token.
            let col = |f: fn(&(EventRecord, String)) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO events (id, time, type, client_id, username, ip, user_agent, detail) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[])",
            )
            .bind(col(|r| Some(r.0.id.clone())))
            .bind(rows.iter().map(|r| r.0.time).collect::<Vec<i64>>())
            .bind(col(|r| Some(r.0.kind.clone())))
            .bind(col(|r| r.0.client_id.clone()))
            .bind(col(|r| r.0.username.clone()))
            .bind(col(|r| r.0.ip.clone()))
            .bind(col(|r| r.0.user_agent.clone()))
            .bind(col(|r| Some(r.1.clone())))
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn list_events(&self, q: &EventQuery) -> StoreResult<Vec<EventRecord>> {
        let (sql, vals) = event_listing(q, Dialect::Postgres);
        listed(&self.pool, &sql, &vals, event_from).await
    }

    async fn purge_events(&self, before: i64, limit: u32) -> StoreResult<u64> {
        // SKIP LOCKED: nodes purging at the same time take different rows instead of waiting.
        self.write(move |pool| async move {
            let r = sqlx::query(
                "DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE id < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(tether_core::audit::id_floor(before))
            .bind(i64::from(limit))
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(r.rows_affected())
        })
        .await
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        let k = code.clone();
        self.write(move |pool| async move {
            let b = binding_cols(&k.binding);
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
            .bind(audience_to_json(&k.audience)?)
            .bind(&k.nonce)
            .bind(&k.code_challenge)
            .bind(&k.code_challenge_method)
            .bind(&k.session_id)
            .bind(k.auth_time)
            .bind(&k.grant_id)
            .bind(b.kind)
            .bind(b.reference)
            .bind(b.hash)
            .bind(k.expires_at)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn find_code(&self, code_hash: &str) -> StoreResult<Option<CodeRecord>> {
        one(&self.pool, select!(codes, "WHERE code_hash = $1"), code_hash, code_from).await
    }

    async fn issue(&self, req: &IssueRequest) -> StoreResult<IssueOutcome> {
        let req = req.clone();
        self.write(move |pool| async move {
            let now = req.now;
            tx!(pool, |c| drive!(c, IssueFlow::new(&req), now))
        })
        .await
    }

    async fn find_access(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>> {
        one(&self.pool, select!(access_tokens, "WHERE token_hash = $1"), token_hash, access_from).await
    }

    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        one(&self.pool, select!(refresh_tokens, "WHERE token_hash = $1"), token_hash, refresh_from).await
    }

    async fn revoke_access(&self, token_hash: &str, now: i64) -> StoreResult<()> {
        let h = token_hash.to_string();
        self.write(move |pool| async move { tx!(pool, |c| drive!(c, Cascade::access(h, true), now)) }).await
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()> {
        let f = family_id.to_string();
        self.write(move |pool| async move { tx!(pool, |c| drive!(c, Cascade::family(f), now)) }).await
    }

    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()> {
        let g = grant_id.to_string();
        self.write(move |pool| async move { tx!(pool, |c| drive!(c, Cascade::grant(g), now)) }).await
    }

    async fn revoke_matching(&self, filter: &RevokeFilter, now: i64) -> StoreResult<u64> {
        let Some(conds) = filter.conditions()? else { return Ok(0) };
        let (cond, vals) = revoke_where(&conds, Dialect::Postgres);
        self.write(move |pool| async move { tx!(pool, |c| revoke_matching_tx(c, &cond, &vals, now).await?) }).await
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

    async fn queue_logouts(
        &self,
        now: i64,
        idle_before: i64,
        targets: &[(String, String)],
        limit: u32,
    ) -> StoreResult<u64> {
        let targets: std::collections::HashMap<String, String> = targets.iter().cloned().collect();
        self.write(move |pool| async move {
            // A read first: most seconds nothing ended, and no transaction is opened.
            let any: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM sessions WHERE logout_pending = 1 \
                 AND (ended_at IS NOT NULL OR expires_at <= $1 OR last_seen <= $2) LIMIT 1",
            )
            .bind(now)
            .bind(idle_before)
            .fetch_optional(&pool)
            .await
            .map_err(map)?;
            if any.is_none() {
                return Ok(0);
            }
            tx!(pool, |c| {
                // SKIP LOCKED: two nodes sweeping at once take different sessions.
                let ended: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, user_id FROM sessions WHERE logout_pending = 1 \
                     AND (ended_at IS NOT NULL OR expires_at <= $1 OR last_seen <= $2) LIMIT $3 FOR UPDATE SKIP LOCKED",
                )
                .bind(now)
                .bind(idle_before)
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await
                .map_err(map)?;
                let mut queued = 0;
                for (sid, user_id) in ended {
                    if !targets.is_empty() {
                        let clients: Vec<String> = sqlx::query_scalar(
                            "SELECT client_id FROM access_tokens WHERE session_id = $1 \
                             UNION SELECT client_id FROM refresh_tokens WHERE session_id = $1",
                        )
                        .bind(&sid)
                        .fetch_all(&mut *c)
                        .await
                        .map_err(map)?;
                        for client in clients {
                            let Some(uri) = targets.get(&client) else { continue };
                            queued += sqlx::query(
                                "INSERT INTO logout_deliveries (id, client_id, uri, sub, sid, created_at, next_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
                            )
                            .bind(logout_delivery_id(&sid, &client))
                            .bind(&client)
                            .bind(uri)
                            .bind(&user_id)
                            .bind(&sid)
                            .bind(now)
                            .execute(&mut *c)
                            .await
                            .map_err(map)?
                            .rows_affected();
                        }
                    }
                    sqlx::query("UPDATE sessions SET logout_pending = 0 WHERE id = $1")
                        .bind(&sid)
                        .execute(&mut *c)
                        .await
                        .map_err(map)?;
                }
                queued
            })
        })
        .await
    }

    async fn claim_logouts(&self, now: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<LogoutDelivery>> {
        self.write(move |pool| async move {
            let rows: Vec<(String, String, String, Option<String>, Option<String>, i64, i64)> = sqlx::query_as(
                "UPDATE logout_deliveries SET lease_until = $3 WHERE id IN (SELECT id FROM logout_deliveries \
                 WHERE next_at <= $1 AND lease_until <= $1 ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, client_id, uri, sub, sid, created_at, attempts",
            )
            .bind(now)
            .bind(i64::from(limit))
            .bind(lease_until)
            .fetch_all(&pool)
            .await
            .map_err(map)?;
            Ok(rows
                .into_iter()
                .map(|(id, client_id, uri, sub, sid, created_at, attempts)| LogoutDelivery {
                    id,
                    client_id,
                    uri,
                    sub,
                    sid,
                    created_at,
                    attempts,
                })
                .collect())
        })
        .await
    }

    async fn finish_logout(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |pool| async move {
            sqlx::query("DELETE FROM logout_deliveries WHERE id = $1").bind(&id).execute(&pool).await.map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn retry_logout(&self, id: &str, next_at: i64, error: &str) -> StoreResult<()> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write(move |pool| async move {
            sqlx::query(
                "UPDATE logout_deliveries SET attempts = attempts + 1, next_at = $2, lease_until = 0, last_error = $3 \
                 WHERE id = $1",
            )
            .bind(&id)
            .bind(next_at)
            .bind(&error)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn set_registration_token(&self, client_id: &str, token_hash: &str) -> StoreResult<()> {
        let (id, h) = (client_id.to_string(), token_hash.to_string());
        self.write(move |pool| async move {
            sqlx::query(
                "INSERT INTO client_registrations (client_id, token_hash) VALUES ($1, $2) \
                 ON CONFLICT (client_id) DO UPDATE SET token_hash = excluded.token_hash",
            )
            .bind(&id)
            .bind(&h)
            .execute(&pool)
            .await
            .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn registration_token(&self, client_id: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT token_hash FROM client_registrations WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map)
    }

    async fn insert_par(&self, r: &ParRecord) -> StoreResult<()> {
        let r = r.clone();
        let params = par_params_json(&r.params)?;
        self.write(move |pool| async move {
            sqlx::query("INSERT INTO par_requests (uri_hash, client_id, params, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(&r.uri_hash)
                .bind(&r.client_id)
                .bind(&params)
                .bind(r.expires_at)
                .execute(&pool)
                .await
                .map_err(map)?;
            Ok(())
        })
        .await
    }

    async fn use_par(&self, uri_hash: &str, client_id: &str, now: i64, window: i64) -> StoreResult<Option<ParRecord>> {
        let (h, client) = (uri_hash.to_string(), client_id.to_string());
        self.write(move |pool| async move {
            let row: Option<(String, String, String, i64)> = sqlx::query_as(
                "UPDATE par_requests SET used_until = COALESCE(used_until, $2 + $3) WHERE uri_hash = $1 \
                 AND client_id = $4 AND consumed_at IS NULL AND ((used_until IS NULL AND expires_at > $2) OR used_until > $2) \
                 RETURNING uri_hash, client_id, params, expires_at",
            )
            .bind(&h)
            .bind(now)
            .bind(window)
            .bind(&client)
            .fetch_optional(&pool)
            .await
            .map_err(map)?;
            match row {
                None => Ok(None),
                Some((uri_hash, client_id, params, expires_at)) => {
                    Ok(Some(ParRecord { uri_hash, client_id, params: par_params_from(&params)?, expires_at }))
                }
            }
        })
        .await
    }

    async fn consume_par(&self, uri_hash: &str, now: i64) -> StoreResult<bool> {
        let h = uri_hash.to_string();
        self.write(move |pool| async move {
            let r = sqlx::query("UPDATE par_requests SET consumed_at = $2 WHERE uri_hash = $1 AND consumed_at IS NULL")
                .bind(&h)
                .bind(now)
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
            .bind(audience_to_json(&d.audience)?)
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
        one(&self.pool, select!(device_codes, "WHERE device_hash = $1"), device_hash, device_from).await
    }

    async fn find_device_by_user_code(&self, user_code_hash: &str, now: i64) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(select!(
            device_codes,
            "WHERE user_code_hash = $1 AND expires_at > $2 ORDER BY expires_at DESC LIMIT 1"
        ))
        .bind(user_code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.as_ref().map(|r| device_from(r)).transpose()
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
                ("unlocks", "expires_at < $1"),
                ("par_requests", "expires_at < $1 AND (used_until IS NULL OR used_until < $1)"),
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

/// Is there a Tether schema at `url`, and does it hold sealed secrets? One plain connection, so a
/// refused connection or a failed login is reported as such (a pool would only say it timed out).
pub(crate) async fn probe(url: &str) -> Result<crate::backend::Probe, String> {
    use sqlx::Connection;
    let opts = PgConnectOptions::from_str(url).map_err(|e| format!("bad PostgreSQL URL: {e}"))?;
    let shown = crate::backend::Backend::Postgres(url.to_string()).display();
    let mut c = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect_with(&opts))
        .await
        .map_err(|_| format!("cannot connect to PostgreSQL at {shown}: no answer within 10 s"))?
        .map_err(|e| format!("cannot connect to PostgreSQL at {shown}: {e}"))?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('server_secrets') IS NOT NULL")
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let sealed_keys = exists
        && sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM server_secrets) OR EXISTS (SELECT 1 FROM signing_keys)",
        )
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(crate::backend::Probe { exists, sealed_keys })
}
