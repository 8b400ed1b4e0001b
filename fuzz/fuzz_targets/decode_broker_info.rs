#![no_main]
//! The broker's info, the first thing every peer fetches.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::BrokerInfo>(data);
});
