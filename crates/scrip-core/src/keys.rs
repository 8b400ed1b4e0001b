//! Key material of each role, derived from one 32-byte seed per role.
//!
//! A role persists only its seed (the node keeps it in an owner-only file);
//! every key and secret below is derived from it with BLAKE3's key derivation,
//! each under its own context string.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use scrip_proto::crypto::{
    derive_secret, CustomerMaster, HpkeSecretKey, SigningKey, StampingSecret,
};
use scrip_proto::msg::Licence;
use scrip_proto::{Pin, PublicKey, Secret32};

fn stamping_secret(master: &Secret32, series: u32) -> StampingSecret {
    StampingSecret(derive_secret(
        "scrip v1 stamping secret of a series",
        master,
        &series.to_be_bytes(),
    ))
}

/// The broker's identity, envelope key and scrip secrets.
#[derive(Debug)]
pub struct BrokerKeys {
    pub signing: SigningKey,
    pub hpke: HpkeSecretKey,
    stamping_master: Secret32,
    pub customer_master: CustomerMaster,
}

impl BrokerKeys {
    pub fn from_seed(seed: &Secret32) -> Self {
        BrokerKeys {
            signing: SigningKey::from_secret(&derive_secret(
                "scrip v1 broker signing key",
                seed,
                b"",
            )),
            hpke: HpkeSecretKey::from_secret(&derive_secret("scrip v1 broker hpke key", seed, b"")),
            stamping_master: derive_secret("scrip v1 broker stamping master", seed, b""),
            customer_master: CustomerMaster(derive_secret(
                "scrip v1 broker customer master",
                seed,
                b"",
            )),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.signing.public_key()
    }

    /// The BrokerScrip stamping secret of `series`.
    pub fn stamping_secret(&self, series: u32) -> StampingSecret {
        stamping_secret(&self.stamping_master, series)
    }
}

/// A merchant's identity and VendorScrip secrets.
#[derive(Debug)]
pub struct MerchantKeys {
    pub signing: SigningKey,
    stamping_master: Secret32,
    pub customer_master: CustomerMaster,
}

impl MerchantKeys {
    pub fn from_seed(seed: &Secret32) -> Self {
        MerchantKeys {
            signing: SigningKey::from_secret(&derive_secret(
                "scrip v1 merchant signing key",
                seed,
                b"",
            )),
            stamping_master: derive_secret("scrip v1 merchant stamping master", seed, b""),
            customer_master: CustomerMaster(derive_secret(
                "scrip v1 merchant customer master",
                seed,
                b"",
            )),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.signing.public_key()
    }

    /// The licence that lets the broker produce VendorScrip of `series`.
    pub fn licence(&self, series: u32) -> Licence {
        Licence {
            series,
            stamping_secret: stamping_secret(&self.stamping_master, series),
            customer_master: self.customer_master.clone(),
        }
    }
}

/// A wallet's account key (signs Obtain BrokerScrip) and reply key (opens customer secrets).
#[derive(Debug)]
pub struct WalletKeys {
    pub account: SigningKey,
    pub reply: HpkeSecretKey,
}

impl WalletKeys {
    pub fn from_seed(seed: &Secret32) -> Self {
        WalletKeys {
            account: SigningKey::from_secret(&derive_secret(
                "scrip v1 wallet account key",
                seed,
                b"",
            )),
            reply: HpkeSecretKey::from_secret(&derive_secret(
                "scrip v1 wallet reply key",
                seed,
                b"",
            )),
        }
    }
}

/// Argon2id cost of PIN hashes. The stored hash records its own parameters,
/// so changing these affects only new accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinHashing {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl PinHashing {
    /// OWASP's recommended minimum for Argon2id: 19 MiB, 2 iterations.
    pub const RECOMMENDED: PinHashing = PinHashing {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
    /// Cheap parameters so tests that open many accounts stay fast. Never for real accounts.
    pub const FAST_INSECURE: PinHashing = PinHashing {
        memory_kib: 64,
        iterations: 1,
    };

    fn argon2(&self) -> argon2::Argon2<'static> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, 1, None)
            .expect("valid Argon2 parameters");
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
    }

    /// The PHC string of an Argon2id hash of `pin` with a random salt.
    pub fn hash(&self, pin: &Pin, rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> String {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
        self.argon2()
            .hash_password(pin.expose().as_bytes(), &salt)
            .expect("Argon2id hashing of a short PIN cannot fail")
            .to_string()
    }

    /// The PHC string of an Argon2id hash that belongs to no account, with
    /// these parameters: checking a PIN against it costs what checking it
    /// against a new account's hash costs. The PIN and salt are fixed and
    /// public; what matches it does not matter, since it is never an answer.
    pub fn dummy_hash(&self) -> String {
        let salt = SaltString::encode_b64(b"scrip no account").expect("16 bytes is a valid salt");
        self.argon2()
            .hash_password(b"no account", &salt)
            .expect("Argon2id hashing of a short PIN cannot fail")
            .to_string()
    }
}

/// True if `pin` matches the stored PHC hash (constant-time inside argon2).
pub fn pin_matches(pin: &Pin, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => argon2::Argon2::default()
            .verify_password(pin.expose().as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pin_hashes_verify_only_the_right_pin() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let pin = Pin::new("482913").unwrap();
        let phc = PinHashing::FAST_INSECURE.hash(&pin, &mut rng);
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("482913"));
        assert!(pin_matches(&pin, &phc));
        assert!(!pin_matches(&Pin::new("482914").unwrap(), &phc));
        assert!(!pin_matches(&pin, "not a hash"));
    }

    #[test]
    fn the_dummy_hash_has_the_parameters_of_new_accounts_and_is_made_alike_each_time() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let account = PinHashing::RECOMMENDED.hash(&Pin::new("482913").unwrap(), &mut rng);
        let dummy = PinHashing::RECOMMENDED.dummy_hash();
        let params = |phc: &str| PasswordHash::new(phc).unwrap().params.to_string();
        assert_eq!(params(&dummy), params(&account));
        assert_eq!(dummy, PinHashing::RECOMMENDED.dummy_hash());
        assert_ne!(
            params(&PinHashing::FAST_INSECURE.dummy_hash()),
            params(&account)
        );
    }

    #[test]
    fn roles_derive_distinct_keys_from_distinct_seeds() {
        let a = BrokerKeys::from_seed(&Secret32::from_bytes([1; 32]));
        let b = BrokerKeys::from_seed(&Secret32::from_bytes([2; 32]));
        assert_ne!(a.public_key(), b.public_key());
        assert_ne!(a.stamping_secret(1), a.stamping_secret(2));
        let merchant = MerchantKeys::from_seed(&Secret32::from_bytes([1; 32]));
        assert_ne!(merchant.public_key(), a.public_key());
    }
}
