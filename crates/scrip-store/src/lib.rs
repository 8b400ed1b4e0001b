//! The broker's database, on whichever backend holds it.
//!
//! A broker keeps its state in an SQLite file (the default: nothing to run
//! beside it) or in PostgreSQL (several broker processes on one database;
//! see `docs/SCALING.md`). [`BrokerDatabase`] says where, as the operator
//! wrote it; [`BrokerDb`] is the open store, one type whatever the backend,
//! so the node, the command line and the tests take either without being
//! generic over it. [`BrokerPool`] holds the connections a broker process
//! serves with: one for the writer and a few for reads, each replaced when
//! it breaks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use scrip_core::event::BrokerEvent;
use scrip_core::ledger::{LedgerAccount, Transfer};
use scrip_core::store::{
    AccountRecord, BrokerSnapshot, BrokerStore, BrokerTx, GroupCommit, IntentRow, MerchantRecord,
    PaymentRow, PinFailures, Spend, StoreError, StoredResponse,
};
use scrip_proto::{AccountNumber, MerchantId, PublicKey, RequestId, ScripId, Timestamp};
use scrip_store_postgres::PgBrokerStore;
use scrip_store_sqlite::SqliteBrokerStore;

/// Where a broker's state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerDatabase {
    /// An SQLite file, created on first open.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by connection URL (`postgres://…`).
    Postgres(String),
}

impl BrokerDatabase {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else
    /// is the path of an SQLite file.
    pub fn parse(text: &str) -> BrokerDatabase {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            BrokerDatabase::Postgres(text.to_owned())
        } else {
            BrokerDatabase::Sqlite(PathBuf::from(text))
        }
    }

    /// Opens the store, creating or migrating its schema as needed.
    ///
    /// # Errors
    /// The database cannot be reached or opened, belongs to another role, or
    /// has a schema newer than this build.
    pub fn open(&self) -> Result<BrokerDb, StoreError> {
        match self {
            BrokerDatabase::Sqlite(path) => SqliteBrokerStore::open(path).map(BrokerDb::Sqlite),
            BrokerDatabase::Postgres(url) => PgBrokerStore::connect(url).map(BrokerDb::Postgres),
        }
    }

    /// The connections a broker process serves with (see [`BrokerPool`]).
    ///
    /// Opens one store first, so a database that cannot be opened is refused
    /// at once with its own error, and the schema is migrated before any
    /// pooled connection is made; the pool's connections are then made in
    /// the background.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn pool(&self) -> Result<BrokerPool, StoreError> {
        drop(self.open()?);
        let pool = |size, check| {
            r2d2::Pool::builder()
                .max_size(size)
                .test_on_check_out(check)
                .connection_timeout(CONNECTION_TIMEOUT)
                // A connection lives until it breaks; none is closed for age.
                .max_lifetime(None)
                .idle_timeout(None)
                .error_handler(Box::new(LogConnectionErrors))
                .build_unchecked(BrokerConnector {
                    database: self.clone(),
                })
        };
        Ok(BrokerPool {
            // Checking the writer's connection before each group would cost
            // a round trip per group commit; one that broke while idle fails
            // that group (answered `Unavailable`, retried by the clients) and
            // is replaced when it comes back.
            writer: pool(1, false),
            // A read is one short transaction: checking first costs little,
            // and spares a read the connection that broke while idle.
            readers: pool(READERS, true),
        })
    }
}

/// Shows the database without the password a URL may carry, so it can be
/// printed and logged.
impl fmt::Display for BrokerDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerDatabase::Sqlite(path) => write!(f, "{}", path.display()),
            BrokerDatabase::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

impl fmt::Debug for BrokerDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerDatabase({self})")
    }
}

/// `postgres://user:secret@host/db?password=secret` as
/// `postgres://user:***@host/db?password=***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<&str> = query
                .split('&')
                .map(|parameter| {
                    if parameter.starts_with("password=") {
                        "password=***"
                    } else {
                        parameter
                    }
                })
                .collect();
            format!("{path}?{}", parameters.join("&"))
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

/// How many connections serve reads beside the writer's one. Reads are short
/// (the merchant directory, a checkpoint, a proof); on PostgreSQL each
/// connection is a server process.
pub const READERS: u32 = 3;

/// How long a step waits for a connection of the pool (an idle one, or a new
/// one while the database cannot be reached) before failing as unavailable:
/// the stores' own lock timeout.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections of one broker process to its database.
///
/// The writer's connection serves group commits, which run one after another
/// whatever the number of connections (the writer lock); the readers serve
/// reads ([`BrokerStore::begin_read`]), which take no writer lock, so the
/// merchant directory and the audit protocol are answered while a group of
/// this or another process commits. A connection that broke (the server
/// closed it, or it was left in an unknown state) is dropped when it comes
/// back, and the next step gets a new one: a process outlives a restart of
/// its database. The step that found it broken is answered
/// `Refusal::Unavailable`, which the client retries with the same request id.
pub struct BrokerPool {
    writer: r2d2::Pool<BrokerConnector>,
    readers: r2d2::Pool<BrokerConnector>,
}

