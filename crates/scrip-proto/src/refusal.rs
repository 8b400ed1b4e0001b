//! Refusals: every way a party says no, typed, with a stable code.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::amount::{Amount, Currency};
use crate::encoding::DecodeError;
use crate::ids::{AccountNumber, PublicKey, RequestId, ScripId, Timestamp};
use crate::scrip::ScripKind;

/// Why a request was refused. Travels on the wire as is.
///
/// A refusal is *definitive* (see [`Refusal::definitive`]) when the refusing
/// party surely changed nothing: the wallet keeps its scrip as it was. Only
/// [`Refusal::Unavailable`] is not: the outcome is unknown and the client
/// retries with the same request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, BorshSerialize, BorshDeserialize)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the request could not be read ({0}); it was not sent by a compatible scrip version or was damaged in transit")]
    Malformed(DecodeError),
    #[error("scrip {scrip} does not carry its issuer's stamp: it is forged, or its value, expiry or another field was altered")]
    ForgedStamp { scrip: ScripId },
    #[error("scrip {scrip} is {found}, but this step takes {expected}")]
    WrongKind {
        scrip: ScripId,
        expected: ScripKind,
        found: ScripKind,
    },
    #[error("scrip {scrip} was issued by {found}, not by {expected}: VendorScrip is valid only at its own merchant")]
    WrongIssuer {
        scrip: ScripId,
        expected: PublicKey,
        found: PublicKey,
    },
    #[error("scrip {scrip} names a stamping series this issuer does not have")]
    UnknownSeries { scrip: ScripId },
    #[error("scrip is in {found}, but this party deals in {expected}")]
    WrongCurrency { expected: Currency, found: Currency },
    #[error("scrip {scrip} expired at {expiry} (now {now}); renew scrip before it expires")]
    Expired {
        scrip: ScripId,
        expiry: Timestamp,
        now: Timestamp,
    },
    #[error("scrip {scrip} has already been spent (double spending)")]
    DoubleSpend { scrip: ScripId },
    #[error("scrip is worth {value}, less than the {needed} needed; use scrip of higher value")]
    InsufficientValue { value: Amount, needed: Amount },
    #[error("the proof for scrip {scrip} was not made with its customer secret: only the owner of scrip can spend it")]
    NotOwner { scrip: ScripId },
    #[error("the signature on the {what} does not verify")]
    BadSignature { what: String },
    /// A PIN-checked request (Obtain BrokerScrip, merchant registration)
    /// named an account that does not exist, or gave a wrong PIN for one
    /// that does. The broker gives the same answer for both, after as long
    /// a check, so that account numbers cannot be probed.
    #[error("the account number {account} or the PIN is wrong; check both (the broker does not say which, and locks an account after too many wrong PINs in a row)")]
    WrongAccountOrPin { account: AccountNumber },
    /// No such account: the answer to the broker's operator only (deposit,
    /// withdrawal, unlock). A peer's request never gets it: see
    /// [`Refusal::WrongAccountOrPin`].
    #[error("there is no account {account} at this broker")]
    UnknownAccount { account: AccountNumber },
    #[error(
        "account {account} is bound to another wallet's key; use the wallet that first used it"
    )]
    AccountKeyMismatch { account: AccountNumber },
    #[error("account {account} holds {balance}, less than the {requested} requested")]
    Overdraft {
        account: AccountNumber,
        balance: Amount,
        requested: Amount,
    },
    #[error("merchant {merchant} is not registered at this broker")]
    UnknownMerchant { merchant: PublicKey },
    #[error("the merchant name {name:?} is already registered by another merchant")]
    MerchantNameTaken { name: String },
    #[error("the merchant sells no item {item:?}; ask for its catalog")]
    UnknownItem { item: String },
    #[error("item {item:?} costs {price}, not the {offered} offered; ask for the catalog again")]
    PriceMismatch {
        item: String,
        price: Amount,
        offered: Amount,
    },
    #[error("request id {request} was already used for a different request; use a new request id")]
    RequestIdReused { request: RequestId },
    #[error(
        "the sealed envelope cannot be opened: it was not sealed to this party for this request"
    )]
    CannotOpenEnvelope,
    #[error("invalid amount: {reason}")]
    InvalidAmount { reason: String },
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    #[error("the service is unavailable; the outcome is unknown, retry with the same request id")]
    Unavailable,
    /// Too many wrong PINs in a row: the broker refuses every PIN for the
    /// account, the right one too, without checking it. Declared last, so
    /// the borsh tags of the older variants stay as they were.
    #[error("account {account} is locked after too many wrong PINs in a row; {}", unlock_advice(.until))]
    AccountLocked {
        account: AccountNumber,
        /// When the lock lapses by itself; `None`: only the broker's operator can lift it.
        until: Option<Timestamp>,
    },
}

