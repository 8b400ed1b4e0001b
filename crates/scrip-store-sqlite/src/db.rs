//! Opening a database the one way all three stores do: file permissions, pragmas, migrations, and column conversions.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, TransactionBehavior};
use scrip_core::store::{digest_from_stored, Spend, StoreError, StoredResponse};
use scrip_proto::RequestId;

/// How long a connection waits for another writer (a thread or a process on
/// the same file) before giving up with "database is locked".
///
/// Writers hold the lock for one short step, so ten seconds means something is
/// stuck; failing then turns into `Refusal::Unavailable`, which is safe to retry.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's busy handler: called with the number of earlier calls for the same
/// lock; sleeps and returns true to try again, or false to give up.
///
/// SQLite's own `busy_timeout` backs off to 100 ms sleeps; with many writers on
/// one file (a broker's worker threads) that leaves the lock idle most of the
/// time and a step waits far longer than the steps ahead of it took. Polling
/// every millisecond, then every five, keeps the wait close to the work.
fn wait_for_lock(earlier_calls: i32) -> bool {
    match lock_wait(earlier_calls) {
        Some(pause) => {
            std::thread::sleep(pause);
            true
        }
        None => false,
    }
}

/// Makes `conn` wait for other writers with [`wait_for_lock`].
fn wait_for_writers(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_handler(Some(wait_for_lock))
        .map_err(failed("cannot set busy handler"))
}

/// Runs `operation` until it does not fail with "database is locked", pausing
/// as [`wait_for_lock`] does, for at most [`BUSY_TIMEOUT`] in all.
fn retry_while_busy<T>(
    what: &'static str,
    mut operation: impl FnMut() -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let mut earlier_calls = 0;
    loop {
        match operation() {
            Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                match lock_wait(earlier_calls) {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(failed(what)(error)),
                }
                earlier_calls += 1;
            }
            result => return result.map_err(failed(what)),
        }
    }
}

/// How long [`wait_for_lock`] sleeps on its `earlier_calls + 1`th call, or
/// `None` once the sleeps so far add up to [`BUSY_TIMEOUT`].
fn lock_wait(earlier_calls: i32) -> Option<Duration> {
    const FAST_CALLS: u64 = 100;
    let calls = u64::try_from(earlier_calls).unwrap_or(0);
    let waited_ms = calls.min(FAST_CALLS) + calls.saturating_sub(FAST_CALLS) * 5;
    if u128::from(waited_ms) >= BUSY_TIMEOUT.as_millis() {
        return None;
    }
    let pause_ms = if calls < FAST_CALLS { 1 } else { 5 };
    Some(Duration::from_millis(pause_ms))
}

/// What one kind of database looks like: its role, its SQLite `application_id`
/// and its migrations.
pub(crate) struct Schema {
    /// For messages: "broker", "merchant", "wallet".
    pub(crate) role: &'static str,
    /// Written to `PRAGMA application_id`, so a wallet file opened as a broker
    /// store is refused instead of being given the broker's tables.
    pub(crate) application_id: i32,
    /// Migration `i` takes the schema from `PRAGMA user_version` `i` to `i + 1`.
    /// Append only: a migration that has shipped is never edited.
    pub(crate) migrations: &'static [&'static str],
}

impl Schema {
    /// The schema version this build writes and expects.
    pub(crate) fn version(&self) -> i64 {
        i64::try_from(self.migrations.len()).unwrap_or(i64::MAX)
    }
}

/// Maps a rusqlite error to a [`StoreError`] that says which operation failed.
///
/// rusqlite's messages name the constraint or the SQL that failed, never the
/// bound values, so no secret (a licence, a customer secret) reaches the text.
pub(crate) fn failed(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| StoreError(format!("{what}: {error}"))
}

/// Opens (creating if needed) the database at `path` for `schema`.
///
/// A new file is created readable and writable by its owner only, before
/// SQLite sees it; SQLite gives the `-wal` and `-shm` files the same mode.
pub(crate) fn open(path: &Path, schema: &Schema) -> Result<Connection, StoreError> {
    create_private_file(path).map_err(|error| {
        StoreError(format!(
            "cannot create {} database {}: {error}",
            schema.role,
            path.display()
        ))
    })?;
    let conn = Connection::open(path).map_err(|error| {
        StoreError(format!(
            "cannot open {} database {}: {error}",
            schema.role,
            path.display()
        ))
    })?;
    configure(conn, schema, Some(path))
}

