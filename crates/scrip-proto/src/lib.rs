//! scrip-proto: the protocol types of scrip, their canonical encoding, amounts and crypto.
//!
//! This crate is the vocabulary every other crate speaks: [`Amount`] and
//! [`Currency`], the [`Scrip`] body and stamp, the messages of the three
//! transaction steps ([`msg`]), the [`Refusal`]s, and the primitives that
//! stamp, prove, sign and seal them ([`crypto`]).
//!
//! # Design
//!
//! scrip-proto does no I/O and keeps no state. It does not know about the
//! broker's ledger, storage, libp2p or the clock: time is passed in as a
//! [`Timestamp`], randomness as a `CryptoRng`.
//!
//! # Untrusted input
//!
//! [`encoding::decode`] is the only way bytes become messages. It refuses input
//! above [`encoding::MAX_MESSAGE_LEN`], trailing bytes, truncated input and any
//! non-canonical form, and never panics.
//!
//! # Example: a merchant validating VendorScrip
//!
//! ```
//! use scrip_proto::{crypto::*, msg::*, *};
//! # let secret = Secret32::from_bytes([7; 32]);
//! let stamping = StampingSecret(secret.clone());
//! let master = CustomerMaster(secret);
//! let body = ScripBody {
//!     kind: ScripKind::Vendor,
//!     issuer: PublicKey([1; 32]),
//!     id: ScripId { series: 1, serial: [2; 16] },
//!     value: "0.01".parse().unwrap(),
//!     currency: "EUR".parse().unwrap(),
//!     cust_id: CustId([3; 16]),
//!     expiry: Timestamp(2_000_000_000),
//! };
//! let scrip = Scrip::mint(body, &stamping);
//! let customer_secret = master.customer_secret(&scrip.body.cust_id);
//! let buy = Proved::prove(
//!     Buy { request_id: RequestId([4; 16]), scrip, purchase: Purchase::Item("tea".into()), price: "0.002".parse().unwrap() },
//!     &customer_secret,
//! );
//! // The merchant: one keyed hash for the stamp, one for the proof.
//! assert!(buy.body.scrip.stamp_matches(&stamping));
//! assert!(buy.proof_matches(&master.customer_secret(&buy.body.scrip.body.cust_id)));
//! ```

pub mod amount;
pub mod crypto;
pub mod encoding;
pub mod ids;
pub mod msg;
pub mod refusal;
pub mod scrip;
pub mod secret;

pub use amount::{Amount, Currency, ParseAmountError};
pub use encoding::{decode, encode, DecodeError};
pub use ids::{
    AccountNumber, CustId, HpkePublicKey, MerchantId, PublicKey, RequestId, ScripId, Timestamp,
};
pub use refusal::Refusal;
pub use scrip::{Scrip, ScripBody, ScripKind};
pub use secret::{Pin, Secret32};
