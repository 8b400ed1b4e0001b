//! Identifiers and time: request ids, scrip ids, pseudonyms, keys, accounts.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};

/// Seconds since the Unix epoch. The core never reads the clock: time is an argument.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus_seconds(self, seconds: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Converts a `u64` newtype to and from a signed 64-bit integer, as databases
/// keep it: a value past `i64::MAX` does not fit, and a negative integer is
/// no value of the type.
macro_rules! i64_conversions {
    ($name:ident) => {
        impl TryFrom<$name> for i64 {
            type Error = std::num::TryFromIntError;
            fn try_from(value: $name) -> Result<i64, Self::Error> {
                i64::try_from(value.0)
            }
        }

        impl TryFrom<i64> for $name {
            type Error = std::num::TryFromIntError;
            fn try_from(value: i64) -> Result<$name, Self::Error> {
                u64::try_from(value).map($name)
            }
        }
    };
}

i64_conversions!(Timestamp);

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub fn random(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
                let mut bytes = [0u8; $len];
                rng.fill_bytes(&mut bytes);
                $name(bytes)
            }
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseIdError {
                    what: stringify!($name),
                    expected_hex_chars: 2 * $len,
                })?;
                Ok($name(bytes))
            }
        }
    };
}

hex_id!(
    /// Chosen by the client for every request; a retry reuses it so value never moves twice.
    RequestId, 16
);
hex_id!(
    /// The random pseudonym in a scrip body. Never the customer's identity.
    CustId, 16
);
hex_id!(
    /// An Ed25519 public key: the broker's identity, a merchant's id, a wallet's account key.
    PublicKey, 32
);
hex_id!(
    /// An X25519 public key that HPKE envelopes are sealed to.
    HpkePublicKey, 32
);

/// A merchant is known by its Ed25519 public key; VendorScrip names it as issuer.
pub type MerchantId = PublicKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {expected_hex_chars} hexadecimal characters")]
pub struct ParseIdError {
    pub what: &'static str,
    pub expected_hex_chars: usize,
}

/// A scrip's unique id. The series selects the issuer's stamping secret, so
/// secrets can be rotated and expired series pruned from the spent sets.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct ScripId {
    pub series: u32,
    pub serial: [u8; 16],
}

impl ScripId {
    pub fn random(series: u32, rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut serial = [0u8; 16];
        rng.fill_bytes(&mut serial);
        ScripId { series, serial }
    }

    /// The 20 bytes stored in spent sets: series (big-endian, so ids sort by series) then serial.
    pub fn to_key(&self) -> [u8; 20] {
        let mut key = [0u8; 20];
        key[..4].copy_from_slice(&self.series.to_be_bytes());
        key[4..].copy_from_slice(&self.serial);
        key
    }

    pub fn from_key(key: &[u8]) -> Option<ScripId> {
        let key: &[u8; 20] = key.try_into().ok()?;
        let series = u32::from_be_bytes(key[..4].try_into().ok()?);
        let serial = key[4..].try_into().ok()?;
        Some(ScripId { series, serial })
    }
}

impl fmt::Display for ScripId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.series, hex::encode(self.serial))
    }
}

impl fmt::Debug for ScripId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScripId({self})")
    }
}

/// A customer account at the broker: twelve decimal digits, chosen at random by the broker.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct AccountNumber(pub u64);

impl AccountNumber {
    pub const MIN: u64 = 100_000_000_000;
    pub const MAX: u64 = 999_999_999_999;

    pub fn random(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        use rand::Rng;
        AccountNumber(rng.gen_range(Self::MIN..=Self::MAX))
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// No number `AccountNumber::random` gives is past `i64::MAX`. Like the tuple
// constructor, the conversion from `i64` does not check for twelve digits.
i64_conversions!(AccountNumber);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an account number: account numbers are twelve digits from 100000000000 to 999999999999")]
pub struct ParseAccountError(pub String);

impl FromStr for AccountNumber {
    type Err = ParseAccountError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.parse::<u64>() {
            Ok(n) if (Self::MIN..=Self::MAX).contains(&n) && text.len() == 12 => {
                Ok(AccountNumber(n))
            }
            _ => Err(ParseAccountError(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = RequestId([7; 16]);
        assert_eq!(id.to_string().parse::<RequestId>().unwrap(), id);
        assert!("xyz".parse::<RequestId>().is_err());
        let scrip = ScripId {
            series: 3,
            serial: [9; 16],
        };
        assert_eq!(ScripId::from_key(&scrip.to_key()), Some(scrip));
        assert_eq!(
            "123456789012".parse::<AccountNumber>().unwrap(),
            AccountNumber(123_456_789_012)
        );
        assert!("12345".parse::<AccountNumber>().is_err());
    }
}
