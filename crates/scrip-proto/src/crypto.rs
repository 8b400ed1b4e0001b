//! The cryptography of scrip: keyed-BLAKE3 stamps and proofs, Ed25519
//! signatures, HPKE envelopes (RFC 9180), and key derivation from seeds.
//!
//! Every hash, signature and envelope is domain-separated by a label that
//! names the message type, so bytes valid in one place are useless in another.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::Signer;
use hpke::{Deserializable, Kem as _, Serializable};
use zeroize::Zeroizing;

use crate::encoding::encode;
use crate::ids::{CustId, HpkePublicKey, PublicKey};
use crate::secret::Secret32;

type HpkeKem = hpke::kem::X25519HkdfSha256;
type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// A message type that can be signed or proved. `DOMAIN` is its label.
pub trait Labelled: BorshSerialize {
    const DOMAIN: &'static str;
}

/// The exact bytes a signature, stamp or proof covers: label, a zero byte, canonical body.
pub fn labelled_bytes<T: Labelled>(body: &T) -> Vec<u8> {
    // Room for a scrip body (about 90 bytes) or a Buy item request (about
    // 190) without growing: each spend labels several of them.
    let mut bytes = Vec::with_capacity(256 + T::DOMAIN.len());
    bytes.extend_from_slice(T::DOMAIN.as_bytes());
    bytes.push(0);
    body.serialize(&mut bytes)
        .expect("writing into a Vec is infallible");
    bytes
}

/// A 32-byte keyed BLAKE3 value: a stamp, a proof or a digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Mac(pub [u8; 32]);

impl Mac {
    fn keyed(key: &Secret32, bytes: &[u8]) -> Mac {
        Mac(*blake3::keyed_hash(key.expose(), bytes).as_bytes())
    }

    /// Constant-time comparison, so a forger learns nothing from timing.
    pub fn matches(&self, other: &Mac) -> bool {
        blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({}…)", hex::encode(&self.0[..6]))
    }
}

/// The hash of a value's canonical bytes: what idempotency compares.
pub fn digest<T: BorshSerialize>(value: &T) -> [u8; 32] {
    // Serialised first and hashed in one call: fed field by field, the
    // hasher's per-call work cost more than the hashing of a request.
    let mut bytes = Vec::with_capacity(256);
    value
        .serialize(&mut bytes)
        .expect("writing into a Vec is infallible");
    *blake3::hash(&bytes).as_bytes()
}

/// Derives a sub-secret from a root secret; `context` names its use.
pub fn derive_secret(context: &'static str, root: &Secret32, extra: &[u8]) -> Secret32 {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    hasher.update(root.expose());
    hasher.update(extra);
    Secret32::from_bytes(*hasher.finalize().as_bytes())
}

/// The keyed hash that stamps scrip bodies of one issuer series.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StampingSecret(pub Secret32);

impl StampingSecret {
    /// Stamps the labelled canonical bytes of `body`.
    pub fn stamp<T: Labelled>(&self, body: &T) -> Mac {
        Mac::keyed(&self.0, &labelled_bytes(body))
    }
}

/// The issuer's root of customer secrets: `customer_secret = H(master, cust_id)`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CustomerMaster(pub Secret32);

impl CustomerMaster {
    pub fn customer_secret(&self, cust_id: &CustId) -> CustomerSecret {
        let mut bytes = Vec::with_capacity(48);
        bytes.extend_from_slice(b"scrip/v1/customer-secret\0");
        bytes.extend_from_slice(cust_id.as_bytes());
        CustomerSecret(Secret32::from_bytes(Mac::keyed(&self.0, &bytes).0))
    }
}

/// Proves ownership of one scrip: only the holder can make its spend proofs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CustomerSecret(pub Secret32);

