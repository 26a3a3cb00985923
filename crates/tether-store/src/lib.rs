//! Storage backends behind [`tether_core::store::Store`].
//!
//! SQLite ([`SqliteStore`], on rusqlite: see its module docs for why) is the embedded default.
//! PostgreSQL follows with the same trait and the same conformance tests.

mod errors;
mod sqlite;

pub use sqlite::SqliteStore;

use std::sync::Arc;
use tether_core::store::Store;

/// Open the store a URL names: `sqlite://PATH` (or a bare path).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err("PostgreSQL support is not in this version yet; use a sqlite:// database".into());
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    Ok(Arc::new(SqliteStore::open(path).await?))
}
