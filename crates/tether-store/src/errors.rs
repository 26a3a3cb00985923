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
