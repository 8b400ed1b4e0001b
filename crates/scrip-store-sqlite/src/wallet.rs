//! A wallet's store in SQLite: the scrip it holds, requests in flight and receipts kept as evidence.

use borsh::{BorshDeserialize, BorshSerialize};
use rusqlite::{params, OptionalExtension};
use scrip_core::store::{
    decode_stored, BoughtItem, Destination, PendingRequest, StoreError, StoredAsI64, WalletReceipt,
    WalletScrip, WalletStore, WalletTx,
};
use scrip_proto::{Amount, RequestId, ScripId};

use crate::db::{failed, Schema};

pub(crate) const SCHEMA: Schema = Schema {
    role: "wallet",
    // "scrW"
    application_id: 0x7363_7257,
    migrations: &[MIGRATION_1, MIGRATION_2, MIGRATION_3],
};

// Rows hold the canonical bytes of the core's types; the keys are copies of
// fields inside them, so lookups need no decoding.
const MIGRATION_1: &str = "
CREATE TABLE scrip (
    id BLOB PRIMARY KEY,
    blob BLOB NOT NULL
) STRICT;

CREATE TABLE pending (
    request_id BLOB PRIMARY KEY,
    blob BLOB NOT NULL
) STRICT;

CREATE TABLE receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    blob BLOB NOT NULL
) STRICT;
";

// The amount an Obtain BrokerScrip request ordered, in minor units
// (`PendingRequest::ordered`); NULL for other requests and for requests
// stored before this column existed. A column, not a field of the blob, so
// the blobs already on disk keep their meaning.
const MIGRATION_2: &str = "ALTER TABLE pending ADD COLUMN ordered INTEGER;";

// Items delivered and not yet written out (`BoughtItem`), oldest first.
const MIGRATION_3: &str = "
CREATE TABLE items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id BLOB NOT NULL UNIQUE,
    blob BLOB NOT NULL
) STRICT;
";

/// A pending request's blob: [`PendingRequest`] as it was first stored, with
/// the same fields in the same order, so blobs written by every build decode.
/// Fields added to `PendingRequest` since are columns of their own.
#[derive(BorshSerialize, BorshDeserialize)]
struct StoredPending {
    request_id: RequestId,
    destination: Destination,
    request: Vec<u8>,
    spends: Option<ScripId>,
}

impl StoredPending {
    fn of(pending: &PendingRequest) -> StoredPending {
        StoredPending {
            request_id: pending.request_id,
            destination: pending.destination,
            request: pending.request.clone(),
            spends: pending.spends,
        }
    }

    fn with(self, ordered: Option<Amount>) -> PendingRequest {
        PendingRequest {
            request_id: self.request_id,
            destination: self.destination,
            request: self.request,
            spends: self.spends,
            ordered,
        }
    }
}

/// A `pending` row, `(blob, ordered)`, as the request it stores.
fn pending_from_row((blob, ordered): (Vec<u8>, Option<i64>)) -> Result<PendingRequest, StoreError> {
    let stored: StoredPending = decode_stored(&blob, "pending request")?;
    let ordered = ordered.map(Amount::from_stored).transpose()?;
    Ok(stored.with(ordered))
}

crate::db::sqlite_store!(
    /// A wallet's [`WalletStore`] in one SQLite file.
    ///
    /// The file holds customer secrets, so it is created readable by its owner only.
    /// A transaction that settles a pending request
    /// ([`begin_settle`](WalletStore::begin_settle)) commits without waiting
    /// for the disk; every other one waits (`synchronous=FULL`).
    SqliteWalletStore,
    /// One wallet transaction: rolls back when dropped without [`commit`](WalletTx::commit).
    SqliteWalletTx,
    WalletStore,
    "wallet",
    begin_settle => WriteUnsynced
);

impl SqliteWalletTx<'_> {
    fn blobs(&self, sql: &str, what: &'static str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tx
            .prepare_cached(sql)
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed(what))
    }
}

