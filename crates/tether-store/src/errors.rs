//! sqlx errors mapped to what the protocol layer must tell apart: "try again later" (503) versus
//! a conflict versus a bug.

use tether_core::error::StoreError;

pub fn map(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_string());
            }
            // SQLite primary result codes: BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11,
            // FULL 13, CANTOPEN 14. PostgreSQL: class 08 (connection), 57P (shutdown), 53 (resources).
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
            if matches!(primary, 5 | 6 | 8 | 10 | 13 | 14)
                || code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
            {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Other(e.to_string())
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::RowNotFound => StoreError::NotFound,
        _ => StoreError::Other(e.to_string()),
    }
}
