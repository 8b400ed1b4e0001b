//! A purchase over the network: the Buy does not wait for the broker's
//! receipt of its intent, and a purchase left pending by a run that stopped
//! before sending it is completed by the next connection, once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{open_account, start_broker};
use rand::rngs::OsRng;
use scrip_core::store::WalletReceipt;
use scrip_core::wallet::{forget_item, kept_items};
use scrip_core::{CatalogItem, MerchantConfig, MerchantKeys, Wallet, WalletKeys};
use scrip_node::broker::BrokerNode;
use scrip_node::customer::Customer;
use scrip_node::merchant::{MerchantNode, MerchantSetup};
use scrip_node::{now, NetOptions};
use scrip_proto::msg::Purchase;
use scrip_proto::{Amount, MerchantId, Secret32};
use scrip_store_sqlite::{SqliteBrokerStore, SqliteWalletStore};

/// A broker and a tea merchant on loopback, and a customer whose wallet
/// (in a file) holds 1 EUR of the merchant's VendorScrip.
struct Shop {
    dir: tempfile::TempDir,
    broker: BrokerNode,
    merchant: MerchantNode,
    merchant_id: MerchantId,
    address: libp2p::Multiaddr,
    price: Amount,
    seed: Secret32,
    /// Taken by a test that moves it into a task.
    customer: Option<Customer>,
}

impl Shop {
    async fn open() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let broker_seed = Secret32::random(&mut OsRng);
        let broker = start_broker(&broker_seed, &dir.path().join("broker.db")).await;
        let address = broker.node.listen_addresses()[0].clone();
        let operator = common::broker(&broker_seed);
        let mut books = SqliteBrokerStore::open(&dir.path().join("broker.db")).unwrap();
        let shop = open_account(&operator, &mut books, "shop", "0");
        let alice = open_account(&operator, &mut books, "alice", "10");
        let price: Amount = "0.25".parse().unwrap();
        let merchant = MerchantNode::start(
            MerchantSetup {
                keys: MerchantKeys::from_seed(&Secret32::random(&mut OsRng)),
                config: MerchantConfig::new("tea"),
                catalog: vec![CatalogItem {
                    id: "tea".into(),
                    title: "Tea".into(),
                    price,
                    content: b"a pot of tea".to_vec(),
                }],
                account: shop.number,
                pin: shop.pin,
            },
            &dir.path().join("merchant.db"),
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            address.clone(),
            NetOptions::default(),
        )
        .await
        .unwrap();
        let merchant_id = merchant.service.merchant().id();

        let seed = Secret32::random(&mut OsRng);
        let mut customer = connect(&address, &seed, &dir.path().join("wallet.db")).await;
        customer
            .obtain_broker_scrip(alice.number, alice.pin, "5".parse().unwrap())
            .await
            .unwrap();
        customer
            .obtain_vendor_scrip(merchant_id, "1".parse().unwrap())
            .await
            .unwrap();
        Shop {
            dir,
            broker,
            merchant,
            merchant_id,
            address,
            price,
            seed,
            customer: Some(customer),
        }
    }

    fn wallet_db(&self) -> PathBuf {
        self.dir.path().join("wallet.db")
    }

    /// The customer's wallet and store, read as the next run would.
    fn wallet_of(&self, customer: Customer) -> (Wallet, SqliteWalletStore) {
        let info = customer.wallet().broker().clone();
        drop(customer);
        (
            Wallet::new(WalletKeys::from_seed(&self.seed), info),
            SqliteWalletStore::open(&self.wallet_db()).unwrap(),
        )
    }

    /// The customer's next run: a new connection on the same wallet file.
    async fn connect_again(&self) -> Customer {
        connect(&self.address, &self.seed, &self.wallet_db()).await
    }

    async fn shutdown(self) {
        self.merchant.shutdown().await;
        self.broker.node.shutdown().await;
    }
}

async fn connect(broker: &libp2p::Multiaddr, seed: &Secret32, wallet_db: &Path) -> Customer {
    Customer::connect(
        broker.clone(),
        WalletKeys::from_seed(seed),
        SqliteWalletStore::open(wallet_db).unwrap(),
        NetOptions::default(),
    )
    .await
    .unwrap()
}