/// A connection of a [`BrokerPool`]: a [`BrokerDb`] (through `Deref`), back
/// in its pool when dropped.
pub type PooledBrokerDb = r2d2::PooledConnection<BrokerConnector>;

impl BrokerPool {
    /// The writer's connection, for group commits.
    /// One at a time: a second caller waits for the first to give it back.
    ///
    /// # Errors
    /// No connection could be made within ten seconds.
    pub fn writer(&self) -> Result<PooledBrokerDb, StoreError> {
        checkout(&self.writer)
    }

    /// A reader's connection, for reads only: use
    /// [`BrokerStore::begin_read`] on it.
    ///
    /// # Errors
    /// No connection was free, or could be made, within ten seconds.
    pub fn reader(&self) -> Result<PooledBrokerDb, StoreError> {
        checkout(&self.readers)
    }
}

fn checkout(pool: &r2d2::Pool<BrokerConnector>) -> Result<PooledBrokerDb, StoreError> {
    pool.get()
        .map_err(|error| StoreError(format!("no connection to the broker database: {error}")))
}

/// Makes, checks and recognises broken connections for r2d2.
#[derive(Debug)]
pub struct BrokerConnector {
    database: BrokerDatabase,
}

impl r2d2::ManageConnection for BrokerConnector {
    type Connection = BrokerDb;
    type Error = StoreError;

    fn connect(&self) -> Result<BrokerDb, StoreError> {
        self.database.open()
    }

    fn is_valid(&self, store: &mut BrokerDb) -> Result<(), StoreError> {
        store.check()
    }

    fn has_broken(&self, store: &mut BrokerDb) -> bool {
        store.is_broken()
    }
}

/// Failures to connect, which r2d2 retries in the background, go to the
/// broker's log (its default handler writes to the `log` crate, which this
/// workspace does not show). Their text never holds a password.
#[derive(Debug)]
struct LogConnectionErrors;

impl r2d2::HandleError<StoreError> for LogConnectionErrors {
    fn handle_error(&self, error: StoreError) {
        tracing::warn!(%error, "broker database connection");
    }
}

/// The broker's open store, on either backend.
// One per connection, made once and rarely moved: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum BrokerDb {
    Sqlite(SqliteBrokerStore),
    Postgres(PgBrokerStore),
}

impl BrokerDb {
    /// Every row of every table but the audit log's, as text: equal dumps
    /// mean equal state. For tests that check a refusal changed nothing.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn fingerprint(&mut self) -> Result<String, StoreError> {
        match self {
            BrokerDb::Sqlite(store) => store.fingerprint(),
            BrokerDb::Postgres(store) => store.fingerprint(),
        }
    }

    /// True when the store cannot be used any more and must be opened anew:
    /// a PostgreSQL connection the server closed. An SQLite file stays open.
    pub fn is_broken(&self) -> bool {
        match self {
            BrokerDb::Sqlite(_) => false,
            BrokerDb::Postgres(store) => store.is_broken(),
        }
    }

    /// Checks that the store can still be used: one round trip on PostgreSQL.
    ///
    /// # Errors
    /// The connection is gone.
    pub fn check(&mut self) -> Result<(), StoreError> {
        match self {
            BrokerDb::Sqlite(_) => Ok(()),
            BrokerDb::Postgres(store) => store.check(),
        }
    }
}

/// One transaction of a [`BrokerDb`].
pub enum BrokerDbTx<'a> {
    Sqlite(<SqliteBrokerStore as BrokerStore>::Tx<'a>),
    Postgres(<PgBrokerStore as BrokerStore>::Tx<'a>),
}

/// Forwards to the backend's own value, whichever it is.
macro_rules! on_backend {
    ($value:expr, $enum:ident, $inner:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($inner) => $body,
            $enum::Postgres($inner) => $body,
        }
    };
}

impl GroupCommit for BrokerDb {
    fn begin_group(&mut self) -> Result<(), StoreError> {
        on_backend!(self, BrokerDb, store => store.begin_group())
    }
    fn end_group(&mut self) -> Result<(), StoreError> {
        on_backend!(self, BrokerDb, store => store.end_group())
    }
    fn abort_group(&mut self) {
        on_backend!(self, BrokerDb, store => store.abort_group())
    }
}

impl BrokerStore for BrokerDb {
    type Tx<'a> = BrokerDbTx<'a>;

    fn begin(&mut self) -> Result<BrokerDbTx<'_>, StoreError> {
        match self {
            BrokerDb::Sqlite(store) => store.begin().map(BrokerDbTx::Sqlite),
            BrokerDb::Postgres(store) => store.begin().map(BrokerDbTx::Postgres),
        }
    }

    fn begin_read(&mut self) -> Result<BrokerDbTx<'_>, StoreError> {
        match self {
            BrokerDb::Sqlite(store) => store.begin_read().map(BrokerDbTx::Sqlite),
            BrokerDb::Postgres(store) => store.begin_read().map(BrokerDbTx::Postgres),
        }
    }
}

