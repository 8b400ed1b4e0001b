//! A wallet keeps the broker's log receipts and can later prove that the
//! broker rolled its log back.

mod common;

use common::{broker, open_account, start_broker as start};
use rand::rngs::OsRng;
use scrip_core::WalletKeys;
use scrip_node::customer::Customer;
use scrip_node::NetOptions;
use scrip_proto::{Amount, Secret32};
use scrip_store_sqlite::{SqliteBrokerStore, SqliteWalletStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_until_the_broker_rolls_its_log_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("broker.db");
    let wallet_db = dir.path().join("wallet.db");
    let broker_seed = Secret32::random(&mut OsRng);
    let wallet_seed = Secret32::random(&mut OsRng);
    let node = start(&broker_seed, &db).await;

    let operator = broker(&broker_seed);
    let mut books = SqliteBrokerStore::open(&db).unwrap();
    let alice = open_account(&operator, &mut books, "alice", "10");

    let address = node.node.listen_addresses()[0].clone();
    let mut customer = Customer::connect(
        address,
        WalletKeys::from_seed(&wallet_seed),
        SqliteWalletStore::open(&wallet_db).unwrap(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        customer
            .obtain_broker_scrip(
                alice.number,
                alice.pin.clone(),
                Amount::from_major(1).unwrap(),
            )
            .await
            .unwrap();
    }
    let verified = customer.verify_log(Vec::new()).await.unwrap();
    assert_eq!(verified.receipts, 3);
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
    assert_eq!(
        verified.log_size, 6,
        "account opened, deposit, wallet key bound, three BrokerScrip issued"
    );
    drop(customer);
    node.node.shutdown().await;

    // The operator rolls the log back two entries: leaves, their hashes and the
    // checkpoints that covered them, so what remains is signed and consistent.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DELETE FROM events WHERE seq > 4;
         DELETE FROM checkpoints WHERE size > 4;
         DELETE FROM log_hashes WHERE idx >= 7;",
    )
    .unwrap();
    drop(conn);

    let node = start(&broker_seed, &db).await;
    let address = node.node.listen_addresses()[0].clone();
    let mut customer = Customer::connect(
        address,
        WalletKeys::from_seed(&wallet_seed),
        SqliteWalletStore::open(&wallet_db).unwrap(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    let verified = customer.verify_log(Vec::new()).await.unwrap();
    assert_eq!(verified.log_size, 4);
    assert_eq!(verified.receipts, 3);
    assert_eq!(
        verified.problems.len(),
        2,
        "the two receipts for rolled-back leaves: {:?}",
        verified.problems
    );
    assert!(
        verified.problems.iter().all(|p| p.contains("rolled back")),
        "{:?}",
        verified.problems
    );
    node.node.shutdown().await;
}
