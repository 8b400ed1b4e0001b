#![no_main]
//! The merchant's side of settling: `Merchant::handle_payment_records_ack`
//! (with the answer's log receipts) on any broker answer, with two sales
//! queued. No panic; an answer it rejects changes nothing; one it takes is
//! signed by the broker and clears exactly the records it acknowledges.

use std::sync::{LazyLock, Mutex};

use scrip_core::store::{MerchantStore, MerchantTx};
use scrip_fuzz::{round_trip, World};
use scrip_proto::msg::{BrokerAnswer, BrokerResponse};
use scrip_proto::ScripId;
use scrip_store_sqlite::SqliteMerchantStore;

static WORLD: LazyLock<Mutex<World>> = LazyLock::new(|| Mutex::new(World::build()));

fn queued(store: &mut SqliteMerchantStore) -> Vec<ScripId> {
    let mut tx = store.begin().expect("merchant transaction");
    let records = tx.queued_payment_records(64).expect("outbox");
    records.iter().map(|r| r.buy.body.scrip.id()).collect()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(answer) = round_trip::<BrokerAnswer>(data) else {
        return;
    };
    let world = WORLD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let merchant = world.merchant();
    let mut store = world.merchant_store(true);
    let fingerprint = store.fingerprint().expect("fingerprint");
    let before = queued(&mut store);
    let Ok(settlement) =
        merchant.handle_payment_records_ack(&mut store, &answer.response, &answer.receipts)
    else {
        assert_eq!(
            store.fingerprint().expect("fingerprint"),
            fingerprint,
            "a rejected answer changed the store"
        );
        return;
    };
    let BrokerResponse::PaymentRecordsAck(ack) = &answer.response else {
        panic!("settled by {:?}", answer.response);
    };
    let ack = ack
        .verify(&world.sim.broker.info().broker)
        .expect("settled by an acknowledgement the broker signed");
    assert_eq!(
        settlement.recorded + settlement.refused.len(),
        ack.outcomes.len()
    );
    let acknowledged: Vec<ScripId> = ack.outcomes.iter().map(|(id, _)| *id).collect();
    let expected: Vec<ScripId> = before
        .into_iter()
        .filter(|id| !acknowledged.contains(id))
        .collect();
    assert_eq!(
        queued(&mut store),
        expected,
        "exactly the acknowledged records left the queue"
    );
});