impl WalletTx for SqliteWalletTx<'_> {
    fn put_scrip(&mut self, scrip: &WalletScrip) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO scrip (id, blob) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET blob = excluded.blob",
            )
            .and_then(|mut statement| statement.execute(params![scrip.scrip.body.id.to_key(), scrip_proto::encode(scrip)]))
            .map(drop)
            .map_err(failed("cannot store scrip"))
    }

    fn remove_scrip(&mut self, scrip: &ScripId) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM scrip WHERE id = ?1")
            .and_then(|mut statement| statement.execute([scrip.to_key()]))
            .map(drop)
            .map_err(failed("cannot remove scrip"))
    }

    fn all_scrip(&mut self) -> Result<Vec<WalletScrip>, StoreError> {
        let blobs = self.blobs("SELECT blob FROM scrip ORDER BY id", "cannot list scrip")?;
        blobs
            .iter()
            .map(|blob| decode_stored(blob, "wallet scrip"))
            .collect()
    }

    fn scrip(&mut self, id: &ScripId) -> Result<Option<WalletScrip>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT blob FROM scrip WHERE id = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([id.to_key()], |row| row.get(0))
                    .optional()
            })
            .map_err(failed("cannot read scrip"))?;
        blob.map(|blob| decode_stored(&blob, "wallet scrip"))
            .transpose()
    }

    fn put_pending(&mut self, pending: &PendingRequest) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO pending (request_id, blob, ordered) VALUES (?1, ?2, ?3)
                 ON CONFLICT (request_id) DO UPDATE SET blob = excluded.blob, ordered = excluded.ordered",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    pending.request_id.as_bytes(),
                    scrip_proto::encode(&StoredPending::of(pending)),
                    pending.ordered.map(Amount::as_i64),
                ])
            })
            .map(drop)
            .map_err(failed("cannot store pending request"))
    }

    fn take_pending(&mut self, request: &RequestId) -> Result<Option<PendingRequest>, StoreError> {
        let row: Option<(Vec<u8>, Option<i64>)> = self
            .tx
            .prepare_cached("DELETE FROM pending WHERE request_id = ?1 RETURNING blob, ordered")
            .and_then(|mut statement| {
                statement
                    .query_row([request.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(failed("cannot take pending request"))?;
        row.map(pending_from_row).transpose()
    }

    fn all_pending(&mut self) -> Result<Vec<PendingRequest>, StoreError> {
        let rows: Vec<(Vec<u8>, Option<i64>)> = self
            .tx
            .prepare_cached("SELECT blob, ordered FROM pending ORDER BY request_id")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed("cannot list pending requests"))?;
        rows.into_iter().map(pending_from_row).collect()
    }

    fn add_receipt(&mut self, receipt: &WalletReceipt) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT INTO receipts (blob) VALUES (?1)")
            .and_then(|mut statement| statement.execute([scrip_proto::encode(receipt)]))
            .map(drop)
            .map_err(failed("cannot add receipt"))
    }

    fn receipts(&mut self) -> Result<Vec<WalletReceipt>, StoreError> {
        let blobs = self.blobs(
            "SELECT blob FROM receipts ORDER BY seq",
            "cannot list receipts",
        )?;
        blobs
            .iter()
            .map(|blob| decode_stored(blob, "receipt"))
            .collect()
    }

    fn put_item(&mut self, item: &BoughtItem) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT INTO items (request_id, blob) VALUES (?1, ?2)")
            .and_then(|mut statement| {
                statement.execute(params![
                    item.request_id.as_bytes(),
                    scrip_proto::encode(item)
                ])
            })
            .map(drop)
            .map_err(failed("cannot keep the item bought"))
    }

    fn remove_item(&mut self, request: &RequestId) -> Result<bool, StoreError> {
        self.tx
            .prepare_cached("DELETE FROM items WHERE request_id = ?1")
            .and_then(|mut statement| statement.execute([request.as_bytes()]))
            .map(|removed| removed > 0)
            .map_err(failed("cannot forget the item bought"))
    }

    fn items(&mut self) -> Result<Vec<BoughtItem>, StoreError> {
        let blobs = self.blobs("SELECT blob FROM items ORDER BY seq", "cannot list items")?;
        blobs
            .iter()
            .map(|blob| decode_stored(blob, "item bought"))
            .collect()
    }

    fn commit(self) -> Result<(), StoreError> {
        self.tx.commit("cannot commit wallet transaction")
    }
}

