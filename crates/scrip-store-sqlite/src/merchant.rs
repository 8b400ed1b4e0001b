//! A merchant's store in SQLite: stored responses, the VendorScrip spent set and the outbox of payment records for the broker.

use rusqlite::{params, OptionalExtension};
use scrip_core::store::{
    decode_stored, MerchantStore, MerchantTx, ReceiptBatchRow, Spend, StoreError, StoredAsI64,
    StoredResponse,
};
use scrip_proto::crypto::Signed;
use scrip_proto::msg::{PaymentRecord, ReceiptBatch};
use scrip_proto::{RequestId, ScripId, Timestamp};

use crate::db::{self, failed, insert_or_fail, limit_to_sql, Schema};

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

crate::db::sqlite_store!(
    /// A merchant's [`MerchantStore`] in one SQLite file.
    ///
    /// Each [`begin`](MerchantStore::begin) takes SQLite's write lock
    /// (`BEGIN IMMEDIATE`), so several connections to the same file serialise.
    SqliteMerchantStore,
    /// One merchant transaction: rolls back when dropped without [`commit`](MerchantTx::commit).
    SqliteMerchantTx,
    MerchantStore,
    "merchant"
);

impl MerchantTx for SqliteMerchantTx<'_> {
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

    fn mark_spent(&mut self, scrip: &ScripId, expiry: Timestamp) -> Result<Spend, StoreError> {
        insert_or_fail(
            &mut self.tx,
            "INSERT INTO spent (id, expiry) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            params![scrip.to_key(), expiry.to_stored()?],
            "cannot mark VendorScrip spent",
        )
    }

    /// Queuing a record for a scrip already queued replaces the record and
    /// keeps its place in the queue.
    fn queue_payment_record(&mut self, record: &PaymentRecord) -> Result<(), StoreError> {
        self.tx
            .statement(
                "INSERT INTO outbox (scrip, record) VALUES (?1, ?2)
                 ON CONFLICT (scrip) DO UPDATE SET record = excluded.record",
            )
            .and_then(|statement| {
                statement.execute(params![
                    record.buy.body.scrip.body.id.to_key(),
                    scrip_proto::encode(record)
                ])
            })
            .map(drop)
            .map_err(failed("cannot queue payment record"))
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

    /// Dequeuing a scrip that is not queued does nothing: acknowledgements may repeat.
    fn dequeue_payment_record(&mut self, scrip: &ScripId) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM outbox WHERE scrip = ?1")
            .and_then(|mut statement| statement.execute([scrip.to_key()]))
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

    fn commit(self) -> Result<(), StoreError> {
        self.tx.commit("cannot commit merchant transaction")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    fn queued_ids(tx: &mut SqliteMerchantTx<'_>, limit: usize) -> Vec<ScripId> {
        tx.queued_payment_records(limit)
            .unwrap()
            .iter()
            .map(|record| record.buy.body.scrip.body.id)
            .collect()
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
            tx.queue_payment_record(&payment_record(scrip_id(i)))
                .unwrap();
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
            tx.store_response(&request_id(1), &response(1)).unwrap();
            assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
            for id in [5, 3, 9] {
                tx.queue_payment_record(&payment_record(scrip_id(id)))
                    .unwrap();
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
                tx.stored_response(&request_id(1)).unwrap(),
                Some(response(1))
            );
            assert_eq!(
                tx.mark_spent(&scrip_id(1), NOW).unwrap(),
                Spend::AlreadySpent
            );
            assert_eq!(
                tx.queued_payment_records(10).unwrap()[0],
                payment_record(scrip_id(5))
            );
            tx.dequeue_payment_record(&scrip_id(3)).unwrap();
            tx.commit().unwrap();
        }
        let mut store = SqliteMerchantStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(queued_ids(&mut tx, 10), vec![scrip_id(5), scrip_id(9)]);
    }

    #[test]
    fn a_file_of_schema_version_3_keeps_its_spent_ids_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
            for migration in &SCHEMA.migrations[..3] {
                conn.execute_batch(migration).unwrap();
            }
            conn.pragma_update(None, "application_id", SCHEMA.application_id)
                .unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute(
                "INSERT INTO spent (id, expiry) VALUES (?1, ?2)",
                params![scrip_id(1).to_key(), NOW.to_stored().unwrap()],
            )
            .unwrap();
            for id in [5, 3, 9] {
                conn.execute(
                    "INSERT INTO outbox (scrip, record) VALUES (?1, ?2)",
                    params![
                        scrip_id(id).to_key(),
                        scrip_proto::encode(&payment_record(scrip_id(id)))
                    ],
                )
                .unwrap();
            }
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
        tx.queue_payment_record(&payment_record(scrip_id(7)))
            .unwrap();
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
        let batch = |size: u64| {
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
        };
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
            tx.store_response(&request_id(1), &response(1)).unwrap();
            assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
            tx.queue_payment_record(&payment_record(scrip_id(1)))
                .unwrap();
        }
        let mut tx = store.begin().unwrap();
        assert_eq!(tx.stored_response(&request_id(1)).unwrap(), None);
        assert_eq!(tx.mark_spent(&scrip_id(1), NOW).unwrap(), Spend::Fresh);
        assert!(tx.queued_payment_records(10).unwrap().is_empty());
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
            tx.queue_payment_record(&payment_record(scrip_id(id)))
                .unwrap();
        }
        assert_eq!(queued_ids(&mut tx, 2), vec![scrip_id(5), scrip_id(3)]);
        assert_eq!(queued_ids(&mut tx, 0), vec![]);
        // Queuing again keeps the record's place; dequeuing an unknown id does nothing.
        tx.queue_payment_record(&payment_record(scrip_id(5)))
            .unwrap();
        tx.dequeue_payment_record(&scrip_id(42)).unwrap();
        tx.dequeue_payment_record(&scrip_id(3)).unwrap();
        assert_eq!(
            queued_ids(&mut tx, usize::MAX),
            vec![scrip_id(5), scrip_id(9), scrip_id(1)]
        );
        tx.dequeue_payment_record(&scrip_id(5)).unwrap();
        tx.queue_payment_record(&payment_record(scrip_id(5)))
            .unwrap();
        assert_eq!(
            queued_ids(&mut tx, usize::MAX),
            vec![scrip_id(9), scrip_id(1), scrip_id(5)]
        );
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let mut store = SqliteMerchantStore::open_in_memory().unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO outbox (scrip, record) VALUES (x'01', x'0102');
                 INSERT INTO responses VALUES (zeroblob(16), x'01', x'', NULL);
                 INSERT INTO receipt_batches VALUES (1, x'01', zeroblob(32));
                 INSERT INTO receipt_batches VALUES (2, x'', zeroblob(33));",
            )
            .unwrap();
        let mut tx = store.begin().unwrap();
        for error in [
            tx.queued_payment_records(1).unwrap_err(),
            tx.stored_response(&RequestId([0; 16])).unwrap_err(),
            tx.receipt_batch(1).unwrap_err(),
            tx.receipt_batch(2).unwrap_err(),
        ] {
            assert!(error.0.contains("corrupt"), "{error}");
        }
    }
}
