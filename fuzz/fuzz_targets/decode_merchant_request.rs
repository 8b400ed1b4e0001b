#![no_main]
//! What a merchant decodes from any customer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::MerchantRequest>(data);
});
