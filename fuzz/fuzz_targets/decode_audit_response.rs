#![no_main]
//! The broker's checkpoints and proofs, as auditors and peers take them in.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::msg::AuditResponse>(data);
});
