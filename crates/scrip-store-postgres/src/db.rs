//! One connection the one way the store uses it: connecting, migrations, the
//! statement cache, the writer lock, transactions and group commit, error text
//! and column conversions.

use std::collections::HashMap;

use postgres::types::{FromSql, ToSql};
use postgres::{Client, NoTls, Row, Statement};
use scrip_core::store::{Spend, StoreError};

/// Parameters of a statement, as the `postgres` crate takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What one kind of database looks like: its role and its migrations.
pub(crate) struct Schema {
    /// For messages and the `scrip_schema` row: "broker".
    pub(crate) role: &'static str,
    /// Migration `i` takes the schema from version `i` to `i + 1`.
    /// Append only: a migration that has shipped is never edited.
    pub(crate) migrations: &'static [&'static str],
}

impl Schema {
    /// The schema version this build writes and expects.
    pub(crate) fn version(&self) -> i64 {
        i64::try_from(self.migrations.len()).unwrap_or(i64::MAX)
    }
}

/// Starts a step or a group: a READ COMMITTED transaction that first locks
/// the one row of `writer`, so steps of every process run one after another.
/// One round trip (the simple protocol runs both statements; the transaction
/// block outlives the query string).
const BEGIN_LOCKED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT id FROM writer FOR UPDATE";

/// Starts a read: one snapshot for the whole transaction (so a checkpoint
/// and the log hashes it covers are read as of one moment) and no writer
/// lock, so it waits for no step of any process. READ ONLY makes a write
/// through it an error rather than a change outside the lock.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// How long a step waits for the writer lock (or a migration for its lock)
/// before failing, as the SQLite store waits for its file's lock: steps hold
/// it briefly, so ten seconds means something is stuck, and the failure
/// becomes `Refusal::Unavailable`, which is safe to retry.
const SET_LOCK_TIMEOUT: &str = "SET lock_timeout = '10s'";

/// Keeps the versions of the scrip stores in this schema, one row per role,
/// and the row the writer lock takes. Created before any migration runs, so
/// the version can be read (and a schema of another role recognised) before
/// anything else is touched.
const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS scrip_schema (
    role TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS writer (
    id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id)
);
INSERT INTO writer DEFAULT VALUES ON CONFLICT DO NOTHING;
";

/// `pg_advisory_xact_lock`'s first key: migrations of scrip stores. The
/// second is the schema's name, so test schemas in one database migrate
/// side by side while two processes on one schema migrate it once.
const MIGRATION_LOCK_CLASS: i32 = 0x7363_7250; // "scrP"

/// One client and the statements prepared on it.
pub(crate) struct Connection {
    /// `Some` until the connection is dropped; then taken out to be closed
    /// through [`blocking`].
    client: Option<Client>,
    /// Prepared once per connection: a broker runs thousands of steps a second.
    statements: HashMap<&'static str, Statement>,
    /// A statement failed since the transaction (or the savepoint) began.
    /// PostgreSQL then refuses every statement but a rollback, and turns a
    /// COMMIT into a silent ROLLBACK, so commits check this first.
    aborted: bool,
    /// An error said the connection is gone, or a rollback failed, leaving
    /// the session in an unknown state: the connection must be replaced.
    lost: bool,
}

/// Connects to `url` and brings its schema up to `schema`'s version.
///
/// Errors name the URL with its password replaced by `***`.
pub(crate) fn connect(url: &str, schema: &Schema) -> Result<Connection, StoreError> {
    let client = blocking(|| Client::connect(url, NoTls)).map_err(|error| {
        StoreError(format!(
            "cannot connect to {} database {}: {}",
            schema.role,
            redact(url),
            describe(&error)
        ))
    })?;
    let mut conn = Connection {
        client: Some(client),
        statements: HashMap::new(),
        aborted: false,
        lost: false,
    };
    conn.control(SET_LOCK_TIMEOUT)
        .map_err(failed("cannot set the lock timeout"))?;
    blocking(|| migrate(&mut conn, schema))?;
    Ok(conn)
}

