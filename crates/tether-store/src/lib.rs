//! Storage backends behind [`tether_core::store::Store`].
//!
//! **Owns** the SQL of each dialect, migrations and connection handling. **Must not** decide
//! protocol questions: what issuance or revocation does when a precondition fails, which tokens a
//! logout spares, is decided in `tether_core::store` and only executed here. Depends on
//! `tether-core` alone among Tether crates; `tests/conformance.rs` runs one suite on every backend.
//!
//! SQLite ([`SqliteStore`], on rusqlite: see its module docs for why) is the embedded default;
//! PostgreSQL ([`PostgresStore`]) serves several nodes. Neither decides anything of its own: the
//! decisions are `tether_core::store`'s (the issuance and revocation flows, the conditions of a bulk
//! revocation, how stored values are read back), and each backend only runs them with its own SQL.
//! What they share besides lives here: the row mappers and column lists (`rows`), the rendering of
//! revocation conditions and of the admin listings' filters per dialect (`filter`) and the
//! migration list. `tests/conformance.rs` runs the same cases against both.

/// The embedded migrations of one dialect (`migrations/<dialect>/`), applied in order. Both
/// dialects have the same migrations, numbered alike; each is additive only (a rolling upgrade runs
/// versions N and N+1 side by side).
macro_rules! migrations {
    ($dialect:literal) => {
        &[
            (1, include_str!(concat!("../migrations/", $dialect, "/0001_init.sql"))),
            (2, include_str!(concat!("../migrations/", $dialect, "/0002_purge_indexes.sql"))),
            (3, include_str!(concat!("../migrations/", $dialect, "/0003_binding_cnf.sql"))),
            (4, include_str!(concat!("../migrations/", $dialect, "/0004_act.sql"))),
            (5, include_str!(concat!("../migrations/", $dialect, "/0005_device.sql"))),
            (6, include_str!(concat!("../migrations/", $dialect, "/0006_dpop_jti.sql"))),
            (7, include_str!(concat!("../migrations/", $dialect, "/0007_admin.sql"))),
            (8, include_str!(concat!("../migrations/", $dialect, "/0008_unlocks.sql"))),
            (9, include_str!(concat!("../migrations/", $dialect, "/0009_sealed_secret.sql"))),
            (10, include_str!(concat!("../migrations/", $dialect, "/0010_events_by_id.sql"))),
            (11, include_str!(concat!("../migrations/", $dialect, "/0011_par.sql"))),
            (12, include_str!(concat!("../migrations/", $dialect, "/0012_backchannel_logout.sql"))),
            (13, include_str!(concat!("../migrations/", $dialect, "/0013_registration.sql"))),
        ]
    };
}

mod backend;
mod backup;
mod errors;
mod filter;
mod postgres;
mod rows;
mod sqlite;

pub use backend::{Backend, Probe};
pub use backup::{Copied, backup_sqlite, restore_sqlite};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Default size of the PostgreSQL connection pool (per node).
pub const DEFAULT_POOL_SIZE: u32 = 16;

use std::sync::Arc;
use tether_core::store::Store;

/// Look at a database without creating or migrating it. PostgreSQL connection failures come back
/// with their real cause (connection refused, authentication failed, no such database).
pub async fn probe(backend: &Backend) -> Result<Probe, String> {
    match backend {
        Backend::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || sqlite::probe(&path)).await.map_err(|e| e.to_string())?
        }
        Backend::Postgres(url) => postgres::probe(url).await,
    }
}

/// Open (creating if needed, and migrating) the store a URL names. `pool_size` sizes the
/// PostgreSQL pool.
pub async fn open(url: &str, pool_size: u32) -> Result<Arc<dyn Store>, String> {
    match Backend::parse(url)? {
        Backend::Postgres(u) => Ok(Arc::new(PostgresStore::open(&u, pool_size).await?)),
        Backend::Sqlite(p) => Ok(Arc::new(SqliteStore::open(&p.to_string_lossy()).await?)),
    }
}