fn unlock_advice(until: &Option<Timestamp>) -> String {
    match until {
        None => "no PIN is accepted until the broker's operator unlocks it: contact the operator".into(),
        Some(until) => format!(
            "no PIN is accepted before {until} (Unix time): wait until then, or contact the broker's operator"
        ),
    }
}

impl Refusal {
    /// A stable number per kind of refusal, for programs and logs.
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 1000,
            Refusal::ForgedStamp { .. } => 2001,
            Refusal::WrongKind { .. } => 2002,
            Refusal::WrongIssuer { .. } => 2003,
            Refusal::UnknownSeries { .. } => 2004,
            Refusal::WrongCurrency { .. } => 2005,
            Refusal::Expired { .. } => 2006,
            Refusal::DoubleSpend { .. } => 2007,
            Refusal::InsufficientValue { .. } => 2008,
            Refusal::NotOwner { .. } => 2009,
            Refusal::BadSignature { .. } => 3001,
            Refusal::WrongAccountOrPin { .. } => 3002,
            Refusal::UnknownAccount { .. } => 3003,
            Refusal::AccountKeyMismatch { .. } => 3004,
            Refusal::Overdraft { .. } => 3005,
            Refusal::AccountLocked { .. } => 3006,
            Refusal::UnknownMerchant { .. } => 4001,
            Refusal::MerchantNameTaken { .. } => 4002,
            Refusal::UnknownItem { .. } => 4003,
            Refusal::PriceMismatch { .. } => 4004,
            Refusal::RequestIdReused { .. } => 5001,
            Refusal::CannotOpenEnvelope => 5002,
            Refusal::InvalidAmount { .. } => 5003,
            Refusal::InvalidRequest { .. } => 5004,
            Refusal::Unavailable => 9000,
        }
    }

    /// True when the refusing party surely changed nothing, so the client may
    /// consider its scrip unspent (except after [`Refusal::DoubleSpend`], where
    /// the scrip is gone). False means: retry with the same request id.
    pub fn definitive(&self) -> bool {
        !matches!(self, Refusal::Unavailable)
    }

    pub fn invalid_amount(reason: impl Into<String>) -> Refusal {
        Refusal::InvalidAmount {
            reason: reason.into(),
        }
    }

    pub fn invalid_request(reason: impl Into<String>) -> Refusal {
        Refusal::InvalidRequest {
            reason: reason.into(),
        }
    }
}

impl From<DecodeError> for Refusal {
    fn from(error: DecodeError) -> Self {
        Refusal::Malformed(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_locked_is_a_new_tag_and_says_what_to_do() {
        // Appended: the refusals that were on the wire before keep their tags.
        assert_eq!(crate::encode(&Refusal::Unavailable), vec![23]);
        let forever = Refusal::AccountLocked {
            account: AccountNumber(123_456_789_012),
            until: None,
        };
        assert_eq!(crate::encode(&forever)[0], 24);
        assert_eq!(forever.code(), 3006);
        assert!(forever.definitive());
        let text = forever.to_string();
        assert!(
            text.contains("123456789012") && text.contains("contact the operator"),
            "{text}"
        );
        let timed = Refusal::AccountLocked {
            account: AccountNumber(123_456_789_012),
            until: Some(Timestamp(1_800_003_600)),
        };
        let text = timed.to_string();
        assert!(
            text.contains("before 1800003600") && text.contains("wait"),
            "{text}"
        );
        assert_eq!(crate::decode::<Refusal>(&crate::encode(&timed)), Ok(timed));
    }
}
