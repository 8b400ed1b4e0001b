//! Secrets: zeroized on drop, compared in constant time, never printed.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 32-byte secret: a stamping secret, a customer secret, a master secret.
///
/// `Debug` prints `Secret32(..)`; there is no `Display`. Equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop, BorshSerialize, BorshDeserialize)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Secret32(bytes)
    }

    pub fn random(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Secret32(bytes)
    }

    /// The raw bytes, for keying a hash. Do not copy them anywhere that outlives `self`.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Secret32 {}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// An account PIN. Travels only sealed to the broker; stored there only as an Argon2id hash.
#[derive(Clone, Zeroize, ZeroizeOnDrop, BorshSerialize, BorshDeserialize)]
pub struct Pin(String);

impl Pin {
    /// PINs are 4 to 64 printable ASCII characters.
    pub fn new(text: impl Into<String>) -> Result<Pin, InvalidPin> {
        let text = text.into();
        if (4..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Pin(text))
        } else {
            // `text` is dropped here; a String does not zeroize, so take it apart ourselves.
            let mut text = text;
            text.zeroize();
            Err(InvalidPin)
        }
    }

    /// The PIN's text: shown to the operator once when an account is opened.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a PIN is 4 to 64 printable ASCII characters without spaces")]
pub struct InvalidPin;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret32::from_bytes([0xAB; 32]);
        let pin = Pin::new("739201").unwrap();
        let shown = format!("{secret:?} {pin:?}");
        assert!(!shown.contains("ab") && !shown.contains("AB") && !shown.contains("171"));
        assert!(!shown.contains("739201"));
    }

    #[test]
    fn pins_are_validated() {
        assert!(Pin::new("12").is_err());
        assert!(Pin::new("12 34").is_err());
        assert!(Pin::new("123456").is_ok());
    }
}
