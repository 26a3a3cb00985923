//! Online backup and restore of the embedded SQLite database (`tether backup` / `tether
//! restore`), through SQLite's online backup API: the copy is one consistent snapshot of the
//! database taken under a read transaction, so `tether serve` keeps answering (in WAL mode
//! readers never block the writer) and nothing committed before the backup began is missing.
//!
//! The copy is a single self-contained file (rollback journal mode, no `-wal` beside it), mode
//! 0600 (it holds password and token hashes). The master key is never in it: it lives outside
//! the database, and the sealed server keys in the backup only open under it.
//!
//! PostgreSQL has its own tools (`pg_dump` / `pg_restore`); see `docs/operations.md`.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// What a backup or restore copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Database pages copied.
    pub pages: i32,
    /// The newest schema migration in the copy.
    pub schema_version: i64,
    /// Bytes of the resulting file.
    pub bytes: u64,
}

fn open_ro(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// The newest migration of a Tether database, or why it is not one.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, String> {
    let is_tether: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'tether_migrations'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("{} is not a SQLite database: {e}", path.display()))?;
    if !is_tether {
        return Err(format!("{} is not a Tether database (no tether_migrations table)", path.display()));
    }
    conn.query_row("SELECT coalesce(max(version), 0) FROM tether_migrations", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

/// Copy `src` into the new file `dst` (which must not exist) in one step of the backup API,
/// then make the copy self-contained and check it.
fn copy(src: &Path, dst: &Path) -> Result<Copied, String> {
    let from = open_ro(src)?;
    schema_version(&from, src)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(dst).map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
    let result = (|| {
        let mut to = Connection::open(dst).map_err(|e| format!("cannot open {}: {e}", dst.display()))?;
        let pages = {
            let b = Backup::new(&from, &mut to).map_err(|e| format!("backup: {e}"))?;
            // -1: every page in one step, under one read transaction of the source (a
            // consistent snapshot even while a server writes).
            let mut tries = 0;
            loop {
                match b.step(-1).map_err(|e| format!("backup: {e}"))? {
                    StepResult::Done => break,
                    // Only a writer holding the lock at this instant: wait a moment.
                    StepResult::More | StepResult::Busy | StepResult::Locked if tries < 200 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(25));
                    }
                    other => return Err(format!("backup: the database stayed busy ({other:?})")),
                }
            }
            b.progress().pagecount
        };
        let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(format!("{}: cannot leave WAL mode (got {mode})", dst.display()));
        }
        let ok: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if ok != "ok" {
            return Err(format!("the copy in {} fails its integrity check: {ok}", dst.display()));
        }
        let schema_version = schema_version(&to, dst)?;
        drop(to);
        let f = std::fs::File::open(dst).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| format!("cannot sync {}: {e}", dst.display()))?;
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Copied { pages, schema_version, bytes })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// `tether backup`: a consistent online copy of the SQLite database `db` into `out` (a new
/// file).
pub fn backup_sqlite(db: &Path, out: &Path) -> Result<Copied, String> {
    if !db.is_file() {
        return Err(format!("there is no database at {}", db.display()));
    }
    if out.exists() {
        return Err(format!("{} exists: a backup never overwrites a file", out.display()));
    }
    copy(db, out)
}

/// `tether restore`: the backup `file` becomes the database `db`, which must not exist yet
/// (restore into an empty data directory; a running server's database is never replaced).
pub fn restore_sqlite(file: &Path, db: &Path) -> Result<Copied, String> {
    if !file.is_file() {
        return Err(format!("there is no backup at {}", file.display()));
    }
    let taken = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
    if taken(db) || db.with_extension("db-wal").exists() {
        return Err(format!(
            "{} exists: restore only into an empty data directory (move the old database away first)",
            db.display()
        ));
    }
    // An empty file left by a failed start is not a database.
    if db.exists() {
        std::fs::remove_file(db).map_err(|e| e.to_string())?;
    }
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    copy(file, db)
}
