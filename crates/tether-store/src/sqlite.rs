//! SQLite backend: one file in WAL mode; one writer thread with group commit; point reads inline.
//!
//! Why rusqlite and a thread of our own rather than sqlx: measured on the 2-core bench machine,
//! sqlx's SQLite driver costs a thread hop per statement (~40 µs); issuance (BEGIN, INSERT,
//! COMMIT) topped out at ~1,700 tokens/s and introspection at ~9,000/s. Here:
//!
//! - **Writes** go to a dedicated thread that owns the only writable connection. It takes every job
//!   queued at that moment, runs them in one `BEGIN IMMEDIATE` transaction, each inside its own
//!   SAVEPOINT (a failing job rolls back alone), commits once, and only then answers each job.
//!   Nothing is acknowledged before it is committed; one commit is shared by a whole batch (group
//!   commit). A job once queued runs to completion even if the request that queued it is gone, so
//!   a disconnecting client can never strand a transaction. One writer also serialises every
//!   decision taken inside a job (a code redeemed, a refresh token rotated, the one active token of
//!   a reuse key), and `BEGIN IMMEDIATE` serialises it against other processes (the admin CLI).
//! - **Reads** are point lookups by primary or unique key on read-only connections. In WAL mode
//!   they never wait for the writer and take microseconds from the page cache, so they run inline
//!   on the calling task: a hop to a blocking thread would cost more than the query. The admin
//!   listings (sessions, token metadata, events) are index range scans bounded by their `limit`.
//!
//! Durability: `synchronous = NORMAL` in WAL mode. A process crash loses nothing committed; a
//! power cut can forget the last transactions before the cut. Forgotten tokens then introspect as
//! inactive (fail closed): nothing is ever valid that the database does not hold.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};
use tether_core::error::StoreError;
use tether_core::keys::KeyRecord;
use tether_core::model::{AppRecord, BindingType, UserRecord};
use tether_core::store::flow::{Answer, Cascade, Op, run_sync};
use tether_core::store::issue_flow::IssueFlow;
use tether_core::store::rows::audience_to_json;
use tether_core::store::*;
use tokio::sync::oneshot;

use crate::errors::map;
use crate::filter::{Dialect, Param, TokenTable, event_listing, merge_tokens, revoke_where, token_listing};
use crate::rows::*;

/// Embedded migrations, applied in order; additive only (rolling upgrades run N and N+1 side by side).
const MIGRATIONS: &[(i64, &str)] = migrations!("sqlite");
/// Most jobs one transaction takes.
const MAX_BATCH: usize = 512;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(250);
const READERS_KEPT: usize = 8;

type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> Completion + Send>;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Mutex<Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000;")
}

/// One failure (of BEGIN or COMMIT) is reported to every job of its batch.
fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Conflict(s) => StoreError::Conflict(s.clone()),
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Other(s) => StoreError::Other(s.clone()),
        StoreError::Corrupt { table, column, detail } => StoreError::Corrupt { table, column, detail: detail.clone() },
    }
}

fn migrate(conn: &Connection) -> Result<(), String> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS tether_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(|e| e.to_string())?;
    for (version, sql) in MIGRATIONS {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| format!("migration: {e}"))?;
        let done: Option<i64> = conn
            .query_row("SELECT version FROM tether_migrations WHERE version = ?1", [version], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?;
        if done.is_some() {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
            continue;
        }
        let applied = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO tether_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))",
                [version],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT").map_err(|e| e.to_string())?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(format!("database migration {version} failed: {e}"));
            }
        }
    }
    Ok(())
}

fn writer_loop(conn: Connection, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        match conn.execute_batch("BEGIN IMMEDIATE").map_err(map) {
            Err(e) => {
                for job in batch {
                    job(Err(&e))(Some(&e));
                }
            }
            Ok(()) => {
                let completions: Vec<Completion> = batch.into_iter().map(|job| job(Ok(&conn))).collect();
                match conn.execute_batch("COMMIT").map_err(map) {
                    Ok(()) => completions.into_iter().for_each(|c| c(None)),
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        completions.into_iter().for_each(|c| c(Some(&e)));
                    }
                }
            }
        }
    }
}

