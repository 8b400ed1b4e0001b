//! The broker's store in SQLite: accounts, the double-entry ledger, the BrokerScrip spent set, merchants, intents, payments and the event log.

use rusqlite::{params, OptionalExtension};

use scrip_core::ledger::{LedgerAccount, Transfer};
use scrip_core::store::{
    balances_after, digest_from_stored, ledger_account_from_stored, public_key_from_stored,
    request_id_from_stored, AccountRecord, BrokerSnapshot, BrokerStore, BrokerTx, IntentRow,
    MerchantRecord, PaymentRow, PinFailures, Spend, StoreError, StoredAsI64, StoredResponse,
};
use scrip_proto::{AccountNumber, MerchantId, PublicKey, RequestId, ScripId, Timestamp};

use crate::db::{self, failed, insert_or_fail, Schema};

pub(crate) const SCHEMA: Schema = Schema {
    role: "broker",
    // "scrB"
    application_id: 0x7363_7242,
    migrations: &[MIGRATION_1, MIGRATION_2, MIGRATION_3, MIGRATION_4],
};

const MIGRATION_1: &str = "
CREATE TABLE responses (
    request_id BLOB PRIMARY KEY,
    request_digest BLOB NOT NULL,
    response BLOB NOT NULL
) STRICT;

CREATE TABLE accounts (
    number INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    pin_hash TEXT NOT NULL,
    account_key BLOB,
    opened_at INTEGER NOT NULL
) STRICT;

-- One row per ledger account that ever moved, keyed by LedgerAccount's Display form.
CREATE TABLE balances (
    account TEXT PRIMARY KEY,
    balance INTEGER NOT NULL
) STRICT;

CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    from_account TEXT NOT NULL,
    to_account TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    at INTEGER NOT NULL
) STRICT;

-- The primary key is the double-spend check: ScripId::to_key().
CREATE TABLE spent_broker_scrip (
    id BLOB PRIMARY KEY,
    expiry INTEGER NOT NULL
) STRICT;

CREATE TABLE merchants (
    merchant BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    account INTEGER NOT NULL,
    licence BLOB NOT NULL,
    registered_at INTEGER NOT NULL
) STRICT;

CREATE TABLE intents (
    request_id BLOB PRIMARY KEY,
    buy_request BLOB NOT NULL,
    scrip BLOB NOT NULL,
    intent BLOB NOT NULL,
    receipt BLOB NOT NULL
) STRICT;
CREATE INDEX intents_by_buy_request ON intents (buy_request);

-- The primary key makes recording a payment insert-or-fail per spent VendorScrip.
CREATE TABLE payments (
    merchant BLOB NOT NULL,
    scrip BLOB NOT NULL,
    record BLOB NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (merchant, scrip)
) STRICT;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bytes BLOB NOT NULL
) STRICT;
";

/// The transparency log: `events` rows are its leaves (leaf index = seq - 1);
/// `log_hashes` holds the tree's stored hashes (tlog layout), `checkpoints`
/// the broker's signed checkpoints by log size.
const MIGRATION_2: &str = "
CREATE TABLE log_hashes (
    idx INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
) STRICT;

CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    note BLOB NOT NULL
) STRICT;
";

/// Each stored response remembers the log leaf of its step, for receipts.
const MIGRATION_3: &str = "ALTER TABLE responses ADD COLUMN leaf INTEGER;";

/// Wrong PINs in a row per account, and the lock they led to. No row: no
/// wrong PIN since the account last authenticated, and no lock. A lock is
/// `locked_at` set; `locked_until` NULL means until the operator unlocks.
const MIGRATION_4: &str = "
CREATE TABLE pin_failures (
    account INTEGER PRIMARY KEY REFERENCES accounts (number),
    failures INTEGER NOT NULL CHECK (failures >= 0),
    locked_at INTEGER,
    locked_until INTEGER,
    CHECK (locked_until IS NULL OR locked_at IS NOT NULL)
) STRICT;
";

