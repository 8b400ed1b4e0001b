#![no_main]
//! A merchant's answer, as a wallet takes it in.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::MerchantResponse>(data);
});
