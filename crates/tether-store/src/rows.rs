//! Rows ↔ records, once for both backends: the column list each table is read with
//! ([`cols!`]), the record each row becomes, and the binding columns each token row is written
//! with. A driver only says how to read one column by position ([`Columns`]). Values the records
//! keep as enums or JSON are parsed by `tether_core::store::rows`: a value this version cannot
//! read is a `StoreError::Corrupt`, never a default.

use tether_core::error::StoreError;
use tether_core::keys::{Alg, KeyRecord};
use tether_core::model::{App, AppRecord, TokenType, User, UserRecord};
use tether_core::store::rows::{audience_from_json, binding_from_columns, parse_column};
use tether_core::store::*;

/// The columns a table is read with, in the order its mapper below reads them (by position: the
/// by-name lookup was measurable on the introspection path). `"interval"` is quoted: a keyword in
/// PostgreSQL, an ordinary quoted identifier in SQLite.
macro_rules! cols {
    (apps) => {
        "settings, secret_hash"
    };
    (users) => {
        "id, username, email, name, created_at, password_hash"
    };
    (signing_keys) => {
        "kid, alg, private_sealed, public_jwk, created_at, rotated_at, publish_until"
    };
    (sessions) => {
        "id, cookie_hash, user_id, auth_time, expires_at, last_seen, ended_at"
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
    Ok(AppRecord { app, secret_hash: c.opt_text()? })
}

pub(crate) fn user_from(row: &dyn Columns) -> StoreResult<UserRecord> {
    let mut c = Cursor::new(row, "users");
    Ok(UserRecord {
        user: User {
            id: c.text()?,
            username: c.text()?,
            email: c.opt_text()?,
            name: c.opt_text()?,
            created_at: c.int()?,
        },
        password_hash: c.text()?,
    })
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
