//! The broker's database, on whichever backend holds it.
//!
//! A broker keeps its state in an SQLite file (the default: nothing to run
//! beside it) or in PostgreSQL (several broker processes on one database;
//! see `docs/SCALING.md`). [`BrokerDatabase`] says where, as the operator
//! wrote it; [`BrokerDb`] is the open store, one type whatever the backend,
//! so the node, the command line and the tests take either without being
//! generic over it.

use std::fmt;
use std::path::PathBuf;

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
