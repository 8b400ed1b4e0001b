#![no_main]
//! The wallet taking in a broker's answer with its log receipts
//! (`Wallet::handle_broker_response`), tried on each of its pending broker
//! requests: Obtain BrokerScrip, Obtain VendorScrip, renewal and intent.
//! No panic, and the rules of `scrip_fuzz::check_wallet_answer`: exchanges
//! and intents keep the value held, and an order of BrokerScrip adds exactly
//! the amount ordered.

use std::sync::{LazyLock, Mutex};

use scrip_core::store::Destination;
use scrip_fuzz::{check_wallet_answer, round_trip, World};
use scrip_proto::decode;
use scrip_proto::msg::{BrokerAnswer, BrokerRequest};

static WORLD: LazyLock<Mutex<World>> = LazyLock::new(|| Mutex::new(World::build()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(answer) = round_trip::<BrokerAnswer>(data) else {
        return;
    };
    let world = WORLD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let wallet = world.wallet();
    let mut store = world.wallet_store();
    for pending in world
        .wallet_pending
        .iter()
        .filter(|p| p.destination == Destination::Broker)
    {
        let gain = match decode(&pending.request).expect("a broker request") {
            // The amount is sealed to the broker; the wallet keeps its own
            // copy of the order and takes BrokerScrip of that value only.
            BrokerRequest::ObtainBrokerScrip(_) => Some(i128::from(
                pending
                    .ordered
                    .expect("the world's wallet keeps the amount it ordered")
                    .minor(),
            )),
            _ => Some(0),
        };
        check_wallet_answer(&mut store, pending, gain, |store| {
            wallet
                .handle_broker_response(
                    store,
                    pending.request_id,
                    &answer.response,
                    &answer.receipts,
                )
                .map(drop)
        });
    }
});
