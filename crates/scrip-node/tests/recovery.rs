//! A purchase left pending by a run that stopped before sending it is
//! completed by the next connection, once, and its item is handed over.

use rand::rngs::OsRng;
use scrip_core::{
    Broker, BrokerConfig, BrokerKeys, CatalogItem, MerchantConfig, MerchantKeys, PinHashing,
    Wallet, WalletKeys,
};
use scrip_node::broker::BrokerNode;
use scrip_node::customer::Customer;
use scrip_node::merchant::{MerchantNode, MerchantSetup};
use scrip_node::{now, NetOptions};
use scrip_proto::msg::Purchase;
use scrip_proto::{Amount, Secret32};
use scrip_store::BrokerDatabase;
use scrip_store_sqlite::{SqliteBrokerStore, SqliteWalletStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_purchase_completes_once_on_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker_seed = Secret32::random(&mut OsRng);
    let config = || {
        let mut config = BrokerConfig::new("EUR".parse().unwrap());
        config.pin_hashing = PinHashing::FAST_INSECURE;
        config
    };
    let loopback = || vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let broker = BrokerNode::start(
        Broker::new(BrokerKeys::from_seed(&broker_seed), config()),
        &BrokerDatabase::Sqlite(dir.path().join("broker.db")),
        loopback(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    let address = broker.node.listen_addresses()[0].clone();
    let operator = Broker::new(BrokerKeys::from_seed(&broker_seed), config());
    let mut books = SqliteBrokerStore::open(&dir.path().join("broker.db")).unwrap();
    let shop = operator
        .open_account(&mut books, now(), &mut OsRng, "shop")
        .unwrap();
    let alice = operator
        .open_account(&mut books, now(), &mut OsRng, "alice")
        .unwrap();
    operator
        .deposit(&mut books, now(), alice.number, "10".parse().unwrap())
        .unwrap();
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
        loopback(),
        address.clone(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    let merchant_id = merchant.service.merchant().id();

    let wallet_db = dir.path().join("wallet.db");
    let seed = Secret32::random(&mut OsRng);
    let mut customer = Customer::connect(
        address.clone(),
        WalletKeys::from_seed(&seed),
        SqliteWalletStore::open(&wallet_db).unwrap(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    customer
        .obtain_broker_scrip(alice.number, alice.pin, "5".parse().unwrap())
        .await
        .unwrap();
    customer
        .obtain_vendor_scrip(merchant_id, "1".parse().unwrap())
        .await
        .unwrap();
    let info = customer.wallet().broker().clone();
    drop(customer);

    // A run builds the purchase (intent and buy stored as pending) and stops before sending either.
    let wallet = Wallet::new(WalletKeys::from_seed(&seed), info);
    let mut store = SqliteWalletStore::open(&wallet_db).unwrap();
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

    let mut customer = Customer::connect(
        address.clone(),
        WalletKeys::from_seed(&seed),
        SqliteWalletStore::open(&wallet_db).unwrap(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    let recovered = customer.take_recovered();
    assert_eq!(
        recovered.len(),
        1,
        "the pending purchase completed on connect"
    );
    assert_eq!(recovered[0].1.content, b"a pot of tea");
    let balances = customer.balances().unwrap();
    assert_eq!(
        balances.vendor_scrip,
        vec![(merchant_id, "0.75".parse().unwrap())],
        "paid once"
    );
    assert_eq!(balances.pending, Amount::ZERO);
    drop(customer);

    // Connecting again finds nothing left to resend.
    let mut customer = Customer::connect(
        address,
        WalletKeys::from_seed(&seed),
        SqliteWalletStore::open(&wallet_db).unwrap(),
        NetOptions::default(),
    )
    .await
    .unwrap();
    assert!(customer.take_recovered().is_empty());
    merchant.shutdown().await;
    broker.node.shutdown().await;
}