/// Opens a private in-memory database for `schema`: for tests and throwaway runs.
pub(crate) fn open_in_memory(schema: &Schema) -> Result<Connection, StoreError> {
    let conn = Connection::open_in_memory().map_err(failed("cannot open in-memory database"))?;
    configure(conn, schema, None)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // An existing database is left alone, not even opened: closing any file
    // descriptor of it would release every POSIX lock this process holds on
    // it, those of its other connections too (a broker process holds several),
    // and another process could then checkpoint and reset the WAL under them.
    // For the same reason a file this process creates is closed before any
    // of its threads can open it: one creating, another finding it created
    // and locking it through SQLite, and the first closing its descriptor.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Prepared statements kept per connection: more than the broker's store
/// uses, so none is prepared again per step (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 128;

/// `path` is the file's, `None` for a database in memory.
fn configure(
    mut conn: Connection,
    schema: &Schema,
    path: Option<&Path>,
) -> Result<Connection, StoreError> {
    // The busy handler first, so that the pragmas and the migration below wait
    // for another process that is opening or writing the same file.
    wait_for_writers(&conn)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if path.is_some() {
        // WAL lets readers and one writer proceed together, and survives a crash
        // of the process or the machine with synchronous=FULL below. Switching a
        // new file to WAL can fail with "database is locked" without calling the
        // busy handler (another connection is switching it too), so it retries.
        let mode: String = retry_while_busy("cannot set journal mode", || {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!(
                "cannot set journal mode: SQLite kept {mode:?} instead of WAL"
            )));
        }
    }
    // FULL syncs the WAL on every commit: an acknowledged payment survives a
    // power cut. NORMAL would be faster and could lose the last commits.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(failed("cannot set synchronous mode"))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(failed("cannot enable foreign keys"))?;
    // A transaction inside a group commit is a savepoint, whose journal of
    // the pages it changed would spill to a temporary file past 64 KiB: a
    // merchant's group of sales shares one. Kept in memory, it costs no I/O;
    // the durability of the group is the WAL's.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(failed("cannot keep temporary files in memory"))?;
    migrate(&mut conn, schema)?;
    if let Some(path) = path {
        reserve_wal(&conn, path, schema)?;
    }
    Ok(conn)
}

/// Grows a new write-ahead log to the size it keeps between checkpoints, so
/// that commits overwrite it in place from the start.
///
/// A commit that appends to the log waits for the file system to record the
/// file's new size as well as the frames (on ext4, about 0.2 ms against 0.14
/// ms for an overwrite on this project's machine), and SQLite deletes the
/// log when the last connection closes, so every start would otherwise run
/// its first thousand commits or so at the slower rate. The log is grown
/// with frames that change nothing: the application id written again, one
/// unsynced commit each (about 15 ms in all), with the automatic checkpoint
/// off. Then a checkpoint with `synchronous=FULL` puts the log and the
/// database file on disk, in that order, and one synced commit starts the
/// log over, so no caller's first commit waits to flush the grown log.
///
/// Only the frames that change nothing are ever unsynced: the log may also
/// hold commits made before (this file's migration, or another process's
/// sales), and an unsynced checkpoint followed by a restart of the log could
/// lose them in a power cut, the database file's copy of them being still in
/// the OS's cache when the log's new header reached the disk.
fn reserve_wal(conn: &Connection, path: &Path, schema: &Schema) -> Result<(), StoreError> {
    let query = |pragma: &str| -> Result<i64, StoreError> {
        conn.pragma_query_value(None, pragma, |row| row.get(0))
            .map_err(failed("cannot read the write-ahead log's settings"))
    };
    let (frames, page_size) = (query("wal_autocheckpoint")?, query("page_size")?);
    let wanted = u64::try_from(frames.saturating_mul(page_size.saturating_add(24))).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    // Only the file's size is read: no descriptor of it is opened (see `create_private_file`).
    let grown = std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
    if frames <= 0 || grown >= wanted {
        return Ok(());
    }
    // Each frame is the same page written again with the same value, which
    // a concurrent migration by another process cannot make stale. Opening
    // a store never waits for a writer (see `migrate`): if another
    // connection holds the write lock, the log is left as it is, and it
    // grows by the commits themselves, as it did before.
    // One frame that changes nothing; `false` if another connection holds
    // the write lock, whose next synced commit puts the frames on disk.
    let write_frame = || -> rusqlite::Result<bool> {
        match conn.pragma_update(None, "application_id", schema.application_id) {
            Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                Ok(false)
            }
            written => written.map(|()| true),
        }
    };
    let write_frames = || -> rusqlite::Result<()> {
        conn.busy_handler(None)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        run(conn, "PRAGMA synchronous=OFF")?;
        for _ in 0..frames {
            if !write_frame()? {
                return Ok(());
            }
        }
        restore_synchronous(conn)?;
        // PASSIVE takes no lock a writer needs; what it cannot copy back
        // now, a later checkpoint will.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        write_frame().map(drop)
    };
    let written = write_frames();
    restore_synchronous(conn).map_err(failed("cannot set synchronous mode"))?;
    conn.pragma_update(None, "wal_autocheckpoint", frames)
        .map_err(failed("cannot set the automatic checkpoint"))?;
    wait_for_writers(conn)?;
    written.map_err(failed("cannot prepare the write-ahead log"))
}

