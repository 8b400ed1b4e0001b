//! Test values (the conformance crate's, shared with the PostgreSQL store), and checks on the database file itself.

use std::path::Path;

pub(crate) use scrip_store_conformance::fixtures::*;

/// Reads an integer pragma through a connection of its own.
pub(crate) fn pragma(path: &Path, name: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("open database");
    conn.pragma_query_value(None, name, |row| row.get(0))
        .expect("read pragma")
}

/// SQLite's `synchronous` level of a store's connection: 2 is FULL, 1 NORMAL.
pub(crate) fn synchronous(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
        .expect("read synchronous")
}

/// A database file as a build that knew only the first `version`
/// migrations of `schema` left it, and a connection to it, for tests of
/// the migrations that follow.
pub(crate) fn file_at_version(
    path: &Path,
    schema: &crate::db::Schema,
    version: usize,
) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open database");
    conn.execute_batch("PRAGMA journal_mode = WAL")
        .expect("WAL");
    for migration in &schema.migrations[..version] {
        conn.execute_batch(migration).expect("migrate");
    }
    conn.pragma_update(None, "application_id", schema.application_id)
        .expect("application id");
    conn.pragma_update(None, "user_version", version)
        .expect("version");
    conn
}

/// Runs SQL on the file through a connection of its own: how tests corrupt rows.
pub(crate) fn execute(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("open database");
    conn.execute_batch(sql).expect("run SQL");
}

/// The database and its `-wal` and `-shm` files, where present, are readable by their owner only.
pub(crate) fn assert_owner_only(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut checked = 0;
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            if let Ok(metadata) = std::fs::metadata(&file) {
                assert_eq!(
                    metadata.permissions().mode() & 0o777,
                    0o600,
                    "mode of {file}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 2, "the database and its WAL exist");
    }
}
