//! A merchant's store in SQLite: stored responses, the VendorScrip spent set and the outbox of payment records for the broker.

use rusqlite::{params, OptionalExtension};
use scrip_core::store::{
    decode_stored, request_id_from_stored, MerchantStore, MerchantTx, ReceiptBatchRow, Spend,
    StoreError, StoredAsI64, StoredResponse, SweepFrom, Swept,
};
use scrip_proto::crypto::Signed;
use scrip_proto::msg::{PaymentRecord, ReceiptBatch};
use scrip_proto::{RequestId, ScripId, Timestamp};

use crate::db::{self, failed, limit_to_sql, Schema};

pub(crate) const SCHEMA: Schema = Schema {
    role: "merchant",
    // "scrM"
    application_id: 0x7363_724d,
    migrations: &[
        MIGRATION_1,
        MIGRATION_2,
        MIGRATION_3,
        MIGRATION_4,
        MIGRATION_5,
        MIGRATION_6,
        MIGRATION_7,
    ],
};

const MIGRATION_1: &str = "
CREATE TABLE responses (
    request_id BLOB PRIMARY KEY,
    request_digest BLOB NOT NULL,
    response BLOB NOT NULL
) STRICT;

-- The primary key is the double-spend check: ScripId::to_key().
CREATE TABLE spent (
    id BLOB PRIMARY KEY,
    expiry INTEGER NOT NULL
) STRICT;

-- Payment records owed to the broker, oldest (lowest seq) first.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scrip BLOB NOT NULL UNIQUE,
    record BLOB NOT NULL
) STRICT;
";

/// Responses share their table's shape with the broker's, which records log leaves.
const MIGRATION_2: &str = "ALTER TABLE responses ADD COLUMN leaf INTEGER;";

/// The broker's log receipts for the merchant's registration and payment records.
const MIGRATION_3: &str = "
CREATE TABLE receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    blob BLOB NOT NULL
) STRICT;
";

/// Fewer B-tree writes per sale. The spent set becomes a `WITHOUT ROWID`
/// table, so marking an id spent is one insert into one B-tree keyed by the
/// id, not a row plus an index entry. The outbox drops `AUTOINCREMENT`,
/// which wrote `sqlite_sequence` on every queued record: a plain integer
/// key is still one more than the largest present, so the queue keeps its
/// order.
const MIGRATION_4: &str = "
CREATE TABLE spent_without_rowid (
    id BLOB PRIMARY KEY,
    expiry INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO spent_without_rowid (id, expiry) SELECT id, expiry FROM spent;
DROP TABLE spent;
ALTER TABLE spent_without_rowid RENAME TO spent;

CREATE TABLE outbox_plain (
    seq INTEGER PRIMARY KEY,
    scrip BLOB NOT NULL UNIQUE,
    record BLOB NOT NULL
) STRICT;
INSERT INTO outbox_plain (seq, scrip, record) SELECT seq, scrip, record FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_plain RENAME TO outbox;
";

/// The signed receipt batch of each group of sales, and the hashes of its
/// leaves (32 bytes each, in order), stored once for the group: a sale's
/// stored response names its batch and leaf instead of holding the batch and
/// its inclusion proof, which were more than half of its bytes. Responses
/// stored before keep them, with no leaf.
const MIGRATION_5: &str = "
CREATE TABLE receipt_batches (
    number INTEGER PRIMARY KEY,
    batch BLOB NOT NULL,
    leaf_hashes BLOB NOT NULL
) STRICT;
";

/// Every part of a sale is found by the scrip it spent, so a sale writes
/// one randomly keyed index, the spent set's, instead of three (the spent
/// set, the responses' request ids and the outbox's scrip ids): at 100,000
/// sales on file a group of 256 wrote about 790 pages, and writes about 310
/// now (PERFORMANCE.md, session 9). A spent row names its queued payment
/// record (`queued`) and its stored delivery (`delivery`), and both are
/// appended to tables in order of their sequence numbers.
///
/// The outbox keeps each record's scrip, unindexed: a record is dequeued
/// through its spent row and only if the row it names is still that scrip's,
/// since the sequence numbers of a queue emptied to its end are used again.
/// Records queued before are linked to their spent rows here; one whose
/// scrip was not marked spent (no sale queues such a record) is marked now,
/// with an expiry of 0 for unknown, as SQL cannot read it from the record.
/// Responses stored before stay in `responses`, where retries of those
/// sales find them by request id.
const MIGRATION_6: &str = "
ALTER TABLE spent ADD COLUMN queued INTEGER;
ALTER TABLE spent ADD COLUMN delivery INTEGER;
INSERT INTO spent (id, expiry, queued) SELECT scrip, 0, seq FROM outbox WHERE true
    ON CONFLICT (id) DO UPDATE SET queued = excluded.queued;

CREATE TABLE outbox_unindexed (
    seq INTEGER PRIMARY KEY,
    scrip BLOB NOT NULL,
    record BLOB NOT NULL
) STRICT;
INSERT INTO outbox_unindexed (seq, scrip, record) SELECT seq, scrip, record FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_unindexed RENAME TO outbox;

CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY,
    request_id BLOB NOT NULL,
    request_digest BLOB NOT NULL,
    response BLOB NOT NULL,
    leaf INTEGER
) STRICT;
";

/// The spent set in memory in front of an appended table: a sale appends its
/// spent row instead of inserting into a B-tree with random keys, which
/// dirtied a page per sale once the set outgrew a group (PERFORMANCE.md,
/// session 9). The spent ids are found in [`SpentIndex`], loaded at open
/// and brought up to date from the rows other connections appended each
/// time the write lock is taken. A row's `seq` is what the index maps an
/// id to.
const MIGRATION_7: &str = "
CREATE TABLE spent_appended (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    expiry INTEGER NOT NULL,
    queued INTEGER,
    delivery INTEGER
) STRICT;
INSERT INTO spent_appended (id, expiry, queued, delivery)
    SELECT id, expiry, queued, delivery FROM spent;
DROP TABLE spent;
ALTER TABLE spent_appended RENAME TO spent;
";

/// A merchant's [`MerchantStore`] in one SQLite file.
///
/// Each [`begin`](MerchantStore::begin) takes SQLite's write lock
/// (`BEGIN IMMEDIATE`), so several connections to the same file serialise,
/// and each brings its spent index up to date under that lock: an id is
/// checked and its row appended while no other connection can append.
pub struct SqliteMerchantStore {
    conn: rusqlite::Connection,
    /// Inside a group commit: transactions are savepoints of the group's.
    grouped: bool,
    spent: SpentIndex,
}

