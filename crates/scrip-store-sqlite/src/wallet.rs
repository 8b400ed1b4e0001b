//! A wallet's store in SQLite: the scrip it holds, requests in flight and receipts kept as evidence.

use rusqlite::{params, OptionalExtension};
use scrip_core::store::{
    PendingRequest, StoreError, WalletReceipt, WalletScrip, WalletStore, WalletTx,
};
use scrip_proto::{RequestId, ScripId};

use crate::db::{self, failed, Schema};

pub(crate) const SCHEMA: Schema = Schema {
    role: "wallet",
    // "scrW"
    application_id: 0x7363_7257,
    migrations: &[MIGRATION_1],
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

crate::db::sqlite_store!(
    /// A wallet's [`WalletStore`] in one SQLite file.
    ///
    /// The file holds customer secrets, so it is created readable by its owner only.
    SqliteWalletStore,
    /// One wallet transaction: rolls back when dropped without [`commit`](WalletTx::commit).
    SqliteWalletTx,
    WalletStore,
    "wallet"
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
            .map(|blob| db::decode(blob, "wallet scrip"))
            .collect()
    }

    fn put_pending(&mut self, pending: &PendingRequest) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO pending (request_id, blob) VALUES (?1, ?2)
                 ON CONFLICT (request_id) DO UPDATE SET blob = excluded.blob",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    pending.request_id.as_bytes(),
                    scrip_proto::encode(pending)
                ])
            })
            .map(drop)
            .map_err(failed("cannot store pending request"))
    }

    fn take_pending(&mut self, request: &RequestId) -> Result<Option<PendingRequest>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .tx
            .prepare_cached("DELETE FROM pending WHERE request_id = ?1 RETURNING blob")
            .and_then(|mut statement| {
                statement
                    .query_row([request.as_bytes()], |row| row.get(0))
                    .optional()
            })
            .map_err(failed("cannot take pending request"))?;
        blob.map(|blob| db::decode(&blob, "pending request"))
            .transpose()
    }

    fn all_pending(&mut self) -> Result<Vec<PendingRequest>, StoreError> {
        let blobs = self.blobs(
            "SELECT blob FROM pending ORDER BY request_id",
            "cannot list pending requests",
        )?;
        blobs
            .iter()
            .map(|blob| db::decode(blob, "pending request"))
            .collect()
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
            .map(|blob| db::decode(blob, "receipt"))
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
        }
    }

    fn receipt(n: u64) -> WalletReceipt {
        WalletReceipt::Intent(signed_intent_receipt(request_id(n), scrip_id(n)))
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
            }
            tx.commit().unwrap();
            assert_owner_only(&path);
        }
        assert_eq!(pragma(&path, "user_version"), 1);
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
        tx.remove_scrip(&scrip_id(1)).unwrap();
        tx.remove_scrip(&scrip_id(1)).unwrap();
        assert!(tx.all_scrip().unwrap().is_empty());
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
                 INSERT INTO pending VALUES (zeroblob(16), x'ff');
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
}
