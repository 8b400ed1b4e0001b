#![no_main]
//! `Merchant::handle_bytes` on any bytes, against a merchant that has sold
//! once. Whatever the input: no panic, a canonical response, a refusal changes
//! nothing, and a delivery is a sale the merchant signed, paid in full (price
//! plus change is the scrip's value) and queued for the broker.

use std::sync::{LazyLock, Mutex};

use scrip_core::store::{MerchantStore, MerchantTx};
use scrip_fuzz::{rng, round_trip, World};
use scrip_proto::msg::{MerchantRequest, MerchantResponse};
use scrip_proto::{decode, ScripKind};

static WORLD: LazyLock<Mutex<World>> = LazyLock::new(|| Mutex::new(World::build()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let world = WORLD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let merchant = world.merchant();
    // A fresh store for every input, so each meets the same state.
    let mut store = world.merchant_store(false);
    let fingerprint = store.fingerprint().expect("fingerprint");
    let response = merchant.handle_bytes(&mut store, world.sim.now, &mut rng(), data);
    let response = round_trip::<MerchantResponse>(&response)
        .expect("the merchant answers with a MerchantResponse");
    let delivered = match response {
        MerchantResponse::ItemDelivered(delivered) => delivered,
        other => {
            if let MerchantResponse::Catalog(listing) = &other {
                assert_eq!(*listing, merchant.catalog());
            }
            let unchanged = store.fingerprint().expect("fingerprint") == fingerprint;
            assert!(unchanged, "{other:?} changed the merchant's store");
            return;
        }
    };
    let Ok(MerchantRequest::Buy(buy)) = decode::<MerchantRequest>(data) else {
        panic!("an item delivered for a request that is no buy");
    };
    let (buy, scrip) = (&buy.body, &buy.body.scrip);
    let receipt = scrip_core::merchant::verify_receipt(&delivered.receipt, &merchant.id())
        .expect("the receipt is in a batch the merchant signed");
    assert_eq!(
        (
            receipt.request_id,
            receipt.scrip,
            &receipt.purchase,
            receipt.price
        ),
        (buy.request_id, scrip.id(), &buy.purchase, buy.price),
        "the receipt is for this purchase"
    );
    let change = delivered.change.as_ref().map_or(0, |c| c.value().minor());
    assert_eq!(
        buy.price.minor() + change,
        scrip.value().minor(),
        "price and change add up to the scrip"
    );
    if let Some(change) = &delivered.change {
        let body = &change.body;
        assert!(
            body.kind == ScripKind::Vendor
                && body.issuer == merchant.id()
                && body.cust_id == scrip.body.cust_id
        );
    }
    let mut tx = store.begin().expect("merchant transaction");
    let queued = tx.queued_payment_records(64).expect("outbox");
    assert!(
        queued.iter().any(|r| r.buy.body.scrip.id() == scrip.id()),
        "the sale is queued for the broker"
    );
});
