//! rusqlite errors mapped to what the protocol layer must tell apart: "try again later" (503)
//! versus a conflict versus a bug.

use rusqlite::ErrorCode;
use tether_core::error::StoreError;

pub fn map(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation if matches!(f.extended_code, 2067 | 1555) => {
                StoreError::Conflict(e.to_string())
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        },
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        _ => StoreError::Other(e.to_string()),
    }
}

/// sqlx (PostgreSQL) errors. Connection-class failures, server shutdown, resource exhaustion, lock
/// and statement timeouts mean "try again" (503); unique violations are conflicts.
pub fn map_pg(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_string());
            }
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "55P03"
                || code == "57014"
                || code == "40001"
                || code == "40P01"
            {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Other(e.to_string())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::RowNotFound => StoreError::NotFound,
        _ => StoreError::Other(e.to_string()),
    }
}