crate::db::sqlite_store!(
    /// The broker's [`BrokerStore`] in one SQLite file.
    ///
    /// Several stores (threads or processes) may open the same file: each
    /// [`begin`](BrokerStore::begin) takes SQLite's write lock (`BEGIN IMMEDIATE`),
    /// so broker steps run one after another, and a store waits up to
    /// about ten seconds for the lock before failing. Reads
    /// ([`begin_read`](BrokerStore::begin_read)) take no lock: in WAL mode
    /// they see a snapshot and run beside the writer.
    SqliteBrokerStore,
    /// One broker transaction: an SQLite `BEGIN IMMEDIATE` transaction (a
    /// deferred one for reads) that rolls back when dropped without
    /// [`commit`](BrokerTx::commit).
    SqliteBrokerTx,
    BrokerStore,
    "broker",
    begin_read => Read
);

/// The raw columns of an `accounts` row.
type AccountColumns = (i64, String, String, Option<Vec<u8>>, i64);

const ACCOUNT_COLUMNS: &str = "number, name, pin_hash, account_key, opened_at";

fn account_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountColumns> {
    AccountColumns::try_from(row)
}

fn account_from_columns(
    (number, name, pin_hash, account_key, opened_at): AccountColumns,
) -> Result<AccountRecord, StoreError> {
    AccountRecord::from_stored(number, name, pin_hash, account_key.as_deref(), opened_at)
}

/// The raw columns of a `merchants` row.
type MerchantColumns = (Vec<u8>, String, i64, Vec<u8>, i64);

const MERCHANT_COLUMNS: &str = "merchant, name, account, licence, registered_at";

fn merchant_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<MerchantColumns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn merchant_from_columns(
    (merchant, name, account, licence, registered_at): MerchantColumns,
) -> Result<MerchantRecord, StoreError> {
    MerchantRecord::from_stored(&merchant, name, account, &licence, registered_at)
}

impl SqliteBrokerTx<'_> {
    fn set_balance(&self, account: &LedgerAccount, balance: i64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO balances (account, balance) VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
            )
            .and_then(|mut statement| statement.execute(params![account.to_string(), balance]))
            .map(drop)
            .map_err(failed("cannot write balance"))
    }

    fn merchant_where(
        &self,
        condition: &str,
        key: &dyn rusqlite::ToSql,
    ) -> Result<Option<MerchantRecord>, StoreError> {
        let columns = self
            .tx
            .prepare_cached(&format!(
                "SELECT {MERCHANT_COLUMNS} FROM merchants WHERE {condition}"
            ))
            .and_then(|mut statement| statement.query_row([key], merchant_columns).optional())
            .map_err(failed("cannot read merchant"))?;
        columns.map(merchant_from_columns).transpose()
    }
}