#[cfg(test)]
mod tests {
    use scrip_core::store::{Destination, ScripState};
    use scrip_proto::ScripKind;

    use super::*;
    use crate::fixtures::*;

    fn wallet_scrip(id: u64, state: ScripState) -> WalletScrip {
        WalletScrip {
            scrip: scrip(ScripKind::Broker, scrip_id(id)),
            secret: customer_secret(),
            state,
        }
    }

    fn pending(request: u64, spends: Option<u64>) -> PendingRequest {
        PendingRequest {
            request_id: request_id(request),
            destination: Destination::Merchant(merchant_id(1)),
            request: vec![7; 64],
            spends: spends.map(scrip_id),
            ordered: None,
        }
    }

    #[test]
    fn only_a_settling_transaction_commits_without_waiting_for_the_disk() {
        // A request must be on disk before it is sent; only the answer that
        // settles it may wait for the next synced commit.
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap();
        assert_eq!(synchronous(&store.conn), 2);

        let mut tx = store.begin_settle().unwrap();
        assert_eq!(synchronous(&tx.tx), 1);
        tx.put_pending(&pending(1, None)).unwrap();
        tx.commit().unwrap();
        assert_eq!(synchronous(&store.conn), 2, "back to FULL after a commit");

        let mut tx = store.begin_settle().unwrap();
        tx.put_pending(&pending(2, None)).unwrap();
        drop(tx);
        assert_eq!(synchronous(&store.conn), 2, "back to FULL after a rollback");

        let tx = store.begin().unwrap();
        assert_eq!(synchronous(&tx.tx), 2);
        drop(tx);
        let mut tx = store.begin().unwrap();
        let kept: Vec<_> = tx
            .all_pending()
            .unwrap()
            .into_iter()
            .map(|p| p.request_id)
            .collect();
        assert_eq!(
            kept,
            [request_id(1)],
            "the settled commit is kept, the rolled back one is not"
        );
    }

    /// An Obtain BrokerScrip request to the broker, with its order if `ordered`.
    fn obtain(request: u64, ordered: Option<u64>) -> PendingRequest {
        PendingRequest {
            request_id: request_id(request),
            destination: Destination::Broker,
            request: vec![8; 96],
            spends: None,
            ordered: ordered.map(amount),
        }
    }

    /// The blob a build before `ordered` wrote: the borsh encoding of its
    /// `PendingRequest`, whose fields were these four, in this order. Built
    /// field by field, not with `StoredPending`, so the test holds that type
    /// to the old format.
    fn old_blob(pending: &PendingRequest) -> Vec<u8> {
        let mut blob = scrip_proto::encode(&pending.request_id);
        blob.extend(scrip_proto::encode(&pending.destination));
        blob.extend(scrip_proto::encode(&pending.request));
        blob.extend(scrip_proto::encode(&pending.spends));
        blob
    }

    fn receipt(n: u64) -> WalletReceipt {
        WalletReceipt::Intent(signed_intent_receipt(request_id(n), scrip_id(n)))
    }

    fn item(request: u64) -> BoughtItem {
        BoughtItem {
            request_id: request_id(request),
            merchant: merchant_id(1),
            item: format!("item {request}"),
            price: amount(25),
            content: vec![0, 0xff, request as u8],
        }
    }

    #[test]
    fn state_survives_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        {
            let mut store = SqliteWalletStore::open(&path).unwrap();
            let mut tx = store.begin().unwrap();
            tx.put_scrip(&wallet_scrip(2, ScripState::Available))
                .unwrap();
            tx.put_scrip(&wallet_scrip(1, ScripState::Pending(request_id(8))))
                .unwrap();
            tx.put_pending(&pending(8, Some(1))).unwrap();
            tx.put_pending(&pending(9, None)).unwrap();
            for n in [3, 1, 2] {
                tx.add_receipt(&receipt(n)).unwrap();
                tx.put_item(&item(n)).unwrap();
            }
            tx.commit().unwrap();
            assert_owner_only(&path);
        }
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
        assert_eq!(
            pragma(&path, "application_id"),
            i64::from(SCHEMA.application_id)
        );

