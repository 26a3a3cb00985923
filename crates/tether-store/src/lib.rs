//! Storage backends behind [`tether_core::store::Store`].
//!
//! SQLite ([`SqliteStore`], on rusqlite: see its module docs for why) is the embedded default.
//! PostgreSQL follows with the same trait and the same conformance tests.

mod errors;
mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Default size of the PostgreSQL connection pool (per node).
pub const DEFAULT_POOL_SIZE: u32 = 16;

use std::sync::Arc;
use tether_core::store::Store;

/// Open the store a URL names: `postgres://…` / `postgresql://…`, or `sqlite://PATH` (or a bare
/// path). `pool_size` sizes the PostgreSQL pool.
pub async fn open(url: &str, pool_size: u32) -> Result<Arc<dyn Store>, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url, pool_size).await?));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    Ok(Arc::new(SqliteStore::open(path).await?))
}
