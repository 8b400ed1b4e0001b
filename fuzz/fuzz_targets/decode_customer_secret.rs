#![no_main]
//! A sealed customer secret, as a wallet opens it from an issuing answer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scrip_fuzz::round_trip::<scrip_proto::crypto::CustomerSecret>(data);
});
