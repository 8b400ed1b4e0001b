#![no_main]
//! The sealed order of Obtain BrokerScrip: anyone can seal any bytes to the broker's key.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::BrokerScripOrder>(data);
});
