#![no_main]
//! Questions anyone may ask about the broker's log.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::AuditRequest>(data);
});