/// Brings the schema up to [`Schema::version`].
///
/// An up-to-date file is only read, so opening a store does not wait for a
/// writer. Otherwise the migration runs in one immediate transaction that
/// checks the version again, so two processes opening a new file at once
/// migrate it once.
fn migrate(conn: &mut Connection, schema: &Schema) -> Result<(), StoreError> {
    if schema_version(conn, schema)? == schema.version() {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed("cannot begin migration"))?;
    let version = schema_version(&tx, schema)?;
    // schema_version checked that `version` is in 0..=migrations.len().
    let pending = usize::try_from(version)
        .ok()
        .and_then(|version| schema.migrations.get(version..))
        .unwrap_or_default();
    for migration in pending {
        tx.execute_batch(migration)
            .map_err(failed("cannot apply schema migration"))?;
    }
    tx.pragma_update(None, "application_id", schema.application_id)
        .map_err(failed("cannot write application id"))?;
    tx.pragma_update(None, "user_version", schema.version())
        .map_err(failed("cannot write schema version"))?;
    tx.commit().map_err(failed("cannot commit migration"))
}

/// The file's schema version, after checking that it belongs to `schema`'s
/// role and is not newer than this build.
fn schema_version(conn: &Connection, schema: &Schema) -> Result<i64, StoreError> {
    // One statement, so both values come from one snapshot even outside a
    // transaction, while another connection may be migrating the file.
    let (application_id, version): (i32, i64) = conn
        .query_row(
            "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(failed("cannot read schema version"))?;
    let is_new = application_id == 0 && version == 0;
    if !is_new && application_id != schema.application_id {
        return Err(StoreError(format!(
            "the file is not a scrip {} database (application id {application_id:#x})",
            schema.role
        )));
    }
    if !(0..=schema.version()).contains(&version) {
        return Err(StoreError(format!(
            "the {} database has schema version {version}, which this build does not know (it knows up to {}): upgrade scrip",
            schema.role,
            schema.version()
        )));
    }
    Ok(version)
}

// ---- Column conversions ---------------------------------------------------
//
// Values go in as SQLite integers and blobs, converted as every store does
// (`scrip_core::store`'s `StoredAsI64` and `*_from_stored`); coming out,
// anything that does not fit the Rust type is a corrupt row and becomes a
// StoreError, never a panic.

/// Converts a row limit to SQL; `usize::MAX` means no limit.
pub(crate) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---- Stored responses (broker and merchant) -------------------------------

/// Reads the `responses` table that the broker and merchant schemas both have.
pub(crate) fn stored_response(
    step: &mut Step<'_>,
    request: &RequestId,
) -> Result<Option<StoredResponse>, StoreError> {
    let row = step
        .statement("SELECT request_digest, response, leaf FROM responses WHERE request_id = ?1")
        .and_then(|statement| {
            statement
                .query_row([request.as_bytes()], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                    ))
                })
                .optional()
        })
        .map_err(failed("cannot read stored response"))?;
    row.map(|(digest, response, leaf)| response_from_stored(digest, response, leaf))
        .transpose()
}