/// Run one job inside its own savepoint; a failure (or a panic) rolls back that job alone.
fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
    conn.execute_batch("SAVEPOINT job").map_err(map)?;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::Other("a storage job panicked".into())));
    match res {
        Ok(r) => {
            conn.execute_batch("RELEASE job").map_err(map)?;
            Ok(r)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

/// Create a missing database file empty with mode 0600 (whatever the umask) before SQLite opens
/// it: it holds password and token hashes. SQLite gives its `-wal` and `-shm` files the mode of
/// the database file.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(f) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            drop(f);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<Self, String> {
        let path = PathBuf::from(path);
        tokio::task::spawn_blocking(move || Self::open_blocking(&path)).await.map_err(|e| e.to_string())?
    }

    fn open_blocking(path: &Path) -> Result<Self, String> {
        create_private(path).map_err(|e| format!("cannot create SQLite database {}: {e}", path.display()))?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open SQLite database {}: {e}", path.display()))?;
        configure(&conn).map_err(|e| e.to_string())?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("{} cannot use WAL mode (got {mode})", path.display()));
        }
        // Checkpoints run on their own thread (below); the writer's automatic checkpoint is only a
        // backstop for when that thread falls behind, so commits rarely pay for one.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 16000;")
            .map_err(|e| e.to_string())?;
        migrate(&conn)?;
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("tether-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| format!("cannot start the database writer: {e}"))?;
        let inner = Arc::new(Inner { path: path.to_path_buf(), jobs: Mutex::new(tx), readers: Mutex::new(Vec::new()) });
        let weak = Arc::downgrade(&inner);
        let ckpt =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| e.to_string())?;
        configure(&ckpt).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("tether-sqlite-checkpoint".into())
            .spawn(move || {
                // PASSIVE never blocks the writer or readers; it copies what it can.
                while weak.upgrade().is_some() {
                    let _ = ckpt.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Self { inner })
    }

    /// Queue a write job and wait until its transaction committed (or failed).
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn| {
            let res = match conn {
                Err(e) => Err(clone_err(e)),
                Ok(conn) => in_savepoint(conn, f),
            };
            Box::new(move |commit_err: Option<&StoreError>| {
                let _ = tx.send(match commit_err {
                    Some(e) => Err(clone_err(e)),
                    None => res,
                });
            })
        });
        let stopped = || StoreError::Unavailable("the database writer has stopped".into());
        self.inner.jobs.lock().map_err(|_| stopped())?.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Run a point read on a pooled read-only connection, inline (see the module docs).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        let pooled = self.inner.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(map)?;
                configure(&c).map_err(map)?;
                // Reads run inline on an async worker: never wait long for a lock (WAL readers
                // normally never wait at all); fail fast with 503 instead.
                c.busy_timeout(READER_BUSY_TIMEOUT).map_err(map)?;
                c
            }
        };
        let res = f(&conn);
        if let Ok(mut v) = self.inner.readers.lock()
            && v.len() < READERS_KEPT
        {
            v.push(conn);
        }
        res
    }
}

fn bump(c: &Connection) -> StoreResult<()> {
    c.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        .and_then(|mut s| s.execute([]))
        .map_err(map)?;
    Ok(())
}

fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<usize> {
    c.prepare_cached(sql).and_then(|mut s| s.execute(p)).map_err(map)
}

