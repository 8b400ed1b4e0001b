//! The broker's double-entry ledger: accounts and balanced transfers.
//!
//! Every step that moves value is one [`Transfer`]: the same amount leaves
//! one ledger account and enters another, so the sum of all balances is zero
//! at every commit. With the sign conventions below that sum reads:
//!
//! ```text
//! deposits - withdrawals = customer accounts + outstanding BrokerScrip + outstanding VendorScrip
//! ```

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use scrip_proto::{AccountNumber, Amount, MerchantId, Timestamp};

/// A ledger account at the broker.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum LedgerAccount {
    /// Money that arrived from the outside bank. Its balance is minus all deposits.
    MoneyIn,
    /// Money paid out to the outside bank. Its balance is plus all withdrawals.
    MoneyOut,
    /// What the broker owes a customer (or a merchant: merchants' accounts are customer accounts).
    Customer(AccountNumber),
    /// The value of all BrokerScrip issued and not yet spent.
    OutstandingBrokerScrip,
    /// The value of one merchant's VendorScrip issued (by the broker or as change) and not yet recorded as paid.
    OutstandingVendorScrip(MerchantId),
}

impl LedgerAccount {
    /// True for accounts whose balance may never go below zero.
    pub fn must_stay_non_negative(&self) -> bool {
        !matches!(self, LedgerAccount::MoneyIn)
    }
}

impl fmt::Display for LedgerAccount {
    /// The stable text key that stores use: `customer:123456789012`, `outstanding-vendor-scrip:<hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerAccount::MoneyIn => f.write_str("money-in"),
            LedgerAccount::MoneyOut => f.write_str("money-out"),
            LedgerAccount::Customer(number) => write!(f, "customer:{number}"),
            LedgerAccount::OutstandingBrokerScrip => f.write_str("outstanding-broker-scrip"),
            LedgerAccount::OutstandingVendorScrip(merchant) => {
                write!(f, "outstanding-vendor-scrip:{merchant}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ledger account key")]
pub struct ParseLedgerAccountError(pub String);

impl FromStr for LedgerAccount {
    type Err = ParseLedgerAccountError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseLedgerAccountError(text.to_owned());
        Ok(match text {
            "money-in" => LedgerAccount::MoneyIn,
            "money-out" => LedgerAccount::MoneyOut,
            "outstanding-broker-scrip" => LedgerAccount::OutstandingBrokerScrip,
            _ => match text.split_once(':') {
                Some(("customer", number)) => {
                    LedgerAccount::Customer(number.parse().map_err(|_| bad())?)
                }
                Some(("outstanding-vendor-scrip", merchant)) => {
                    LedgerAccount::OutstandingVendorScrip(merchant.parse().map_err(|_| bad())?)
                }
                _ => return Err(bad()),
            },
        })
    }
}

/// Why value moved: one kind per broker step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TransferKind {
    Deposit,
    Withdrawal,
    ObtainBrokerScrip,
    ObtainVendorScrip,
    PaymentRecorded,
}

impl fmt::Display for TransferKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferKind::Deposit => "deposit",
            TransferKind::Withdrawal => "withdrawal",
            TransferKind::ObtainBrokerScrip => "obtain-broker-scrip",
            TransferKind::ObtainVendorScrip => "obtain-vendor-scrip",
            TransferKind::PaymentRecorded => "payment-recorded",
        })
    }
}

/// One balanced journal entry: `amount` leaves `from` and enters `to`.
///
/// Invariant: `from != to` and `amount > 0`, enforced by [`Transfer::new`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transfer {
    kind: TransferKind,
    from: LedgerAccount,
    to: LedgerAccount,
    amount: Amount,
    at: Timestamp,
}

impl Transfer {
    /// A transfer of a positive amount between two different accounts, or `None`.
    pub fn new(
        kind: TransferKind,
        from: LedgerAccount,
        to: LedgerAccount,
        amount: Amount,
        at: Timestamp,
    ) -> Option<Transfer> {
        (from != to && !amount.is_zero()).then_some(Transfer {
            kind,
            from,
            to,
            amount,
            at,
        })
    }

    pub fn kind(&self) -> TransferKind {
        self.kind
    }
    pub fn from(&self) -> LedgerAccount {
        self.from
    }
    pub fn to(&self) -> LedgerAccount {
        self.to
    }
    pub fn amount(&self) -> Amount {
        self.amount
    }
    pub fn at(&self) -> Timestamp {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scrip_proto::PublicKey;

    #[test]
    fn ledger_account_keys_round_trip() {
        for account in [
            LedgerAccount::MoneyIn,
            LedgerAccount::MoneyOut,
            LedgerAccount::OutstandingBrokerScrip,
            LedgerAccount::Customer(AccountNumber(123_456_789_012)),
            LedgerAccount::OutstandingVendorScrip(PublicKey([9; 32])),
        ] {
            assert_eq!(account.to_string().parse::<LedgerAccount>(), Ok(account));
        }
        assert!("customer:abc".parse::<LedgerAccount>().is_err());
    }

    #[test]
    fn transfers_are_between_two_accounts_and_positive() {
        let one = Amount::from_minor(1).unwrap();
        assert!(Transfer::new(
            TransferKind::Deposit,
            LedgerAccount::MoneyIn,
            LedgerAccount::MoneyIn,
            one,
            Timestamp(0)
        )
        .is_none());
        assert!(Transfer::new(
            TransferKind::Deposit,
            LedgerAccount::MoneyIn,
            LedgerAccount::MoneyOut,
            Amount::ZERO,
            Timestamp(0)
        )
        .is_none());
    }
}