/// Runs `work`, which blocks on the `postgres` client.
///
/// The synchronous client drives a runtime of its own, which tokio forbids
/// on a thread that runs async tasks (the command line's main thread, a
/// node's workers): there the thread is first handed over with
/// `block_in_place`. Elsewhere (plain threads, `spawn_blocking`) `work` just runs.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Closing the client blocks too (it says goodbye and stops its runtime).
        if let Some(client) = self.client.take() {
            blocking(move || drop(client));
        }
    }
}

/// Brings the schema up to [`Schema::version`] in one transaction, under an
/// advisory lock, so processes connecting at once migrate it once and the
/// ones that wait find it done.
fn migrate(conn: &mut Connection, schema: &Schema) -> Result<(), StoreError> {
    let client = conn.client_mut();
    let mut tx = client
        .transaction()
        .map_err(failed("cannot begin migration"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&MIGRATION_LOCK_CLASS],
    )
    .map_err(failed("cannot lock the schema for migration"))?;
    tx.batch_execute(BOOKKEEPING)
        .map_err(failed("cannot create the schema's bookkeeping tables"))?;
    let roles: Vec<(String, i32)> = tx
        .query("SELECT role, version FROM scrip_schema ORDER BY role", &[])
        .map_err(failed("cannot read schema version"))?
        .iter()
        .map(|row| {
            Ok((
                get(row, 0, "scrip_schema.role")?,
                get(row, 1, "scrip_schema.version")?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    if let Some((other, _)) = roles.iter().find(|(role, _)| role != schema.role) {
        return Err(StoreError(format!(
            "the schema is not a scrip {} database (it holds a scrip {other} database)",
            schema.role
        )));
    }
    let version = roles.first().map_or(0, |(_, version)| i64::from(*version));
    if !(0..=schema.version()).contains(&version) {
        return Err(StoreError(format!(
            "the {} database has schema version {version}, which this build does not know (it knows up to {}): upgrade scrip",
            schema.role,
            schema.version()
        )));
    }
    if version == schema.version() {
        return tx.commit().map_err(failed("cannot commit migration"));
    }
    // Checked above: `version` is in 0..=migrations.len().
    let pending = usize::try_from(version)
        .ok()
        .and_then(|version| schema.migrations.get(version..))
        .unwrap_or_default();
    for migration in pending {
        tx.batch_execute(migration)
            .map_err(failed("cannot apply schema migration"))?;
    }
    let new_version =
        i32::try_from(schema.version()).map_err(|_| StoreError("too many migrations".into()))?;
    tx.execute(
        "INSERT INTO scrip_schema (role, version) VALUES ($1, $2)
         ON CONFLICT (role) DO UPDATE SET version = excluded.version",
        &[&schema.role, &new_version],
    )
    .map_err(failed("cannot write schema version"))?;
    tx.commit().map_err(failed("cannot commit migration"))
}

impl Connection {
    fn client_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("the client is only taken when the connection is dropped")
    }

    /// True when the connection can no longer be used and must be replaced:
    /// the server closed it (or was killed), or a rollback failed. A pool
    /// drops such a connection instead of handing it out again.
    pub(crate) fn is_broken(&self) -> bool {
        self.lost || self.client.as_ref().is_none_or(Client::is_closed)
    }

    /// Asks the server to answer: one round trip that fails on a connection
    /// the server has closed since it was last used.
    pub(crate) fn check(&mut self) -> Result<(), StoreError> {
        self.control("")
            .map_err(failed("the database does not answer"))
    }

    /// The statement for `sql`, prepared on first use.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = blocking(|| self.client_mut().prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs `operation` with the prepared statement, noting a failure (see
    /// [`Connection::aborted`]).
    fn run<T>(
        &mut self,
        sql: &'static str,
        what: &'static str,
        operation: impl FnOnce(&mut Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let result = self
            .statement(sql)
            .and_then(|statement| blocking(|| operation(self.client_mut(), &statement)));
        self.note(&result);
        result.map_err(failed(what))
    }

    /// Runs a statement and returns the number of rows it changed.
    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<u64, StoreError> {
        self.run(sql, what, |client, statement| {
            client.execute(statement, params)
        })
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        self.run(sql, what, |client, statement| {
            client.query(statement, params)
        })
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Option<Row>, StoreError> {
        self.run(sql, what, |client, statement| {
            client.query_opt(statement, params)
        })
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Row, StoreError> {
        self.run(sql, what, |client, statement| {
            client.query_one(statement, params)
        })
    }

    /// Runs an insert that does nothing on conflict and says whether it inserted.
    pub(crate) fn insert_or_fail(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Spend, StoreError> {
        Ok(match self.execute(sql, params, what)? {
            0 => Spend::AlreadySpent,
            _ => Spend::Fresh,
        })
    }

    /// Runs transaction control (and the writer lock) in the simple protocol:
    /// one round trip, nothing to prepare.
    fn control(&mut self, sql: &str) -> Result<(), postgres::Error> {
        let result = blocking(|| self.client_mut().batch_execute(sql));
        self.note(&result);
        result
    }

    /// Notes what a failed statement means for the transaction (aborted) and
    /// for the connection (lost).
    fn note<T>(&mut self, result: &Result<T, postgres::Error>) {
        if let Err(error) = result {
            self.aborted = true;
            self.lost |= connection_lost(error);
        }
    }

    /// For tests: the client itself, to corrupt rows or watch locks.
    #[cfg(test)]
    pub(crate) fn client(&mut self) -> &mut Client {
        self.client_mut()
    }
}

// ---- Transactions and group commit ---------------------------------------

/// One step's transaction: `BEGIN` and the writer lock on its own (for reads
/// only, a snapshot without the lock), or a savepoint of the open group
/// commit (which holds the lock). Rolls back when dropped without
/// [`Step::commit`].
pub(crate) struct Step<'a> {
    conn: &'a mut Connection,
    nested: bool,
    open: bool,
}

/// What a transaction may do, which decides how it begins.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    /// Takes the writer lock first, so steps of every process run one after another.
    Write,
    /// A read-only snapshot that takes no lock.
    Read,
}

impl<'a> Step<'a> {
    pub(crate) fn begin(
        conn: &'a mut Connection,
        nested: bool,
        access: Access,
        role: &'static str,
    ) -> Result<Self, StoreError> {
        let sql = match (nested, access) {
            (true, _) => "SAVEPOINT step",
            (false, Access::Write) => BEGIN_LOCKED,
            (false, Access::Read) => BEGIN_READ,
        };
        if let Err(error) = conn.control(sql) {
            if !nested {
                // The BEGIN may have run and the lock failed: end it.
                rollback(conn, "ROLLBACK");
            }
            return Err(StoreError(format!(
                "cannot begin {role} transaction: {}",
                describe(&error)
            )));
        }
        conn.aborted = false;
        Ok(Step {
            conn,
            nested,
            open: true,
        })
    }

    pub(crate) fn commit(mut self, what: &'static str) -> Result<(), StoreError> {
        if self.conn.aborted {
            // Dropping `self` rolls back.
            return Err(StoreError(format!(
                "{what}: a statement of the transaction failed"
            )));
        }
        let sql = if self.nested {
            "RELEASE step"
        } else {
            "COMMIT"
        };
        self.conn.control(sql).map_err(failed(what))?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Step<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl std::ops::DerefMut for Step<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if self.open {
            let sql = if self.nested {
                "ROLLBACK TO step; RELEASE step"
            } else {
                "ROLLBACK"
            };
            rollback(self.conn, sql);
        }
    }
}

/// Rolls back; on failure the connection is broken, and the server undoes the
/// transaction when it closes, so nothing half-done is kept. The connection
/// is marked lost, so it is replaced rather than used in an unknown state.
fn rollback(conn: &mut Connection, sql: &str) {
    match conn.control(sql) {
        Ok(()) => conn.aborted = false,
        Err(error) => {
            conn.lost = true;
            tracing::error!(error = %describe(&error), "cannot roll back a store transaction");
        }
    }
}

pub(crate) fn begin_group(
    conn: &mut Connection,
    grouped: &mut bool,
    role: &'static str,
) -> Result<(), StoreError> {
    if *grouped {
        return Err(StoreError(format!("a {role} group commit is already open")));
    }
    if let Err(error) = conn.control(BEGIN_LOCKED) {
        rollback(conn, "ROLLBACK");
        return Err(StoreError(format!(
            "cannot begin {role} group commit: {}",
            describe(&error)
        )));
    }
    conn.aborted = false;
    *grouped = true;
    Ok(())
}

pub(crate) fn end_group(
    conn: &mut Connection,
    grouped: &mut bool,
    role: &'static str,
) -> Result<(), StoreError> {
    if !std::mem::replace(grouped, false) {
        return Err(StoreError(format!("no {role} group commit is open")));
    }
    let committed = if conn.aborted {
        Err("a statement of the group failed".to_owned())
    } else {
        conn.control("COMMIT").map_err(|error| describe(&error))
    };
    committed.map_err(|error| {
        // The transaction may still be open: undo it whole.
        abort_group(conn, &mut true);
        StoreError(format!("cannot commit {role} group: {error}"))
    })
}

pub(crate) fn abort_group(conn: &mut Connection, grouped: &mut bool) {
    if std::mem::replace(grouped, false) {
        rollback(conn, "ROLLBACK");
    }
}

// ---- The fingerprint -----------------------------------------------------

/// Every table of the schema but the audit log's and the bookkeeping, each
/// with its primary key's columns (quoted), in order.
const FINGERPRINT_TABLES: &str = "
SELECT c.relname::TEXT,
       ARRAY(SELECT quote_ident(a.attname)
             FROM unnest(i.indkey::INT2[]) WITH ORDINALITY AS k (attnum, position)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             ORDER BY k.position)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = current_schema()
  AND c.relkind = 'r'
  AND c.relname NOT IN ('events', 'log_hashes', 'checkpoints', 'scrip_schema', 'writer')
ORDER BY c.relname";

/// A column value as the fingerprint shows it: the same `Debug` text as
/// rusqlite's `Value`, so dumps of both stores read alike.
#[derive(Debug)]
#[expect(dead_code, reason = "the fields are read through Debug only")]
enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

fn value(row: &Row, column: usize) -> Result<Value, StoreError> {
    use postgres::types::Type;
    let what = "cannot dump the database";
    let ty = row.columns()[column].type_();
    let value = if *ty == Type::INT8 {
        get::<Option<i64>>(row, column, what)?.map(Value::Integer)
    } else if *ty == Type::INT4 {
        get::<Option<i32>>(row, column, what)?.map(|v| Value::Integer(v.into()))
    } else if *ty == Type::BOOL {
        get::<Option<bool>>(row, column, what)?.map(|v| Value::Integer(v.into()))
    } else if *ty == Type::TEXT {
        get::<Option<String>>(row, column, what)?.map(Value::Text)
    } else if *ty == Type::BYTEA {
        get::<Option<Vec<u8>>>(row, column, what)?.map(Value::Blob)
    } else {
        return Err(StoreError(format!("{what}: a column of type {ty}")));
    };
    Ok(value.unwrap_or(Value::Null))
}

/// Every row of every table but the audit log's, in a fixed order, as text,
/// read in a transaction of its own (or a savepoint of the open group).
///
/// Same shape as the SQLite store's: `[table]` then one line per row, each
/// value's `Debug` text followed by a tab, rows by primary key. Left out: the
/// transparency log (recording refused double spends and wrong PINs there is
/// its point), and `scrip_schema` and `writer`, which hold no broker state.
pub(crate) fn fingerprint(step: &mut Step<'_>) -> Result<String, StoreError> {
    let what = "cannot dump the database";
    let tables: Vec<(String, Vec<String>)> = step
        .query(FINGERPRINT_TABLES, &[], what)?
        .iter()
        .map(|row| Ok((get(row, 0, what)?, get(row, 1, what)?)))
        .collect::<Result<_, StoreError>>()?;
    let mut dump = String::new();
    for (table, key) in tables {
        dump.push_str(&format!("[{table}]\n"));
        let order = if key.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", key.join(", "))
        };
        // Table and column names come from the catalog, not from input; they
        // are not cached, since this runs once per check.
        let sql = format!("SELECT * FROM \"{table}\"{order}");
        let rows = blocking(|| step.client_mut().query(&sql, &[]));
        step.note(&rows);
        for row in rows.map_err(failed(what))? {
            for column in 0..row.len() {
                dump.push_str(&format!("{:?}\t", value(&row, column)?));
            }
            dump.push('\n');
        }
    }
    Ok(dump)
}

// ---- Error text ------------------------------------------------------------

/// True when `error` means the connection itself is gone, not just the
/// statement: the socket closed, a connection exception (SQLSTATE class 08),
/// or the server ending the session (57P01 admin shutdown, as
/// `pg_terminate_backend` does; 57P02 crash shutdown; 57P03 cannot connect now).
fn connection_lost(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    error.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
    })
}

/// Maps a `postgres` error to a [`StoreError`] that says which operation failed.
pub(crate) fn failed(what: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |error| StoreError(format!("{what}: {}", describe(&error)))
}

/// The error's text: for a server error its severity, SQLSTATE and message.
///
/// Never the server's DETAIL, which quotes the row or key that failed (a
/// licence, say): like the SQLite store's, messages name the constraint or
/// the statement, never the bound values.
pub(crate) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// The connection string with every password replaced by `***`: the URL's
/// `user:password@`, a `password=` query parameter, and a `password=` of the
/// key-value form. What the `postgres` crate would read as the password is
/// what is hidden (its URL parser takes the credentials up to the first `@`).
pub(crate) fn redact(url: &str) -> String {
    let mut redacted = match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((credentials, after)) => match credentials.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{after}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let mut from = 0;
    while let Some(found) = redacted[from..].find("password=") {
        let start = from + found + "password=".len();
        let value = &redacted[start..];
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // Key-value form: a quoted value ends at the first unescaped quote.
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map_or(value.len(), |(i, _)| i + 2)
        } else {
            value
                .find(|c: char| c == '&' || c.is_whitespace())
                .unwrap_or(value.len())
        };
        redacted.replace_range(start..start + end, "***");
        from = start + 3;
    }
    redacted
}

// ---- Column conversions ---------------------------------------------------
//
// Values go in as BIGINT, BYTEA and TEXT, converted as every store does
// (`scrip_core::store`'s `StoredAsI64` and `*_from_stored`); coming out,
// anything that does not fit the Rust type is a corrupt row and becomes a
// StoreError, never a panic. Log indexes and sizes are this store's own.

/// Column `column` of `row`; a value of the wrong type or a NULL where none
/// may be is an error naming `what`.
pub(crate) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    column: usize,
    what: &str,
) -> Result<T, StoreError> {
    row.try_get(column)
        .map_err(|error| StoreError(format!("corrupt {what} in database: {}", describe(&error))))
}

/// A log index or size as stored (BIGINT); `what` names it in the error.
pub(crate) fn index_to_sql(index: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(index).map_err(|_| StoreError(format!("{what} out of range")))
}

pub(crate) fn index_from_sql(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(what))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted_in_every_form() {
        for (url, expected) in [
            (
                "postgres://scrip:s3cret@127.0.0.1:5432/db",
                "postgres://scrip:***@127.0.0.1:5432/db",
            ),
            (
                "postgresql://scrip:s3/cr:et@host/db?options=-c%20x",
                "postgresql://scrip:***@host/db?options=-c%20x",
            ),
            ("postgres://scrip@host/db", "postgres://scrip@host/db"),
            (
                "postgres://host/db?user=scrip&password=s3cret&sslmode=disable",
                "postgres://host/db?user=scrip&password=***&sslmode=disable",
            ),
            (
                "host=127.0.0.1 password=s3cret user=scrip",
                "host=127.0.0.1 password=*** user=scrip",
            ),
            (
                "host=127.0.0.1 password='s3 c\\'ret' user=scrip",
                "host=127.0.0.1 password=*** user=scrip",
            ),
        ] {
            assert_eq!(redact(url), expected);
        }
    }
}
