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
    /// A request gave a wrong PIN for an account.
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
}