impl BrokerTx for SqliteBrokerTx<'_> {
    fn stored_response(
        &mut self,
        request: &RequestId,
    ) -> Result<Option<StoredResponse>, StoreError> {
        db::stored_response(&mut self.tx, request)
    }

    fn store_response(
        &mut self,
        request: &RequestId,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        db::store_response(&mut self.tx, request, response)
    }

    fn account(&mut self, number: AccountNumber) -> Result<Option<AccountRecord>, StoreError> {
        let number = number.to_stored()?;
        let columns = self
            .tx
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE number = ?1"
            ))
            .and_then(|mut statement| statement.query_row([number], account_columns).optional())
            .map_err(failed("cannot read account"))?;
        columns.map(account_from_columns).transpose()
    }

    fn insert_account(&mut self, account: &AccountRecord) -> Result<(), StoreError> {
        let number = account.number.to_stored()?;
        let opened_at = account.opened_at.to_stored()?;
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
            ))
            .and_then(|mut statement| {
                statement.execute(params![
                    number,
                    account.name,
                    account.pin_hash,
                    account.account_key.as_ref().map(PublicKey::as_bytes),
                    opened_at
                ])
            })
            .map(drop)
            .map_err(failed("cannot insert account"))
    }

    fn bind_account_key(
        &mut self,
        number: AccountNumber,
        key: &PublicKey,
    ) -> Result<(), StoreError> {
        let number = number.to_stored()?;
        let updated = self
            .tx
            .prepare_cached("UPDATE accounts SET account_key = ?2 WHERE number = ?1")
            .and_then(|mut statement| statement.execute(params![number, key.as_bytes()]))
            .map_err(failed("cannot bind account key"))?;
        if updated == 0 {
            return Err(StoreError(
                "cannot bind account key: no such account".into(),
            ));
        }
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<AccountRecord>, StoreError> {
        let rows = self
            .tx
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY number"
            ))
            .and_then(|mut statement| {
                statement
                    .query_map([], account_columns)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed("cannot list accounts"))?;
        rows.into_iter().map(account_from_columns).collect()
    }

    fn pin_failures(&mut self, account: AccountNumber) -> Result<PinFailures, StoreError> {
        let number = account.to_stored()?;
        let row: Option<(i64, Option<i64>, Option<i64>)> = self
            .tx
            .prepare_cached(
                "SELECT failures, locked_at, locked_until FROM pin_failures WHERE account = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([number], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .optional()
            })
            .map_err(failed("cannot read wrong PIN count"))?;
        let Some((count, locked_at, locked_until)) = row else {
            return Ok(PinFailures::default());
        };
        PinFailures::from_stored(count, locked_at, locked_until)
    }

    fn put_pin_failures(
        &mut self,
        account: AccountNumber,
        failures: &PinFailures,
    ) -> Result<(), StoreError> {
        let number = account.to_stored()?;
        if *failures == PinFailures::default() {
            return self
                .tx
                .prepare_cached("DELETE FROM pin_failures WHERE account = ?1")
                .and_then(|mut statement| statement.execute([number]))
                .map(drop)
                .map_err(failed("cannot clear wrong PIN count"));
        }
        let (locked_at, locked_until) = failures.lock_to_stored()?;
        self.tx
            .prepare_cached(
                "INSERT INTO pin_failures (account, failures, locked_at, locked_until)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account) DO UPDATE SET
                     failures = excluded.failures,
                     locked_at = excluded.locked_at,
                     locked_until = excluded.locked_until",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    number,
                    i64::from(failures.count),
                    locked_at,
                    locked_until
                ])
            })
            .map(drop)
            .map_err(failed("cannot write wrong PIN count"))
    }

    fn balance(&mut self, account: &LedgerAccount) -> Result<i64, StoreError> {
        let balance = self
            .tx
            .prepare_cached("SELECT balance FROM balances WHERE account = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([account.to_string()], |row| row.get(0))
                    .optional()
            })
            .map_err(failed("cannot read balance"))?;
        Ok(balance.unwrap_or(0))
    }

    fn balances(&mut self) -> Result<Vec<(LedgerAccount, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = self
            .tx
            .prepare_cached("SELECT account, balance FROM balances ORDER BY account")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed("cannot list balances"))?;
        rows.into_iter()
            .map(|(key, balance)| Ok((ledger_account_from_stored(&key)?, balance)))
            .collect()
    }

    /// Checks both new balances before writing anything, so a failed post
    /// leaves the transaction as it was.
    fn post(&mut self, transfer: &Transfer) -> Result<(), StoreError> {
        let (from, to) = (transfer.from(), transfer.to());
        let (from_balance, to_balance) =
            balances_after(transfer, self.balance(&from)?, self.balance(&to)?)?;
        let amount = transfer.amount().as_i64();
        let at = transfer.at().to_stored()?;
        self.tx
            .prepare_cached(
                "INSERT INTO journal (kind, from_account, to_account, amount, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut statement| {
                statement.execute(params![transfer.kind().to_string(), from.to_string(), to.to_string(), amount, at])
            })
            .map_err(failed("cannot append journal entry"))?;
        self.set_balance(&from, from_balance)?;
        self.set_balance(&to, to_balance)
    }

    fn mark_broker_scrip_spent(
        &mut self,
        scrip: &ScripId,
        expiry: Timestamp,
    ) -> Result<Spend, StoreError> {
        insert_or_fail(
            &mut self.tx,
            "INSERT INTO spent_broker_scrip (id, expiry) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            params![scrip.to_key(), expiry.to_stored()?],
            "cannot mark BrokerScrip spent",
        )
    }

    fn merchant(&mut self, merchant: &MerchantId) -> Result<Option<MerchantRecord>, StoreError> {
        self.merchant_where("merchant = ?1", merchant.as_bytes())
    }

    fn merchant_by_name(&mut self, name: &str) -> Result<Option<MerchantRecord>, StoreError> {
        self.merchant_where("name = ?1", &name)
    }

    fn put_merchant(&mut self, merchant: &MerchantRecord) -> Result<(), StoreError> {
        let account = merchant.account.to_stored()?;
        let registered_at = merchant.registered_at.to_stored()?;
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO merchants ({MERCHANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (merchant) DO UPDATE SET
                     name = excluded.name,
                     account = excluded.account,
                     licence = excluded.licence,
                     registered_at = excluded.registered_at"
            ))
            .and_then(|mut statement| {
                statement.execute(params![
                    merchant.merchant.as_bytes(),
                    merchant.name,
                    account,
                    scrip_proto::encode(&merchant.licence),
                    registered_at
                ])
            })
            .map(drop)
            .map_err(failed("cannot store merchant"))
    }

    fn merchants(&mut self) -> Result<Vec<MerchantRecord>, StoreError> {
        let rows = self
            .tx
            .prepare_cached(&format!(
                "SELECT {MERCHANT_COLUMNS} FROM merchants ORDER BY name"
            ))
            .and_then(|mut statement| {
                statement
                    .query_map([], merchant_columns)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed("cannot list merchants"))?;
        rows.into_iter().map(merchant_from_columns).collect()
    }

    fn insert_intent(&mut self, intent: &IntentRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO intents (request_id, buy_request, scrip, intent, receipt) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    intent.intent.request_id.as_bytes(),
                    intent.intent.buy_request.as_bytes(),
                    intent.intent.scrip.body.id.to_key(),
                    scrip_proto::encode(&intent.intent),
                    scrip_proto::encode(&intent.receipt)
                ])
            })
            .map(drop)
            .map_err(failed("cannot insert intent"))
    }

    fn intent_for_buy(
        &mut self,
        buy_request: &RequestId,
        scrip: &ScripId,
    ) -> Result<bool, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM intents WHERE buy_request = ?1 AND scrip = ?2)",
            )
            .and_then(|mut statement| {
                statement.query_row(
                    params![buy_request.as_bytes().as_slice(), scrip.to_key().as_slice()],
                    |row| row.get(0),
                )
            })
            .map_err(failed("cannot look up intent"))
    }

    fn payment_recorded(
        &mut self,
        merchant: &MerchantId,
        scrip: &ScripId,
    ) -> Result<bool, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM payments WHERE merchant = ?1 AND scrip = ?2)",
            )
            .and_then(|mut statement| {
                statement.query_row(
                    params![merchant.as_bytes().as_slice(), scrip.to_key().as_slice()],
                    |row| row.get(0),
                )
            })
            .map_err(failed("cannot look up payment"))
    }

    fn record_payment(&mut self, payment: &PaymentRow) -> Result<Spend, StoreError> {
        insert_or_fail(
            &mut self.tx,
            "INSERT INTO payments (merchant, scrip, record, recorded_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (merchant, scrip) DO NOTHING",
            params![
                payment.merchant.as_bytes(),
                payment.record.buy.body.scrip.body.id.to_key(),
                scrip_proto::encode(&payment.record),
                payment.recorded_at.to_stored()?
            ],
            "cannot record payment",
        )
    }

    fn log_size(&mut self) -> Result<u64, StoreError> {
        let size: i64 = self
            .tx
            // seq is the key, so MAX is an index look-up; leaf index = seq - 1 without gaps.
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(failed("cannot count log entries"))?;
        u64::try_from(size).map_err(|_| StoreError("corrupt log size".into()))
    }

    fn log_hashes(&mut self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut statement = self
            .tx
            .prepare_cached("SELECT hash FROM log_hashes WHERE idx = ?1")
            .map_err(failed("cannot read log hashes"))?;
        indexes
            .iter()
            .map(|index| {
                let index = i64::try_from(*index)
                    .map_err(|_| StoreError("log hash index out of range".into()))?;
                let hash: Vec<u8> = statement
                    .query_row([index], |row| row.get(0))
                    .optional()
                    .map_err(failed("cannot read log hash"))?
                    .ok_or_else(|| StoreError(format!("log hash {index} is missing")))?;
                digest_from_stored(&hash)
            })
            .collect()
    }

    fn append_log(
        &mut self,
        index: u64,
        data: &[u8],
        hashes: &[(u64, [u8; 32])],
    ) -> Result<(), StoreError> {
        let seq =
            i64::try_from(index + 1).map_err(|_| StoreError("log index out of range".into()))?;
        self.tx
            .prepare_cached("INSERT INTO events (seq, bytes) VALUES (?1, ?2)")
            .and_then(|mut statement| statement.execute(params![seq, data]))
            .map_err(failed("cannot append log entry"))?;
        let mut statement = self
            .tx
            .prepare_cached("INSERT INTO log_hashes (idx, hash) VALUES (?1, ?2)")
            .map_err(failed("cannot store log hash"))?;
        for (index, hash) in hashes {
            let index = i64::try_from(*index)
                .map_err(|_| StoreError("log hash index out of range".into()))?;
            statement
                .execute(params![index, hash.as_slice()])
                .map_err(failed("cannot store log hash"))?;
        }
        Ok(())
    }

    fn put_checkpoint(&mut self, size: u64, note: &[u8]) -> Result<(), StoreError> {
        let size =
            i64::try_from(size).map_err(|_| StoreError("checkpoint size out of range".into()))?;
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO checkpoints (size, note) VALUES (?1, ?2)")
            .and_then(|mut statement| statement.execute(params![size, note]))
            .map(drop)
            .map_err(failed("cannot store checkpoint"))
    }

    fn latest_checkpoint(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.tx
            .prepare_cached("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .and_then(|mut statement| {
                statement
                    .query_row([], |row| {
                        Ok((row.get::<_, i64>(0)? as u64, row.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()
            })
            .map_err(failed("cannot read the latest checkpoint"))
    }

    fn snapshot(&mut self) -> Result<BrokerSnapshot, StoreError> {
        let tx = &self.tx;
        let all = |sql: &str| -> Result<Vec<Vec<rusqlite::types::Value>>, StoreError> {
            let mut statement = tx
                .prepare(sql)
                .map_err(failed("cannot read for the audit"))?;
            let columns = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    (0..columns)
                        .map(|i| row.get(i))
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(failed("cannot read for the audit"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(failed("cannot read for the audit"))
        };
        use rusqlite::types::Value;
        let int = |v: &Value, what: &str| match v {
            Value::Integer(i) => Ok(*i),
            _ => Err(StoreError(format!("corrupt {what}: not an integer"))),
        };
        let blob = |v: &Value, what: &str| match v {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(StoreError(format!("corrupt {what}: not bytes"))),
        };
        let text = |v: &Value, what: &str| match v {
            Value::Text(t) => Ok(t.clone()),
            _ => Err(StoreError(format!("corrupt {what}: not text"))),
        };
        let mut snapshot = BrokerSnapshot::default();
        for row in all("SELECT seq, bytes FROM events ORDER BY seq")? {
            snapshot.push_leaf(int(&row[0], "events.seq")?, blob(&row[1], "events.bytes")?)?;
        }
        for row in all("SELECT idx, hash FROM log_hashes ORDER BY idx")? {
            snapshot.hashes.push((
                int(&row[0], "log_hashes.idx")? as u64,
                digest_from_stored(&blob(&row[1], "log_hashes.hash")?)?,
            ));
        }
        for row in all("SELECT size, note FROM checkpoints ORDER BY size")? {
            snapshot.checkpoints.push((
                int(&row[0], "checkpoints.size")? as u64,
                blob(&row[1], "checkpoints.note")?,
            ));
        }
        for row in all("SELECT account, balance FROM balances ORDER BY account")? {
            snapshot.balances.push((
                text(&row[0], "balances.account")?,
                int(&row[1], "balances.balance")?,
            ));
        }
        for row in
            all("SELECT seq, kind, from_account, to_account, amount FROM journal ORDER BY seq")?
        {
            snapshot.journal.push((
                int(&row[0], "journal.seq")?,
                text(&row[1], "journal.kind")?,
                text(&row[2], "journal.from_account")?,
                text(&row[3], "journal.to_account")?,
                int(&row[4], "journal.amount")?,
            ));
        }
        for row in all("SELECT number, pin_hash, account_key FROM accounts ORDER BY number")? {
            let key = match &row[2] {
                Value::Null => None,
                other => Some(public_key_from_stored(&blob(
                    other,
                    "accounts.account_key",
                )?)?),
            };
            snapshot.accounts.push((
                AccountNumber::from_stored(int(&row[0], "accounts.number")?)?,
                text(&row[1], "accounts.pin_hash")?,
                key,
            ));
        }
        let optional_int = |v: &Value, what: &str| match v {
            Value::Null => Ok(None),
            other => int(other, what).map(Some),
        };
        for row in all(
            "SELECT account, failures, locked_at, locked_until FROM pin_failures ORDER BY account",
        )? {
            snapshot.pin_failures.push((
                AccountNumber::from_stored(int(&row[0], "pin_failures.account")?)?,
                int(&row[1], "pin_failures.failures")?,
                optional_int(&row[2], "pin_failures.locked_at")?,
                optional_int(&row[3], "pin_failures.locked_until")?,
            ));
        }
        for row in all("SELECT id FROM spent_broker_scrip ORDER BY id")? {
            snapshot
                .spent_broker_scrip
                .push(blob(&row[0], "spent_broker_scrip.id")?);
        }
        for row in all("SELECT merchant, account, name, licence FROM merchants ORDER BY merchant")?
        {
            snapshot.merchants.push((
                public_key_from_stored(&blob(&row[0], "merchants.merchant")?)?,
                AccountNumber::from_stored(int(&row[1], "merchants.account")?)?,
                text(&row[2], "merchants.name")?,
                blob(&row[3], "merchants.licence")?,
            ));
        }
        for row in all("SELECT request_id, buy_request, scrip FROM intents ORDER BY request_id")? {
            snapshot.intents.push((
                request_id_from_stored(&blob(&row[0], "intents.request_id")?)?,
                request_id_from_stored(&blob(&row[1], "intents.buy_request")?)?,
                blob(&row[2], "intents.scrip")?,
            ));
        }
        for row in all("SELECT merchant, scrip, record FROM payments ORDER BY merchant, scrip")? {
            snapshot.payments.push((
                public_key_from_stored(&blob(&row[0], "payments.merchant")?)?,
                blob(&row[1], "payments.scrip")?,
                blob(&row[2], "payments.record")?,
            ));
        }
        Ok(snapshot)
    }

    fn commit(self) -> Result<(), StoreError> {
        self.tx.commit("cannot commit broker transaction")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use scrip_store_conformance::Backend;

    use super::*;
    use crate::fixtures::*;

    /// A broker database in a file of its own, in a directory removed with it.
    struct SqliteFile {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn backend() -> Option<SqliteFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        Some(SqliteFile { _dir: dir, path })
    }

    impl Backend for SqliteFile {
        type Store = SqliteBrokerStore;

        fn open(&self) -> SqliteBrokerStore {
            SqliteBrokerStore::open(&self.path).unwrap()
        }

        fn fingerprint(&self, store: &mut SqliteBrokerStore) -> String {
            store.fingerprint().unwrap()
        }

        fn execute(&self, sql: &str) {
            execute(&self.path, sql);
        }

        fn bytes_literal(&self, hex: &str) -> String {
            format!("x'{hex}'")
        }
    }

    scrip_store_conformance::broker_store_conformance!(backend());

    #[test]
    fn the_file_is_owner_only_and_records_its_role_and_version() {
        let file = backend().unwrap();
        let mut store = file.open();
        let mut tx = store.begin().unwrap();
        write_everything(&mut tx);
        tx.commit().unwrap();
        assert_owner_only(&file.path);
        drop(store);
        assert_eq!(pragma(&file.path, "user_version"), SCHEMA.version());
        assert_eq!(
            pragma(&file.path, "application_id"),
            i64::from(SCHEMA.application_id)
        );
    }
}
