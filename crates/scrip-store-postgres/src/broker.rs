//! The broker's store in PostgreSQL: accounts, the double-entry ledger, the BrokerScrip spent set, merchants, intents, payments and the event log.

use postgres::Row;
use scrip_core::ledger::{LedgerAccount, Transfer};
use scrip_core::store::{
    balances_after, digest_from_stored, ledger_account_from_stored, public_key_from_stored,
    request_id_from_stored, AccountRecord, BrokerSnapshot, BrokerStore, BrokerTx, GroupCommit,
    IntentRow, MerchantRecord, PaymentRow, PinFailures, Spend, StoreError, StoredAsI64,
    StoredResponse,
};
use scrip_proto::{AccountNumber, MerchantId, PublicKey, RequestId, ScripId, Timestamp};

use crate::db::{self, get, index_from_sql, index_to_sql, Access, Connection, Schema, Step};

pub(crate) const SCHEMA: Schema = Schema {
    role: "broker",
    migrations: &[MIGRATION_1],
};

/// The SQLite broker's migrations 1 to 4 in their final shape, in PostgreSQL
/// types: the same tables, columns, keys and checks. A new database has no
/// history to replay, so they are one migration here.
///
/// `journal.seq` has no sequence: [`PgBrokerTx::post`] gives it
/// `MAX(seq) + 1` under the writer lock, so, as with SQLite's AUTOINCREMENT
/// in a transaction, a rolled-back step leaves no gap. `events.seq` is the
/// leaf index + 1, given by the log.
const MIGRATION_1: &str = "
CREATE TABLE responses (
    request_id BYTEA PRIMARY KEY,
    request_digest BYTEA NOT NULL,
    response BYTEA NOT NULL,
    -- The log leaf of the step, for receipts.
    leaf BIGINT
);

CREATE TABLE accounts (
    number BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    pin_hash TEXT NOT NULL,
    account_key BYTEA,
    opened_at BIGINT NOT NULL
);

-- One row per ledger account that ever moved, keyed by LedgerAccount's Display form.
CREATE TABLE balances (
    account TEXT PRIMARY KEY,
    balance BIGINT NOT NULL
);

CREATE TABLE journal (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    from_account TEXT NOT NULL,
    to_account TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    at BIGINT NOT NULL
);

-- The primary key is the double-spend check: ScripId::to_key().
CREATE TABLE spent_broker_scrip (
    id BYTEA PRIMARY KEY,
    expiry BIGINT NOT NULL
);

CREATE TABLE merchants (
    merchant BYTEA PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    account BIGINT NOT NULL,
    licence BYTEA NOT NULL,
    registered_at BIGINT NOT NULL
);

CREATE TABLE intents (
    request_id BYTEA PRIMARY KEY,
    buy_request BYTEA NOT NULL,
    scrip BYTEA NOT NULL,
    intent BYTEA NOT NULL,
    receipt BYTEA NOT NULL
);
CREATE INDEX intents_by_buy_request ON intents (buy_request);

-- The primary key makes recording a payment insert-or-fail per spent VendorScrip.
CREATE TABLE payments (
    merchant BYTEA NOT NULL,
    scrip BYTEA NOT NULL,
    record BYTEA NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (merchant, scrip)
);

-- The transparency log: events rows are its leaves (leaf index = seq - 1);
-- log_hashes holds the tree's stored hashes (tlog layout), checkpoints the
-- broker's signed checkpoints by log size.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    bytes BYTEA NOT NULL
);

CREATE TABLE log_hashes (
    idx BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY,
    note BYTEA NOT NULL
);

-- Wrong PINs in a row per account, and the lock they led to. No row: no
-- wrong PIN since the account last authenticated, and no lock. A lock is
-- locked_at set; locked_until NULL means until the operator unlocks.
CREATE TABLE pin_failures (
    account BIGINT PRIMARY KEY REFERENCES accounts (number),
    failures BIGINT NOT NULL CHECK (failures >= 0),
    locked_at BIGINT,
    locked_until BIGINT,
    CHECK (locked_until IS NULL OR locked_at IS NOT NULL)
);
";

/// The broker's [`BrokerStore`] in one PostgreSQL schema.
///
/// Several stores (threads or processes) may connect to the same schema:
/// each [`begin`](BrokerStore::begin) and
/// [`begin_group`](GroupCommit::begin_group) first locks the row of
/// `writer`, so broker steps run one after another. A read
/// ([`begin_read`](BrokerStore::begin_read)) is a REPEATABLE READ, READ ONLY
/// snapshot that takes no lock.
pub struct PgBrokerStore {
    conn: Connection,
    /// Inside a group commit: transactions are savepoints of the group's.
    grouped: bool,
}

