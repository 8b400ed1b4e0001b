#![no_main]
//! The broker's list of merchants, as customers fetch it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::MerchantDirectory>(data);
});