/// Stores the response to `request` in the `responses` table; an id answered before is an error, since
/// the core looks it up first and a retry must never get a different answer.
pub(crate) fn store_response(
    step: &mut Step<'_>,
    request: &RequestId,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    step.statement(
        "INSERT INTO responses (request_id, request_digest, response, leaf) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|statement| {
        statement.execute(params![
            request.as_bytes(),
            response.request_digest,
            response.response,
            response.leaf.map(|l| l as i64)
        ])
    })
    .map(drop)
    .map_err(failed("cannot store response"))
}

/// A stored response from the columns it is stored in: the request's
/// digest, the response's bytes and its leaf.
pub(crate) fn response_from_stored(
    digest: Vec<u8>,
    response: Vec<u8>,
    leaf: Option<i64>,
) -> Result<StoredResponse, StoreError> {
    Ok(StoredResponse {
        request_digest: digest_from_stored(&digest)?,
        response,
        leaf: leaf
            .map(|l| u64::try_from(l).map_err(|_| StoreError::corrupt("leaf index of a response")))
            .transpose()?,
    })
}

/// Runs an insert-or-nothing statement and says whether it inserted.
pub(crate) fn insert_or_fail(
    step: &mut Step<'_>,
    sql: &'static str,
    params: impl rusqlite::Params,
    what: &'static str,
) -> Result<Spend, StoreError> {
    let inserted = step
        .statement(sql)
        .and_then(|statement| statement.execute(params))
        .map_err(failed(what))?;
    Ok(if inserted == 0 {
        Spend::AlreadySpent
    } else {
        Spend::Fresh
    })
}

/// Every row of every table but the audit log's, in a fixed order, as text.
///
/// For tests and tools that must show a refused step changed nothing: two
/// dumps are equal exactly when the stored state is. The transparency log
/// (`events`, `log_hashes`, `checkpoints`, and SQLite's own sequence table)
/// is left out: recording refused double spends and wrong PINs there is
/// the point of it. The broker's `pin_failures` is kept in, although a
/// wrong PIN changes it on purpose: tests of a wrong PIN set that table's
/// section aside and check it on its own, so every other refusal is still
/// held to changing nothing at all, the count of wrong PINs included.
pub(crate) fn fingerprint(conn: &Connection) -> Result<String, StoreError> {
    let what = "cannot dump the database";
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT IN ('events', 'log_hashes', 'checkpoints', 'sqlite_sequence') ORDER BY name")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .map_err(failed(what))?;
    let mut dump = String::new();
    for table in tables {
        dump.push_str(&format!("[{table}]\n"));
        // A `WITHOUT ROWID` table has no rowid to order by; its rows are
        // ordered by all their columns, which its primary key makes unique.
        let without_rowid: bool = conn
            .query_row(
                "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                [&table],
                |row| row.get(0),
            )
            .map_err(failed(what))?;
        let order = if without_rowid {
            let columns = conn
                .prepare(&format!("SELECT * FROM \"{table}\""))
                .map_err(failed(what))?
                .column_count();
            (1..=columns)
                .map(|column| column.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "rowid".to_owned()
        };
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY {order}"))
            .map_err(failed(what))?;
        let columns = statement.column_count();
        let mut rows = statement.query([]).map_err(failed(what))?;
        while let Some(row) = rows.next().map_err(failed(what))? {
            for column in 0..columns {
                let value: rusqlite::types::Value = row.get(column).map_err(failed(what))?;
                dump.push_str(&format!("{value:?}\t"));
            }
            dump.push('\n');
        }
    }
    Ok(dump)
}

// ---- Transactions and group commit ---------------------------------------

/// One step's transaction: `BEGIN IMMEDIATE` on its own (a plain, deferred
/// `BEGIN` for reads only), or a savepoint of the open group commit. Rolls
/// back when dropped without [`Step::commit`].
pub(crate) struct Step<'a> {
    conn: &'a Connection,
    nested: bool,
    open: bool,
    /// Began with `synchronous=NORMAL`, which its end puts back to FULL.
    unsynced: bool,
    /// The statements this transaction has run, by the address of their
    /// SQL text, kept prepared for its next rows: a merchant's group runs
    /// each hot statement hundreds of times, and the connection's cache
    /// would hash the whole text every time to find it.
    statements: Vec<(&'static str, CachedStatement<'a>)>,
}

