//! The conditions of a bulk revocation (decided in tether-core by `RevokeFilter::conditions`)
//! written as a SQL `WHERE` clause in either dialect, and the `WHERE` clauses of the admin listings
//! ([`Clause`]). Only placeholders and column names go into the text; every value is a bound
//! parameter, numbered from 2 in a revocation (parameter 1 is the revocation time), from 1 in a
//! listing.

use tether_core::audit::id_floor;
use tether_core::model::BindingType;
use tether_core::store::{EventQuery, RevokeCondition, RevokeField, TokenMeta, TokenQuery};

use crate::rows::cols;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `?N` placeholders; a list is one placeholder per value (`IN (?3, ?4)`).
    Sqlite,
    /// `$N` placeholders; a list is one array parameter (`= ANY($3)`, `<> ALL($3)`), so the
    /// statement's text does not vary with the list's length.
    Postgres,
}

/// A bound value of the clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Text(String),
    /// PostgreSQL only: a `TEXT[]`.
    List(Vec<String>),
    Int(i64),
}

fn column(f: RevokeField) -> &'static str {
    match f {
        RevokeField::SessionId => "session_id",
        RevokeField::UserId => "user_id",
        RevokeField::BindingType => "binding_type",
        RevokeField::BindingRef => "binding_ref",
        RevokeField::ClientId => "client_id",
    }
}

/// Collects parameters and hands out their placeholders.
struct Binder {
    dialect: Dialect,
    params: Vec<Param>,
    /// Placeholders bound before the first of `params` (numbered from 1).
    before: usize,
}

impl Binder {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        let n = self.params.len() + self.before;
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The placeholders of a list, comma-separated (SQLite) or one array (PostgreSQL).
    fn list(&mut self, values: &[&str]) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                values.iter().map(|v| self.bind(Param::Text(v.to_string()))).collect::<Vec<_>>().join(", ")
            }
            Dialect::Postgres => self.bind(Param::List(values.iter().map(|v| v.to_string()).collect())),
        }
    }
}

/// The clause (conditions joined with `AND`) and its parameters, in placeholder order.
pub(crate) fn revoke_where(conds: &[RevokeCondition<'_>], dialect: Dialect) -> (String, Vec<Param>) {
    let mut b = Binder { dialect, params: Vec::new(), before: 1 };
    let sql: Vec<String> = conds
        .iter()
        .map(|c| match (c, dialect) {
            (RevokeCondition::Is(f, v), _) => format!("{} = {}", column(*f), b.bind(Param::Text(v.to_string()))),
            (RevokeCondition::OneOf(f, vs), Dialect::Sqlite) => format!("{} IN ({})", column(*f), b.list(vs)),
            (RevokeCondition::OneOf(f, vs), Dialect::Postgres) => format!("{} = ANY({})", column(*f), b.list(vs)),
            (RevokeCondition::NullOrNoneOf(f, vs), Dialect::Sqlite) => {
                format!("({0} IS NULL OR {0} NOT IN ({1}))", column(*f), b.list(vs))
            }
            (RevokeCondition::NullOrNoneOf(f, vs), Dialect::Postgres) => {
                format!("({0} IS NULL OR {0} <> ALL({1}))", column(*f), b.list(vs))
            }
        })
        .collect();
    (sql.join(" AND "), b.params)
}

/// The `WHERE` clause of a listing, made of the conditions its query sets (joined with `AND`).
/// Column expressions are the caller's constants, never input; values are bound, numbered from 1.
pub(crate) struct Clause {
    b: Binder,
    conds: Vec<String>,
}

impl Clause {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self { b: Binder { dialect, params: Vec::new(), before: 0 }, conds: Vec::new() }
    }

    /// `expr op value`, `op` a comparison operator (`=`, `<`, `>=` …).
    pub(crate) fn cmp(&mut self, expr: &str, op: &str, value: Param) {
        let p = self.b.bind(value);
        self.conds.push(format!("{expr} {op} {p}"));
    }

    /// `expr = value` when the value is set.
    pub(crate) fn eq_opt(&mut self, expr: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.cmp(expr, "=", Param::Text(v.to_string()));
        }
    }

    /// A condition without a value.
    pub(crate) fn raw(&mut self, cond: &'static str) {
        self.conds.push(cond.to_string());
    }

    /// `expr` is one of `values`; an empty list is no condition at all.
    pub(crate) fn one_of(&mut self, expr: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let list = self.b.list(&values);
        self.conds.push(match self.b.dialect {
            Dialect::Sqlite => format!("{expr} IN ({list})"),
            Dialect::Postgres => format!("{expr} = ANY({list})"),
        });
    }

    /// The placeholder of a value that is no condition (a `LIMIT`).
    pub(crate) fn bind(&mut self, value: Param) -> String {
        self.b.bind(value)
    }

    /// `WHERE …` (empty without conditions) and every parameter bound, in placeholder order.
    pub(crate) fn finish(self) -> (String, Vec<Param>) {
        let sql = if self.conds.is_empty() { String::new() } else { format!("WHERE {}", self.conds.join(" AND ")) };
        (sql, self.b.params)
    }
}

/// A token table of [`token_listing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenTable {
    Access,
    Refresh,
}

