//! Rows ↔ records, once for both backends: the column list each table is read with
//! ([`cols!`]), the record each row becomes, and the binding columns each token row is written
//! with. A driver only says how to read one column by position ([`Columns`]). Values the records
//! keep as enums or JSON are parsed by `tether_core::store::rows`: a value this version cannot
//! read is a `StoreError::Corrupt`, never a default.

use tether_core::error::StoreError;
use tether_core::keys::{Alg, KeyRecord};
use tether_core::model::{App, AppRecord, BindingType, PreviousSecret, TokenType, User, UserRecord};
use tether_core::store::rows::{audience_from_json, binding_from_columns, parse_column};
use tether_core::store::*;

/// The columns a table is read with, in the order its mapper below reads them (by position: the
/// by-name lookup was measurable on the introspection path). `"interval"` is quoted: a keyword in
/// PostgreSQL, an ordinary quoted identifier in SQLite.
macro_rules! cols {
    (apps) => {
        "settings, secret_hash, previous_secret_hash, previous_secret_until, sealed_secret"
    };
    (users) => {
        "id, username, email, name, created_at, password_hash, roles, disabled"
    };
    (signing_keys) => {
        "kid, alg, private_sealed, public_jwk, created_at, rotated_at, publish_until"
    };
    (sessions) => {
        "id, cookie_hash, user_id, auth_time, expires_at, last_seen, ended_at, ip, user_agent"
    };
    (codes) => {
        "code_hash, client_id, user_id, redirect_uri, scope, audience, nonce, code_challenge, code_challenge_method, \
         session_id, auth_time, grant_id, binding_type, binding_ref, binding_hash, expires_at, used_at"
    };
    (access_tokens) => {
        "id, token_hash, jti, client_id, user_id, username, scope, audience, token_type, \
         binding_type, binding_ref, binding_hash, binding_cnf, reuse_key, grant_id, session_id, auth_time, \
         issued_at, expires_at, revoked_at, act"
    };
    (refresh_tokens) => {
        "id, token_hash, family_id, access_id, client_id, user_id, username, scope, audience, \
         binding_type, binding_ref, binding_hash, binding_cnf, grant_id, session_id, auth_time, \
         issued_at, expires_at, used_at, revoked_at"
    };
    (device_codes) => {
        "device_hash, user_code_hash, client_id, scope, audience, expires_at, \"interval\", last_polled, status, \
         user_id, session_id, auth_time"
    };
    (events) => {
        "id, time, type, client_id, username, ip, user_agent, detail"
    };
    // Token metadata (`list_tokens`): the public id first, never a hash or derivation id.
    (access_meta) => {
        "jti, token_type, client_id, username, binding_type, issued_at, expires_at, revoked_at"
    };
    (refresh_meta) => {
        "id, client_id, username, binding_type, issued_at, expires_at, revoked_at"
    };
}
pub(crate) use cols;

/// `SELECT` [`cols!`]`(table) FROM table WHERE …`: a row of `table` as its mapper reads it.
macro_rules! select {
    ($table:ident, $where:literal) => {
        concat!("SELECT ", cols!($table), " FROM ", stringify!($table), " ", $where)
    };
}
pub(crate) use select;

/// One result row, read by position, whichever driver produced it.
pub(crate) trait Columns {
    fn text(&self, i: usize) -> StoreResult<String>;
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>>;
    fn int(&self, i: usize) -> StoreResult<i64>;
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>>;
    fn bytes(&self, i: usize) -> StoreResult<Vec<u8>>;
}

/// `impl Columns for $row`, each column read with `$row::$get(i)` and its error mapped by `$map`.
macro_rules! impl_columns {
    ($row:ty, $get:ident, $map:path) => {
        impl Columns for $row {
            fn text(&self, i: usize) -> StoreResult<String> {
                self.$get(i).map_err($map)
            }
            fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
                self.$get(i).map_err($map)
            }
            fn int(&self, i: usize) -> StoreResult<i64> {
                self.$get(i).map_err($map)
            }
            fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
                self.$get(i).map_err($map)
            }
            fn bytes(&self, i: usize) -> StoreResult<Vec<u8>> {
                self.$get(i).map_err($map)
            }
        }
    };
}
pub(crate) use impl_columns;

/// Reads a row's columns one after the other, in the order of its [`cols!`] list.
struct Cursor<'r> {
    row: &'r dyn Columns,
    at: usize,
    table: &'static str,
}