/// What a transaction may do, which decides how it begins.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    /// Takes the write lock first, so steps run one after another.
    Write,
    /// Deferred: in WAL mode a reader sees the snapshot of its first read and
    /// waits for no writer.
    Read,
    /// As `Write`, but the commit does not wait for the disk: SQLite's
    /// `synchronous=NORMAL` for this transaction alone (it cannot change
    /// inside one). In WAL mode the commit is still atomic, and the next
    /// synced commit makes it durable with its own. For a wallet's
    /// settling transactions (`WalletStore::begin_settle`).
    WriteUnsynced,
}

impl<'a> Step<'a> {
    pub(crate) fn begin(
        conn: &'a Connection,
        nested: bool,
        access: Access,
        role: &'static str,
    ) -> Result<Self, StoreError> {
        let sql = match (nested, access) {
            (true, _) => "SAVEPOINT step",
            (false, Access::Write | Access::WriteUnsynced) => "BEGIN IMMEDIATE",
            (false, Access::Read) => "BEGIN DEFERRED",
        };
        // Nested, the group's commit decides.
        let unsynced = !nested && matches!(access, Access::WriteUnsynced);
        let cannot_begin = |error| StoreError(format!("cannot begin {role} transaction: {error}"));
        // SQLite rolls a whole transaction back after some errors (out of
        // memory, a full disk, I/O). A savepoint then would begin a
        // transaction of its own outside the group, without its lock, and
        // commit by itself.
        if nested && conn.is_autocommit() {
            return Err(StoreError(format!(
                "cannot begin {role} transaction: SQLite rolled the group commit back after an error; abort the group and begin again"
            )));
        }
        if unsynced {
            run(conn, "PRAGMA synchronous=NORMAL").map_err(cannot_begin)?;
        }
        if let Err(error) = run(conn, sql) {
            if unsynced {
                // Nothing began; the error that matters is the first.
                let _ = restore_synchronous(conn);
            }
            return Err(cannot_begin(error));
        }
        Ok(Step {
            conn,
            nested,
            open: true,
            unsynced,
            statements: Vec::new(),
        })
    }

    /// The prepared statement of `sql`, prepared on its first use in this
    /// transaction (through the connection's cache).
    pub(crate) fn statement(
        &mut self,
        sql: &'static str,
    ) -> rusqlite::Result<&mut CachedStatement<'a>> {
        let index = match self
            .statements
            .iter()
            .position(|(known, _)| std::ptr::eq(*known, sql))
        {
            Some(index) => index,
            None => {
                let statement = self.conn.prepare_cached(sql)?;
                self.statements.push((sql, statement));
                self.statements.len() - 1
            }
        };
        Ok(&mut self.statements[index].1)
    }

    pub(crate) fn commit(mut self, what: &'static str) -> Result<(), StoreError> {
        let sql = if self.nested {
            "RELEASE step"
        } else {
            "COMMIT"
        };
        run(self.conn, sql).map_err(failed(what))?;
        self.open = false;
        if self.unsynced {
            restore_synchronous(self.conn).map_err(|error| {
                StoreError(format!(
                    "the transaction committed, but the store cannot wait for the disk again ({error}); reopen it"
                ))
            })?;
        }
        Ok(())
    }
}

/// Puts a connection back to `synchronous=FULL` after an unsynced
/// transaction ended. Outside a transaction the pragma only sets a flag of
/// the connection and does no I/O, so it does not fail in practice; if it
/// did, the caller is told, not left to commit without waiting for the disk.
fn restore_synchronous(conn: &Connection) -> rusqlite::Result<()> {
    run(conn, "PRAGMA synchronous=FULL")
}

impl std::ops::Deref for Step<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let undone = if self.nested {
            // A step that cannot be undone alone takes its group with it:
            // released, it would commit with the group.
            run(self.conn, "ROLLBACK TO step")
                .and_then(|()| run(self.conn, "RELEASE step"))
                .or_else(|error| {
                    if !self.conn.is_autocommit() {
                        run(self.conn, "ROLLBACK")?;
                    }
                    Err(error)
                })
        } else {
            run(self.conn, "ROLLBACK")
        };
        if let Err(error) = undone {
            // SQLite rolls back by itself when it cannot; nothing half-done is kept.
            tracing::error!(%error, "cannot roll back a store transaction");
        }
        if self.unsynced {
            if let Err(error) = restore_synchronous(self.conn) {
                tracing::error!(%error, "cannot put the store back to synchronous=FULL; reopen it");
            }
        }
    }
}

/// Runs one statement, prepared once per connection: steps run thousands of times a second.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