/// One broker transaction: a READ COMMITTED transaction holding the writer
/// lock (for reads, a read-only snapshot; inside a group, a savepoint of the
/// group's) that rolls back when dropped without [`commit`](BrokerTx::commit).
pub struct PgBrokerTx<'a> {
    tx: Step<'a>,
}

impl PgBrokerStore {
    /// Connects to the broker database at `url` (a `postgres://` URL or
    /// key-value string; the schema is the connection's `search_path`) and
    /// migrates its schema as needed.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login, the schema belongs
    /// to another role or is newer than this build, or a migration fails.
    /// The message never contains the URL's password.
    pub fn connect(url: &str) -> Result<PgBrokerStore, StoreError> {
        db::connect(url, &SCHEMA).map(|conn| PgBrokerStore {
            conn,
            grouped: false,
        })
    }

    /// Every row of every table but the audit log's, as text: equal dumps mean
    /// equal state. For tests that check a refused request changed nothing.
    ///
    /// # Errors
    /// The tables cannot be read.
    pub fn fingerprint(&mut self) -> Result<String, StoreError> {
        let mut step = Step::begin(&mut self.conn, self.grouped, Access::Write, SCHEMA.role)?;
        let dump = db::fingerprint(&mut step)?;
        step.commit("cannot end the dump")?;
        Ok(dump)
    }

    /// True when the connection is gone (closed by the server, or left in an
    /// unknown state by a failed rollback): every step on it would fail, and
    /// a new store must be connected in its place.
    pub fn is_broken(&self) -> bool {
        self.conn.is_broken()
    }

    /// Checks that the server still answers: one round trip.
    ///
    /// # Errors
    /// The connection is gone.
    pub fn check(&mut self) -> Result<(), StoreError> {
        self.conn.check()
    }
}

#[cfg(test)]
impl PgBrokerStore {
    /// For tests: the store's connection.
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl BrokerStore for PgBrokerStore {
    type Tx<'a> = PgBrokerTx<'a>;

    fn begin(&mut self) -> Result<PgBrokerTx<'_>, StoreError> {
        Step::begin(&mut self.conn, self.grouped, Access::Write, SCHEMA.role)
            .map(|tx| PgBrokerTx { tx })
    }

    fn begin_read(&mut self) -> Result<PgBrokerTx<'_>, StoreError> {
        Step::begin(&mut self.conn, self.grouped, Access::Read, SCHEMA.role)
            .map(|tx| PgBrokerTx { tx })
    }
}

impl GroupCommit for PgBrokerStore {
    fn begin_group(&mut self) -> Result<(), StoreError> {
        db::begin_group(&mut self.conn, &mut self.grouped, SCHEMA.role)
    }

    fn end_group(&mut self) -> Result<(), StoreError> {
        db::end_group(&mut self.conn, &mut self.grouped, SCHEMA.role)
    }

    fn abort_group(&mut self) {
        db::abort_group(&mut self.conn, &mut self.grouped);
    }
}

/// The columns of an `accounts` row, in the order [`account_from_row`] reads them.
macro_rules! account_columns {
    () => {
        "number, name, pin_hash, account_key, opened_at"
    };
}

fn account_from_row(row: &Row) -> Result<AccountRecord, StoreError> {
    let account_key: Option<Vec<u8>> = get(row, 3, "account key")?;
    AccountRecord::from_stored(
        get(row, 0, "account number")?,
        get(row, 1, "account name")?,
        get(row, 2, "PIN hash")?,
        account_key.as_deref(),
        get(row, 4, "timestamp")?,
    )
}

/// The columns of a `merchants` row, in the order [`merchant_from_row`] reads them.
macro_rules! merchant_columns {
    () => {
        "merchant, name, account, licence, registered_at"
    };
}

fn merchant_from_row(row: &Row) -> Result<MerchantRecord, StoreError> {
    MerchantRecord::from_stored(
        &get::<Vec<u8>>(row, 0, "merchant id")?,
        get(row, 1, "merchant name")?,
        get(row, 2, "account number")?,
        &get::<Vec<u8>>(row, 3, "merchant licence")?,
        get(row, 4, "timestamp")?,
    )
}