impl<'r> Cursor<'r> {
    fn new(row: &'r dyn Columns, table: &'static str) -> Self {
        Self { row, at: 0, table }
    }
    fn next(&mut self) -> usize {
        self.at += 1;
        self.at - 1
    }
    fn text(&mut self) -> StoreResult<String> {
        let i = self.next();
        self.row.text(i)
    }
    fn opt_text(&mut self) -> StoreResult<Option<String>> {
        let i = self.next();
        self.row.opt_text(i)
    }
    fn int(&mut self) -> StoreResult<i64> {
        let i = self.next();
        self.row.int(i)
    }
    fn opt_int(&mut self) -> StoreResult<Option<i64>> {
        let i = self.next();
        self.row.opt_int(i)
    }
    fn bytes(&mut self) -> StoreResult<Vec<u8>> {
        let i = self.next();
        self.row.bytes(i)
    }
    fn audience(&mut self) -> StoreResult<Vec<String>> {
        audience_from_json(self.table, &self.text()?)
    }
    /// `binding_type` alone (NULL: unbound).
    fn binding_type(&mut self) -> StoreResult<Option<BindingType>> {
        let table = self.table;
        self.opt_text()?.map(|t| parse_column(table, "binding_type", &t, BindingType::parse)).transpose()
    }
    /// `binding_type, binding_ref, binding_hash` and, `with_cnf`, `binding_cnf`.
    fn binding(&mut self, with_cnf: bool) -> StoreResult<Option<BindingRecord>> {
        let (kind, reference, hash) = (self.opt_text()?, self.opt_text()?, self.opt_text()?);
        let cnf = if with_cnf { self.opt_text()? } else { None };
        binding_from_columns(self.table, kind, reference, hash, cnf)
    }
}

pub(crate) fn app_from(row: &dyn Columns) -> StoreResult<AppRecord> {
    let mut c = Cursor::new(row, "apps");
    let settings = c.text()?;
    let app: App = serde_json::from_str(&settings).map_err(|e| StoreError::Corrupt {
        table: "apps",
        column: "settings",
        detail: e.to_string(),
    })?;
    let secret_hash = c.opt_text()?;
    let previous_secret = match (c.opt_text()?, c.opt_int()?) {
        (Some(hash), Some(until)) => Some(PreviousSecret { hash, until }),
        _ => None,
    };
    let sealed_secret = c.opt_text()?;
    Ok(AppRecord { app, secret_hash, previous_secret, sealed_secret })
}

/// The `previous_secret_hash, previous_secret_until` columns an app is written with.
pub(crate) fn previous_secret_cols(a: &AppRecord) -> (Option<String>, Option<i64>) {
    match &a.previous_secret {
        Some(p) => (Some(p.hash.clone()), Some(p.until)),
        None => (None, None),
    }
}

pub(crate) fn user_from(row: &dyn Columns) -> StoreResult<UserRecord> {
    let mut c = Cursor::new(row, "users");
    let (id, username, email, name, created_at) = (c.text()?, c.text()?, c.opt_text()?, c.opt_text()?, c.int()?);
    let password_hash = c.text()?;
    let (roles, disabled) = (roles_from(&c.text()?), c.int()? != 0);
    Ok(UserRecord { user: User { id, username, email, name, created_at, roles, disabled }, password_hash })
}