/// One merchant transaction: rolls back when dropped without [`commit`](MerchantTx::commit).
pub struct SqliteMerchantTx<'a> {
    tx: db::Step<'a>,
    spent: Spending<'a>,
}

/// Every spent id of the file and the `seq` of its row.
#[derive(Default)]
struct SpentIndex {
    seqs: std::collections::HashMap<[u8; 20], RowSeq>,
    /// Rows up to this `seq` are in `seqs`: appended by other connections
    /// and read, or appended by this one and committed.
    read_to: i64,
    /// SQLite's `data_version` when `seqs` was last brought up to date (it
    /// changes when another connection commits); `None` before the first time.
    data_version: Option<i64>,
    /// Ids added by the open group's steps, removed again if it is aborted,
    /// and the highest `seq` it appended.
    group: Vec<[u8; 20]>,
    group_read_to: i64,
    /// Where the sweep of [`MerchantTx::forget_expired_sales`] goes on from:
    /// it looked at the rows up to this `seq` (0: from the oldest).
    swept_to: i64,
}

/// A spent row's `seq` as the index keeps it: eight bytes aligned to one,
/// so an entry takes 28 bytes, where an `i64` beside a 20-byte id would
/// pad it to 32 (the entries are most of a merchant's memory: PERFORMANCE.md,
/// session 10).
#[derive(Clone, Copy)]
struct RowSeq([u8; 8]);

impl RowSeq {
    fn new(seq: i64) -> Self {
        RowSeq(seq.to_ne_bytes())
    }

    fn get(self) -> i64 {
        i64::from_ne_bytes(self.0)
    }
}

impl SpentIndex {
    /// The `seq` of the row that spent `id`, if it is spent.
    fn seq(&self, id: &[u8; 20]) -> Option<i64> {
        self.seqs.get(id).map(|seq| seq.get())
    }

    /// Reads the rows other connections appended since the index was last
    /// brought up to date. Called with the write lock held, so nobody
    /// appends meanwhile.
    fn catch_up(&mut self, conn: &rusqlite::Connection) -> Result<(), StoreError> {
        let cannot = || failed("cannot read the spent set");
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(cannot())?;
        if self.data_version == Some(version) {
            return Ok(());
        }
        let mut statement = conn
            .prepare_cached("SELECT seq, id FROM spent WHERE seq > ?1 ORDER BY seq")
            .map_err(cannot())?;
        let mut rows = statement.query([self.read_to]).map_err(cannot())?;
        while let Some(row) = rows.next().map_err(cannot())? {
            let seq: i64 = row.get(0).map_err(cannot())?;
            // Borrowed from SQLite's row: no allocation for each of millions at open.
            let id = row
                .get_ref(1)
                .ok()
                .and_then(|id| id.as_blob().ok())
                .and_then(|id| <[u8; 20]>::try_from(id).ok())
                .ok_or_else(|| StoreError::corrupt("spent scrip id"))?;
            self.seqs.insert(id, RowSeq::new(seq));
            self.read_to = seq;
        }
        self.data_version = Some(version);
        Ok(())
    }
}

/// A transaction's changes to the spent index, undone when it is dropped
/// without a commit.
struct Spending<'a> {
    index: &'a mut SpentIndex,
    added: Vec<[u8; 20]>,
    appended_to: i64,
    /// Ids whose rows the transaction deleted, to leave the index when it commits.
    forgotten: Vec<[u8; 20]>,
    nested: bool,
    kept: bool,
}

impl Spending<'_> {
    /// The transaction committed: its ids stay, and those it forgot leave.
    /// Inside a group they are the group's, until it ends or is aborted.
    fn keep(mut self) {
        self.kept = true;
        for id in &self.forgotten {
            self.index.seqs.remove(id);
        }
        let added = std::mem::take(&mut self.added);
        if self.nested {
            self.index.group.extend(added);
            self.index.group_read_to = self.index.group_read_to.max(self.appended_to);
        } else {
            self.index.read_to = self.index.read_to.max(self.appended_to);
        }
    }
}

impl Drop for Spending<'_> {
    fn drop(&mut self) {
        if !self.kept {
            for id in &self.added {
                self.index.seqs.remove(id);
            }
        }
    }
}

impl SqliteMerchantStore {
    /// Opens the merchant database at `path`, creating it (mode 0600) and
    /// migrating its schema as needed, and reads its spent set into memory.
    ///
    /// # Errors
    /// The file cannot be created or opened, belongs to another role,
    /// or has a schema newer than this build.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        db::open(path, &SCHEMA).and_then(Self::with_index)
    }

    /// A fresh merchant database in memory, gone when the store is dropped.
    ///
    /// # Errors
    /// SQLite cannot allocate or migrate the database.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        db::open_in_memory(&SCHEMA).and_then(Self::with_index)
    }

    fn with_index(conn: rusqlite::Connection) -> Result<Self, StoreError> {
        let mut spent = SpentIndex::default();
        spent.catch_up(&conn)?;
        Ok(SqliteMerchantStore {
            conn,
            grouped: false,
            spent,
        })
    }

    /// Every row of every table but the audit log's, as text: equal dumps mean
    /// equal state. For tests that check a refused request changed nothing.
    pub fn fingerprint(&self) -> Result<String, StoreError> {
        db::fingerprint(&self.conn)
    }
}

impl MerchantStore for SqliteMerchantStore {
    type Tx<'a> = SqliteMerchantTx<'a>;

    fn begin(&mut self) -> Result<SqliteMerchantTx<'_>, StoreError> {
        let tx = db::Step::begin(&self.conn, self.grouped, db::Access::Write, "merchant")?;
        // In a group, the group's begin caught up; its lock is still held.
        if !self.grouped {
            self.spent.catch_up(&self.conn)?;
        }
        Ok(SqliteMerchantTx {
            tx,
            spent: Spending {
                index: &mut self.spent,
                added: Vec::new(),
                appended_to: 0,
                forgotten: Vec::new(),
                nested: self.grouped,
                kept: false,
            },
        })
    }
}

impl scrip_core::store::GroupCommit for SqliteMerchantStore {
    fn begin_group(&mut self) -> Result<(), StoreError> {
        db::begin_group(&self.conn, &mut self.grouped, "merchant")?;
        self.spent.group_read_to = 0;
        if let Err(error) = self.spent.catch_up(&self.conn) {
            db::abort_group(&self.conn, &mut self.grouped);
            return Err(error);
        }
        Ok(())
    }

