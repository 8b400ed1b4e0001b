//! Set-up shared by the node's test binaries: a broker on loopback with
//! cheap PIN hashing, and funded accounts.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::path::Path;

use rand::rngs::OsRng;
use scrip_core::broker::OpenedAccount;
use scrip_core::store::BrokerStore;
use scrip_core::{Broker, BrokerConfig, BrokerKeys, PinHashing};
use scrip_node::broker::BrokerNode;
use scrip_node::{now, NetOptions};
use scrip_proto::Secret32;
use scrip_store::BrokerDatabase;

/// The broker of `seed`, in EUR, hashing PINs cheaply (tests only).
pub fn broker(seed: &Secret32) -> Broker {
    let mut config = BrokerConfig::new("EUR".parse().unwrap());
    config.pin_hashing = PinHashing::FAST_INSECURE;
    Broker::new(BrokerKeys::from_seed(seed), config)
}

/// The broker of `seed` serving its SQLite file `db` on a loopback port.
pub async fn start_broker(seed: &Secret32, db: &Path) -> BrokerNode {
    BrokerNode::start(
        broker(seed),
        &BrokerDatabase::Sqlite(db.to_owned()),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        NetOptions::default(),
    )
    .await
    .expect("broker starts")
}

/// Opens an account named `name` and deposits `deposit` in it (none for "0").
pub fn open_account(
    operator: &Broker,
    books: &mut impl BrokerStore,
    name: &str,
    deposit: &str,
) -> OpenedAccount {
    let opened = operator
        .open_account(books, now(), &mut OsRng, name)
        .expect("open account");
    if deposit != "0" {
        operator
            .deposit(books, now(), opened.number, deposit.parse().unwrap())
            .expect("deposit");
    }
    opened
}