/// The `roles` column: space-separated role names; empty is none.
fn roles_from(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The `roles` text a user is written with.
pub(crate) fn roles_col(u: &User) -> String {
    u.roles.join(" ")
}

pub(crate) fn key_from(row: &dyn Columns) -> StoreResult<KeyRecord> {
    let mut c = Cursor::new(row, "signing_keys");
    Ok(KeyRecord {
        kid: c.text()?,
        alg: parse_column("signing_keys", "alg", &c.text()?, Alg::parse)?,
        private_sealed: c.bytes()?,
        public_jwk: c.text()?,
        created_at: c.int()?,
        rotated_at: c.opt_int()?,
        publish_until: c.opt_int()?,
    })
}

pub(crate) fn session_from(row: &dyn Columns) -> StoreResult<SessionRecord> {
    let mut c = Cursor::new(row, "sessions");
    Ok(SessionRecord {
        id: c.text()?,
        cookie_hash: c.text()?,
        user_id: c.text()?,
        auth_time: c.int()?,
        expires_at: c.int()?,
        last_seen: c.int()?,
        ended_at: c.opt_int()?,
        ip: c.opt_text()?,
        user_agent: c.opt_text()?,
    })
}

pub(crate) fn event_from(row: &dyn Columns) -> StoreResult<EventRecord> {
    let mut c = Cursor::new(row, "events");
    Ok(EventRecord {
        id: c.text()?,
        time: c.int()?,
        kind: c.text()?,
        client_id: c.opt_text()?,
        username: c.opt_text()?,
        ip: c.opt_text()?,
        user_agent: c.opt_text()?,
        detail: serde_json::from_str(&c.text()?).map_err(|e| StoreError::Corrupt {
            table: "events",
            column: "detail",
            detail: e.to_string(),
        })?,
    })
}

/// The JSON text an event's `detail` is stored as.
pub(crate) fn detail_json(e: &EventRecord) -> StoreResult<String> {
    serde_json::to_string(&e.detail).map_err(|e| StoreError::Other(format!("cannot encode an event: {e}")))
}

/// An access token's metadata ([`cols!`]`(access_meta)`).
pub(crate) fn access_meta_from(row: &dyn Columns) -> StoreResult<TokenMeta> {
    let mut c = Cursor::new(row, "access_tokens");
    Ok(TokenMeta {
        id: c.text()?,
        refresh: false,
        format: parse_column("access_tokens", "token_type", &c.text()?, TokenType::parse)?,
        client_id: c.text()?,
        username: c.opt_text()?,
        binding_type: c.binding_type()?,
        issued_at: c.int()?,
        expires_at: c.int()?,
        revoked_at: c.opt_int()?,
    })
}

/// A refresh token's metadata ([`cols!`]`(refresh_meta)`); refresh tokens are always opaque.
pub(crate) fn refresh_meta_from(row: &dyn Columns) -> StoreResult<TokenMeta> {
    let mut c = Cursor::new(row, "refresh_tokens");
    Ok(TokenMeta {
        id: c.text()?,
        refresh: true,
        format: TokenType::Opaque,
        client_id: c.text()?,
        username: c.opt_text()?,
        binding_type: c.binding_type()?,
        issued_at: c.int()?,
        expires_at: c.int()?,
        revoked_at: c.opt_int()?,
    })
}

pub(crate) fn code_from(row: &dyn Columns) -> StoreResult<CodeRecord> {
    let mut c = Cursor::new(row, "codes");
    Ok(CodeRecord {
        code_hash: c.text()?,
        client_id: c.text()?,
        user_id: c.text()?,
        redirect_uri: c.text()?,
        scope: c.text()?,
        audience: c.audience()?,
        nonce: c.opt_text()?,
        code_challenge: c.opt_text()?,
        code_challenge_method: c.opt_text()?,
        session_id: c.text()?,
        auth_time: c.int()?,
        grant_id: c.text()?,
        binding: c.binding(false)?,
        expires_at: c.int()?,
        used_at: c.opt_int()?,
    })
}

pub(crate) fn access_from(row: &dyn Columns) -> StoreResult<AccessTokenRecord> {
    let mut c = Cursor::new(row, "access_tokens");
    Ok(AccessTokenRecord {
        id: c.text()?,
        token_hash: c.text()?,
        jti: c.text()?,
        client_id: c.text()?,
        user_id: c.opt_text()?,
        username: c.opt_text()?,
        scope: c.text()?,
        audience: c.audience()?,
        token_type: parse_column("access_tokens", "token_type", &c.text()?, TokenType::parse)?,
        binding: c.binding(true)?,
        reuse_key: c.opt_text()?,
        grant_id: c.opt_text()?,
        session_id: c.opt_text()?,
        auth_time: c.opt_int()?,
        issued_at: c.int()?,
        expires_at: c.int()?,
        revoked_at: c.opt_int()?,
        act: c.opt_text()?,
    })
}

pub(crate) fn refresh_from(row: &dyn Columns) -> StoreResult<RefreshTokenRecord> {
    let mut c = Cursor::new(row, "refresh_tokens");
    Ok(RefreshTokenRecord {
        id: c.text()?,
        token_hash: c.text()?,
        family_id: c.text()?,
        access_id: c.text()?,
        client_id: c.text()?,
        user_id: c.opt_text()?,
        username: c.opt_text()?,
        scope: c.text()?,
        audience: c.audience()?,
        binding: c.binding(true)?,
        grant_id: c.opt_text()?,
        session_id: c.opt_text()?,
        auth_time: c.opt_int()?,
        issued_at: c.int()?,
        expires_at: c.int()?,
        used_at: c.opt_int()?,
        revoked_at: c.opt_int()?,
    })
}

pub(crate) fn device_from(row: &dyn Columns) -> StoreResult<DeviceRecord> {
    let mut c = Cursor::new(row, "device_codes");
    Ok(DeviceRecord {
        device_hash: c.text()?,
        user_code_hash: c.text()?,
        client_id: c.text()?,
        scope: c.text()?,
        audience: c.audience()?,
        expires_at: c.int()?,
        interval: c.int()?,
        last_polled: c.opt_int()?,
        status: parse_column("device_codes", "status", &c.text()?, DeviceStatus::parse)?,
        user_id: c.opt_text()?,
        session_id: c.opt_text()?,
        auth_time: c.opt_int()?,
    })
}

/// The binding columns a token row is written with: type, reference, value hash, cnf.
pub(crate) struct BindingCols<'a> {
    pub kind: Option<&'static str>,
    pub reference: Option<&'a str>,
    pub hash: Option<&'a str>,
    pub cnf: Option<&'a str>,
}

pub(crate) fn binding_cols(b: &Option<BindingRecord>) -> BindingCols<'_> {
    BindingCols {
        kind: b.as_ref().map(|b| b.kind.as_str()),
        reference: b.as_ref().map(|b| b.reference.as_str()),
        hash: b.as_ref().map(|b| b.value_hash.as_str()),
        cnf: b.as_ref().and_then(|b| b.cnf.as_deref()),
    }
}

/// A pushed request's parameters as stored: a JSON array of `[name, value]` pairs.
pub(crate) fn par_params_json(params: &[(String, String)]) -> StoreResult<String> {
    serde_json::to_string(params).map_err(|e| StoreError::Other(format!("cannot encode pushed parameters: {e}")))
}

pub(crate) fn par_params_from(text: &str) -> StoreResult<Vec<(String, String)>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table: "par_requests",
        column: "params",
        detail: e.to_string(),
    })
}