pub(crate) fn begin_group(
    conn: &Connection,
    grouped: &mut bool,
    role: &'static str,
) -> Result<(), StoreError> {
    if *grouped {
        return Err(StoreError(format!("a {role} group commit is already open")));
    }
    run(conn, "BEGIN IMMEDIATE")
        .map_err(|error| StoreError(format!("cannot begin {role} group commit: {error}")))?;
    *grouped = true;
    Ok(())
}

pub(crate) fn end_group(
    conn: &Connection,
    grouped: &mut bool,
    role: &'static str,
) -> Result<(), StoreError> {
    if !std::mem::replace(grouped, false) {
        return Err(StoreError(format!("no {role} group commit is open")));
    }
    run(conn, "COMMIT").map_err(|error| {
        // The commit failed but the transaction may still be open: undo it whole.
        abort_group(conn, &mut true);
        StoreError(format!("cannot commit {role} group: {error}"))
    })
}

pub(crate) fn abort_group(conn: &Connection, grouped: &mut bool) {
    *grouped = false;
    if !conn.is_autocommit() {
        if let Err(error) = run(conn, "ROLLBACK") {
            // SQLite rolls back by itself when it cannot; nothing half-done is kept.
            tracing::error!(%error, "cannot roll back a group commit");
        }
    }
}

