#![no_main]
//! The wallet taking in a merchant's answer to its pending buy
//! (`Wallet::handle_merchant_response`): no panic, and the rules of
//! `scrip_fuzz::check_wallet_answer`: a delivery costs exactly the price.

use std::sync::{LazyLock, Mutex};

use scrip_fuzz::{check_wallet_answer, round_trip, World};
use scrip_proto::decode;
use scrip_proto::msg::{MerchantRequest, MerchantResponse};

static WORLD: LazyLock<Mutex<World>> = LazyLock::new(|| Mutex::new(World::build()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(response) = round_trip::<MerchantResponse>(data) else {
        return;
    };
    let world = WORLD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pending = &world.unsent.buy;
    let Ok(MerchantRequest::Buy(buy)) = decode(&pending.request) else {
        unreachable!("the world's pending buy is a buy");
    };
    let mut store = world.wallet_store();
    let price = i128::from(buy.body.price.minor());
    check_wallet_answer(&mut store, pending, Some(-price), |store| {
        world
            .wallet()
            .handle_merchant_response(store, pending.request_id, &response)
            .map(drop)
    });
});
