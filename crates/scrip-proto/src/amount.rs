//! Money: integer amounts of minor units and ISO-style currency codes.
//!
//! Amounts are never floats. One major unit is [`Amount::SCALE`] minor units
//! (six decimal places), so a thousandth of a cent is expressible.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};

/// A non-negative amount of money in minor units.
///
/// Invariant: the value is at most [`Amount::MAX`] (`i64::MAX`), so every
/// amount also fits a signed ledger balance and conversions cannot fail.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize)]
pub struct Amount(u64);

impl Amount {
    /// Minor units per major unit: six decimal places.
    pub const SCALE: u64 = 1_000_000;
    /// Decimal places in the text form.
    pub const DECIMALS: usize = 6;
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(i64::MAX as u64);

    /// An amount of `minor` minor units, or `None` above [`Amount::MAX`].
    pub const fn from_minor(minor: u64) -> Option<Amount> {
        if minor <= Self::MAX.0 {
            Some(Amount(minor))
        } else {
            None
        }
    }

    /// An amount of whole major units, or `None` on overflow.
    pub const fn from_major(major: u64) -> Option<Amount> {
        match major.checked_mul(Self::SCALE) {
            Some(minor) => Self::from_minor(minor),
            None => None,
        }
    }

    pub const fn minor(self) -> u64 {
        self.0
    }

    /// The amount as a signed ledger delta; always exact by the type's invariant.
    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).and_then(Amount::from_minor)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

/// The amount as a signed 64-bit integer, as databases keep it: exact by the
/// type's invariant.
impl From<Amount> for i64 {
    fn from(amount: Amount) -> i64 {
        amount.as_i64()
    }
}

/// An amount from a signed 64-bit integer: fails below zero. Every other
/// value is at most [`Amount::MAX`].
impl TryFrom<i64> for Amount {
    type Error = std::num::TryFromIntError;
    fn try_from(minor: i64) -> Result<Amount, Self::Error> {
        u64::try_from(minor).map(Amount)
    }
}

impl BorshDeserialize for Amount {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let minor = u64::deserialize_reader(reader)?;
        Amount::from_minor(minor).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "amount above the maximum")
        })
    }
}

/// Why a decimal amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAmountError {
    #[error("amount is empty: write it as a decimal such as 12.50")]
    Empty,
    #[error("amount {0:?} is not a decimal number: write it as digits with an optional point, such as 0.002")]
    NotDecimal(String),
    #[error("amount {0:?} has more than 6 decimal places; the smallest unit is 0.000001")]
    TooPrecise(String),
    #[error("amount {0:?} is too large")]
    TooLarge(String),
}

impl FromStr for Amount {
    type Err = ParseAmountError;

    /// Reads `"12"`, `"12.5"`, `"0.002"`; refuses signs, exponents, spaces
    /// and more than six decimal places rather than rounding.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(ParseAmountError::Empty);
        }
        let not_decimal = || ParseAmountError::NotDecimal(text.to_owned());
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(not_decimal());
        }
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole)
            || !all_digits(fraction)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(not_decimal());
        }
        if fraction.len() > Self::DECIMALS {
            return Err(ParseAmountError::TooPrecise(text.to_owned()));
        }
        let too_large = || ParseAmountError::TooLarge(text.to_owned());
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut fraction_minor: u64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| not_decimal())?
        };
        for _ in fraction.len()..Self::DECIMALS {
            fraction_minor *= 10;
        }
        whole
            .checked_mul(Self::SCALE)
            .and_then(|w| w.checked_add(fraction_minor))
            .and_then(Amount::from_minor)
            .ok_or_else(too_large)
    }
}

impl fmt::Display for Amount {
    /// At least two decimal places, more only when needed: `12.50`, `0.002`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::SCALE;
        let fraction = format!("{:06}", self.0 % Self::SCALE);
        let trimmed = fraction.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &fraction[..2]
        } else {
            trimmed
        };
        write!(f, "{whole}.{shown}")
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

/// A three-letter upper-case currency code such as `EUR`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Valid by construction: only upper-case ASCII letters get in.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl BorshDeserialize for Currency {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let code = <[u8; 3]>::deserialize_reader(reader)?;
        if code.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency(code))
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "currency is not three upper-case letters",
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency {0:?} is not a three-letter upper-case code such as EUR")]
pub struct ParseCurrencyError(pub String);

impl FromStr for Currency {
    type Err = ParseCurrencyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(ParseCurrencyError(text.to_owned()))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_displays_decimals() {
        let cases = [
            ("12", 12_000_000, "12.00"),
            ("12.5", 12_500_000, "12.50"),
            ("0.002", 2_000, "0.002"),
            (".5", 500_000, "0.50"),
            ("0.000001", 1, "0.000001"),
            ("0", 0, "0.00"),
        ];
        for (text, minor, shown) in cases {
            let amount: Amount = text.parse().unwrap();
            assert_eq!(amount.minor(), minor, "{text}");
            assert_eq!(amount.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_exact_decimal() {
        assert_eq!("".parse::<Amount>(), Err(ParseAmountError::Empty));
        for bad in ["-1", "+1", "1e3", "1.", ".", "1,5", " 1", "1.2.3", "abc"] {
            assert!(
                matches!(bad.parse::<Amount>(), Err(ParseAmountError::NotDecimal(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "0.0000001".parse::<Amount>(),
            Err(ParseAmountError::TooPrecise(_))
        ));
        assert!(matches!(
            "99999999999999999999".parse::<Amount>(),
            Err(ParseAmountError::TooLarge(_))
        ));
        assert!(matches!(
            "9223372036854.775808".parse::<Amount>(),
            Err(ParseAmountError::TooLarge(_))
        ));
        assert_eq!("9223372036854.775807".parse::<Amount>(), Ok(Amount::MAX));
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(
            Amount::MAX.checked_add(Amount::from_minor(1).unwrap()),
            None
        );
        assert_eq!(
            Amount::ZERO.checked_sub(Amount::from_minor(1).unwrap()),
            None
        );
        assert_eq!(Amount::from_minor(u64::MAX), None);
    }

    #[test]
    fn decoding_refuses_amounts_above_max() {
        let bytes = borsh::to_vec(&u64::MAX).unwrap();
        assert!(borsh::from_slice::<Amount>(&bytes).is_err());
    }

    #[test]
    fn currency_codes() {
        assert_eq!("EUR".parse::<Currency>().unwrap().to_string(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
        assert!(borsh::from_slice::<Currency>(b"eur").is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(minor in 0..=i64::MAX as u64) {
            let amount = Amount::from_minor(minor).unwrap();
            prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
        }
    }
}
