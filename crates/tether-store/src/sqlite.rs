//! SQLite backend: one file in WAL mode, one writer connection, a pool of readers.
//!
//! SQLite allows one writer at a time; funnelling writes through a single connection (a pool of
//! one) queues them in-process instead of letting connections fight over the lock with sleeps and
//! retries. Every write method is one `BEGIN IMMEDIATE` transaction, so a decision made inside it
//! (a code redeemed, a refresh token rotated, the one active token of a reuse key) cannot race
//! another process either.
//!
//! Durability: `synchronous = NORMAL` in WAL mode. A process crash loses nothing committed; a
//! power cut can forget the last transactions before the cut. Forgotten tokens then introspect as
//! inactive (fail closed): nothing is ever valid that the database does not hold.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tether_core::error::StoreError;
use tether_core::keys::{Alg, KeyRecord};
use tether_core::model::{App, AppRecord, BindingType, TokenType, User, UserRecord};
use tether_core::store::*;

use crate::errors::map;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

type Tx<'a> = Transaction<'a, Sqlite>;

impl SqliteStore {
    pub async fn open(path: &str) -> Result<Self, String> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|e| format!("bad SQLite path {path}: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .map_err(|e| format!("cannot open SQLite database {path}: {e}"))?;
        MIGRATOR.run(&writer).await.map_err(|e| format!("database migration failed: {e}"))?;
        let readers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 8) as u32;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| format!("cannot open SQLite database {path}: {e}"))?;
        Ok(Self { writer, reader })
    }

    async fn begin(&self) -> Result<Tx<'_>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)
    }

    /// Close both pools (checkpointing the WAL) — on graceful shutdown.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

async fn bump(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'generation'").execute(&mut **tx).await.map_err(map)?;
    Ok(())
}

fn aud_json(a: &[String]) -> String {
    serde_json::to_string(a).unwrap_or_else(|_| "[]".into())
}

fn aud_parse(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn binding_from(r: &SqliteRow) -> Result<Option<BindingRecord>, sqlx::Error> {
    let kind: Option<String> = r.try_get("binding_type")?;
    Ok(match kind.as_deref().and_then(BindingType::parse) {
        Some(kind) => {
            Some(BindingRecord { kind, reference: r.try_get("binding_ref")?, value_hash: r.try_get("binding_hash")? })
        }
        None => None,
    })
}

fn app_from(r: &SqliteRow) -> Result<AppRecord, StoreError> {
    let settings: String = r.try_get("settings").map_err(map)?;
    let app: App =
        serde_json::from_str(&settings).map_err(|e| StoreError::Other(format!("corrupt app settings: {e}")))?;
    Ok(AppRecord { app, secret_hash: r.try_get("secret_hash").map_err(map)? })
}

fn user_from(r: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        user: User {
            id: r.try_get("id").map_err(map)?,
            username: r.try_get("username").map_err(map)?,
            email: r.try_get("email").map_err(map)?,
            name: r.try_get("name").map_err(map)?,
            created_at: r.try_get("created_at").map_err(map)?,
        },
        password_hash: r.try_get("password_hash").map_err(map)?,
    })
}

