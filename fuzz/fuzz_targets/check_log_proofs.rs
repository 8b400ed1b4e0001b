#![no_main]
//! The proof checks a peer runs on the broker's audit answers, with any
//! sizes, hashes and proof: they never panic, and never accept a leaf
//! outside the tree or an "old" tree larger than the new one.

use scrip_core::log::{check_consistency, check_inclusion};

/// (tree size, root, leaf index or old size, leaf hash or old root, proof).
type Input = (u64, [u8; 32], u64, [u8; 32], Vec<[u8; 32]>);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((size, root, index, hash, proof)) = scrip_fuzz::round_trip::<Input>(data) else {
        return;
    };
    if check_inclusion(&proof, size, root, index, hash) {
        assert!(index < size, "leaf {index} included in a tree of {size}");
    }
    if check_consistency(&proof, size, root, index, hash) {
        assert!(
            index <= size,
            "a tree of {index} is a prefix of one of {size}"
        );
    }
});