impl CustomerSecret {
    /// `proof = H(customer_secret, labelled request body)`; the body contains the scrip.
    pub fn prove<T: Labelled>(&self, body: &T) -> Mac {
        Mac::keyed(&self.0, &labelled_bytes(body))
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

/// An Ed25519 signing key. Zeroized on drop (ed25519-dalek's `zeroize` feature); never printed.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    pub fn from_secret(secret: &Secret32) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(secret.expose()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The 32-byte Ed25519 secret, to give the same identity to libp2p.
    pub fn secret(&self) -> Secret32 {
        Secret32::from_bytes(self.0.to_bytes())
    }

    /// Signs the text of a C2SP signed note (a log checkpoint). Note texts
    /// begin with their origin line, `scrip-log/…`, which no label begins
    /// with, so a note signature is never valid for a labelled message.
    pub fn sign_note(&self, text: &[u8]) -> Signature {
        Signature(self.0.sign(text).to_bytes())
    }

    pub fn sign<T: Labelled>(&self, body: &T) -> Signature {
        Signature(self.0.sign(&labelled_bytes(body)).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

impl PublicKey {
    /// Verifies a signature over `body`'s labelled bytes (strict: no malleable or small-order keys).
    pub fn verify<T: Labelled>(&self, body: &T, signature: &Signature) -> Result<(), BadSignature> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&labelled_bytes(body), &signature)
            .map_err(|_| BadSignature)
    }

    /// Verifies many signatures at once (Ed25519 batch verification), all or nothing.
    pub fn verify_batch(items: &[(Vec<u8>, Signature, PublicKey)]) -> Result<(), BadSignature> {
        let mut keys = Vec::with_capacity(items.len());
        for (_, _, key) in items {
            keys.push(ed25519_dalek::VerifyingKey::from_bytes(&key.0).map_err(|_| BadSignature)?);
        }
        let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| m.as_slice()).collect();
        let signatures: Vec<_> = items
            .iter()
            .map(|(_, s, _)| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).map_err(|_| BadSignature)
    }
}

/// A body and the signature of its labelled bytes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signed<T> {
    pub body: T,
    pub signature: Signature,
}

impl<T: Labelled> Signed<T> {
    pub fn sign(body: T, key: &SigningKey) -> Self {
        let signature = key.sign(&body);
        Signed { body, signature }
    }

    /// The body, if `key` signed it.
    pub fn verify(&self, key: &PublicKey) -> Result<&T, BadSignature> {
        key.verify(&self.body, &self.signature)?;
        Ok(&self.body)
    }
}

/// A body and its proof of ownership: a keyed hash under the customer secret
/// of the scrip the body spends.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proved<T> {
    pub body: T,
    pub proof: Mac,
}

impl<T: Labelled> Proved<T> {
    pub fn prove(body: T, secret: &CustomerSecret) -> Self {
        let proof = secret.prove(&body);
        Proved { body, proof }
    }

    /// True if `secret` made the proof.
    pub fn proof_matches(&self, secret: &CustomerSecret) -> bool {
        secret.prove(&self.body).matches(&self.proof)
    }
}

/// An HPKE envelope (RFC 9180, base mode, X25519-HKDF-SHA256, HKDF-SHA256, ChaCha20-Poly1305).
#[derive(Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Sealed {
    pub encapsulated_key: [u8; 32],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

/// The private half of an HPKE key pair.
pub struct HpkeSecretKey {
    private: <HpkeKem as hpke::Kem>::PrivateKey,
    public: HpkePublicKey,
}

impl HpkeSecretKey {
    /// Derives the key pair deterministically from a secret (RFC 9180 DeriveKeyPair).
    pub fn from_secret(secret: &Secret32) -> Self {
        let (private, public) = HpkeKem::derive_keypair(secret.expose());
        let public = HpkePublicKey(public.to_bytes().into());
        HpkeSecretKey { private, public }
    }

    pub fn public_key(&self) -> HpkePublicKey {
        self.public
    }

    /// Opens an envelope sealed to this key for `purpose` with associated data `aad`.
    pub fn open(
        &self,
        purpose: &'static str,
        aad: &[u8],
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, CannotOpen> {
        let encapsulated =
            <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(&sealed.encapsulated_key)
                .map_err(|_| CannotOpen)?;
        hpke::single_shot_open::<HpkeAead, HpkeKdf, HpkeKem>(
            &hpke::OpModeR::Base,
            &self.private,
            &encapsulated,
            purpose.as_bytes(),
            &sealed.ciphertext,
            aad,
        )
        .map(Zeroizing::new)
        .map_err(|_| CannotOpen)
    }
}

impl fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HpkeSecretKey(public {})", self.public)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("envelope cannot be opened: wrong recipient, purpose or associated data, or tampered")]
pub struct CannotOpen;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a valid X25519 public key")]
pub struct BadHpkeKey(pub HpkePublicKey);

impl HpkePublicKey {
    /// Seals `plaintext` so only the holder of this key can open it, for `purpose`, bound to `aad`.
    pub fn seal(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        purpose: &'static str,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Sealed, BadHpkeKey> {
        let recipient = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(&self.0)
            .map_err(|_| BadHpkeKey(*self))?;
        let (encapsulated, ciphertext) = hpke::single_shot_seal::<HpkeAead, HpkeKdf, HpkeKem, _>(
            &hpke::OpModeS::Base,
            &recipient,
            purpose.as_bytes(),
            plaintext,
            aad,
            rng,
        )
        .map_err(|_| BadHpkeKey(*self))?;
        Ok(Sealed {
            encapsulated_key: encapsulated.to_bytes().into(),
            ciphertext,
        })
    }