fn access_from(r: &SqliteRow) -> Result<AccessTokenRecord, StoreError> {
    let f = || -> Result<AccessTokenRecord, sqlx::Error> {
        let tt: String = r.try_get("token_type")?;
        Ok(AccessTokenRecord {
            id: r.try_get("id")?,
            token_hash: r.try_get("token_hash")?,
            jti: r.try_get("jti")?,
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            username: r.try_get("username")?,
            scope: r.try_get("scope")?,
            audience: aud_parse(r.try_get::<&str, _>("audience")?),
            token_type: TokenType::parse(&tt).unwrap_or(TokenType::Opaque),
            binding: binding_from(r)?,
            reuse_key: r.try_get("reuse_key")?,
            grant_id: r.try_get("grant_id")?,
            session_id: r.try_get("session_id")?,
            auth_time: r.try_get("auth_time")?,
            issued_at: r.try_get("issued_at")?,
            expires_at: r.try_get("expires_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    };
    f().map_err(map)
}

fn refresh_from(r: &SqliteRow) -> Result<RefreshTokenRecord, StoreError> {
    let f = || -> Result<RefreshTokenRecord, sqlx::Error> {
        Ok(RefreshTokenRecord {
            id: r.try_get("id")?,
            token_hash: r.try_get("token_hash")?,
            family_id: r.try_get("family_id")?,
            access_id: r.try_get("access_id")?,
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            username: r.try_get("username")?,
            scope: r.try_get("scope")?,
            audience: aud_parse(r.try_get::<&str, _>("audience")?),
            binding: binding_from(r)?,
            grant_id: r.try_get("grant_id")?,
            session_id: r.try_get("session_id")?,
            auth_time: r.try_get("auth_time")?,
            issued_at: r.try_get("issued_at")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    };
    f().map_err(map)
}

fn code_from(r: &SqliteRow) -> Result<CodeRecord, StoreError> {
    let f = || -> Result<CodeRecord, sqlx::Error> {
        Ok(CodeRecord {
            code_hash: r.try_get("code_hash")?,
            client_id: r.try_get("client_id")?,
            user_id: r.try_get("user_id")?,
            redirect_uri: r.try_get("redirect_uri")?,
            scope: r.try_get("scope")?,
            audience: aud_parse(r.try_get::<&str, _>("audience")?),
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
    };
    f().map_err(map)
}

fn session_from(r: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let f = || -> Result<SessionRecord, sqlx::Error> {
        Ok(SessionRecord {
            id: r.try_get("id")?,
            cookie_hash: r.try_get("cookie_hash")?,
            user_id: r.try_get("user_id")?,
            auth_time: r.try_get("auth_time")?,
            expires_at: r.try_get("expires_at")?,
            last_seen: r.try_get("last_seen")?,
            ended_at: r.try_get("ended_at")?,
        })
    };
    f().map_err(map)
}

fn key_from(r: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let f = || -> Result<KeyRecord, sqlx::Error> {
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
    };
    f().map_err(map)
}

fn b_type(b: &Option<BindingRecord>) -> Option<&'static str> {
    b.as_ref().map(|b| b.kind.as_str())
}
fn b_ref(b: &Option<BindingRecord>) -> Option<&str> {
    b.as_ref().map(|b| b.reference.as_str())
}
fn b_hash(b: &Option<BindingRecord>) -> Option<&str> {
    b.as_ref().map(|b| b.value_hash.as_str())
}

async fn insert_access(tx: &mut Tx<'_>, a: &AccessTokenRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO access_tokens (id, token_hash, jti, client_id, user_id, username, scope, audience, token_type, \
         binding_type, binding_ref, binding_hash, reuse_key, grant_id, session_id, auth_time, issued_at, expires_at, revoked_at) \
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
    )
    .bind(&a.id)
    .bind(&a.token_hash)
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
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

async fn insert_refresh(tx: &mut Tx<'_>, r: &RefreshTokenRecord, access_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, access_id, client_id, user_id, username, scope, audience, \
         binding_type, binding_ref, binding_hash, grant_id, session_id, auth_time, issued_at, expires_at, used_at, revoked_at) \
         VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL)",
    )
    .bind(&r.id)
    .bind(&r.token_hash)
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
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

async fn revoke_family_tx(tx: &mut Tx<'_>, family_id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE access_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND id IN \
         (SELECT access_id FROM refresh_tokens WHERE family_id = ?)",
    )
    .bind(now)
    .bind(family_id)
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND family_id = ?")
        .bind(now)
        .bind(family_id)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    Ok(())
}

async fn revoke_access_tx(tx: &mut Tx<'_>, id: &str, now: i64, with_families: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    if with_families {
        let fams: Vec<String> = sqlx::query_scalar("SELECT DISTINCT family_id FROM refresh_tokens WHERE access_id = ?")
            .bind(id)
            .fetch_all(&mut **tx)
            .await
            .map_err(map)?;
        for f in fams {
            revoke_family_tx(tx, &f, now).await?;
        }
    }
    Ok(())
}

async fn revoke_grant_tx(tx: &mut Tx<'_>, grant_id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE access_tokens SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(grant_id)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(grant_id)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    Ok(())
}

impl SqliteStore {
    async fn ping_now(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(map)?;
        Ok(())
    }

    async fn generation_now(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'generation'").fetch_one(&self.reader).await.map_err(map)
    }

    async fn create_app_now(&self, a: &AppRecord) -> StoreResult<()> {
        let settings = serde_json::to_string(&a.app).map_err(|e| StoreError::Other(e.to_string()))?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO apps (client_id, secret_hash, settings, created_at) VALUES (?,?,?,strftime('%s','now'))",
        )
        .bind(&a.app.client_id)
        .bind(&a.secret_hash)
        .bind(settings)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)
    }

    async fn update_app_now(&self, a: &AppRecord) -> StoreResult<()> {
        let settings = serde_json::to_string(&a.app).map_err(|e| StoreError::Other(e.to_string()))?;
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE apps SET secret_hash = ?, settings = ? WHERE client_id = ?")
            .bind(&a.secret_hash)
            .bind(settings)
            .bind(&a.app.client_id)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if r.rows_affected() == 0 {
            tx.rollback().await.map_err(map)?;
            return Err(StoreError::NotFound);
        }
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)
    }

    async fn get_app_now(&self, client_id: &str) -> StoreResult<Option<AppRecord>> {
        let row = sqlx::query("SELECT * FROM apps WHERE client_id = ?")
            .bind(client_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?;
        row.as_ref().map(app_from).transpose()
    }

    async fn list_apps_now(&self) -> StoreResult<Vec<AppRecord>> {
        let rows = sqlx::query("SELECT * FROM apps ORDER BY created_at, client_id")
            .fetch_all(&self.reader)
            .await
            .map_err(map)?;
        rows.iter().map(app_from).collect()
    }

    async fn delete_app_now(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let r =
            sqlx::query("DELETE FROM apps WHERE client_id = ?").bind(client_id).execute(&mut *tx).await.map_err(map)?;
        if r.rows_affected() == 0 {
            tx.rollback().await.map_err(map)?;
            return Ok(false);
        }
        for sql in [
            "UPDATE access_tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
            "UPDATE refresh_tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
            "UPDATE codes SET used_at = ? WHERE client_id = ? AND used_at IS NULL",
        ] {
            sqlx::query(sql).bind(now).bind(client_id).execute(&mut *tx).await.map_err(map)?;
        }
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn create_user_now(&self, u: &UserRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO users (id, username, password_hash, email, name, created_at) VALUES (?,?,?,?,?,?)")
            .bind(&u.user.id)
            .bind(&u.user.username)
            .bind(&u.password_hash)
            .bind(&u.user.email)
            .bind(&u.user.name)
            .bind(u.user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)
    }

    async fn set_password_now(&self, username: &str, password_hash: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE users SET password_hash = ? WHERE username = ?")
            .bind(password_hash)
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)?;
        Ok(r.rows_affected() > 0)
    }

    async fn get_user_by_name_now(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn get_user_now(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT * FROM users WHERE id = ?").bind(id).fetch_optional(&self.reader).await.map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn list_users_now(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username").fetch_all(&self.reader).await.map_err(map)?;
        rows.iter().map(user_from).collect()
    }

    async fn delete_user_now(&self, username: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
        let Some(id) = id else {
            tx.rollback().await.map_err(map)?;
            return Ok(false);
        };
        sqlx::query("DELETE FROM users WHERE id = ?").bind(&id).execute(&mut *tx).await.map_err(map)?;
        for sql in [
            "UPDATE access_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
            "UPDATE codes SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
        ] {
            sqlx::query(sql).bind(now).bind(&id).execute(&mut *tx).await.map_err(map)?;
        }
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }

    async fn list_keys_now(&self) -> StoreResult<Vec<KeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.reader)
            .await
            .map_err(map)?;
        rows.iter().map(key_from).collect()
    }

    async fn add_keys_now(&self, keys: &[KeyRecord], now: i64, publish_until: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for k in keys {
            sqlx::query(
                "UPDATE signing_keys SET rotated_at = ?, publish_until = ? WHERE alg = ? AND rotated_at IS NULL",
            )
            .bind(now)
            .bind(publish_until)
            .bind(k.alg.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, rotated_at, publish_until) \
                 VALUES (?,?,?,?,?,NULL,NULL)",
            )
            .bind(&k.kid)
            .bind(k.alg.as_str())
            .bind(&k.private_sealed)
            .bind(&k.public_jwk)
            .bind(k.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        bump(&mut tx).await?;
        tx.commit().await.map_err(map)
    }

    async fn get_or_init_secret_now(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT OR IGNORE INTO server_secrets (name, sealed) VALUES (?, ?)")
            .bind(name)
            .bind(sealed)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let v: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(v)
    }

    async fn create_session_now(&self, s: &SessionRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, cookie_hash, user_id, auth_time, expires_at, last_seen, ended_at) VALUES (?,?,?,?,?,?,NULL)",
        )
        .bind(&s.id)
        .bind(&s.cookie_hash)
        .bind(&s.user_id)
        .bind(s.auth_time)
        .bind(s.expires_at)
        .bind(s.last_seen)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)
    }

    async fn find_session_now(&self, cookie_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE cookie_hash = ?")
            .bind(cookie_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?;
        row.as_ref().map(session_from).transpose()
    }

    async fn touch_session_now(&self, id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE sessions SET last_seen = ? WHERE id = ? AND last_seen < ?")
            .bind(now)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)
    }

    async fn end_session_now(&self, id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)
    }

    async fn insert_code_now(&self, c: &CodeRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO codes (code_hash, client_id, user_id, redirect_uri, scope, audience, nonce, code_challenge, \
             code_challenge_method, session_id, auth_time, grant_id, binding_type, binding_ref, binding_hash, expires_at, used_at) \
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(&c.redirect_uri)
        .bind(&c.scope)
        .bind(aud_json(&c.audience))
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(&c.code_challenge_method)
        .bind(&c.session_id)
        .bind(c.auth_time)
        .bind(&c.grant_id)
        .bind(b_type(&c.binding))
        .bind(b_ref(&c.binding))
        .bind(b_hash(&c.binding))
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)
    }

    async fn find_code_now(&self, code_hash: &str) -> StoreResult<Option<CodeRecord>> {
        let row = sqlx::query("SELECT * FROM codes WHERE code_hash = ?")
            .bind(code_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?;
        row.as_ref().map(code_from).transpose()
    }

    async fn issue_now(&self, req: &IssueRequest) -> StoreResult<IssueOutcome> {
        let now = req.now;
        let mut tx = self.begin().await?;
        match &req.precondition {
            Precondition::None => {}
            Precondition::ConsumeCode(hash) => {
                let r = sqlx::query("UPDATE codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL")
                    .bind(now)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                if r.rows_affected() == 0 {
                    let grant: Option<String> = sqlx::query_scalar("SELECT grant_id FROM codes WHERE code_hash = ?")
                        .bind(hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map)?;
                    if let Some(g) = grant {
                        revoke_grant_tx(&mut tx, &g, now).await?;
                    }
                    tx.commit().await.map_err(map)?;
                    return Ok(IssueOutcome::Replayed);
                }
            }
            Precondition::RotateRefresh(id) => {
                let r = sqlx::query(
                    "UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
                if r.rows_affected() == 0 {
                    let fam: Option<String> = sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE id = ?")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map)?;
                    if let Some(f) = fam {
                        revoke_family_tx(&mut tx, &f, now).await?;
                    }
                    tx.commit().await.map_err(map)?;
                    return Ok(IssueOutcome::Replayed);
                }
            }
        }
        if let Some(key) = &req.access.reuse_key {
            // Expired tokens of the key no longer count as its active token.
            sqlx::query(
                "UPDATE access_tokens SET revoked_at = expires_at WHERE reuse_key = ? AND revoked_at IS NULL AND expires_at <= ?",
            )
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            let existing = sqlx::query("SELECT * FROM access_tokens WHERE reuse_key = ? AND revoked_at IS NULL")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?;
            if let Some(row) = existing {
                let existing = access_from(&row)?;
                match req.policy {
                    ReusePolicy::ReuseActive => {
                        if let Some(r) = &req.refresh {
                            insert_refresh(&mut tx, r, &existing.id).await?;
                        }
                        tx.commit().await.map_err(map)?;
                        return Ok(IssueOutcome::Reused(Box::new(existing)));
                    }
                    ReusePolicy::RevokePrevious { with_refresh } => {
                        revoke_access_tx(&mut tx, &existing.id, now, with_refresh).await?;
                    }
                    ReusePolicy::Independent => {}
                }
            }
        }
        insert_access(&mut tx, &req.access).await?;
        if let Some(r) = &req.refresh {
            insert_refresh(&mut tx, r, &req.access.id).await?;
        }
        tx.commit().await.map_err(map)?;
        Ok(IssueOutcome::Issued)
    }

    async fn find_access_now(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>> {
        let row = sqlx::query("SELECT * FROM access_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?;
        row.as_ref().map(access_from).transpose()
    }

    async fn find_refresh_now(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?;
        row.as_ref().map(refresh_from).transpose()
    }

    async fn revoke_access_now(&self, id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        revoke_access_tx(&mut tx, id, now, true).await?;
        tx.commit().await.map_err(map)
    }

    async fn revoke_family_now(&self, family_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        revoke_family_tx(&mut tx, family_id, now).await?;
        tx.commit().await.map_err(map)
    }

    async fn revoke_grant_now(&self, grant_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        revoke_grant_tx(&mut tx, grant_id, now).await?;
        tx.commit().await.map_err(map)
    }
}

/// Write transactions run on their own task: if the request that started one is cancelled (the
/// client went away), the transaction still commits or rolls back cleanly instead of being
/// dropped half-way on the single writer connection.
#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.ping_now().await
    }
    async fn generation(&self) -> StoreResult<i64> {
        self.generation_now().await
    }
    async fn create_app(&self, a: &AppRecord) -> StoreResult<()> {
        let a = a.clone();
        let this = self.clone();
        detach(async move { this.create_app_now(&a).await }).await
    }
    async fn update_app(&self, a: &AppRecord) -> StoreResult<()> {
        let a = a.clone();
        let this = self.clone();
        detach(async move { this.update_app_now(&a).await }).await
    }
    async fn get_app(&self, client_id: &str) -> StoreResult<Option<AppRecord>> {
        self.get_app_now(client_id).await
    }
    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.list_apps_now().await
    }
    async fn delete_app(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        let client_id = client_id.to_string();
        let this = self.clone();
        detach(async move { this.delete_app_now(&client_id, now).await }).await
    }
    async fn create_user(&self, u: &UserRecord) -> StoreResult<()> {
        let u = u.clone();
        let this = self.clone();
        detach(async move { this.create_user_now(&u).await }).await
    }
    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<bool> {
        let username = username.to_string();
        let password_hash = password_hash.to_string();
        let this = self.clone();
        detach(async move { this.set_password_now(&username, &password_hash).await }).await
    }
    async fn get_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.get_user_by_name_now(username).await
    }
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        self.get_user_now(id).await
    }
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.list_users_now().await
    }
    async fn delete_user(&self, username: &str, now: i64) -> StoreResult<bool> {
        let username = username.to_string();
        let this = self.clone();
        detach(async move { this.delete_user_now(&username, now).await }).await
    }
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.list_keys_now().await
    }
    async fn add_keys(&self, keys: &[KeyRecord], now: i64, publish_until: i64) -> StoreResult<()> {
        let keys = keys.to_vec();
        let this = self.clone();
        detach(async move { this.add_keys_now(&keys, now, publish_until).await }).await
    }
    async fn get_or_init_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let name = name.to_string();
        let sealed = sealed.to_vec();
        let this = self.clone();
        detach(async move { this.get_or_init_secret_now(&name, &sealed).await }).await
    }
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let s = s.clone();
        let this = self.clone();
        detach(async move { this.create_session_now(&s).await }).await
    }
    async fn find_session(&self, cookie_hash: &str) -> StoreResult<Option<SessionRecord>> {
        self.find_session_now(cookie_hash).await
    }
    async fn touch_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        let this = self.clone();
        detach(async move { this.touch_session_now(&id, now).await }).await
    }
    async fn end_session(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        let this = self.clone();
        detach(async move { this.end_session_now(&id, now).await }).await
    }
    async fn insert_code(&self, c: &CodeRecord) -> StoreResult<()> {
        let c = c.clone();
        let this = self.clone();
        detach(async move { this.insert_code_now(&c).await }).await
    }
    async fn find_code(&self, code_hash: &str) -> StoreResult<Option<CodeRecord>> {
        self.find_code_now(code_hash).await
    }
    async fn issue(&self, req: &IssueRequest) -> StoreResult<IssueOutcome> {
        let req = req.clone();
        let this = self.clone();
        detach(async move { this.issue_now(&req).await }).await
    }
    async fn find_access(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>> {
        self.find_access_now(token_hash).await
    }
    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        self.find_refresh_now(token_hash).await
    }
    async fn revoke_access(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_string();
        let this = self.clone();
        detach(async move { this.revoke_access_now(&id, now).await }).await
    }
    async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()> {
        let family_id = family_id.to_string();
        let this = self.clone();
        detach(async move { this.revoke_family_now(&family_id, now).await }).await
    }
    async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()> {
        let grant_id = grant_id.to_string();
        let this = self.clone();
        detach(async move { this.revoke_grant_now(&grant_id, now).await }).await
    }
}

async fn detach<T: Send + 'static>(
    f: impl std::future::Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreResult<T> {
    tokio::spawn(f).await.map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
}