/// The purchases the merchant has taken, read from its spent set.
fn sales(shop: &Shop) -> i64 {
    let merchant = rusqlite::Connection::open(shop.dir.path().join("merchant.db")).unwrap();
    merchant
        .query_row("SELECT count(*) FROM spent", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buy_does_not_wait_for_the_brokers_receipt_of_its_intent() {
    let mut shop = Shop::open().await;
    // The broker cannot record the intent while another connection holds its write lock.
    let holder = rusqlite::Connection::open(shop.dir.path().join("broker.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let merchant_id = shop.merchant_id;
    let mut customer = shop.customer.take().unwrap();
    let purchase = tokio::spawn(async move {
        let delivered = customer.buy(merchant_id, "tea", None).await;
        (customer, delivered)
    });
    let started = Instant::now();
    while sales(&shop) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the merchant saw no Buy while the broker was still recording its intent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holder.execute_batch("ROLLBACK").unwrap();
    let (customer, delivered) = purchase.await.unwrap();
    assert_eq!(delivered.unwrap().content, b"a pot of tea");
    // The intent was recorded once the broker could write: the wallet holds
    // its receipt, and nothing is left to resend.
    let (wallet, mut store) = shop.wallet_of(customer);
    assert!(
        wallet
            .receipts(&mut store)
            .unwrap()
            .iter()
            .any(|r| matches!(r, WalletReceipt::Intent(_))),
        "no intent receipt in the wallet"
    );
    assert!(wallet.pending(&mut store).unwrap().is_empty());
    shop.shutdown().await;
}

/// The item is in hand while the broker still cannot record the intent: the
/// purchase returns it rather than holding it in memory through the link's
/// retries, and the intent stays pending, to be resent on the next connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_returns_its_item_while_the_broker_has_not_recorded_its_intent() {
    let mut shop = Shop::open().await;
    let holder = rusqlite::Connection::open(shop.dir.path().join("broker.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut customer = shop.customer.take().unwrap();
    // The link alone would wait for the broker a minute and more.
    let delivered = tokio::time::timeout(
        Duration::from_secs(30),
        customer.buy(shop.merchant_id, "tea", None),
    )
    .await
    .expect("the purchase returned while the broker was still busy")
    .unwrap();
    assert_eq!(delivered.content, b"a pot of tea");
    let (wallet, mut store) = shop.wallet_of(customer);
    let pending = wallet.pending(&mut store).unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the intent, and only it, is left to resend"
    );
    assert!(matches!(
        pending[0].destination,
        scrip_core::store::Destination::Broker
    ));
    holder.execute_batch("ROLLBACK").unwrap();
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_purchase_completes_once_on_the_next_connection() {
    let mut shop = Shop::open().await;
    let (merchant_id, price) = (shop.merchant_id, shop.price);
    // A run builds the purchase (intent and buy stored as pending) and stops before sending either.
    let customer = shop.customer.take().unwrap();
    let (wallet, mut store) = shop.wallet_of(customer);
    wallet
        .buy(
            &mut store,
            &mut OsRng,
            now(),
            merchant_id,
            Purchase::Item("tea".into()),
            price,
        )
        .unwrap();
    assert_eq!(wallet.pending(&mut store).unwrap().len(), 2);
    drop(store);

    let mut customer = shop.connect_again().await;
    let kept = kept_items(customer.store()).unwrap();
    assert_eq!(kept.len(), 1, "the pending purchase completed on connect");
    assert_eq!(kept[0].content, b"a pot of tea");
    let balances = customer.balances().unwrap();
    assert_eq!(
        balances.vendor_scrip,
        vec![(merchant_id, "0.75".parse().unwrap())],
        "paid once"
    );
    assert_eq!(balances.pending, Amount::ZERO);
    drop(customer);

    // Connecting again resends nothing, and the item stays kept until it is forgotten.
    let mut customer = shop.connect_again().await;
    assert_eq!(kept_items(customer.store()).unwrap(), kept);
    assert!(forget_item(customer.store(), kept[0].request_id).unwrap());
    assert!(kept_items(customer.store()).unwrap().is_empty());
    let (wallet, mut store) = shop.wallet_of(customer);
    assert!(wallet.pending(&mut store).unwrap().is_empty());
    shop.shutdown().await;
}