/// Defines a store over one SQLite file of the calling module's `SCHEMA`:
/// the store type with `open`, `open_in_memory` and `fingerprint`, its
/// transaction type, and `begin` of the core's store trait (and the trait's
/// other ways to begin named after the role with their [`Access`]: the
/// broker's `begin_read`, the wallet's `begin_settle`). One definition
/// serves the broker, merchant and wallet stores alike.
macro_rules! sqlite_store {
    ($(#[$doc:meta])* $store:ident, $(#[$tx_doc:meta])* $tx:ident, $store_trait:ident, $role:literal $(, $begin_other:ident => $access:ident)*) => {
        $(#[$doc])*
        pub struct $store {
            conn: rusqlite::Connection,
            /// Inside a group commit: transactions are savepoints of the group's.
            grouped: bool,
        }

        impl $store {
            #[doc = concat!("Opens the ", $role, " database at `path`, creating it (mode 0600) and migrating its schema as needed.")]
            ///
            /// # Errors
            /// The file cannot be created or opened, belongs to another role,
            /// or has a schema newer than this build.
            pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
                crate::db::open(path, &SCHEMA).map(|conn| $store { conn, grouped: false })
            }

            #[doc = concat!("A fresh ", $role, " database in memory, gone when the store is dropped.")]
            ///
            /// # Errors
            /// SQLite cannot allocate or migrate the database.
            pub fn open_in_memory() -> Result<Self, StoreError> {
                crate::db::open_in_memory(&SCHEMA).map(|conn| $store { conn, grouped: false })
            }

            /// Every row of every table but the audit log's, as text: equal dumps mean
            /// equal state. For tests that check a refused request changed nothing.
            pub fn fingerprint(&self) -> Result<String, StoreError> {
                crate::db::fingerprint(&self.conn)
            }
        }

        impl $store_trait for $store {
            type Tx<'a> = $tx<'a>;

            fn begin(&mut self) -> Result<$tx<'_>, StoreError> {
                crate::db::Step::begin(&self.conn, self.grouped, crate::db::Access::Write, $role)
                    .map(|tx| $tx { tx })
            }

            $(fn $begin_other(&mut self) -> Result<$tx<'_>, StoreError> {
                crate::db::Step::begin(&self.conn, self.grouped, crate::db::Access::$access, $role)
                    .map(|tx| $tx { tx })
            })*
        }

        impl scrip_core::store::GroupCommit for $store {
            fn begin_group(&mut self) -> Result<(), StoreError> {
                crate::db::begin_group(&self.conn, &mut self.grouped, $role)
            }

            fn end_group(&mut self) -> Result<(), StoreError> {
                crate::db::end_group(&self.conn, &mut self.grouped, $role)
            }

            fn abort_group(&mut self) {
                crate::db::abort_group(&self.conn, &mut self.grouped);
            }
        }

        $(#[$tx_doc])*
        pub struct $tx<'a> {
            tx: crate::db::Step<'a>,
        }
    };
}
pub(crate) use sqlite_store;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use scrip_core::store::{BrokerStore, BrokerTx, MerchantStore, MerchantTx, WalletStore};

    use super::*;
    use crate::fixtures::*;
    use crate::{SqliteBrokerStore, SqliteMerchantStore, SqliteWalletStore};

    #[test]
    fn a_file_of_one_role_is_refused_by_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        drop(SqliteBrokerStore::open(&path).unwrap());
        let error = SqliteWalletStore::open(&path)
            .err()
            .expect("a broker file is not a wallet");
        assert!(error.0.contains("not a scrip wallet database"), "{error}");
        let error = SqliteMerchantStore::open(&path)
            .err()
            .expect("a broker file is not a merchant's");
        assert!(error.0.contains("not a scrip merchant database"), "{error}");
        SqliteBrokerStore::open(&path)
            .unwrap()
            .begin()
            .unwrap()
            .commit()
            .unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        drop(SqliteWalletStore::open(&path).unwrap());
        let newer = crate::wallet::SCHEMA.version() + 1;
        execute(&path, &format!("PRAGMA user_version = {newer}"));
        let error = SqliteWalletStore::open(&path)
            .err()
            .expect("a newer version is unknown");
        assert!(
            error.0.contains(&format!("schema version {newer}")),
            "{error}"
        );
    }

    #[test]
    fn opening_a_store_does_not_wait_for_another_connections_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        // Closed, the store leaves no write-ahead log: the next to open it
        // would grow a new one.
        drop(SqliteBrokerStore::open(&path).unwrap());
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();

        let started = Instant::now();
        let mut store = SqliteBrokerStore::open(&path)
            .expect("a store opens while another connection holds the write lock");
        // Well under BUSY_TIMEOUT: it did not wait for the lock to give up.
        assert!(
            started.elapsed() < BUSY_TIMEOUT / 2,
            "{:?}",
            started.elapsed()
        );
        store.begin_read().unwrap().log_size().unwrap();
        holder.execute_batch("ROLLBACK").unwrap();
        let mut tx = store.begin().expect("then writes as usual");
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_second_writer_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        let mut first = SqliteBrokerStore::open(&path).unwrap();
        let mut tx = first.begin().unwrap();
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
            Spend::Fresh
        );

        let second = std::thread::spawn({
            let path = path.clone();
            move || {
                // Opening an up-to-date file does not wait for the writer.
                let mut store = SqliteBrokerStore::open(&path).unwrap();
                let start = Instant::now();
                let mut tx = store.begin().unwrap();
                let waited = start.elapsed();
                (
                    waited,
                    tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
                )
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        tx.commit().unwrap();
        let (waited, spend) = second.join().unwrap();
        assert!(waited >= Duration::from_millis(200), "waited {waited:?}");
        assert_eq!(spend, Spend::AlreadySpent);
    }

    #[test]
    fn connections_opening_a_new_file_at_once_all_succeed() {
        const THREADS: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (path, barrier) = (path.clone(), std::sync::Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut store = SqliteMerchantStore::open(&path)?;
                    let mut tx = store.begin()?;
                    // The first sells; the others find the scrip spent.
                    if tx.mark_spent(&scrip_id(1), NOW)? == Spend::Fresh {
                        tx.keep_sale(&payment_record(scrip_id(1)), &response(1))?;
                    }
                    tx.commit()
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().unwrap();
        }
        assert_eq!(
            pragma(&path, "user_version"),
            crate::merchant::SCHEMA.version()
        );
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        assert_eq!(
            store
                .begin()
                .unwrap()
                .queued_payment_records(10)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_lock_wait_adds_up_to_the_busy_timeout() {
        let sleeps: Vec<Duration> = (0..).map_while(lock_wait).collect();
        assert_eq!(sleeps.iter().sum::<Duration>(), BUSY_TIMEOUT);
        assert_eq!(sleeps[0], Duration::from_millis(1));
        assert_eq!(lock_wait(i32::MAX), None);
        assert_eq!(lock_wait(-1), Some(Duration::from_millis(1)));
    }

    #[test]
    fn in_memory_stores_open() {
        SqliteBrokerStore::open_in_memory().unwrap();
        SqliteMerchantStore::open_in_memory()
            .unwrap()
            .begin()
            .unwrap();
        SqliteWalletStore::open_in_memory()
            .unwrap()
            .begin()
            .unwrap();
    }
}