        let mut store = SqliteWalletStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.all_scrip().unwrap(),
            vec![
                wallet_scrip(1, ScripState::Pending(request_id(8))),
                wallet_scrip(2, ScripState::Available)
            ]
        );
        assert_eq!(
            tx.all_pending().unwrap(),
            vec![pending(8, Some(1)), pending(9, None)]
        );
        assert_eq!(
            tx.receipts().unwrap(),
            vec![receipt(3), receipt(1), receipt(2)]
        );
        assert_eq!(tx.items().unwrap(), vec![item(3), item(1), item(2)]);
        assert!(tx.put_item(&item(1)).is_err(), "one item per request id");
        assert!(tx.remove_item(&request_id(1)).unwrap());
        assert!(!tx.remove_item(&request_id(1)).unwrap());
        assert_eq!(tx.items().unwrap(), vec![item(3), item(2)]);
        assert_eq!(
            tx.take_pending(&request_id(8)).unwrap(),
            Some(pending(8, Some(1)))
        );
        assert_eq!(tx.take_pending(&request_id(8)).unwrap(), None);
        assert_eq!(tx.all_pending().unwrap(), vec![pending(9, None)]);
    }

    #[test]
    fn put_replaces_and_remove_removes() {
        let mut store = SqliteWalletStore::open_in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        tx.put_scrip(&wallet_scrip(1, ScripState::Available))
            .unwrap();
        tx.put_scrip(&wallet_scrip(1, ScripState::Pending(request_id(4))))
            .unwrap();
        assert_eq!(
            tx.all_scrip().unwrap(),
            vec![wallet_scrip(1, ScripState::Pending(request_id(4)))]
        );
        assert_eq!(
            tx.scrip(&scrip_id(1)).unwrap(),
            Some(wallet_scrip(1, ScripState::Pending(request_id(4))))
        );
        assert_eq!(tx.scrip(&scrip_id(2)).unwrap(), None);
        tx.remove_scrip(&scrip_id(1)).unwrap();
        tx.remove_scrip(&scrip_id(1)).unwrap();
        assert!(tx.all_scrip().unwrap().is_empty());
        assert_eq!(tx.scrip(&scrip_id(1)).unwrap(), None);
        tx.put_pending(&pending(4, Some(1))).unwrap();
        tx.put_pending(&pending(4, None)).unwrap();
        assert_eq!(tx.all_pending().unwrap(), vec![pending(4, None)]);
    }

    #[test]
    fn dropping_a_transaction_without_commit_leaves_nothing() {
        let mut store = SqliteWalletStore::open_in_memory().unwrap();
        {
            let mut tx = store.begin().unwrap();
            tx.put_scrip(&wallet_scrip(1, ScripState::Available))
                .unwrap();
            tx.put_pending(&pending(8, Some(1))).unwrap();
            tx.add_receipt(&receipt(1)).unwrap();
        }
        let mut tx = store.begin().unwrap();
        assert!(tx.all_scrip().unwrap().is_empty());
        assert!(tx.all_pending().unwrap().is_empty());
        assert!(tx.receipts().unwrap().is_empty());
        assert_eq!(tx.take_pending(&request_id(8)).unwrap(), None);
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let mut store = SqliteWalletStore::open_in_memory().unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO scrip VALUES (x'01', x'00');
                 INSERT INTO pending (request_id, blob) VALUES (zeroblob(16), x'ff');
                 INSERT INTO receipts (blob) VALUES (x'');",
            )
            .unwrap();
        let mut tx = store.begin().unwrap();
        let errors = [
            tx.all_scrip().unwrap_err(),
            tx.all_pending().unwrap_err(),
            tx.receipts().unwrap_err(),
            tx.take_pending(&RequestId([0; 16])).unwrap_err(),
        ];
        for error in errors {
            assert!(error.0.contains("corrupt"), "{error}");
        }
    }

    #[test]
    fn a_negative_ordered_amount_is_an_error_not_a_panic() {
        let mut store = SqliteWalletStore::open_in_memory().unwrap();
        let good = obtain(1, Some(5));
        store
            .conn
            .execute(
                "INSERT INTO pending (request_id, blob, ordered) VALUES (?1, ?2, -1)",
                params![good.request_id.as_bytes(), old_blob(&good)],
            )
            .unwrap();
        let mut tx = store.begin().unwrap();
        let errors = [
            tx.all_pending().unwrap_err(),
            tx.take_pending(&good.request_id).unwrap_err(),
        ];
        for error in errors {
            assert!(error.0.contains("corrupt amount"), "{error}");
        }
    }

    #[test]
    fn the_ordered_amount_round_trips_beside_the_old_blob() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        let ordered = obtain(1, Some(5_000_000));
        let other = pending(2, Some(3));
        {
            let mut store = SqliteWalletStore::open(&path).unwrap();
            let mut tx = store.begin().unwrap();
            tx.put_pending(&ordered).unwrap();
            tx.put_pending(&other).unwrap();
            tx.commit().unwrap();
        }
        // On disk: the blob is still the old format, the amount in its column.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>, Option<i64>)> = conn
            .prepare("SELECT request_id, blob, ordered FROM pending ORDER BY request_id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(conn);
        assert_eq!(
            rows,
            vec![
                (
                    ordered.request_id.as_bytes().to_vec(),
                    old_blob(&ordered),
                    Some(5_000_000)
                ),
                (other.request_id.as_bytes().to_vec(), old_blob(&other), None),
            ]
        );

        let mut store = SqliteWalletStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.all_pending().unwrap(),
            vec![ordered.clone(), other.clone()]
        );
        // Replacing a request replaces its amount too, to none as well.
        tx.put_pending(&obtain(1, Some(7))).unwrap();
        assert_eq!(
            tx.take_pending(&request_id(1)).unwrap(),
            Some(obtain(1, Some(7)))
        );
        tx.put_pending(&obtain(1, Some(7))).unwrap();
        tx.put_pending(&obtain(1, None)).unwrap();
        assert_eq!(
            tx.take_pending(&request_id(1)).unwrap(),
            Some(obtain(1, None))
        );
        assert_eq!(tx.take_pending(&request_id(2)).unwrap(), Some(other));
    }

    #[test]
    fn a_wallet_of_the_first_schema_keeps_its_pending_requests_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        // A wallet.db as a build with migration 1 only left it: its tables,
        // version 1, and pending requests as old blobs, written with raw SQL.
        let old_obtain = obtain(1, None);
        let old_exchange = pending(2, Some(4));
        {
            let conn = file_at_version(&path, &SCHEMA, 1);
            for old in [&old_obtain, &old_exchange] {
                conn.execute(
                    "INSERT INTO pending (request_id, blob) VALUES (?1, ?2)",
                    params![old.request_id.as_bytes(), old_blob(old)],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO scrip (id, blob) VALUES (?1, ?2)",
                params![
                    scrip_id(4).to_key(),
                    scrip_proto::encode(&wallet_scrip(4, ScripState::Pending(request_id(2))))
                ],
            )
            .unwrap();
        }
        assert_eq!(pragma(&path, "user_version"), 1);

        let mut store = SqliteWalletStore::open(&path).unwrap();
        assert_eq!(pragma(&path, "user_version"), SCHEMA.version());
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.all_pending().unwrap(),
            vec![old_obtain.clone(), old_exchange.clone()]
        );
        assert_eq!(
            tx.all_scrip().unwrap(),
            vec![wallet_scrip(4, ScripState::Pending(request_id(2)))]
        );
        assert_eq!(tx.take_pending(&request_id(1)).unwrap(), Some(old_obtain));
        // New requests in the upgraded file keep their order.
        tx.put_pending(&obtain(3, Some(9))).unwrap();
        tx.commit().unwrap();
        drop(store);

        let mut store = SqliteWalletStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.all_pending().unwrap(),
            vec![old_exchange, obtain(3, Some(9))]
        );
    }
}
