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
    /// about ten seconds for the lock before failing.
    SqliteBrokerStore,
    /// One broker transaction: an SQLite `BEGIN IMMEDIATE` transaction that rolls
    /// back when dropped without [`commit`](BrokerTx::commit).
    SqliteBrokerTx,
    BrokerStore,
    "broker"
);

/// The raw columns of an `accounts` row.
type AccountColumns = (i64, String, String, Option<Vec<u8>>, i64);

const ACCOUNT_COLUMNS: &str = "number, name, pin_hash, account_key, opened_at";

fn account_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountColumns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
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
        db::stored_response(&self.tx, request)
    }

    fn store_response(
        &mut self,
        request: &RequestId,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        db::store_response(&self.tx, request, response)
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
            &self.tx,
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
            &self.tx,
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
    use scrip_core::event::BrokerEvent;
    use std::sync::{Arc, Barrier};

    use scrip_core::ledger::TransferKind;
    use scrip_core::store::AccountLock;

    use super::*;
    use crate::fixtures::*;

    const ALICE: u64 = 100_000_000_001;
    const BOB: u64 = 100_000_000_002;

    fn customer(number: u64) -> LedgerAccount {
        LedgerAccount::Customer(AccountNumber(number))
    }

    fn transfer(
        kind: TransferKind,
        from: LedgerAccount,
        to: LedgerAccount,
        minor: u64,
    ) -> Transfer {
        Transfer::new(kind, from, to, amount(minor), NOW).expect("a valid transfer")
    }

    fn event() -> BrokerEvent {
        BrokerEvent::AccountOpened {
            account: AccountNumber(ALICE),
            pin_hash: [7; 32],
            at: NOW,
        }
    }

    /// Writes one of everything the broker keeps.
    fn write_everything(tx: &mut SqliteBrokerTx<'_>) {
        tx.store_response(&request_id(1), &response(1)).unwrap();
        tx.insert_account(&account_record(ALICE)).unwrap();
        tx.bind_account_key(AccountNumber(ALICE), &PublicKey([8; 32]))
            .unwrap();
        tx.post(&transfer(
            TransferKind::Deposit,
            LedgerAccount::MoneyIn,
            customer(ALICE),
            5_000,
        ))
        .unwrap();
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
            Spend::Fresh
        );
        tx.put_merchant(&merchant_record(merchant_id(1), "tea shop", ALICE))
            .unwrap();
        tx.insert_intent(&intent_row(request_id(2), scrip_id(2)))
            .unwrap();
        assert_eq!(
            tx.record_payment(&payment_row(merchant_id(1), scrip_id(2)))
                .unwrap(),
            Spend::Fresh
        );
        tx.append_event(&event()).unwrap();
        tx.put_pin_failures(AccountNumber(ALICE), &alice_locked())
            .unwrap();
    }

    fn alice_locked() -> PinFailures {
        PinFailures {
            count: 5,
            lock: Some(AccountLock {
                at: NOW,
                until: None,
            }),
        }
    }

    fn count(tx: &SqliteBrokerTx<'_>, table: &str) -> i64 {
        tx.tx
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    #[test]
    fn state_survives_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        {
            let mut store = SqliteBrokerStore::open(&path).unwrap();
            let mut tx = store.begin().unwrap();
            write_everything(&mut tx);
            tx.commit().unwrap();
            assert_owner_only(&path);
        }
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
        assert_eq!(
            pragma(&path, "application_id"),
            i64::from(SCHEMA.application_id)
        );

        let mut store = SqliteBrokerStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.stored_response(&request_id(1)).unwrap(),
            Some(response(1))
        );
        assert_eq!(tx.stored_response(&request_id(2)).unwrap(), None);
        let alice = AccountRecord {
            account_key: Some(PublicKey([8; 32])),
            ..account_record(ALICE)
        };
        assert_eq!(
            tx.account(AccountNumber(ALICE)).unwrap(),
            Some(alice.clone())
        );
        assert_eq!(tx.account(AccountNumber(BOB)).unwrap(), None);
        assert_eq!(tx.accounts().unwrap(), vec![alice]);
        assert_eq!(tx.balance(&customer(ALICE)).unwrap(), 5_000);
        assert_eq!(tx.balance(&customer(BOB)).unwrap(), 0);
        let mut balances = tx.balances().unwrap();
        balances.sort();
        assert_eq!(
            balances,
            vec![(LedgerAccount::MoneyIn, -5_000), (customer(ALICE), 5_000)]
        );
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
            Spend::AlreadySpent
        );
        let tea_shop = merchant_record(merchant_id(1), "tea shop", ALICE);
        assert_eq!(
            tx.merchant(&merchant_id(1)).unwrap(),
            Some(tea_shop.clone())
        );
        assert_eq!(
            tx.merchant_by_name("tea shop").unwrap(),
            Some(tea_shop.clone())
        );
        assert_eq!(tx.merchant_by_name("Tea shop").unwrap(), None);
        assert_eq!(tx.merchants().unwrap(), vec![tea_shop]);
        assert!(tx.intent_for_buy(&request_id(99), &scrip_id(2)).unwrap());
        assert!(!tx.intent_for_buy(&request_id(98), &scrip_id(2)).unwrap());
        assert_eq!(
            tx.record_payment(&payment_row(merchant_id(1), scrip_id(2)))
                .unwrap(),
            Spend::AlreadySpent
        );
        let bytes: Vec<u8> = tx
            .tx
            .query_row("SELECT bytes FROM events", [], |row| row.get(0))
            .unwrap();
        assert_eq!(scrip_proto::decode::<BrokerEvent>(&bytes).unwrap(), event());
        assert_eq!(count(&tx, "journal"), 1);
        assert_eq!(
            tx.pin_failures(AccountNumber(ALICE)).unwrap(),
            alice_locked()
        );
        assert_eq!(
            tx.pin_failures(AccountNumber(BOB)).unwrap(),
            PinFailures::default()
        );
        assert!(
            tx.store_response(&request_id(1), &response(2)).is_err(),
            "an answer is never replaced"
        );
        assert!(
            tx.insert_account(&account_record(ALICE)).is_err(),
            "account numbers are unique"
        );
    }

    #[test]
    fn dropping_a_transaction_without_commit_leaves_nothing() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        write_everything(&mut store.begin().unwrap());

        let mut tx = store.begin().unwrap();
        assert_eq!(tx.stored_response(&request_id(1)).unwrap(), None);
        assert_eq!(tx.account(AccountNumber(ALICE)).unwrap(), None);
        assert!(tx.accounts().unwrap().is_empty());
        assert!(tx.balances().unwrap().is_empty());
        assert!(tx.merchants().unwrap().is_empty());
        assert!(!tx.intent_for_buy(&request_id(99), &scrip_id(2)).unwrap());
        for table in [
            "journal",
            "events",
            "spent_broker_scrip",
            "payments",
            "intents",
            "pin_failures",
        ] {
            assert_eq!(count(&tx, table), 0, "{table}");
        }
        // So the whole step can be redone.
        write_everything(&mut tx);
    }

    #[test]
    fn spending_is_insert_or_fail() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
            Spend::Fresh
        );
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
            Spend::AlreadySpent
        );
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(2), NOW).unwrap(),
            Spend::Fresh
        );
        let other_series = ScripId {
            series: 8,
            ..scrip_id(1)
        };
        assert_eq!(
            tx.mark_broker_scrip_spent(&other_series, NOW).unwrap(),
            Spend::Fresh
        );
        tx.commit().unwrap();

        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.mark_broker_scrip_spent(&scrip_id(1), NOW.plus_seconds(1))
                .unwrap(),
            Spend::AlreadySpent
        );
        assert_eq!(
            tx.record_payment(&payment_row(merchant_id(1), scrip_id(1)))
                .unwrap(),
            Spend::Fresh
        );
        assert_eq!(
            tx.record_payment(&payment_row(merchant_id(1), scrip_id(1)))
                .unwrap(),
            Spend::AlreadySpent
        );
        // Payments are keyed by merchant and scrip id together.
        assert_eq!(
            tx.record_payment(&payment_row(merchant_id(2), scrip_id(1)))
                .unwrap(),
            Spend::Fresh
        );
    }

    /// Sixteen connections to one file race to spend each id; exactly one wins
    /// each race, and read-check-write balance updates lose nothing.
    #[test]
    fn racing_connections_spend_each_id_once() {
        const THREADS: usize = 16;
        const ROUNDS: u64 = 25;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        drop(SqliteBrokerStore::open(&path).unwrap());

        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let mut store = SqliteBrokerStore::open(&path).unwrap();
                    let mut won = Vec::new();
                    for round in 0..ROUNDS {
                        barrier.wait();
                        let mut tx = store.begin().unwrap();
                        let deposit = transfer(
                            TransferKind::Deposit,
                            LedgerAccount::MoneyIn,
                            customer(BOB),
                            1,
                        );
                        tx.post(&deposit).unwrap();
                        if tx.mark_broker_scrip_spent(&scrip_id(round), NOW).unwrap()
                            == Spend::Fresh
                        {
                            let spend = transfer(
                                TransferKind::ObtainVendorScrip,
                                customer(ALICE),
                                LedgerAccount::OutstandingBrokerScrip,
                                1,
                            );
                            tx.post(&spend).unwrap();
                            won.push(round);
                        }
                        tx.commit().unwrap();
                    }
                    won
                })
            })
            .collect();
        let mut winners = [0; ROUNDS as usize];
        for thread in threads {
            for round in thread.join().unwrap() {
                winners[round as usize] += 1;
            }
        }
        assert_eq!(winners, [1; ROUNDS as usize]);

        let mut store = SqliteBrokerStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.balance(&customer(BOB)).unwrap(),
            (THREADS as i64) * (ROUNDS as i64)
        );
        assert_eq!(
            tx.balance(&LedgerAccount::OutstandingBrokerScrip).unwrap(),
            ROUNDS as i64
        );
        assert_eq!(
            tx.balances()
                .unwrap()
                .iter()
                .map(|(_, balance)| balance)
                .sum::<i64>(),
            0
        );
    }

    #[test]
    fn posting_keeps_the_sum_of_balances_at_zero() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        let vendor = LedgerAccount::OutstandingVendorScrip(merchant_id(1));
        let steps = [
            transfer(
                TransferKind::Deposit,
                LedgerAccount::MoneyIn,
                customer(ALICE),
                10_000,
            ),
            transfer(
                TransferKind::ObtainBrokerScrip,
                customer(ALICE),
                LedgerAccount::OutstandingBrokerScrip,
                4_000,
            ),
            transfer(
                TransferKind::ObtainVendorScrip,
                LedgerAccount::OutstandingBrokerScrip,
                vendor,
                3_000,
            ),
            transfer(TransferKind::PaymentRecorded, vendor, customer(BOB), 2_500),
            transfer(
                TransferKind::Withdrawal,
                customer(BOB),
                LedgerAccount::MoneyOut,
                2_000,
            ),
        ];
        for step in &steps {
            let mut tx = store.begin().unwrap();
            tx.post(step).unwrap();
            tx.commit().unwrap();
            let mut tx = store.begin().unwrap();
            assert_eq!(
                tx.balances()
                    .unwrap()
                    .iter()
                    .map(|(_, balance)| balance)
                    .sum::<i64>(),
                0
            );
        }
        let mut tx = store.begin().unwrap();
        let mut balances = tx.balances().unwrap();
        balances.sort();
        assert_eq!(
            balances,
            vec![
                (LedgerAccount::MoneyIn, -10_000),
                (LedgerAccount::MoneyOut, 2_000),
                (customer(ALICE), 6_000),
                (customer(BOB), 500),
                (LedgerAccount::OutstandingBrokerScrip, 1_000),
                (vendor, 500),
            ]
        );
        assert_eq!(count(&tx, "journal"), steps.len() as i64);
    }

    #[test]
    fn a_post_that_would_overflow_fails_and_writes_nothing() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        let max = Transfer::new(
            TransferKind::Deposit,
            LedgerAccount::MoneyIn,
            customer(ALICE),
            scrip_proto::Amount::MAX,
            NOW,
        )
        .unwrap();
        tx.post(&max).unwrap();
        // ALICE would go above i64::MAX; checked before anything is written.
        let error = tx
            .post(&transfer(
                TransferKind::Deposit,
                customer(BOB),
                customer(ALICE),
                1,
            ))
            .unwrap_err();
        assert!(error.0.contains("overflow"), "{error}");
        // MoneyIn would go below i64::MIN.
        assert!(tx
            .post(&transfer(
                TransferKind::Deposit,
                LedgerAccount::MoneyIn,
                customer(BOB),
                2
            ))
            .is_err());
        assert_eq!(tx.balance(&customer(ALICE)).unwrap(), i64::MAX);
        assert_eq!(tx.balance(&customer(BOB)).unwrap(), 0);
        assert_eq!(count(&tx, "journal"), 1);
    }

    #[test]
    fn put_merchant_replaces_by_id_and_names_stay_unique() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        tx.put_merchant(&merchant_record(merchant_id(1), "tea shop", ALICE))
            .unwrap();
        tx.put_merchant(&merchant_record(merchant_id(2), "book shop", BOB))
            .unwrap();
        let renamed = merchant_record(merchant_id(1), "tea house", BOB);
        tx.put_merchant(&renamed).unwrap();
        assert_eq!(tx.merchant(&merchant_id(1)).unwrap(), Some(renamed.clone()));
        assert_eq!(tx.merchant_by_name("tea shop").unwrap(), None);
        assert_eq!(tx.merchants().unwrap().len(), 2);
        assert!(tx
            .put_merchant(&merchant_record(merchant_id(3), "tea house", ALICE))
            .is_err());
        assert_eq!(tx.merchant_by_name("tea house").unwrap(), Some(renamed));
    }

    #[test]
    fn wrong_pin_counts_are_replaced_and_the_default_leaves_no_row() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        tx.insert_account(&account_record(ALICE)).unwrap();
        let two = PinFailures {
            count: 2,
            lock: None,
        };
        tx.put_pin_failures(AccountNumber(ALICE), &two).unwrap();
        assert_eq!(tx.pin_failures(AccountNumber(ALICE)).unwrap(), two);
        let timed = PinFailures {
            count: 3,
            lock: Some(AccountLock {
                at: NOW,
                until: Some(NOW.plus_seconds(60)),
            }),
        };
        tx.put_pin_failures(AccountNumber(ALICE), &timed).unwrap();
        assert_eq!(tx.pin_failures(AccountNumber(ALICE)).unwrap(), timed);
        assert_eq!(count(&tx, "pin_failures"), 1);
        assert_eq!(
            tx.snapshot().unwrap().pin_failures,
            vec![(
                AccountNumber(ALICE),
                3,
                Some(NOW.0 as i64),
                Some(NOW.0 as i64 + 60)
            )]
        );
        tx.put_pin_failures(AccountNumber(ALICE), &PinFailures::default())
            .unwrap();
        assert_eq!(count(&tx, "pin_failures"), 0);
        assert_eq!(
            tx.pin_failures(AccountNumber(ALICE)).unwrap(),
            PinFailures::default()
        );
        // Only accounts that exist can be counted.
        assert!(tx.put_pin_failures(AccountNumber(BOB), &two).is_err());
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let mut store = SqliteBrokerStore::open_in_memory().unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO balances VALUES ('nonsense', 1);
                 INSERT INTO accounts VALUES (100000000001, 'a', 'h', x'0102', 0);
                 INSERT INTO accounts VALUES (100000000002, 'b', 'h', NULL, -1);
                 INSERT INTO merchants VALUES (zeroblob(32), 'm', 1, x'00', 0);
                 INSERT INTO responses VALUES (zeroblob(16), x'01', x'', NULL);
                 INSERT INTO pin_failures VALUES (100000000002, 4294967296, NULL, NULL);",
            )
            .unwrap();
        let mut tx = store.begin().unwrap();
        let errors = [
            tx.balances().unwrap_err(),
            tx.account(AccountNumber(ALICE)).unwrap_err(),
            tx.account(AccountNumber(BOB)).unwrap_err(),
            tx.accounts().unwrap_err(),
            tx.merchant(&PublicKey([0; 32])).unwrap_err(),
            tx.merchants().unwrap_err(),
            tx.stored_response(&RequestId([0; 16])).unwrap_err(),
            tx.pin_failures(AccountNumber(BOB)).unwrap_err(),
        ];
        for error in errors {
            assert!(error.0.contains("corrupt"), "{error}");
        }
    }
}