/// `BrokerTx` methods that forward to the backend's transaction.
macro_rules! forward {
    ($(fn $name:ident(&mut self $(, $arg:ident: $type:ty)*) -> $result:ty;)*) => {
        $(fn $name(&mut self $(, $arg: $type)*) -> $result {
            on_backend!(self, BrokerDbTx, tx => tx.$name($($arg),*))
        })*
    };
}

impl BrokerTx for BrokerDbTx<'_> {
    forward! {
        fn stored_response(&mut self, request: &RequestId) -> Result<Option<StoredResponse>, StoreError>;
        fn store_response(&mut self, request: &RequestId, response: &StoredResponse) -> Result<(), StoreError>;
        fn account(&mut self, number: AccountNumber) -> Result<Option<AccountRecord>, StoreError>;
        fn insert_account(&mut self, account: &AccountRecord) -> Result<(), StoreError>;
        fn bind_account_key(&mut self, number: AccountNumber, key: &PublicKey) -> Result<(), StoreError>;
        fn accounts(&mut self) -> Result<Vec<AccountRecord>, StoreError>;
        fn pin_failures(&mut self, account: AccountNumber) -> Result<PinFailures, StoreError>;
        fn put_pin_failures(&mut self, account: AccountNumber, failures: &PinFailures) -> Result<(), StoreError>;
        fn balance(&mut self, account: &LedgerAccount) -> Result<i64, StoreError>;
        fn balances(&mut self) -> Result<Vec<(LedgerAccount, i64)>, StoreError>;
        fn post(&mut self, transfer: &Transfer) -> Result<(), StoreError>;
        fn mark_broker_scrip_spent(&mut self, scrip: &ScripId, expiry: Timestamp) -> Result<Spend, StoreError>;
        fn merchant(&mut self, merchant: &MerchantId) -> Result<Option<MerchantRecord>, StoreError>;
        fn merchant_by_name(&mut self, name: &str) -> Result<Option<MerchantRecord>, StoreError>;
        fn put_merchant(&mut self, merchant: &MerchantRecord) -> Result<(), StoreError>;
        fn merchants(&mut self) -> Result<Vec<MerchantRecord>, StoreError>;
        fn insert_intent(&mut self, intent: &IntentRow) -> Result<(), StoreError>;
        fn intent_for_buy(&mut self, buy_request: &RequestId, scrip: &ScripId) -> Result<bool, StoreError>;
        fn payment_recorded(&mut self, merchant: &MerchantId, scrip: &ScripId) -> Result<bool, StoreError>;
        fn record_payment(&mut self, payment: &PaymentRow) -> Result<Spend, StoreError>;
        fn append_event(&mut self, event: &BrokerEvent) -> Result<(), StoreError>;
        fn log_size(&mut self) -> Result<u64, StoreError>;
        fn log_hashes(&mut self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError>;
        fn append_log(&mut self, index: u64, data: &[u8], hashes: &[(u64, [u8; 32])]) -> Result<(), StoreError>;
        fn put_checkpoint(&mut self, size: u64, note: &[u8]) -> Result<(), StoreError>;
        fn latest_checkpoint(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
        fn snapshot(&mut self) -> Result<BrokerSnapshot, StoreError>;
    }

    fn commit(self) -> Result<(), StoreError> {
        on_backend!(self, BrokerDbTx, tx => tx.commit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_postgres_and_anything_else_a_file() {
        assert_eq!(
            BrokerDatabase::parse("postgres://scrip@127.0.0.1/books"),
            BrokerDatabase::Postgres("postgres://scrip@127.0.0.1/books".into())
        );
        assert_eq!(
            BrokerDatabase::parse("postgresql://h/db"),
            BrokerDatabase::Postgres("postgresql://h/db".into())
        );
        assert_eq!(
            BrokerDatabase::parse("dir/broker.db"),
            BrokerDatabase::Sqlite("dir/broker.db".into())
        );
    }

    #[test]
    fn a_password_is_never_shown() {
        let database = BrokerDatabase::parse("postgres://scrip:hunter2@db.example:5432/books?x=1");
        assert_eq!(
            database.to_string(),
            "postgres://scrip:***@db.example:5432/books?x=1"
        );
        assert!(!format!("{database:?}").contains("hunter2"));
        let in_query = BrokerDatabase::parse("postgres://h/db?user=a&password=hunter2&x=1");
        assert_eq!(
            in_query.to_string(),
            "postgres://h/db?user=a&password=***&x=1"
        );
        let without = "postgres://scrip@127.0.0.1/books";
        assert_eq!(BrokerDatabase::parse(without).to_string(), without);
    }
}
