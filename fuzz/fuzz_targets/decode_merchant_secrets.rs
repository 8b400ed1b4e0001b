#![no_main]
//! The sealed secrets of a merchant registration: anyone can seal any bytes to the broker's key.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::MerchantSecrets>(data);
});