impl PgBrokerTx<'_> {
    fn set_balance(&mut self, account: &LedgerAccount, balance: i64) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO balances (account, balance) VALUES ($1, $2)
                 ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
                &[&account.to_string(), &balance],
                "cannot write balance",
            )
            .map(drop)
    }

    fn merchant_where(
        &mut self,
        sql: &'static str,
        key: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<Option<MerchantRecord>, StoreError> {
        self.tx
            .query_opt(sql, &[key], "cannot read merchant")?
            .as_ref()
            .map(merchant_from_row)
            .transpose()
    }

    /// All rows of one query of [`snapshot`](BrokerTx::snapshot).
    fn audit_rows(&mut self, sql: &'static str) -> Result<Vec<Row>, StoreError> {
        self.tx.query(sql, &[], "cannot read for the audit")
    }

    /// For tests: the connection under the transaction.
    #[cfg(test)]
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.tx
    }
}

impl BrokerTx for PgBrokerTx<'_> {
    fn stored_response(
        &mut self,
        request: &RequestId,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let Some(row) = self.tx.query_opt(
            "SELECT request_digest, response, leaf FROM responses WHERE request_id = $1",
            &[&request.as_bytes().as_slice()],
            "cannot read stored response",
        )?
        else {
            return Ok(None);
        };
        let leaf: Option<i64> = get(&row, 2, "leaf index in responses")?;
        Ok(Some(StoredResponse {
            request_digest: digest_from_stored(&get::<Vec<u8>>(&row, 0, "request digest")?)?,
            response: get(&row, 1, "stored response")?,
            leaf: leaf
                .map(|leaf| index_from_sql(leaf, "leaf index in responses"))
                .transpose()?,
        }))
    }

    /// Insert-or-fail: an id answered before is an error, since the core
    /// looks it up first and a retry must never get a different answer.
    fn store_response(
        &mut self,
        request: &RequestId,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let leaf = response
            .leaf
            .map(|leaf| index_to_sql(leaf, "leaf index"))
            .transpose()?;
        self.tx
            .execute(
                "INSERT INTO responses (request_id, request_digest, response, leaf) VALUES ($1, $2, $3, $4)",
                &[
                    &request.as_bytes().as_slice(),
                    &response.request_digest.as_slice(),
                    &response.response,
                    &leaf,
                ],
                "cannot store response",
            )
            .map(drop)
    }

    fn account(&mut self, number: AccountNumber) -> Result<Option<AccountRecord>, StoreError> {
        let number = number.to_stored()?;
        self.tx
            .query_opt(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts WHERE number = $1"
                ),
                &[&number],
                "cannot read account",
            )?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    fn insert_account(&mut self, account: &AccountRecord) -> Result<(), StoreError> {
        let number = account.number.to_stored()?;
        let opened_at = account.opened_at.to_stored()?;
        self.tx
            .execute(
                concat!(
                    "INSERT INTO accounts (",
                    account_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5)"
                ),
                &[
                    &number,
                    &account.name,
                    &account.pin_hash,
                    &account
                        .account_key
                        .as_ref()
                        .map(|key| key.as_bytes().as_slice()),
                    &opened_at,
                ],
                "cannot insert account",
            )
            .map(drop)
    }

    fn bind_account_key(
        &mut self,
        number: AccountNumber,
        key: &PublicKey,
    ) -> Result<(), StoreError> {
        let number = number.to_stored()?;
        let updated = self.tx.execute(
            "UPDATE accounts SET account_key = $2 WHERE number = $1",
            &[&number, &key.as_bytes().as_slice()],
            "cannot bind account key",
        )?;
        if updated == 0 {
            return Err(StoreError(
                "cannot bind account key: no such account".into(),
            ));
        }
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<AccountRecord>, StoreError> {
        self.tx
            .query(
                concat!(
                    "SELECT ",
                    account_columns!(),
                    " FROM accounts ORDER BY number"
                ),
                &[],
                "cannot list accounts",
            )?
            .iter()
            .map(account_from_row)
            .collect()
    }

    fn pin_failures(&mut self, account: AccountNumber) -> Result<PinFailures, StoreError> {
        let number = account.to_stored()?;
        let Some(row) = self.tx.query_opt(
            "SELECT failures, locked_at, locked_until FROM pin_failures WHERE account = $1",
            &[&number],
            "cannot read wrong PIN count",
        )?
        else {
            return Ok(PinFailures::default());
        };
        PinFailures::from_stored(
            get(&row, 0, "wrong PIN count")?,
            get(&row, 1, "account lock")?,
            get(&row, 2, "account lock")?,
        )
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
                .execute(
                    "DELETE FROM pin_failures WHERE account = $1",
                    &[&number],
                    "cannot clear wrong PIN count",
                )
                .map(drop);
        }
        let (locked_at, locked_until) = failures.lock_to_stored()?;
        self.tx
            .execute(
                "INSERT INTO pin_failures (account, failures, locked_at, locked_until)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account) DO UPDATE SET
                     failures = excluded.failures,
                     locked_at = excluded.locked_at,
                     locked_until = excluded.locked_until",
                &[
                    &number,
                    &i64::from(failures.count),
                    &locked_at,
                    &locked_until,
                ],
                "cannot write wrong PIN count",
            )
            .map(drop)
    }

    fn balance(&mut self, account: &LedgerAccount) -> Result<i64, StoreError> {
        self.tx
            .query_opt(
                "SELECT balance FROM balances WHERE account = $1",
                &[&account.to_string()],
                "cannot read balance",
            )?
            .map_or(Ok(0), |row| get(&row, 0, "balance"))
    }

    fn balances(&mut self) -> Result<Vec<(LedgerAccount, i64)>, StoreError> {
        self.tx
            .query(
                "SELECT account, balance FROM balances ORDER BY account COLLATE \"C\"",
                &[],
                "cannot list balances",
            )?
            .iter()
            .map(|row| {
                let account =
                    ledger_account_from_stored(&get::<String>(row, 0, "ledger account key")?)?;
                Ok((account, get(row, 1, "balance")?))
            })
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
        // The next seq is exact: the writer lock keeps every other step out.
        self.tx.execute(
            "INSERT INTO journal (seq, kind, from_account, to_account, amount, at)
             VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM journal), $1, $2, $3, $4, $5)",
            &[
                &transfer.kind().to_string(),
                &from.to_string(),
                &to.to_string(),
                &amount,
                &at,
            ],
            "cannot append journal entry",
        )?;
        self.set_balance(&from, from_balance)?;
        self.set_balance(&to, to_balance)
    }

    fn mark_broker_scrip_spent(
        &mut self,
        scrip: &ScripId,
        expiry: Timestamp,
    ) -> Result<Spend, StoreError> {
        self.tx.insert_or_fail(
            "INSERT INTO spent_broker_scrip (id, expiry) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&scrip.to_key().as_slice(), &expiry.to_stored()?],
            "cannot mark BrokerScrip spent",
        )
    }

    fn merchant(&mut self, merchant: &MerchantId) -> Result<Option<MerchantRecord>, StoreError> {
        self.merchant_where(
            concat!(
                "SELECT ",
                merchant_columns!(),
                " FROM merchants WHERE merchant = $1"
            ),
            &merchant.as_bytes().as_slice(),
        )
    }

    fn merchant_by_name(&mut self, name: &str) -> Result<Option<MerchantRecord>, StoreError> {
        self.merchant_where(
            concat!(
                "SELECT ",
                merchant_columns!(),
                " FROM merchants WHERE name = $1"
            ),
            &name,
        )
    }

    fn put_merchant(&mut self, merchant: &MerchantRecord) -> Result<(), StoreError> {
        let account = merchant.account.to_stored()?;
        let registered_at = merchant.registered_at.to_stored()?;
        self.tx
            .execute(
                concat!(
                    "INSERT INTO merchants (",
                    merchant_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (merchant) DO UPDATE SET
                         name = excluded.name,
                         account = excluded.account,
                         licence = excluded.licence,
                         registered_at = excluded.registered_at"
                ),
                &[
                    &merchant.merchant.as_bytes().as_slice(),
                    &merchant.name,
                    &account,
                    &scrip_proto::encode(&merchant.licence),
                    &registered_at,
                ],
                "cannot store merchant",
            )
            .map(drop)
    }

    fn merchants(&mut self) -> Result<Vec<MerchantRecord>, StoreError> {
        self.tx
            .query(
                concat!(
                    "SELECT ",
                    merchant_columns!(),
                    " FROM merchants ORDER BY name COLLATE \"C\""
                ),
                &[],
                "cannot list merchants",
            )?
            .iter()
            .map(merchant_from_row)
            .collect()
    }

    fn insert_intent(&mut self, intent: &IntentRow) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO intents (request_id, buy_request, scrip, intent, receipt) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &intent.intent.request_id.as_bytes().as_slice(),
                    &intent.intent.buy_request.as_bytes().as_slice(),
                    &intent.intent.scrip.body.id.to_key().as_slice(),
                    &scrip_proto::encode(&intent.intent),
                    &scrip_proto::encode(&intent.receipt),
                ],
                "cannot insert intent",
            )
            .map(drop)
    }

    fn intent_for_buy(
        &mut self,
        buy_request: &RequestId,
        scrip: &ScripId,
    ) -> Result<bool, StoreError> {
        let row = self.tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM intents WHERE buy_request = $1 AND scrip = $2)",
            &[
                &buy_request.as_bytes().as_slice(),
                &scrip.to_key().as_slice(),
            ],
            "cannot look up intent",
        )?;
        get(&row, 0, "intent look-up")
    }

    fn payment_recorded(
        &mut self,
        merchant: &MerchantId,
        scrip: &ScripId,
    ) -> Result<bool, StoreError> {
        let row = self.tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM payments WHERE merchant = $1 AND scrip = $2)",
            &[&merchant.as_bytes().as_slice(), &scrip.to_key().as_slice()],
            "cannot look up payment",
        )?;
        get(&row, 0, "payment look-up")
    }

    fn record_payment(&mut self, payment: &PaymentRow) -> Result<Spend, StoreError> {
        self.tx.insert_or_fail(
            "INSERT INTO payments (merchant, scrip, record, recorded_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (merchant, scrip) DO NOTHING",
            &[
                &payment.merchant.as_bytes().as_slice(),
                &payment.record.buy.body.scrip.body.id.to_key().as_slice(),
                &scrip_proto::encode(&payment.record),
                &payment.recorded_at.to_stored()?,
            ],
            "cannot record payment",
        )
    }

    fn log_size(&mut self) -> Result<u64, StoreError> {
        // seq is the key, so MAX is an index look-up; leaf index = seq - 1 without gaps.
        let row = self.tx.query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM events",
            &[],
            "cannot count log entries",
        )?;
        index_from_sql(get(&row, 0, "log size")?, "log size")
    }

    /// One round trip for all the indexes: the log asks for several per append.
    fn log_hashes(&mut self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let keys = indexes
            .iter()
            .map(|index| index_to_sql(*index, "log hash index"))
            .collect::<Result<Vec<i64>, _>>()?;
        let rows = self.tx.query(
            "SELECT idx, hash FROM log_hashes WHERE idx = ANY ($1)",
            &[&keys],
            "cannot read log hashes",
        )?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let index: i64 = get(row, 0, "log hash index")?;
            found.insert(
                index,
                digest_from_stored(&get::<Vec<u8>>(row, 1, "log hash")?)?,
            );
        }
        keys.iter()
            .map(|index| {
                found
                    .get(index)
                    .copied()
                    .ok_or_else(|| StoreError(format!("log hash {index} is missing")))
            })
            .collect()
    }

    fn append_log(
        &mut self,
        index: u64,
        data: &[u8],
        hashes: &[(u64, [u8; 32])],
    ) -> Result<(), StoreError> {
        let seq = index_to_sql(index.saturating_add(1), "log index")?;
        self.tx.execute(
            "INSERT INTO events (seq, bytes) VALUES ($1, $2)",
            &[&seq, &data],
            "cannot append log entry",
        )?;
        let indexes = hashes
            .iter()
            .map(|(index, _)| index_to_sql(*index, "log hash index"))
            .collect::<Result<Vec<i64>, _>>()?;
        let hashes: Vec<&[u8]> = hashes.iter().map(|(_, hash)| hash.as_slice()).collect();
        self.tx
            .execute(
                "INSERT INTO log_hashes (idx, hash) SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])",
                &[&indexes, &hashes],
                "cannot store log hash",
            )
            .map(drop)
    }

    fn put_checkpoint(&mut self, size: u64, note: &[u8]) -> Result<(), StoreError> {
        let size = index_to_sql(size, "checkpoint size")?;
        self.tx
            .execute(
                "INSERT INTO checkpoints (size, note) VALUES ($1, $2)
                 ON CONFLICT (size) DO UPDATE SET note = excluded.note",
                &[&size, &note],
                "cannot store checkpoint",
            )
            .map(drop)
    }

    fn latest_checkpoint(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.tx
            .query_opt(
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                &[],
                "cannot read the latest checkpoint",
            )?
            .map(|row| {
                Ok((
                    index_from_sql(get(&row, 0, "checkpoint size")?, "checkpoint size")?,
                    get(&row, 1, "checkpoint")?,
                ))
            })
            .transpose()
    }

    /// One consistent view: the writer lock keeps every other step out while
    /// the tables are read.
    fn snapshot(&mut self) -> Result<BrokerSnapshot, StoreError> {
        let mut snapshot = BrokerSnapshot::default();
        for row in self.audit_rows("SELECT seq, bytes FROM events ORDER BY seq")? {
            snapshot.push_leaf(get(&row, 0, "events.seq")?, get(&row, 1, "events.bytes")?)?;
        }
        for row in self.audit_rows("SELECT idx, hash FROM log_hashes ORDER BY idx")? {
            snapshot.hashes.push((
                index_from_sql(get(&row, 0, "log_hashes.idx")?, "log_hashes.idx")?,
                digest_from_stored(&get::<Vec<u8>>(&row, 1, "log_hashes.hash")?)?,
            ));
        }
        for row in self.audit_rows("SELECT size, note FROM checkpoints ORDER BY size")? {
            snapshot.checkpoints.push((
                index_from_sql(get(&row, 0, "checkpoints.size")?, "checkpoints.size")?,
                get(&row, 1, "checkpoints.note")?,
            ));
        }
        for row in
            self.audit_rows("SELECT account, balance FROM balances ORDER BY account COLLATE \"C\"")?
        {
            snapshot.balances.push((
                get(&row, 0, "balances.account")?,
                get(&row, 1, "balances.balance")?,
            ));
        }
        for row in self.audit_rows(
            "SELECT seq, kind, from_account, to_account, amount FROM journal ORDER BY seq",
        )? {
            snapshot.journal.push((
                get(&row, 0, "journal.seq")?,
                get(&row, 1, "journal.kind")?,
                get(&row, 2, "journal.from_account")?,
                get(&row, 3, "journal.to_account")?,
                get(&row, 4, "journal.amount")?,
            ));
        }
        for row in
            self.audit_rows("SELECT number, pin_hash, account_key FROM accounts ORDER BY number")?
        {
            let key: Option<Vec<u8>> = get(&row, 2, "accounts.account_key")?;
            snapshot.accounts.push((
                AccountNumber::from_stored(get(&row, 0, "accounts.number")?)?,
                get(&row, 1, "accounts.pin_hash")?,
                key.as_deref().map(public_key_from_stored).transpose()?,
            ));
        }
        for row in self.audit_rows(
            "SELECT account, failures, locked_at, locked_until FROM pin_failures ORDER BY account",
        )? {
            snapshot.pin_failures.push((
                AccountNumber::from_stored(get(&row, 0, "pin_failures.account")?)?,
                get(&row, 1, "pin_failures.failures")?,
                get(&row, 2, "pin_failures.locked_at")?,
                get(&row, 3, "pin_failures.locked_until")?,
            ));
        }
        for row in self.audit_rows("SELECT id FROM spent_broker_scrip ORDER BY id")? {
            snapshot
                .spent_broker_scrip
                .push(get(&row, 0, "spent_broker_scrip.id")?);
        }
        for row in self.audit_rows(
            "SELECT merchant, account, name, licence FROM merchants ORDER BY merchant",
        )? {
            snapshot.merchants.push((
                public_key_from_stored(&get::<Vec<u8>>(&row, 0, "merchants.merchant")?)?,
                AccountNumber::from_stored(get(&row, 1, "merchants.account")?)?,
                get(&row, 2, "merchants.name")?,
                get(&row, 3, "merchants.licence")?,
            ));
        }
        for row in self
            .audit_rows("SELECT request_id, buy_request, scrip FROM intents ORDER BY request_id")?
        {
            snapshot.intents.push((
                request_id_from_stored(&get::<Vec<u8>>(&row, 0, "intents.request_id")?)?,
                request_id_from_stored(&get::<Vec<u8>>(&row, 1, "intents.buy_request")?)?,
                get(&row, 2, "intents.scrip")?,
            ));
        }
        for row in self
            .audit_rows("SELECT merchant, scrip, record FROM payments ORDER BY merchant, scrip")?
        {
            snapshot.payments.push((
                public_key_from_stored(&get::<Vec<u8>>(&row, 0, "payments.merchant")?)?,
                get(&row, 1, "payments.scrip")?,
                get(&row, 2, "payments.record")?,
            ));
        }
        Ok(snapshot)
    }

    fn commit(self) -> Result<(), StoreError> {
        self.tx.commit("cannot commit broker transaction")
    }
}
