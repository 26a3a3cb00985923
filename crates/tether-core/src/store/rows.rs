//! Stored text columns read back into typed values, for every backend: an enum's wire text, a
//! JSON audience, a binding spread over four columns. A value this version cannot read is a
//! [`StoreError::Corrupt`] naming its table and column, never a default (a token read as some other
//! type or binding than it was issued with would be a silent security bug).

use crate::error::StoreError;
use crate::model::BindingType;

use super::{BindingRecord, StoreResult};

/// Parse a text column with `parse` (an enum's `parse`); `None` from it means a corrupt row.
pub fn parse_column<T>(
    table: &'static str,
    column: &'static str,
    text: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> StoreResult<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt { table, column, detail: format!("unknown value {text:?}") })
}

/// An `audience` column: a JSON array of strings.
pub fn audience_from_json(table: &'static str, text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { table, column: "audience", detail: e.to_string() })
}

/// The JSON text an `audience` column stores.
pub fn audience_to_json(audience: &[String]) -> StoreResult<String> {
    serde_json::to_string(audience).map_err(|e| StoreError::Other(format!("cannot encode an audience: {e}")))
}

/// The `binding_type`, `binding_ref`, `binding_hash` (and `binding_cnf`, where the table has it)
/// columns of one row. No type: the token is unbound. A type without its reference and hash, or one
/// this version does not know, is a corrupt row.
pub fn binding_from_columns(
    table: &'static str,
    kind: Option<String>,
    reference: Option<String>,
    value_hash: Option<String>,
    cnf: Option<String>,
) -> StoreResult<Option<BindingRecord>> {
    let Some(kind) = kind else { return Ok(None) };
    let kind = parse_column(table, "binding_type", &kind, BindingType::parse)?;
    let missing = |column| StoreError::Corrupt { table, column, detail: format!("NULL for a {kind} binding") };
    Ok(Some(BindingRecord {
        kind,
        reference: reference.ok_or_else(|| missing("binding_ref"))?,
        value_hash: value_hash.ok_or_else(|| missing("binding_hash"))?,
        cnf,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenType;

    #[test]
    fn unknown_enum_text_is_a_corrupt_row_naming_table_and_column() {
        assert_eq!(parse_column("access_tokens", "token_type", "jwt", TokenType::parse).ok(), Some(TokenType::Jwt));
        let e = parse_column("access_tokens", "token_type", "bogus", TokenType::parse).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { table: "access_tokens", column: "token_type", .. }), "{e}");
        assert!(e.to_string().contains("access_tokens.token_type"), "{e}");
    }

    #[test]
    fn audience_json_round_trips_and_bad_json_is_corrupt() {
        let a = vec!["https://api".to_string(), "b".to_string()];
        let text = audience_to_json(&a).unwrap();
        assert_eq!(audience_from_json("codes", &text).unwrap(), a);
        let e = audience_from_json("codes", "not json").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { table: "codes", column: "audience", .. }), "{e}");
    }

    #[test]
    fn bindings_read_back_or_fail() {
        assert_eq!(binding_from_columns("t", None, None, None, None).unwrap(), None);
        let b = binding_from_columns("t", Some("dpop".into()), Some("r".into()), Some("h".into()), Some("jkt".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (b.kind, b.reference.as_str(), b.value_hash.as_str(), b.cnf.as_deref()),
            (BindingType::Dpop, "r", "h", Some("jkt"))
        );
        let e =
            binding_from_columns("t", Some("telepathy".into()), Some("r".into()), Some("h".into()), None).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { column: "binding_type", .. }), "{e}");
        let e = binding_from_columns("t", Some("cookie".into()), None, Some("h".into()), None).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { column: "binding_ref", .. }), "{e}");
    }
}