    /// Seals the canonical bytes of a value.
    pub fn seal_value<T: BorshSerialize>(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        purpose: &'static str,
        aad: &[u8],
        value: &T,
    ) -> Result<Sealed, BadHpkeKey> {
        let plaintext = Zeroizing::new(encode(value));
        self.seal(rng, purpose, aad, &plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[derive(BorshSerialize)]
    struct Note(u32);
    impl Labelled for Note {
        const DOMAIN: &'static str = "scrip/test/note";
    }
    #[derive(BorshSerialize)]
    struct OtherNote(u32);
    impl Labelled for OtherNote {
        const DOMAIN: &'static str = "scrip/test/other-note";
    }

    #[test]
    fn signatures_are_domain_separated() {
        let key = SigningKey::from_secret(&Secret32::from_bytes([1; 32]));
        let signature = key.sign(&Note(5));
        assert!(key.public_key().verify(&Note(5), &signature).is_ok());
        assert!(key.public_key().verify(&Note(6), &signature).is_err());
        assert!(key.public_key().verify(&OtherNote(5), &signature).is_err());
        let other = SigningKey::from_secret(&Secret32::from_bytes([2; 32]));
        assert!(other.public_key().verify(&Note(5), &signature).is_err());
    }

    #[test]
    fn batch_verification_refuses_one_bad_signature() {
        let key = SigningKey::from_secret(&Secret32::from_bytes([1; 32]));
        let mut items: Vec<_> = (0..4)
            .map(|i| {
                (
                    labelled_bytes(&Note(i)),
                    key.sign(&Note(i)),
                    key.public_key(),
                )
            })
            .collect();
        assert!(PublicKey::verify_batch(&items).is_ok());
        items[2].1 = key.sign(&Note(99));
        assert!(PublicKey::verify_batch(&items).is_err());
    }

    #[test]
    fn stamps_and_proofs_depend_on_key_and_body() {
        let stamping = StampingSecret(Secret32::from_bytes([3; 32]));
        assert!(stamping.stamp(&Note(1)).matches(&stamping.stamp(&Note(1))));
        assert!(!stamping.stamp(&Note(1)).matches(&stamping.stamp(&Note(2))));
        let master = CustomerMaster(Secret32::from_bytes([4; 32]));
        let a = master.customer_secret(&CustId([1; 16]));
        let b = master.customer_secret(&CustId([2; 16]));
        let proved = Proved::prove(Note(7), &a);
        assert!(proved.proof_matches(&a));
        assert!(!proved.proof_matches(&b));
    }

    #[test]
    fn envelopes_open_only_with_the_right_key_purpose_and_aad() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let recipient = HpkeSecretKey::from_secret(&Secret32::from_bytes([5; 32]));
        let sealed = recipient
            .public_key()
            .seal(&mut rng, "scrip/test/purpose", b"aad", b"pin 1234")
            .unwrap();
        assert_eq!(
            &recipient
                .open("scrip/test/purpose", b"aad", &sealed)
                .unwrap()[..],
            b"pin 1234"
        );
        assert_eq!(
            recipient
                .open("scrip/test/other", b"aad", &sealed)
                .unwrap_err(),
            CannotOpen
        );
        assert_eq!(
            recipient
                .open("scrip/test/purpose", b"dda", &sealed)
                .unwrap_err(),
            CannotOpen
        );
        let stranger = HpkeSecretKey::from_secret(&Secret32::from_bytes([6; 32]));
        assert_eq!(
            stranger
                .open("scrip/test/purpose", b"aad", &sealed)
                .unwrap_err(),
            CannotOpen
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            recipient
                .open("scrip/test/purpose", b"aad", &tampered)
                .unwrap_err(),
            CannotOpen
        );
    }
}
