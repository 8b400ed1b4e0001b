#![no_main]
//! The broker's response, as wallets and merchants take it in.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::BrokerResponse>(data);
});
