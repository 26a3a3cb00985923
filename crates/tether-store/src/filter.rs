//! The conditions of a bulk revocation (decided in tether-core by `RevokeFilter::conditions`)
//! written as a SQL `WHERE` clause in either dialect. Only placeholders and column names go into
//! the text; every value is a bound parameter, numbered from 2 (parameter 1 is the revocation time).

use tether_core::store::{RevokeCondition, RevokeField};

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
}

impl Binder {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        let n = self.params.len() + 1;
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
    let mut b = Binder { dialect, params: Vec::new() };
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

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::model::BindingType;
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
}