impl_columns!(Row<'_>, get, map);

/// A row mapper of [`crate::rows`].
type Mapper<T> = fn(&dyn Columns) -> StoreResult<T>;

/// The row `params` select, if any, read by `f`.
fn one<T>(c: &Connection, sql: &str, params: impl rusqlite::Params, f: Mapper<T>) -> StoreResult<Option<T>> {
    c.prepare_cached(sql).and_then(|mut s| s.query_row(params, |r| Ok(f(r))).optional()).map_err(map)?.transpose()
}

fn all<T>(c: &Connection, sql: &str, f: Mapper<T>) -> StoreResult<Vec<T>> {
    many(c, sql, [], f)
}

/// Every row `params` select, read by `f`.
fn many<T>(c: &Connection, sql: &str, params: impl rusqlite::Params, f: Mapper<T>) -> StoreResult<Vec<T>> {
    let mut s = c.prepare_cached(sql).map_err(map)?;
    let rows = s.query_map(params, |r| Ok(f(r))).map_err(map)?;
    rows.map(|r| r.map_err(map)?).collect()
}

/// Every row a statement built from a [`crate::filter::Clause`] selects. Not `prepare_cached`: its shape varies
/// with the query; the cache is kept for the hot statements.
fn listed<T>(c: &Connection, sql: &str, vals: &[Param], f: Mapper<T>) -> StoreResult<Vec<T>> {
    let mut s = c.prepare(sql).map_err(map)?;
    let rows = s.query_map(params_from_iter(values(vals)?), |r| Ok(f(r))).map_err(map)?;
    rows.map(|r| r.map_err(map)?).collect()
}

/// Bound values of a clause of [`crate::filter`], one per placeholder.
fn values(vals: &[Param]) -> StoreResult<Vec<Value>> {
    vals.iter()
        .map(|v| match v {
            Param::Text(t) => Ok(Value::Text(t.clone())),
            Param::Int(i) => Ok(Value::Integer(*i)),
            // The SQLite dialect binds one value per placeholder.
            Param::List(_) => Err(StoreError::Other("a list parameter in a SQLite statement".into())),
        })
        .collect()
}

fn insert_access(c: &Connection, a: &AccessTokenRecord) -> StoreResult<()> {
    let b = binding_cols(&a.binding);
    exec(
        c,
        "INSERT INTO access_tokens (id, token_hash, jti, client_id, user_id, username, scope, audience, token_type, \
         binding_type, binding_ref, binding_hash, reuse_key, grant_id, session_id, auth_time, issued_at, expires_at, revoked_at, \
         binding_cnf, act) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,NULL,?19,?20)",
        params![
            a.id,
            a.token_hash,
            a.jti,
            a.client_id,
            a.user_id,
            a.username,
            a.scope,
            audience_to_json(&a.audience)?,
            a.token_type.as_str(),
            b.kind,
            b.reference,
            b.hash,
            a.reuse_key,
            a.grant_id,
            a.session_id,
            a.auth_time,
            a.issued_at,
            a.expires_at,
            b.cnf,
            a.act
        ],
    )?;
    Ok(())
}

fn insert_refresh(c: &Connection, r: &RefreshTokenRecord, access_id: &str) -> StoreResult<()> {
    let b = binding_cols(&r.binding);
    exec(
        c,
        "INSERT INTO refresh_tokens (id, token_hash, family_id, access_id, client_id, user_id, username, scope, audience, \
         binding_type, binding_ref, binding_hash, grant_id, session_id, auth_time, issued_at, expires_at, used_at, revoked_at, \
         binding_cnf) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,NULL,NULL,?18)",
        params![
            r.id,
            r.token_hash,
            r.family_id,
            access_id,
            r.client_id,
            r.user_id,
            r.username,
            r.scope,
            audience_to_json(&r.audience)?,
            b.kind,
            b.reference,
            b.hash,
            r.grant_id,
            r.session_id,
            r.auth_time,
            r.issued_at,
            r.expires_at,
            b.cnf
        ],
    )?;
    Ok(())
}

/// `UPDATE … SET … = ?1 (now) WHERE … = ?2 (key)`: true when it changed a row.
fn update(c: &Connection, sql: &str, now: i64, key: &str) -> StoreResult<bool> {
    Ok(exec(c, sql, params![now, key])? > 0)
}

fn lookup(c: &Connection, sql: &str, key: &str) -> StoreResult<Option<String>> {
    c.prepare_cached(sql).and_then(|mut s| s.query_row([key], |r| r.get(0)).optional()).map_err(map)
}

/// Run one op of a decision flow of `tether_core::store::flow` (the decisions are there; only
/// the SQL is here). Runs inside the writer's transaction, so ops of one flow are atomic and no
/// other write interleaves with them ([`Op::LockReuseKey`] has nothing to do).
fn run_op(c: &Connection, op: Op<'_>, now: i64) -> StoreResult<Answer> {
    Ok(match op {
        Op::ConsumeCode(hash) => Answer::Changed(update(
            c,
            "UPDATE codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL",
            now,
            hash,
        )?),
        Op::GrantOfCode(hash) => Answer::Id(lookup(c, "SELECT grant_id FROM codes WHERE code_hash = ?1", hash)?),
        Op::RotateRefresh(hash) => Answer::Changed(update(
            c,
            "UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND revoked_at IS NULL",
            now,
            hash,
        )?),
        Op::KeepRefresh { hash, access_id } => Answer::Changed(
            exec(
                c,
                "UPDATE refresh_tokens SET access_id = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND revoked_at IS NULL",
                params![access_id, hash],
            )? > 0,
        ),
        Op::FamilyOfRefresh(hash) => {
            Answer::Id(lookup(c, "SELECT family_id FROM refresh_tokens WHERE token_hash = ?1", hash)?)
        }
        Op::ConsumeDevice(hash) => Answer::Changed(
            exec(c, "UPDATE device_codes SET status = 'used' WHERE device_hash = ?1 AND status = 'approved'", [hash])?
                > 0,
        ),
        Op::LockReuseKey(_) => Answer::Ran,
        Op::ExpireStale(key) => {
            exec(
                c,
                "UPDATE access_tokens SET revoked_at = expires_at WHERE reuse_key = ?1 AND revoked_at IS NULL AND expires_at <= ?2",
                params![key, now],
            )?;
            Answer::Ran
        }
        Op::FindActive(key) => Answer::Token(
            one(c, select!(access_tokens, "WHERE reuse_key = ?1 AND revoked_at IS NULL"), [key], access_from)?
                .map(Box::new),
        ),
        Op::RevokeAccess(hash) => {
            update(
                c,
                "UPDATE access_tokens SET revoked_at = ?1 WHERE token_hash = ?2 AND revoked_at IS NULL",
                now,
                &hash,
            )?;
            Answer::Ran
        }
        Op::FamiliesOfAccess(hash) => Answer::Ids(
            c.prepare_cached("SELECT DISTINCT family_id FROM refresh_tokens WHERE access_id = ?1")
                .and_then(|mut s| s.query_map([&hash], |r| r.get(0))?.collect())
                .map_err(map)?,
        ),
        Op::RevokeFamilyAccess(family) => {
            update(
                c,
                "UPDATE access_tokens SET revoked_at = ?1 WHERE revoked_at IS NULL AND token_hash IN \
                 (SELECT access_id FROM refresh_tokens WHERE family_id = ?2)",
                now,
                &family,
            )?;
            Answer::Ran
        }
        Op::RevokeFamilyRefresh(family) => {
            update(
                c,
                "UPDATE refresh_tokens SET revoked_at = ?1 WHERE revoked_at IS NULL AND family_id = ?2",
                now,
                &family,
            )?;
            Answer::Ran
        }
        Op::RevokeGrantAccess(grant) => {
            update(
                c,
                "UPDATE access_tokens SET revoked_at = ?1 WHERE grant_id = ?2 AND revoked_at IS NULL",
                now,
                &grant,
            )?;
            Answer::Ran
        }
        Op::RevokeGrantRefresh(grant) => {
            update(
                c,
                "UPDATE refresh_tokens SET revoked_at = ?1 WHERE grant_id = ?2 AND revoked_at IS NULL",
                now,
                &grant,
            )?;
            Answer::Ran
        }
        Op::InsertAccess(a) => {
            insert_access(c, a)?;
            Answer::Ran
        }
        Op::InsertRefresh { refresh, access_id } => {
            insert_refresh(c, refresh, &access_id)?;
            Answer::Ran
        }
    })
}

/// Revoke the active access and refresh tokens matching `cond` (from [`revoke_where`], numbered
/// from `?2`). Revoked access tokens leave the "one active token per reuse key" index.
fn revoke_matching_tx(c: &Connection, cond: &str, vals: &[Param], now: i64) -> StoreResult<u64> {
    let mut n = 0u64;
    for table in ["access_tokens", "refresh_tokens"] {
        // Not prepare_cached: the statement's shape varies with the filter; keep the cache for
        // the hot statements.
        let sql = format!("UPDATE {table} SET revoked_at = ?1 WHERE revoked_at IS NULL AND {cond}");
        let mut p = vec![Value::Integer(now)];
        p.extend(values(vals)?);
        n += c.execute(&sql, params_from_iter(p)).map_err(map)? as u64;
    }
    Ok(n)
}

/// End what `what` names of the user, inside the caller's transaction.
fn end_user_tx(c: &Connection, user_id: &str, what: UserCascade, now: i64) -> StoreResult<Ended> {
    let mut ended = Ended::default();
    if what.sessions() {
        ended.sessions = exec(
            c,
            "UPDATE sessions SET ended_at = ?1 WHERE user_id = ?2 AND ended_at IS NULL",
            params![now, user_id],
        )? as u64;
    }
    if what.tokens() {
        let filter = UserCascade::token_filter(user_id);
        if let Some(conds) = filter.conditions()? {
            let (cond, vals) = revoke_where(&conds, Dialect::Sqlite);
            ended.tokens = revoke_matching_tx(c, &cond, &vals, now)?;
        }
    }
    Ok(ended)
}

/// Events inserted by one statement (8 parameters each, far below SQLite's limit).
const EVENT_ROWS: usize = 32;

/// `INSERT INTO events … VALUES (…), (…)` for `n` rows.
fn events_insert(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|r| format!("({})", (1..=8).map(|i| format!("?{}", r * 8 + i)).collect::<Vec<_>>().join(",")))
        .collect();
    format!(
        "INSERT INTO events (id, time, type, client_id, username, ip, user_agent, detail) VALUES {}",
        rows.join(",")
    )
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map))
    }

    async fn generation(&self) -> StoreResult<i64> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = 'generation'")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(map)
        })
    }

    async fn create_app(&self, a: &AppRecord) -> StoreResult<()> {
        let settings = serde_json::to_string(&a.app).map_err(|e| StoreError::Other(e.to_string()))?;
        let (id, hash) = (a.app.client_id.clone(), a.secret_hash.clone());
        let (prev_hash, prev_until) = previous_secret_cols(a);
        let sealed = a.sealed_secret.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO apps (client_id, secret_hash, settings, created_at, previous_secret_hash, previous_secret_until, \
                 sealed_secret) VALUES (?1, ?2, ?3, strftime('%s','now'), ?4, ?5, ?6)",
                params![id, hash, settings, prev_hash, prev_until, sealed],
            )?;
            bump(c)
        })
        .await
    }

    async fn update_app(&self, a: &AppRecord) -> StoreResult<()> {
        let settings = serde_json::to_string(&a.app).map_err(|e| StoreError::Other(e.to_string()))?;
        let (id, hash) = (a.app.client_id.clone(), a.secret_hash.clone());
        let (prev_hash, prev_until) = previous_secret_cols(a);
        let sealed = a.sealed_secret.clone();
        self.write(move |c| {
            if exec(
                c,
                "UPDATE apps SET secret_hash = ?1, settings = ?2, previous_secret_hash = ?4, previous_secret_until = ?5, \
                 sealed_secret = ?6 WHERE client_id = ?3",
                params![hash, settings, id, prev_hash, prev_until, sealed],
            )? == 0
            {
                return Err(StoreError::NotFound);
            }
            bump(c)
        })
        .await
    }

    async fn get_app(&self, client_id: &str) -> StoreResult<Option<AppRecord>> {
        self.read(|c| one(c, select!(apps, "WHERE client_id = ?1"), [client_id], app_from))
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(|c| all(c, select!(apps, "ORDER BY created_at, client_id"), app_from))
    }

    async fn delete_app(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        let id = client_id.to_string();
        self.write(move |c| {
            if exec(c, "DELETE FROM apps WHERE client_id = ?1", [&id])? == 0 {
                return Ok(false);
            }
            exec(c, "DELETE FROM client_registrations WHERE client_id = ?1", [&id])?;
            exec(
                c,
                "UPDATE access_tokens SET revoked_at = ?1 WHERE client_id = ?2 AND revoked_at IS NULL",
                params![now, id],
            )?;
            exec(
                c,
                "UPDATE refresh_tokens SET revoked_at = ?1 WHERE client_id = ?2 AND revoked_at IS NULL",
                params![now, id],
            )?;
            exec(c, "UPDATE codes SET used_at = ?1 WHERE client_id = ?2 AND used_at IS NULL", params![now, id])?;
            bump(c)?;
            Ok(true)
        })
        .await
    }

    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO users (id, username, password_hash, email, name, created_at, roles, disabled) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                params![
                    u.user.id,
                    u.user.username,
                    u.password_hash,
                    u.user.email,
                    u.user.name,
                    u.user.created_at,
                    roles_col(&u.user),
                    i64::from(u.user.disabled)
                ],
            )?;
            bump(c)
        })
        .await
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<bool> {
        let (name, hash) = (username.to_string(), password_hash.to_string());
        self.write(move |c| {
            let n = exec(c, "UPDATE users SET password_hash = ?1 WHERE username = ?2", params![hash, name])?;
            bump(c)?;
            Ok(n > 0)
        })
        .await
    }

    async fn get_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|c| one(c, select!(users, "WHERE username = ?1"), [username], user_from))
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|c| one(c, select!(users, "WHERE id = ?1"), [id], user_from))
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|c| all(c, select!(users, "ORDER BY username"), user_from))
    }

    async fn delete_user(&self, username: &str, now: i64) -> StoreResult<bool> {
        let name = username.to_string();
        self.write(move |c| {
            let id: Option<String> = c
                .query_row("SELECT id FROM users WHERE username = ?1", [&name], |r| r.get(0))
                .optional()
                .map_err(map)?;
            let Some(id) = id else { return Ok(false) };
            exec(c, "DELETE FROM users WHERE id = ?1", [&id])?;
            for sql in [
                "UPDATE access_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
                "UPDATE refresh_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
                "UPDATE sessions SET ended_at = ?1 WHERE user_id = ?2 AND ended_at IS NULL",
                "UPDATE codes SET used_at = ?1 WHERE user_id = ?2 AND used_at IS NULL",
            ] {
                exec(c, sql, params![now, id])?;
            }
            bump(c)?;
            Ok(true)
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.read(|c| all(c, select!(signing_keys, "ORDER BY created_at, kid"), key_from))
    }

    async fn add_keys(&self, keys: &[KeyRecord], now: i64, publish_until: i64) -> StoreResult<()> {
        let keys = keys.to_vec();
        self.write(move |c| {
            for k in &keys {
                exec(
                    c,
                    "UPDATE signing_keys SET rotated_at = ?1, publish_until = ?2 WHERE alg = ?3 AND rotated_at IS NULL",
                    params![now, publish_until, k.alg.as_str()],
                )?;
                exec(
                    c,
                    "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, rotated_at, publish_until) \
                     VALUES (?1,?2,?3,?4,?5,NULL,NULL)",
                    params![k.kid, k.alg.as_str(), k.private_sealed, k.public_jwk, k.created_at],
                )?;
            }
            bump(c)
        })
        .await
    }

    async fn get_or_init_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, sealed) = (name.to_string(), sealed.to_vec());
        self.write(move |c| {
            exec(c, "INSERT OR IGNORE INTO server_secrets (name, sealed) VALUES (?1, ?2)", params![name, sealed])?;
            c.query_row("SELECT sealed FROM server_secrets WHERE name = ?1", [&name], |r| r.get(0)).map_err(map)
        })
        .await
    }

    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO sessions (id, cookie_hash, user_id, auth_time, expires_at, last_seen, ended_at, ip, user_agent, \
                 logout_pending) VALUES (?1,?2,?3,?4,?5,?6,NULL,?7,?8,1)",
                params![s.id, s.cookie_hash, s.user_id, s.auth_time, s.expires_at, s.last_seen, s.ip, s.user_agent],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, cookie_hash: &str) -> StoreResult<Option<SessionRecord>> {
        self.read(|c| one(c, select!(sessions, "WHERE cookie_hash = ?1"), [cookie_hash], session_from))
    }

    async fn touch_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| {
            exec(c, "UPDATE sessions SET last_seen = ?1 WHERE id = ?2 AND last_seen < ?1", params![now, id])?;
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
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE sessions SET cookie_hash = ?1, auth_time = ?2, last_seen = ?2, expires_at = ?3 \
                 WHERE id = ?4 AND ended_at IS NULL",
                params![hash, now, expires_at, id],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn end_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| {
            exec(c, "UPDATE sessions SET ended_at = ?1 WHERE id = ?2 AND ended_at IS NULL", params![now, id])?;
            Ok(())
        })
        .await
    }

    async fn find_session_by_id(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        self.read(|c| one(c, select!(sessions, "WHERE id = ?1"), [id], session_from))
    }

    async fn list_sessions(&self, user_id: &str) -> StoreResult<Vec<SessionRecord>> {
        self.read(|c| {
            many(
                c,
                select!(sessions, "WHERE user_id = ?1 AND ended_at IS NULL ORDER BY auth_time DESC, id"),
                [user_id],
                session_from,
            )
        })
    }

    async fn end_user(&self, user_id: &str, what: UserCascade, now: i64) -> StoreResult<Ended> {
        let id = user_id.to_string();
        self.write(move |c| end_user_tx(c, &id, what, now)).await
    }

    async fn update_user(&self, u: &UserRecord, then: UserCascade, now: i64) -> StoreResult<Option<Ended>> {
        let u = u.clone();
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE users SET email = ?1, name = ?2, roles = ?3, disabled = ?4, password_hash = ?5 WHERE id = ?6",
                params![
                    u.user.email,
                    u.user.name,
                    roles_col(&u.user),
                    i64::from(u.user.disabled),
                    u.password_hash,
                    u.user.id
                ],
            )?;
            if n == 0 {
                return Ok(None);
            }
            bump(c)?;
            end_user_tx(c, &u.user.id, then, now).map(Some)
        })
        .await
    }

    async fn record_unlock(&self, id: &str, username: &str, expires_at: i64) -> StoreResult<()> {
        let (id, username) = (id.to_string(), username.to_string());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO unlocks (id, username, expires_at) VALUES (?1, ?2, ?3)",
                params![id, username, expires_at],
            )?;
            bump(c)
        })
        .await
    }

    async fn live_unlocks(&self, now: i64) -> StoreResult<Vec<(String, String)>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT id, username FROM unlocks WHERE expires_at > ?1 ORDER BY id").map_err(map)?;
            let rows = st.query_map([now], |r| Ok((r.get(0)?, r.get(1)?))).map_err(map)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map)
        })
    }

    async fn retire_key(&self, kid: &str, now: i64) -> StoreResult<bool> {
        let kid = kid.to_string();
        self.write(move |c| {
            if !update(
                c,
                "UPDATE signing_keys SET rotated_at = COALESCE(rotated_at, ?1), publish_until = ?1 WHERE kid = ?2",
                now,
                &kid,
            )? {
                return Ok(false);
            }
            bump(c)?;
            Ok(true)
        })
        .await
    }

    async fn list_tokens(&self, q: &TokenQuery) -> StoreResult<Vec<TokenMeta>> {
        let access = token_listing(q, Dialect::Sqlite, TokenTable::Access);
        let refresh = token_listing(q, Dialect::Sqlite, TokenTable::Refresh);
        self.read(|c| {
            // One read transaction: both tables as of one moment.
            let tx = c.unchecked_transaction().map_err(map)?;
            let mut out = listed(&tx, &access.0, &access.1, access_meta_from)?;
            out.extend(listed(&tx, &refresh.0, &refresh.1, refresh_meta_from)?);
            drop(tx);
            Ok(merge_tokens(out, q.limit))
        })
    }

    async fn revoke_by_public_id(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |c| {
            if let Some(hash) =
                lookup(c, "SELECT token_hash FROM access_tokens WHERE jti = ?1 AND revoked_at IS NULL LIMIT 1", &id)?
            {
                run_sync(Cascade::access(hash, true), |op| run_op(c, op, now))?;
                return Ok(true);
            }
            if let Some(family) =
                lookup(c, "SELECT family_id FROM refresh_tokens WHERE id = ?1 AND revoked_at IS NULL LIMIT 1", &id)?
            {
                run_sync(Cascade::family(family), |op| run_op(c, op, now))?;
                return Ok(true);
            }
            Ok(false)
        })
        .await
    }

    async fn insert_events(&self, events: &[EventRecord]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events.iter().map(|e| Ok((e.clone(), detail_json(e)?))).collect::<StoreResult<Vec<_>>>()?;
        // Multi-row inserts (EVENT_ROWS rows a statement): a busy server records an event per
        // token, and one statement per row cost the writer a measurable share of its time.
        self.write(move |c| {
            for chunk in rows.chunks(EVENT_ROWS) {
                let mut s = if chunk.len() == EVENT_ROWS {
                    c.prepare_cached(&events_insert(EVENT_ROWS))
                } else {
                    c.prepare_cached(&events_insert(chunk.len()))
                }
                .map_err(map)?;
                let mut p: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 8);
                for (e, detail) in chunk {
                    p.extend([
                        &e.id as &dyn rusqlite::ToSql,
                        &e.time,
                        &e.kind,
                        &e.client_id,
                        &e.username,
                        &e.ip,
                        &e.user_agent,
                        detail,
                    ]);
                }
                s.execute(p.as_slice()).map_err(map)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_events(&self, q: &EventQuery) -> StoreResult<Vec<EventRecord>> {
        let (sql, vals) = event_listing(q, Dialect::Sqlite);
        self.read(|c| listed(c, &sql, &vals, event_from))
    }

    async fn purge_events(&self, before: i64, limit: u32) -> StoreResult<u64> {
        self.write(move |c| {
            let n = exec(
                c,
                "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE id < ?1 LIMIT ?2)",
                params![tether_core::audit::id_floor(before), limit],
            )?;
            Ok(n as u64)
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
        const ENDED: &str = "SELECT id, user_id FROM sessions WHERE logout_pending = 1 \
             AND (ended_at IS NOT NULL OR expires_at <= ?1 OR last_seen <= ?2) LIMIT ?3";
        // A read first: most seconds nothing ended, and the writer is not bothered.
        let any = self.read(|c| {
            c.prepare_cached(ENDED).and_then(|mut s| s.exists(params![now, idle_before, limit])).map_err(map)
        })?;
        if !any {
            return Ok(0);
        }
        let targets: std::collections::HashMap<String, String> = targets.iter().cloned().collect();
        self.write(move |c| {
            let ended: Vec<(String, String)> = c
                .prepare_cached(ENDED)
                .and_then(|mut s| {
                    s.query_map(params![now, idle_before, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
                })
                .map_err(map)?;
            let mut queued = 0;
            for (sid, user_id) in ended {
                if !targets.is_empty() {
                    let clients: Vec<String> = c
                        .prepare_cached(
                            "SELECT client_id FROM access_tokens WHERE session_id = ?1 \
                             UNION SELECT client_id FROM refresh_tokens WHERE session_id = ?1",
                        )
                        .and_then(|mut s| s.query_map([&sid], |r| r.get(0))?.collect())
                        .map_err(map)?;
                    for client in clients {
                        let Some(uri) = targets.get(&client) else { continue };
                        queued += exec(
                            c,
                            "INSERT OR IGNORE INTO logout_deliveries (id, client_id, uri, sub, sid, created_at, next_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                            params![logout_delivery_id(&sid, &client), client, uri, user_id, sid, now],
                        )? as u64;
                    }
                }
                exec(c, "UPDATE sessions SET logout_pending = 0 WHERE id = ?1", [&sid])?;
            }
            Ok(queued)
        })
        .await
    }

    async fn claim_logouts(&self, now: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<LogoutDelivery>> {
        const DUE: &str = "SELECT id FROM logout_deliveries WHERE next_at <= ?1 AND lease_until <= ?1 \
             ORDER BY next_at LIMIT ?2";
        let any = self.read(|c| c.prepare_cached(DUE).and_then(|mut s| s.exists(params![now, limit])).map_err(map))?;
        if !any {
            return Ok(vec![]);
        }
        self.write(move |c| {
            c.prepare_cached(&format!(
                "UPDATE logout_deliveries SET lease_until = ?3 WHERE id IN ({DUE}) \
                 RETURNING id, client_id, uri, sub, sid, created_at, attempts"
            ))
            .and_then(|mut s| {
                s.query_map(params![now, limit, lease_until], |r| {
                    Ok(LogoutDelivery {
                        id: r.get(0)?,
                        client_id: r.get(1)?,
                        uri: r.get(2)?,
                        sub: r.get(3)?,
                        sid: r.get(4)?,
                        created_at: r.get(5)?,
                        attempts: r.get(6)?,
                    })
                })?
                .collect()
            })
            .map_err(map)
        })
        .await
    }

    async fn finish_logout(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| {
            exec(c, "DELETE FROM logout_deliveries WHERE id = ?1", [&id])?;
            Ok(())
        })
        .await
    }

    async fn retry_logout(&self, id: &str, next_at: i64, error: &str) -> StoreResult<()> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write(move |c| {
            exec(
                c,
                "UPDATE logout_deliveries SET attempts = attempts + 1, next_at = ?2, lease_until = 0, last_error = ?3 \
                 WHERE id = ?1",
                params![id, next_at, error],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_registration_token(&self, client_id: &str, token_hash: &str) -> StoreResult<()> {
        let (id, h) = (client_id.to_string(), token_hash.to_string());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO client_registrations (client_id, token_hash) VALUES (?1, ?2) \
                 ON CONFLICT (client_id) DO UPDATE SET token_hash = excluded.token_hash",
                params![id, h],
            )?;
            Ok(())
        })
        .await
    }

    async fn registration_token(&self, client_id: &str) -> StoreResult<Option<String>> {
        self.read(|c| lookup(c, "SELECT token_hash FROM client_registrations WHERE client_id = ?1", client_id))
    }

    async fn insert_par(&self, r: &ParRecord) -> StoreResult<()> {
        let r = r.clone();
        let params = par_params_json(&r.params)?;
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO par_requests (uri_hash, client_id, params, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![r.uri_hash, r.client_id, params, r.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn use_par(&self, uri_hash: &str, client_id: &str, now: i64, window: i64) -> StoreResult<Option<ParRecord>> {
        let (h, client) = (uri_hash.to_string(), client_id.to_string());
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE par_requests SET used_until = COALESCE(used_until, ?2 + ?3) WHERE uri_hash = ?1 \
                 AND client_id = ?4 AND consumed_at IS NULL AND ((used_until IS NULL AND expires_at > ?2) OR used_until > ?2)",
                params![h, now, window, client],
            )?;
            if n == 0 {
                return Ok(None);
            }
            c.prepare_cached("SELECT uri_hash, client_id, params, expires_at FROM par_requests WHERE uri_hash = ?1")
                .and_then(|mut s| {
                    s.query_row([&h], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)))
                })
                .map_err(map)
                .and_then(|(uri_hash, client_id, params, expires_at)| {
                    Ok(Some(ParRecord { uri_hash, client_id, params: par_params_from(&params)?, expires_at }))
                })
        })
        .await
    }

    async fn consume_par(&self, uri_hash: &str, now: i64) -> StoreResult<bool> {
        let h = uri_hash.to_string();
        self.write(move |c| {
            Ok(exec(
                c,
                "UPDATE par_requests SET consumed_at = ?2 WHERE uri_hash = ?1 AND consumed_at IS NULL",
                params![h, now],
            )? == 1)
        })
        .await
    }

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()> {
        let k = code.clone();
        self.write(move |c| {
            let b = binding_cols(&k.binding);
            exec(
                c,
                "INSERT INTO codes (code_hash, client_id, user_id, redirect_uri, scope, audience, nonce, code_challenge, \
                 code_challenge_method, session_id, auth_time, grant_id, binding_type, binding_ref, binding_hash, expires_at, used_at) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,NULL)",
                params![
                    k.code_hash,
                    k.client_id,
                    k.user_id,
                    k.redirect_uri,
                    k.scope,
                    audience_to_json(&k.audience)?,
                    k.nonce,
                    k.code_challenge,
                    k.code_challenge_method,
                    k.session_id,
                    k.auth_time,
                    k.grant_id,
                    b.kind,
                    b.reference,
                    b.hash,
                    k.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_code(&self, code_hash: &str) -> StoreResult<Option<CodeRecord>> {
        self.read(|c| one(c, select!(codes, "WHERE code_hash = ?1"), [code_hash], code_from))
    }

    async fn issue(&self, req: &IssueRequest) -> StoreResult<IssueOutcome> {
        let req = req.clone();
        self.write(move |c| run_sync(IssueFlow::new(&req), |op| run_op(c, op, req.now))).await
    }

    async fn find_access(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>> {
        self.read(|c| one(c, select!(access_tokens, "WHERE token_hash = ?1"), [token_hash], access_from))
    }

    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        self.read(|c| one(c, select!(refresh_tokens, "WHERE token_hash = ?1"), [token_hash], refresh_from))
    }

    async fn revoke_access(&self, token_hash: &str, now: i64) -> StoreResult<()> {
        let id = token_hash.to_string();
        self.write(move |c| run_sync(Cascade::access(id, true), |op| run_op(c, op, now))).await
    }

    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()> {
        let id = family_id.to_string();
        self.write(move |c| run_sync(Cascade::family(id), |op| run_op(c, op, now))).await
    }

    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()> {
        let id = grant_id.to_string();
        self.write(move |c| run_sync(Cascade::grant(id), |op| run_op(c, op, now))).await
    }

    async fn revoke_matching(&self, filter: &RevokeFilter, now: i64) -> StoreResult<u64> {
        let Some(conds) = filter.conditions()? else { return Ok(0) };
        let (cond, vals) = revoke_where(&conds, Dialect::Sqlite);
        self.write(move |c| revoke_matching_tx(c, &cond, &vals, now)).await
    }

    async fn binding_in_use(&self, kind: BindingType, reference: &str) -> StoreResult<bool> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM access_tokens WHERE binding_ref = ?2 AND binding_type = ?1) \
                 OR EXISTS (SELECT 1 FROM refresh_tokens WHERE binding_ref = ?2 AND binding_type = ?1)",
            )
            .and_then(|mut s| s.query_row(params![kind.as_str(), reference], |r| r.get(0)))
            .map_err(map)
        })
    }

    async fn dpop_jti_fresh(&self, replay_key: &str, expires_at: i64) -> StoreResult<bool> {
        let key = replay_key.to_string();
        self.write(move |c| {
            let n = exec(
                c,
                "INSERT INTO dpop_jti (replay_key, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![key, expires_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_device(&self, d: &DeviceRecord) -> StoreResult<()> {
        let d = d.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO device_codes (device_hash, user_code_hash, client_id, scope, audience, expires_at, interval, \
                 last_polled, status, user_id, session_id, auth_time) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                params![
                    d.device_hash,
                    d.user_code_hash,
                    d.client_id,
                    d.scope,
                    audience_to_json(&d.audience)?,
                    d.expires_at,
                    d.interval,
                    d.last_polled,
                    d.status.as_str(),
                    d.user_id,
                    d.session_id,
                    d.auth_time
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_device(&self, device_hash: &str) -> StoreResult<Option<DeviceRecord>> {
        self.read(|c| one(c, select!(device_codes, "WHERE device_hash = ?1"), [device_hash], device_from))
    }

    async fn find_device_by_user_code(&self, user_code_hash: &str, now: i64) -> StoreResult<Option<DeviceRecord>> {
        self.read(|c| {
            one(
                c,
                select!(device_codes, "WHERE user_code_hash = ?1 AND expires_at > ?2 ORDER BY expires_at DESC LIMIT 1"),
                params![user_code_hash, now],
                device_from,
            )
        })
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
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE device_codes SET status = ?1, user_id = ?2, session_id = ?3, auth_time = ?4 \
                 WHERE device_hash = ?5 AND status = 'pending'",
                params![status.as_str(), user, sid, auth_time, hash],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn poll_device(&self, device_hash: &str, now: i64, interval: i64) -> StoreResult<()> {
        let hash = device_hash.to_string();
        self.write(move |c| {
            exec(
                c,
                "UPDATE device_codes SET last_polled = ?1, interval = ?2 WHERE device_hash = ?3",
                params![now, interval, hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn purge(&self, now: i64, grace: i64, limit: u32) -> StoreResult<u64> {
        let before = now - grace;
        self.write(move |c| {
            let mut n = 0u64;
            for sql in [
                "DELETE FROM access_tokens WHERE rowid IN (SELECT rowid FROM access_tokens WHERE expires_at < ?1 LIMIT ?2)",
                "DELETE FROM access_tokens WHERE rowid IN (SELECT rowid FROM access_tokens WHERE revoked_at < ?1 LIMIT ?2)",
                "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM refresh_tokens WHERE expires_at < ?1 LIMIT ?2)",
                "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM refresh_tokens WHERE revoked_at < ?1 LIMIT ?2)",
                "DELETE FROM codes WHERE rowid IN (SELECT rowid FROM codes WHERE expires_at < ?1 LIMIT ?2)",
                "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions WHERE expires_at < ?1 OR ended_at < ?1 LIMIT ?2)",
                "DELETE FROM device_codes WHERE rowid IN (SELECT rowid FROM device_codes WHERE expires_at < ?1 LIMIT ?2)",
                "DELETE FROM dpop_jti WHERE rowid IN (SELECT rowid FROM dpop_jti WHERE expires_at < ?1 LIMIT ?2)",
                "DELETE FROM unlocks WHERE rowid IN (SELECT rowid FROM unlocks WHERE expires_at < ?1 LIMIT ?2)",
                "DELETE FROM par_requests WHERE rowid IN (SELECT rowid FROM par_requests WHERE expires_at < ?1 \
                 AND (used_until IS NULL OR used_until < ?1) LIMIT ?2)",
            ] {
                n += exec(c, sql, params![before, limit])? as u64;
            }
            Ok(n)
        })
        .await
    }
}

/// Is there a Tether database at `path`, and does it hold sealed secrets? Opens read-only; never
/// creates the file.
pub(crate) fn probe(path: &Path) -> Result<crate::backend::Probe, String> {
    let exists = std::fs::metadata(path).map(|m| m.is_file() && m.len() > 0).unwrap_or(false);
    if !exists {
        return Ok(crate::backend::Probe { exists: false, sealed_keys: false });
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open SQLite database {}: {e}", path.display()))?;
    let has_table: bool = conn
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'server_secrets'", [], |r| {
            r.get(0)
        })
        .map_err(|e| format!("{} is not a SQLite database: {e}", path.display()))?;
    let sealed_keys = has_table
        && conn
            .query_row("SELECT EXISTS (SELECT 1 FROM server_secrets) OR EXISTS (SELECT 1 FROM signing_keys)", [], |r| {
                r.get(0)
            })
            .map_err(|e| e.to_string())?;
    Ok(crate::backend::Probe { exists: true, sealed_keys })
}
