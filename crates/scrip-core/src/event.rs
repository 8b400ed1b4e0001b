//! Broker events: what the broker observed, appended to its log as canonical bytes.

use borsh::{BorshDeserialize, BorshSerialize};
use scrip_proto::{AccountNumber, Amount, MerchantId, PublicKey, RequestId, ScripId, Timestamp};

/// One thing the broker observed. The event log is the broker's record of
/// every transaction; the auditing issue builds a Merkle log over these bytes.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BrokerEvent {
    AccountOpened {
        account: AccountNumber,
        /// The digest of the stored PIN hash, so the audit sees a PIN changed behind the log's back.
        pin_hash: [u8; 32],
        at: Timestamp,
    },
    /// A wallet key was bound to the account on its first Obtain BrokerScrip.
    AccountKeyBound {
        account: AccountNumber,
        key: PublicKey,
        at: Timestamp,
    },
    Deposit {
        account: AccountNumber,
        amount: Amount,
        at: Timestamp,
    },
    Withdrawal {
        account: AccountNumber,
        amount: Amount,
        at: Timestamp,
    },
    MerchantRegistered {
        merchant: MerchantId,
        name: String,
        account: AccountNumber,
        /// The digest of the licence, so the audit sees a licence replaced behind the log's back.
        licence: [u8; 32],
        at: Timestamp,
    },
    BrokerScripIssued {
        request: RequestId,
        account: AccountNumber,
        scrip: ScripId,
        value: Amount,
        at: Timestamp,
    },
    VendorScripExchanged {
        request: RequestId,
        spent: ScripId,
        merchant: MerchantId,
        vendor_scrip: ScripId,
        amount: Amount,
        change: Option<(ScripId, Amount)>,
        at: Timestamp,
    },
    BrokerScripRenewed {
        request: RequestId,
        spent: ScripId,
        renewed: ScripId,
        value: Amount,
        at: Timestamp,
    },
    IntentRecorded {
        request: RequestId,
        buy_request: RequestId,
        merchant: MerchantId,
        scrip: ScripId,
        price: Amount,
        at: Timestamp,
    },
    /// A request spent BrokerScrip that was already spent. Recorded in a
    /// transaction of its own: the refused request itself changed nothing.
    DoubleSpendRefused { scrip: ScripId, at: Timestamp },
    /// A request gave a wrong PIN for an account. Recorded, in a transaction
    /// of its own, together with the account's count of wrong PINs in a row
    /// (the `pin_failures` the store keeps), and with [`Self::AccountLocked`]
    /// when that count reaches the limit. A step that authenticates the
    /// account ([`Self::BrokerScripIssued`], [`Self::MerchantRegistered`])
    /// resets the count in its own transaction.
    PinRefused {
        account: AccountNumber,
        at: Timestamp,
    },
    PaymentRecorded {
        merchant: MerchantId,
        buy_request: RequestId,
        scrip: ScripId,
        price: Amount,
        intent_seen: bool,
        at: Timestamp,
    },
    // New variants go last: a variant's borsh tag is its position, and the
    // leaves already in a log must decode as what they were.
    /// The account was locked after `failures` wrong PINs in a row, in the
    /// transaction that recorded the last of them. Until it lapses (`until`)
    /// or, if `until` is `None`, until the operator unlocks the account,
    /// every PIN for it is refused without being checked.
    AccountLocked {
        account: AccountNumber,
        failures: u32,
        until: Option<Timestamp>,
        at: Timestamp,
    },
    /// The operator cleared the account's count of wrong PINs and its lock.
    AccountUnlocked {
        account: AccountNumber,
        at: Timestamp,
    },
}
