#![no_main]
//! The broker's answer on the wire: response and log receipts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::BrokerAnswer>(data);
});
