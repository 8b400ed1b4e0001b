#![no_main]
//! Checkpoint notes as they come from the network (an audit answer, every log
//! receipt), parsed before any signature is checked. Each input is also signed
//! as a note's text with the broker's key, so the checkpoint parser behind the
//! signature check is fuzzed too; a checkpoint that verifies signs again to the same one.

use std::sync::LazyLock;

use scrip_core::log::{origin, sign_checkpoint, verify_checkpoint};
use scrip_proto::crypto::SigningKey;
use scrip_proto::Timestamp;

static BROKER: LazyLock<SigningKey> =
    LazyLock::new(|| scrip_fuzz::World::build().sim.broker.signing_key().clone());

/// Signs notes as the broker does (`scrip_core::log`), for any text.
struct NoteSigner(String, &'static SigningKey);

impl signed_note::Signer for NoteSigner {
    fn name(&self) -> &str {
        &self.0
    }
    fn key_id(&self) -> u32 {
        let mut key = vec![0x01];
        key.extend_from_slice(self.1.public_key().as_bytes());
        signed_note::key_id(&self.0, &key)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.1.sign_note(msg).0.to_vec())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key: &'static SigningKey = &BROKER;
    let broker = key.public_key();
    let _ = verify_checkpoint(&broker, data);
    let Ok(mut note) = signed_note::Note::new(data, &[]) else {
        return;
    };
    if note.add_sigs(&[&NoteSigner(origin(&broker), key)]).is_err() {
        return;
    }
    if let Ok(checkpoint) = verify_checkpoint(&broker, &note.to_bytes()) {
        let again = sign_checkpoint(key, checkpoint.size, checkpoint.root, Timestamp(0))
            .expect("a verified checkpoint signs again");
        let again =
            verify_checkpoint(&broker, &again).expect("a checkpoint the broker signs verifies");
        assert_eq!((again.size, again.root), (checkpoint.size, checkpoint.root));
    }
});