/// The statement listing one token table's metadata for `q` (read by `rows::access_meta_from` /
/// `rows::refresh_meta_from`), by public id ascending, at most `q.limit` rows. PostgreSQL compares
/// ids bytewise (`COLLATE "C"`, as its index of migration 0007 does), as SQLite does: the merged
/// order and the cursor must not depend on the database's locale.
pub(crate) fn token_listing(q: &TokenQuery, dialect: Dialect, table: TokenTable) -> (String, Vec<Param>) {
    let (table, cols, id) = match table {
        TokenTable::Access => ("access_tokens", cols!(access_meta), "jti"),
        TokenTable::Refresh => ("refresh_tokens", cols!(refresh_meta), "id"),
    };
    let id = match dialect {
        Dialect::Sqlite => id.to_string(),
        Dialect::Postgres => format!("{id} COLLATE \"C\""),
    };
    let mut w = Clause::new(dialect);
    w.eq_opt("client_id", q.client_id.as_deref());
    w.eq_opt("user_id", q.user_id.as_deref());
    match q.binding {
        // No stored token has the type `none`: an unbound token has no binding columns.
        Some(BindingType::None) => w.raw("binding_type IS NULL"),
        Some(kind) => w.cmp("binding_type", "=", Param::Text(kind.as_str().to_string())),
        None => {}
    }
    if let Some(after) = &q.after_id {
        w.cmp(&id, ">", Param::Text(after.clone()));
    }
    let limit = w.bind(Param::Int(q.limit.into()));
    let (cond, vals) = w.finish();
    (format!("SELECT {cols} FROM {table} {cond} ORDER BY {id} LIMIT {limit}"), vals)
}

/// Both tables' listings ([`token_listing`]) as one: by public id ascending, at most `limit`.
pub(crate) fn merge_tokens(mut tokens: Vec<TokenMeta>, limit: u32) -> Vec<TokenMeta> {
    tokens.sort_by(|a, b| (&a.id, a.refresh).cmp(&(&b.id, b.refresh)));
    tokens.truncate(limit as usize);
    tokens
}

/// The statement listing the events `q` selects (read by `rows::event_from`), newest first. The
/// id column compares bytewise in both dialects (PostgreSQL: declared `COLLATE "C"`).
pub(crate) fn event_listing(q: &EventQuery, dialect: Dialect) -> (String, Vec<Param>) {
    let mut w = Clause::new(dialect);
    w.one_of("type", &q.types);
    // Time ranges through the primary key (ids begin with their second): see `audit::id_floor`.
    if let Some(t) = q.since {
        w.cmp("id", ">=", Param::Text(id_floor(t)));
    }
    if let Some(t) = q.until {
        w.cmp("id", "<", Param::Text(id_floor(t)));
    }
    w.eq_opt("client_id", q.client_id.as_deref());
    w.eq_opt("username", q.username.as_deref());
    if let Some(before) = &q.before_id {
        w.cmp("id", "<", Param::Text(before.clone()));
    }
    let limit = w.bind(Param::Int(q.limit.into()));
    let (cond, vals) = w.finish();
    (format!("SELECT {} FROM events {cond} ORDER BY id DESC LIMIT {limit}", cols!(events)), vals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::store::RevokeFilter;

    #[test]
    fn logout_filter_in_both_dialects() {
        let f = RevokeFilter {
            session_id: Some("s".into()),
            client_ids: Some(vec!["a".into(), "b".into()]),
            spare_binding_kinds: vec![BindingType::ClientRequest, BindingType::DeviceFlow],
            ..Default::default()
        };
        let conds = f.conditions().unwrap().unwrap();
        let t = |s: &str| Param::Text(s.into());
        assert_eq!(
            revoke_where(&conds, Dialect::Sqlite),
            (
                "session_id = ?2 AND client_id IN (?3, ?4) AND (binding_type IS NULL OR binding_type NOT IN (?5, ?6))"
                    .to_string(),
                vec![t("s"), t("a"), t("b"), t("client-request"), t("device-flow")]
            )
        );
        assert_eq!(
            revoke_where(&conds, Dialect::Postgres),
            (
                "session_id = $2 AND client_id = ANY($3) AND (binding_type IS NULL OR binding_type <> ALL($4))"
                    .to_string(),
                vec![
                    t("s"),
                    Param::List(vec!["a".into(), "b".into()]),
                    Param::List(vec!["client-request".into(), "device-flow".into()])
                ]
            )
        );
    }

    #[test]
    fn listing_clauses_in_both_dialects() {
        let build = |dialect| {
            let mut c = Clause::new(dialect);
            c.one_of("type", &["a".into(), "b".into()]);
            c.one_of("type", &[]);
            c.cmp("time", ">=", Param::Int(5));
            c.eq_opt("client_id", None);
            c.eq_opt("username", Some("alice"));
            c.raw("revoked_at IS NULL");
            let limit = c.bind(Param::Int(10));
            let (sql, params) = c.finish();
            (format!("{sql} LIMIT {limit}"), params)
        };
        let t = |s: &str| Param::Text(s.into());
        assert_eq!(
            build(Dialect::Sqlite),
            (
                "WHERE type IN (?1, ?2) AND time >= ?3 AND username = ?4 AND revoked_at IS NULL LIMIT ?5".to_string(),
                vec![t("a"), t("b"), Param::Int(5), t("alice"), Param::Int(10)]
            )
        );
        assert_eq!(
            build(Dialect::Postgres),
            (
                "WHERE type = ANY($1) AND time >= $2 AND username = $3 AND revoked_at IS NULL LIMIT $4".to_string(),
                vec![Param::List(vec!["a".into(), "b".into()]), Param::Int(5), t("alice"), Param::Int(10)]
            )
        );
        let (sql, params) = Clause::new(Dialect::Sqlite).finish();
        assert!(sql.is_empty() && params.is_empty());
    }
}
