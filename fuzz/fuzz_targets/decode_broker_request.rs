#![no_main]
//! What the broker decodes from every peer on its step protocols.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::BrokerRequest>(data);
});
