//! Canonical encoding: borsh, with a size limit and no trailing bytes.
//!
//! Borsh has exactly one encoding per value (fixed-width little-endian
//! integers, length-prefixed sequences, no maps), so the bytes that are signed,
//! stamped or proved are the bytes that travel. Decoding refuses trailing
//! bytes, out-of-range enum tags, non-0/1 booleans and invalid UTF-8.

use borsh::{BorshDeserialize, BorshSerialize};

/// The largest message any party accepts. Catalog items with large content
/// are the biggest messages; everything else is well under a kilobyte.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;

/// Why bytes could not be read as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, BorshSerialize, BorshDeserialize)]
pub enum DecodeError {
    #[error("message of {len} bytes is larger than the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// The canonical bytes of `value`.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    borsh::to_vec(value).expect("borsh serialisation into a Vec is infallible")
}

/// Reads exactly one `T` from `bytes`.
///
/// # Errors
/// [`DecodeError::TooLarge`] above [`MAX_MESSAGE_LEN`]; [`DecodeError::Malformed`]
/// for truncated input, trailing bytes or any non-canonical form.
pub fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge {
            len: bytes.len() as u64,
            limit: MAX_MESSAGE_LEN as u64,
        });
    }
    // from_slice refuses trailing bytes ("Not all bytes read").
    borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, BorshSerialize, BorshDeserialize)]
    struct Sample {
        flag: bool,
        name: String,
        values: Vec<u32>,
    }

    #[test]
    fn round_trips_and_refuses_trailing_or_truncated_bytes() {
        let sample = Sample {
            flag: true,
            name: "tea".into(),
            values: vec![1, 2],
        };
        let bytes = encode(&sample);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode::<Sample>(&longer),
            Err(DecodeError::Malformed(_))
        ));
        for cut in 0..bytes.len() {
            assert!(
                decode::<Sample>(&bytes[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
    }

    #[test]
    fn refuses_non_canonical_bool_and_oversized_input() {
        let mut bytes = encode(&Sample {
            flag: true,
            name: String::new(),
            values: vec![],
        });
        bytes[0] = 2;
        assert!(decode::<Sample>(&bytes).is_err());
        let huge = vec![0u8; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            decode::<Sample>(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate_or_panic() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