    fn end_group(&mut self) -> Result<(), StoreError> {
        let ended = db::end_group(&self.conn, &mut self.grouped, "merchant");
        let group = std::mem::take(&mut self.spent.group);
        match ended {
            Ok(()) => self.spent.read_to = self.spent.read_to.max(self.spent.group_read_to),
            // The group was rolled back whole.
            Err(_) => {
                for id in &group {
                    self.spent.seqs.remove(id);
                }
            }
        }
        ended
    }

    fn abort_group(&mut self) {
        db::abort_group(&self.conn, &mut self.grouped);
        for id in std::mem::take(&mut self.spent.group) {
            self.spent.seqs.remove(&id);
        }
    }
}

impl SqliteMerchantTx<'_> {
    /// The spent index is only as good as the transaction whose lock it was
    /// brought up to date under. After some errors SQLite rolls the whole
    /// transaction back, and a statement then would run, and commit, on
    /// its own.
    fn still_open(&self) -> Result<(), StoreError> {
        if self.tx.is_autocommit() {
            return Err(StoreError(
                "the merchant transaction was rolled back by SQLite after an error; begin again"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl MerchantTx for SqliteMerchantTx<'_> {
    fn stored_delivery(
        &mut self,
        scrip: &ScripId,
        request: &RequestId,
    ) -> Result<Option<StoredResponse>, StoreError> {
        type Columns = (
            Vec<u8>,
            Option<i64>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<i64>,
        );
        let id = scrip.to_key();
        let Some(seq) = self.spent.index.seq(&id) else {
            return Ok(None);
        };
        let row: Option<Columns> = self
            .tx
            .statement(
                "SELECT s.id, s.delivery, d.request_id, d.request_digest, d.response, d.leaf
                 FROM spent s LEFT JOIN deliveries d ON d.seq = s.delivery
                 WHERE s.seq = ?1",
            )
            .and_then(|statement| {
                statement
                    .query_row([seq], |row| Columns::try_from(row))
                    .optional()
            })
            .map_err(failed("cannot read stored delivery"))?;
        let Some((spent, delivery, sold_to, digest, response, leaf)) = row else {
            // Only forgetting deletes spent rows: another connection forgot
            // this expired sale, and this one's index still holds it.
            return Ok(None);
        };
        if spent != id {
            return Err(StoreError::corrupt("spent row of an indexed scrip"));
        }
        match (delivery, sold_to, digest, response, leaf) {
            // Sold before deliveries were kept by scrip (migration 6).
            (None, ..) => db::stored_response(&mut self.tx, request),
            (Some(_), Some(sold_to), Some(digest), Some(response), leaf) => {
                if request_id_from_stored(&sold_to)? != *request {
                    return Ok(None);
                }
                db::response_from_stored(digest, response, leaf).map(Some)
            }
            (Some(_), ..) => Err(StoreError::corrupt("delivery of a spent scrip")),
        }
    }

    fn store_receipt_batch(
        &mut self,
        batch: &Signed<ReceiptBatch>,
        leaf_hashes: &[[u8; 32]],
    ) -> Result<u64, StoreError> {
        self.tx
            .prepare_cached("INSERT INTO receipt_batches (batch, leaf_hashes) VALUES (?1, ?2)")
            .and_then(|mut statement| {
                statement.insert(params![
                    scrip_proto::encode(batch),
                    leaf_hashes.as_flattened()
                ])
            })
            .map_err(failed("cannot store receipt batch"))
            .and_then(|number| {
                u64::try_from(number).map_err(|_| StoreError::corrupt("receipt batch number"))
            })
    }

    fn receipt_batch(&mut self, number: u64) -> Result<Option<ReceiptBatchRow>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT batch, leaf_hashes FROM receipt_batches WHERE number = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([i64::try_from(number).unwrap_or(i64::MAX)], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
            })
            .map_err(failed("cannot read receipt batch"))?;
        row.map(|(batch, leaf_hashes)| {
            let hashes = leaf_hashes.chunks_exact(32);
            if !hashes.remainder().is_empty() {
                return Err(StoreError::corrupt("leaf hashes of a receipt batch"));
            }
            Ok(ReceiptBatchRow {
                batch: decode_stored(&batch, "receipt batch")?,
                leaf_hashes: hashes
                    .map(|hash| hash.try_into().expect("chunks of 32 bytes"))
                    .collect(),
            })
        })
        .transpose()
    }

    /// The index is current (the write lock is held), so a spent id is in
    /// it: checking it and appending the row is insert-or-fail.
    fn mark_spent(&mut self, scrip: &ScripId, expiry: Timestamp) -> Result<Spend, StoreError> {
        self.still_open()?;
        let id = scrip.to_key();
        let std::collections::hash_map::Entry::Vacant(unspent) = self.spent.index.seqs.entry(id)
        else {
            return Ok(Spend::AlreadySpent);
        };
        let expiry = expiry.to_stored()?;
        let seq = self
            .tx
            .statement("INSERT INTO spent (id, expiry) VALUES (?1, ?2)")
            .and_then(|statement| statement.insert(params![id, expiry]))
            .map_err(failed("cannot mark VendorScrip spent"))?;
        unspent.insert(RowSeq::new(seq));
        self.spent.added.push(id);
        self.spent.appended_to = seq;
        Ok(Spend::Fresh)
    }

    fn keep_sale(
        &mut self,
        record: &PaymentRecord,
        delivery: &StoredResponse,
    ) -> Result<(), StoreError> {
        const CANNOT: &str = "cannot keep sale";
        let buy = &record.buy.body;
        let scrip = buy.scrip.body.id.to_key();
        let not_spent = || {
            StoreError(format!(
                "cannot keep the sale of {}: the scrip is not marked spent, or its sale is kept already",
                buy.scrip.body.id
            ))
        };
        self.still_open()?;
        let seq = self.spent.index.seq(&scrip).ok_or_else(not_spent)?;
        let leaf = delivery
            .leaf
            .map(|leaf| {
                i64::try_from(leaf)
                    .map_err(|_| StoreError(format!("leaf index {leaf} is too large to store")))
            })
            .transpose()?;
        let queued = self
            .tx
            .statement("INSERT INTO outbox (scrip, record) VALUES (?1, ?2)")
            .and_then(|statement| statement.insert(params![scrip, scrip_proto::encode(record)]))
            .map_err(failed(CANNOT))?;
        let delivered = self
            .tx
            .statement(
                "INSERT INTO deliveries (request_id, request_digest, response, leaf)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|statement| {
                statement.insert(params![
                    buy.request_id.as_bytes(),
                    delivery.request_digest,
                    delivery.response,
                    leaf
                ])
            })
            .map_err(failed(CANNOT))?;
        // The spent row was written by `mark_spent` in this transaction, so
        // its page is written once, at the commit, for both.
        let linked = self
            .tx
            .statement(
                "UPDATE spent SET queued = ?2, delivery = ?3
                 WHERE seq = ?1 AND id = ?4 AND queued IS NULL AND delivery IS NULL",
            )
            .and_then(|statement| statement.execute(params![seq, queued, delivered, scrip]))
            .map_err(failed(CANNOT))?;
        if linked == 0 {
            return Err(not_spent());
        }
        Ok(())
    }

    fn queued_payment_records(&mut self, limit: usize) -> Result<Vec<PaymentRecord>, StoreError> {
        let blobs: Vec<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT record FROM outbox ORDER BY seq LIMIT ?1")
            .and_then(|mut statement| {
                statement
                    .query_map([limit_to_sql(limit)], |row| row.get(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed("cannot read queued payment records"))?;
        blobs
            .iter()
            .map(|blob| decode_stored(blob, "queued payment record"))
            .collect()
    }

    fn dequeue_payment_record(&mut self, scrip: &ScripId) -> Result<(), StoreError> {
        let id = scrip.to_key();
        let Some(seq) = self.spent.index.seq(&id) else {
            return Ok(());
        };
        self.tx
            .prepare_cached(
                "DELETE FROM outbox
                 WHERE seq = (SELECT queued FROM spent WHERE seq = ?1 AND id = ?2) AND scrip = ?2",
            )
            .and_then(|mut statement| statement.execute(params![seq, id]))
            .map(drop)
            .map_err(failed("cannot dequeue payment record"))
    }

    fn add_receipt(&mut self, receipt: &scrip_proto::msg::LogReceipt) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT INTO receipts (blob) VALUES (?1)")
            .and_then(|mut statement| statement.execute([scrip_proto::encode(receipt)]))
            .map(drop)
            .map_err(failed("cannot keep receipt"))
    }

    fn receipts(&mut self) -> Result<Vec<scrip_proto::msg::LogReceipt>, StoreError> {
        let blobs: Vec<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT blob FROM receipts ORDER BY seq")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .map_err(failed("cannot read receipts"))?;
        blobs
            .iter()
            .map(|blob| decode_stored(blob, "receipt"))
            .collect()
    }

    /// The newest row is never deleted: SQLite gives a new row one more than
    /// the largest `seq` present, so deleting the newest would give its `seq`
    /// to the next sale, and a connection whose index was read up to that
    /// `seq` would never read the sale, and would let its scrip be spent
    /// again. Other rows' `seq`s are never used again.
    fn forget_expired_sales(
        &mut self,
        expired_before: Timestamp,
        rows: usize,
        from: SweepFrom,
    ) -> Result<Swept, StoreError> {
        const CANNOT: &str = "cannot forget expired sales";
        self.still_open()?;
        if self.spent.nested {
            return Err(StoreError(
                "expired sales are forgotten in a transaction of their own, not in a group".into(),
            ));
        }
        let from_where = from == SweepFrom::Where;
        let from = if from_where {
            self.spent.index.swept_to
        } else {
            0
        };
        let last: Option<i64> = self
            .tx
            .statement("SELECT seq FROM spent WHERE seq > ?1 ORDER BY seq LIMIT 1 OFFSET ?2")
            .and_then(|statement| {
                statement
                    .query_row(params![from, limit_to_sql(rows.saturating_sub(1))], |row| {
                        row.get(0)
                    })
                    .optional()
            })
            .map_err(failed(CANNOT))?;
        let to = last.unwrap_or(i64::MAX);
        // The rows of the window to forget. A row with expiry 0 was marked
        // spent by migration 6, its expiry unknown.
        macro_rules! forgettable {
            () => {
                "spent.seq > ?1 AND spent.seq <= ?2
                 AND spent.seq < (SELECT max(seq) FROM spent)
                 AND spent.expiry > 0 AND spent.expiry < ?3
                 AND NOT EXISTS (SELECT 1 FROM outbox
                                 WHERE outbox.seq = spent.queued AND outbox.scrip = spent.id)"
            };
        }
        let window = params![from, to, expired_before.to_stored()?];
        self.tx
            .statement(concat!(
                "DELETE FROM deliveries WHERE seq IN (SELECT delivery FROM spent WHERE ",
                forgettable!(),
                ")"
            ))
            .and_then(|statement| statement.execute(window))
            .map_err(failed(CANNOT))?;
        let forgotten = self
            .tx
            .statement(concat!(
                "DELETE FROM spent WHERE ",
                forgettable!(),
                " RETURNING id"
            ))
            .and_then(|statement| {
                statement
                    .query_map(window, |row| row.get::<_, [u8; 20]>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed(CANNOT))?;
        if from_where {
            self.spent.index.swept_to = last.unwrap_or(0);
        }
        let swept = Swept {
            forgotten: forgotten.len(),
            reached_newest: last.is_none(),
        };
        self.spent.forgotten.extend(forgotten);
        Ok(swept)
    }

    fn oldest_delivery(&mut self) -> Result<Option<StoredResponse>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>, Option<i64>)> = self
            .tx
            .statement(
                "SELECT request_digest, response, leaf FROM deliveries
                 WHERE leaf IS NOT NULL ORDER BY seq LIMIT 1",
            )
            .and_then(|statement| {
                statement
                    .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .optional()
            })
            .map_err(failed("cannot read the oldest delivery"))?;
        row.map(|(digest, response, leaf)| db::response_from_stored(digest, response, leaf))
            .transpose()
    }

    /// Answers stored before migration 6 are in `responses`, and name their
    /// batches inside their bytes: while any of them has a leaf, no batch goes.
    fn forget_receipt_batches_before(&mut self, number: u64) -> Result<(), StoreError> {
        self.tx
            .statement(
                "DELETE FROM receipt_batches WHERE number < ?1
                 AND NOT EXISTS (SELECT 1 FROM responses WHERE leaf IS NOT NULL)",
            )
            .and_then(|statement| statement.execute([i64::try_from(number).unwrap_or(i64::MAX)]))
            .map(drop)
            .map_err(failed("cannot forget receipt batches"))
    }

    fn commit(self) -> Result<(), StoreError> {
        let SqliteMerchantTx { tx, spent } = self;
        tx.commit("cannot commit merchant transaction")?;
        spent.keep();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use scrip_core::store::SweepFrom;

    fn queued_ids(tx: &mut SqliteMerchantTx<'_>, limit: usize) -> Vec<ScripId> {
        tx.queued_payment_records(limit)
            .unwrap()
            .iter()
            .map(|record| record.buy.body.scrip.body.id)
            .collect()
    }

    /// Rows as an earlier schema version's build wrote them: the spent ids
    /// `spent`, and a payment record queued for each of `queued`.
    fn write_earlier_rows(conn: &rusqlite::Connection, spent: &[u64], queued: &[u64]) {
        for &id in spent {
            conn.execute(
                "INSERT INTO spent (id, expiry) VALUES (?1, ?2)",
                params![scrip_id(id).to_key(), NOW.to_stored().unwrap()],
            )
            .unwrap();
        }
        for &id in queued {
            conn.execute(
                "INSERT INTO outbox (scrip, record) VALUES (?1, ?2)",
                params![
                    scrip_id(id).to_key(),
                    scrip_proto::encode(&payment_record(scrip_id(id)))
                ],
            )
            .unwrap();
        }
    }

    /// A sale of `scrip_id(n)` under `request_id(n)`: the scrip marked
    /// spent, its payment record queued and `response(n)` stored.
    fn sell(tx: &mut SqliteMerchantTx<'_>, n: u8) {
        sell_expiring(tx, n, NOW);
    }

    /// A signed receipt batch of `size` leaves.
    fn batch(size: u64) -> Signed<ReceiptBatch> {
        Signed::sign(
            ReceiptBatch {
                merchant: merchant_id(1),
                size,
                root: [size as u8; 32],
                at: NOW,
            },
            &scrip_proto::crypto::SigningKey::from_secret(&scrip_proto::Secret32::from_bytes(
                [6; 32],
            )),
        )
    }

    /// [`sell`] of a scrip that expires at `expiry`.
    fn sell_expiring(tx: &mut SqliteMerchantTx<'_>, n: u8, expiry: Timestamp) {
        let scrip = scrip_id(n.into());
        assert_eq!(tx.mark_spent(&scrip, expiry).unwrap(), Spend::Fresh);
        tx.keep_sale(&payment_record(scrip), &response(n)).unwrap();
    }

    /// Which of the sales of `scrip_id(n)`, `n` in `sales`, the store still answers again.
    fn kept_sales(store: &mut SqliteMerchantStore, sales: std::ops::RangeInclusive<u8>) -> Vec<u8> {
        let mut tx = store.begin().unwrap();
        sales
            .filter(|&n| {
                tx.stored_delivery(&scrip_id(n.into()), &request_id(n.into()))
                    .unwrap()
                    .is_some()
            })
            .collect()
    }

    fn rows(store: &SqliteMerchantStore, table: &str) -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    #[test]
    fn expired_sales_are_forgotten_a_window_at_a_time_but_never_the_queued_or_the_newest() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        for n in 1..=10 {
            let later = Timestamp(NOW.0 + 1000);
            sell_expiring(&mut tx, n, if n == 5 { later } else { NOW });
            if n != 3 {
                tx.dequeue_payment_record(&scrip_id(n.into())).unwrap();
            }
        }
        tx.commit().unwrap();
        let expired_before = Timestamp(NOW.0 + 1);
        let forget_from = |store: &mut SqliteMerchantStore, from| {
            let mut tx = store.begin().unwrap();
            let swept = tx.forget_expired_sales(expired_before, 4, from).unwrap();
            tx.commit().unwrap();
            (swept.forgotten, swept.reached_newest)
        };
        let forget = |store: &mut SqliteMerchantStore| forget_from(store, SweepFrom::Where);
        // Rows 1 to 4, but 3, whose payment record is still queued.
        assert_eq!(forget(&mut store), (3, false));
        // The oldest four rows again (3, then 5 to 7: 6 and 7 go), leaving
        // the sweep's place where it was.
        assert_eq!(forget_from(&mut store, SweepFrom::Oldest), (2, false));
        assert_eq!(kept_sales(&mut store, 5..=8), [5, 8]);
        // From its place: rows 5, 8, 9 and 10, but 5, which has not
        // expired, and 10, the newest; then the sweep begins again.
        assert_eq!(forget(&mut store), (2, false));
        assert_eq!(forget(&mut store), (0, true));
        assert_eq!(forget(&mut store), (0, true), "three rows are left");
        assert_eq!(kept_sales(&mut store, 1..=10), [3, 5, 10]);
        assert_eq!((rows(&store, "spent"), rows(&store, "deliveries")), (3, 3));
        // Forgotten ids have left the index: the store itself would take
        // them again (the merchant refuses their scrip as expired first).
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        assert_eq!(
            tx.mark_spent(&scrip_id(3), NOW).unwrap(),
            Spend::AlreadySpent
        );
        drop(tx);

        // Once 3's record is acknowledged, the next pass forgets it.
        let mut tx = store.begin().unwrap();
        tx.dequeue_payment_record(&scrip_id(3)).unwrap();
        tx.commit().unwrap();
        assert_eq!(forget(&mut store), (1, true));
        assert_eq!(kept_sales(&mut store, 1..=10), [5, 10]);
    }

    #[test]
    fn forgetting_rolled_back_forgets_nothing_and_is_refused_in_a_group() {
        use scrip_core::store::GroupCommit;
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        for n in 1..=3 {
            sell(&mut tx, n);
            tx.dequeue_payment_record(&scrip_id(n.into())).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = store.begin().unwrap();
        let swept = tx
            .forget_expired_sales(Timestamp(NOW.0 + 1), 10, SweepFrom::Where)
            .unwrap();
        assert_eq!(swept.forgotten, 2);
        drop(tx);
        assert_eq!(kept_sales(&mut store, 1..=3), [1, 2, 3]);
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.mark_spent(&scrip_id(1), NOW).unwrap(),
            Spend::AlreadySpent
        );
        drop(tx);

        store.begin_group().unwrap();
        let mut tx = store.begin().unwrap();
        let refused = tx
            .forget_expired_sales(Timestamp(NOW.0 + 1), 10, SweepFrom::Where)
            .unwrap_err();
        assert!(refused.0.contains("not in a group"), "{refused}");
        drop(tx);
        store.end_group().unwrap();
        assert_eq!(kept_sales(&mut store, 1..=3), [1, 2, 3]);
    }

    /// A row gone is a sale another connection forgot; a row at the indexed
    /// `seq` that names another id is corruption, never a sale to refuse.
    #[test]
    fn an_indexed_row_of_another_id_is_corruption() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        sell(&mut tx, 1);
        tx.commit().unwrap();
        store
            .conn
            .execute(
                "UPDATE spent SET id = ?1 WHERE seq = 1",
                [scrip_id(9).to_key()],
            )
            .unwrap();
        let mut tx = store.begin().unwrap();
        let error = tx
            .stored_delivery(&scrip_id(1), &request_id(1))
            .unwrap_err();
        assert!(error.0.contains("corrupt"), "{error}");
    }

    /// Migration 6 marked spent, with an expiry of 0 for unknown, scrip whose
    /// records were queued: such a row may be of scrip still good.
    #[test]
    fn a_sale_of_unknown_expiry_is_never_forgotten() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        for n in 1..=3 {
            sell_expiring(&mut tx, n, if n == 1 { Timestamp(0) } else { NOW });
            tx.dequeue_payment_record(&scrip_id(n.into())).unwrap();
        }
        let swept = tx
            .forget_expired_sales(Timestamp(NOW.0 + 1), 10, SweepFrom::Where)
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(swept.forgotten, 1);
        assert_eq!(kept_sales(&mut store, 1..=3), [1, 3]);
    }

    /// Receipt batches below the oldest kept delivery's go, but none while an
    /// answer stored before migration 6 (in `responses`) may need one.
    #[test]
    fn receipt_batches_go_only_when_no_stored_answer_can_need_them() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        for n in 1..=4 {
            tx.store_receipt_batch(&batch(1), &[[n; 32]]).unwrap();
        }
        tx.forget_receipt_batches_before(3).unwrap();
        assert!(tx.receipt_batch(2).unwrap().is_none());
        assert!(tx.receipt_batch(3).unwrap().is_some());
        tx.tx
            .execute(
                "INSERT INTO responses (request_id, request_digest, response, leaf)
                 VALUES (x'00', x'00', x'00', 0)",
                [],
            )
            .unwrap();
        tx.forget_receipt_batches_before(5).unwrap();
        assert!(tx.receipt_batch(3).unwrap().is_some());
    }

    /// The newest row is kept: had it been deleted, the other connection's
    /// next sale would take its `seq`, which this connection has read past.
    #[test]
    fn a_connection_reads_the_sales_another_makes_after_it_forgot_some() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let mut first = SqliteMerchantStore::open(&path).unwrap();
        let mut second = SqliteMerchantStore::open(&path).unwrap();
        let mut tx = first.begin().unwrap();
        for n in 1..=2 {
            sell(&mut tx, n);
            tx.dequeue_payment_record(&scrip_id(n.into())).unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(kept_sales(&mut second, 1..=2), [1, 2], "read by the second");

        let mut tx = first.begin().unwrap();
        let swept = tx
            .forget_expired_sales(Timestamp(NOW.0 + 1), 10, SweepFrom::Where)
            .unwrap();
        assert_eq!(swept.forgotten, 1);
        tx.commit().unwrap();
        // The second still indexes the forgotten sale: its row is gone, so
        // a retry of it finds no delivery, and that is no error.
        assert_eq!(kept_sales(&mut second, 1..=2), [2]);

        let mut tx = second.begin().unwrap();
        sell(&mut tx, 3);
        tx.commit().unwrap();
        let mut tx = first.begin().unwrap();
        assert_eq!(
            tx.mark_spent(&scrip_id(3), NOW).unwrap(),
            Spend::AlreadySpent
        );
    }

    #[test]
    fn commits_after_opening_overwrite_the_write_ahead_log_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let wal = dir.path().join("merchant.db-wal");
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        let reserved = std::fs::metadata(&wal).unwrap().len();
        // SQLite's default: a checkpoint once the log holds 1000 frames of a 4 KiB page.
        assert!(reserved >= 1000 * (4096 + 24), "{reserved} bytes");
        for i in 0..50 {
            let mut tx = store.begin().unwrap();
            sell(&mut tx, i);
            tx.commit().unwrap();
        }
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            reserved,
            "the commits were written over the log's start, not appended"
        );
        assert_eq!(
            synchronous(&store.conn),
            2,
            "commits wait for the disk again"
        );
        let autocheckpoint: i64 = store
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, 1000, "the automatic checkpoint is on again");
        assert_eq!(
            store
                .begin()
                .unwrap()
                .queued_payment_records(100)
                .unwrap()
                .len(),
            50
        );
        drop(store);
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
    }

    #[test]
    fn state_survives_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        {
            let mut store = SqliteMerchantStore::open(&path).unwrap();
            let mut tx = store.begin().unwrap();
            for id in [1, 5, 3, 9] {
                sell(&mut tx, id);
            }
            tx.commit().unwrap();
            assert_owner_only(&path);
        }
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
        assert_eq!(
            pragma(&path, "application_id"),
            i64::from(SCHEMA.application_id)
        );
        {
            let mut store = SqliteMerchantStore::open(&path).unwrap();
            let mut tx = store.begin().unwrap();
            assert_eq!(
                tx.stored_delivery(&scrip_id(1), &request_id(1)).unwrap(),
                Some(response(1))
            );
            assert_eq!(
                tx.mark_spent(&scrip_id(1), NOW).unwrap(),
                Spend::AlreadySpent
            );
            assert_eq!(
                tx.queued_payment_records(10).unwrap()[1],
                payment_record(scrip_id(5))
            );
            tx.dequeue_payment_record(&scrip_id(3)).unwrap();
            tx.commit().unwrap();
        }
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            queued_ids(&mut tx, 10),
            vec![scrip_id(1), scrip_id(5), scrip_id(9)]
        );
    }

    #[test]
    fn a_file_of_schema_version_3_keeps_its_spent_ids_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        {
            let conn = file_at_version(&path, &SCHEMA, 3);
            write_earlier_rows(&conn, &[1], &[5, 3, 9]);
            // The last record is gone: a record queued now comes after the others.
            conn.execute("DELETE FROM outbox WHERE seq = 3", [])
                .unwrap();
        }
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.mark_spent(&scrip_id(1), NOW).unwrap(),
            Spend::AlreadySpent
        );
        assert_eq!(tx.mark_spent(&scrip_id(2), NOW).unwrap(), Spend::Fresh);
        sell(&mut tx, 7);
        assert_eq!(
            queued_ids(&mut tx, 10),
            vec![scrip_id(5), scrip_id(3), scrip_id(7)]
        );
        tx.commit().unwrap();
        let dump = store.fingerprint().unwrap();
        assert!(
            dump.contains("[spent]") && dump.contains("[outbox]"),
            "{dump}"
        );
    }

    #[test]
    fn receipt_batches_are_numbered_and_kept_with_their_leaves() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        let first = tx
            .store_receipt_batch(&batch(2), &[[1; 32], [2; 32]])
            .unwrap();
        let second = tx.store_receipt_batch(&batch(1), &[[3; 32]]).unwrap();
        assert_ne!(first, second);
        tx.commit().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.receipt_batch(first).unwrap(),
            Some(ReceiptBatchRow {
                batch: batch(2),
                leaf_hashes: vec![[1; 32], [2; 32]],
            })
        );
        assert_eq!(
            tx.receipt_batch(second).unwrap().unwrap().leaf_hashes,
            vec![[3; 32]]
        );
        assert_eq!(tx.receipt_batch(second + 1).unwrap(), None);
    }

    #[test]
    fn dropping_a_transaction_without_commit_leaves_nothing() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        {
            let mut tx = store.begin().unwrap();
            sell(&mut tx, 1);
        }
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.stored_delivery(&scrip_id(1), &request_id(1)).unwrap(),
            None
        );
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        assert!(tx.queued_payment_records(10).unwrap().is_empty());
    }

    #[test]
    fn a_sale_is_kept_once_and_found_by_the_scrip_spent_and_the_request_id() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        let not_spent = tx
            .keep_sale(&payment_record(scrip_id(1)), &response(1))
            .unwrap_err();
        assert!(not_spent.0.contains("not marked spent"), "{not_spent}");
        drop(tx);
        let mut tx = store.begin().unwrap();
        sell(&mut tx, 1);
        let kept = tx
            .keep_sale(&payment_record(scrip_id(1)), &response(1))
            .unwrap_err();
        assert!(kept.0.contains("kept already"), "{kept}");
        drop(tx);
        let mut tx = store.begin().unwrap();
        sell(&mut tx, 1);
        tx.mark_spent(&scrip_id(2), NOW).unwrap();
        tx.commit().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.stored_delivery(&scrip_id(1), &request_id(1)).unwrap(),
            Some(response(1))
        );
        // Spent under another request id, spent with no delivery, not spent.
        assert_eq!(
            tx.stored_delivery(&scrip_id(1), &request_id(2)).unwrap(),
            None
        );
        assert_eq!(
            tx.stored_delivery(&scrip_id(2), &request_id(1)).unwrap(),
            None
        );
        assert_eq!(
            tx.stored_delivery(&scrip_id(3), &request_id(1)).unwrap(),
            None
        );
    }

    #[test]
    fn a_repeated_acknowledgement_leaves_a_later_record_queued() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        sell(&mut tx, 1);
        tx.dequeue_payment_record(&scrip_id(1)).unwrap();
        // The queue was emptied, so this record takes the first one's place number.
        sell(&mut tx, 2);
        tx.dequeue_payment_record(&scrip_id(1)).unwrap();
        assert_eq!(queued_ids(&mut tx, 10), vec![scrip_id(2)]);
    }

    #[test]
    fn a_file_of_schema_version_5_keeps_its_responses_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        {
            let conn = file_at_version(&path, &SCHEMA, 5);
            // Queued: scrip 2, and 3, which was never marked spent.
            write_earlier_rows(&conn, &[1, 2], &[2, 3]);
            let response = response(1);
            conn.execute(
                "INSERT INTO responses VALUES (?1, ?2, ?3, ?4)",
                params![
                    request_id(1).as_bytes(),
                    response.request_digest,
                    response.response,
                    response.leaf.map(|leaf| leaf as i64)
                ],
            )
            .unwrap();
        }
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.stored_delivery(&scrip_id(1), &request_id(1)).unwrap(),
            Some(response(1)),
            "a retry of a sale made before finds its response"
        );
        assert_eq!(
            tx.mark_spent(&scrip_id(3), NOW).unwrap(),
            Spend::AlreadySpent
        );
        sell(&mut tx, 4);
        assert_eq!(
            queued_ids(&mut tx, 10),
            vec![scrip_id(2), scrip_id(3), scrip_id(4)]
        );
        tx.dequeue_payment_record(&scrip_id(3)).unwrap();
        tx.dequeue_payment_record(&scrip_id(2)).unwrap();
        assert_eq!(queued_ids(&mut tx, 10), vec![scrip_id(4)]);
    }

    #[test]
    fn a_group_keeps_its_committed_steps_together_or_not_at_all() {
        use scrip_core::store::GroupCommit;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        let spend = |store: &mut SqliteMerchantStore, n: u64, commit: bool| {
            let mut tx = store.begin().unwrap();
            assert_eq!(tx.mark_spent(&scrip_id(n), NOW).unwrap(), Spend::Fresh);
            if commit {
                tx.commit().unwrap();
            }
        };

        store.begin_group().unwrap();
        spend(&mut store, 1, true);
        spend(&mut store, 2, false); // refused step: undone alone
        spend(&mut store, 3, true);
        assert!(store.begin_group().is_err(), "groups do not nest");
        store.end_group().unwrap();

        store.begin_group().unwrap();
        spend(&mut store, 4, true);
        store.abort_group();
        assert!(store.end_group().is_err(), "the aborted group is closed");

        // What the file holds after a reopen: the first group's two steps.
        drop(store);
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        let spent: Vec<u64> = (1..=4)
            .filter(|&n| tx.mark_spent(&scrip_id(n), NOW).unwrap() == Spend::AlreadySpent)
            .collect();
        assert_eq!(spent, vec![1, 3]);
    }

    /// Marks `scrip_id(n)` spent in a transaction of its own, committed.
    fn spend(store: &mut SqliteMerchantStore, n: u64) -> Spend {
        let mut tx = store.begin().unwrap();
        let spend = tx.mark_spent(&scrip_id(n), NOW).unwrap();
        tx.commit().unwrap();
        spend
    }

    #[test]
    fn each_connection_sees_the_ids_another_spent_once_it_takes_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let mut first = SqliteMerchantStore::open(&path).unwrap();
        let mut second = SqliteMerchantStore::open(&path).unwrap();
        assert_eq!(spend(&mut first, 1), Spend::Fresh);
        assert_eq!(spend(&mut second, 1), Spend::AlreadySpent);
        assert_eq!(spend(&mut second, 2), Spend::Fresh);
        assert_eq!(spend(&mut first, 2), Spend::AlreadySpent);

        // A spend rolled back frees its id, and its row's place, which the
        // other connection's next spend takes: the first must still read it.
        let mut tx = first.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(3), NOW).unwrap(), Spend::Fresh);
        drop(tx);
        assert_eq!(spend(&mut second, 4), Spend::Fresh);
        assert_eq!(spend(&mut first, 4), Spend::AlreadySpent);
        assert_eq!(spend(&mut first, 3), Spend::Fresh);
        assert_eq!(spend(&mut second, 3), Spend::AlreadySpent);
    }

    #[test]
    fn a_transaction_sqlite_rolled_back_spends_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        let mut other = SqliteMerchantStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        // What SQLite does after some errors (out of memory, a full disk):
        // the whole transaction rolled back, and its lock let go.
        tx.tx.execute_batch("ROLLBACK").unwrap();
        let error = tx.mark_spent(&scrip_id(2), NOW).unwrap_err();
        assert!(error.0.contains("rolled back"), "{error}");
        assert!(tx.commit().is_err());
        assert_eq!(spend(&mut other, 1), Spend::Fresh);
        assert_eq!(spend(&mut store, 1), Spend::AlreadySpent);
        assert_eq!(spend(&mut store, 2), Spend::Fresh);

        // The same inside a group: its next step is refused, not begun on
        // its own outside the group's lock.
        use scrip_core::store::GroupCommit;
        store.begin_group().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(3), NOW).unwrap(), Spend::Fresh);
        tx.commit().unwrap();
        store.conn.execute_batch("ROLLBACK").unwrap();
        let error = store.begin().err().expect("a step outside its group");
        assert!(error.0.contains("abort the group"), "{error}");
        assert_eq!(spend(&mut other, 9), Spend::Fresh);
        assert!(store.end_group().is_err());
        assert_eq!(spend(&mut store, 9), Spend::AlreadySpent);
        assert_eq!(spend(&mut store, 3), Spend::Fresh);
    }

    #[test]
    fn racing_connections_spend_each_id_once() {
        const THREADS: usize = 8;
        const ROUNDS: u64 = 25;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        drop(SqliteMerchantStore::open(&path).unwrap());
        let winners = race(
            THREADS,
            ROUNDS,
            || SqliteMerchantStore::open(&path).unwrap(),
            |store, round| {
                let mut tx = store.begin().unwrap();
                let won = tx.mark_spent(&scrip_id(round), NOW).unwrap() == Spend::Fresh;
                tx.commit().unwrap();
                won
            },
        );
        assert_eq!(winners, vec![1; ROUNDS as usize]);
    }

    #[test]
    fn an_aborted_group_frees_the_ids_its_steps_spent() {
        use scrip_core::store::GroupCommit;
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        store.begin_group().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        tx.commit().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(2), NOW).unwrap(), Spend::Fresh);
        drop(tx);
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.mark_spent(&scrip_id(1), NOW).unwrap(),
            Spend::AlreadySpent,
            "a committed step's spend stands in its group"
        );
        assert_eq!(tx.mark_spent(&scrip_id(2), NOW).unwrap(), Spend::Fresh);
        tx.commit().unwrap();
        store.abort_group();
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        assert_eq!(tx.mark_spent(&scrip_id(2), NOW).unwrap(), Spend::Fresh);
    }

    #[test]
    fn spending_is_insert_or_fail() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        assert_eq!(
            tx.mark_spent(&scrip_id(1), NOW).unwrap(),
            Spend::AlreadySpent
        );
        assert_eq!(tx.mark_spent(&scrip_id(2), NOW).unwrap(), Spend::Fresh);
        tx.commit().unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.mark_spent(&scrip_id(2), NOW).unwrap(),
            Spend::AlreadySpent
        );
    }

    #[test]
    fn the_outbox_is_first_in_first_out() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        for id in [5, 3, 9, 1] {
            sell(&mut tx, id);
        }
        assert_eq!(queued_ids(&mut tx, 2), vec![scrip_id(5), scrip_id(3)]);
        assert_eq!(queued_ids(&mut tx, 0), vec![]);
        // Dequeuing an unknown id, or one dequeued already, does nothing.
        tx.dequeue_payment_record(&scrip_id(42)).unwrap();
        tx.dequeue_payment_record(&scrip_id(3)).unwrap();
        tx.dequeue_payment_record(&scrip_id(3)).unwrap();
        assert_eq!(
            queued_ids(&mut tx, usize::MAX),
            vec![scrip_id(5), scrip_id(9), scrip_id(1)]
        );
        sell(&mut tx, 7);
        tx.dequeue_payment_record(&scrip_id(5)).unwrap();
        assert_eq!(
            queued_ids(&mut tx, usize::MAX),
            vec![scrip_id(9), scrip_id(1), scrip_id(7)]
        );
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        // Written by another connection: the store reads the spent rows
        // when it next takes the write lock.
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                "INSERT INTO outbox (scrip, record) VALUES (x'01', x'0102');
                 INSERT INTO responses VALUES (zeroblob(16), x'01', x'', NULL);
                 INSERT INTO receipt_batches VALUES (1, x'01', zeroblob(32));
                 INSERT INTO receipt_batches VALUES (2, x'', zeroblob(33));
                 INSERT INTO deliveries VALUES (1, x'01', zeroblob(32), x'', 0);
                 INSERT INTO deliveries VALUES (2, zeroblob(16), zeroblob(32), x'', -1);",
            )
            .unwrap();
        // Sold before migration 6, with a corrupt response; a delivery that
        // is not there; a request id and a leaf out of shape.
        for (id, delivery) in [(1, None), (2, Some(9)), (3, Some(1)), (4, Some(2))] {
            other
                .execute(
                    "INSERT INTO spent (id, expiry, delivery) VALUES (?1, 0, ?2)",
                    params![scrip_id(id).to_key(), delivery],
                )
                .unwrap();
        }
        drop(other);
        let mut tx = store.begin().unwrap();
        let zero = RequestId([0; 16]);
        for error in [
            tx.queued_payment_records(1).unwrap_err(),
            tx.stored_delivery(&scrip_id(1), &zero).unwrap_err(),
            tx.stored_delivery(&scrip_id(2), &zero).unwrap_err(),
            tx.stored_delivery(&scrip_id(3), &zero).unwrap_err(),
            tx.stored_delivery(&scrip_id(4), &zero).unwrap_err(),
            tx.receipt_batch(1).unwrap_err(),
            tx.receipt_batch(2).unwrap_err(),
        ] {
            assert!(error.0.contains("corrupt"), "{error}");
        }
    }
}
