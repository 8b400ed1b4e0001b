//! The store traits: what the broker, merchant and wallet need from durable storage.
//!
//! Each role has its own store and a transaction type. The core opens a
//! transaction, reads and writes through it, and commits only when the whole
//! step succeeded; dropping a transaction without [`commit`](BrokerTx::commit)
//! rolls it back, so a refused request changes nothing.
//!
//! Implementations must make transactions serializable with respect to each
//! other (SQLite: `BEGIN IMMEDIATE`), and spending is insert-or-fail on a
//! unique key, never read-then-write: of two transactions marking the same id
//! spent, exactly one gets [`Spend::Fresh`].
//!
//! The broker's reads that change nothing (the merchant directory, the audit
//! protocol, reports) begin with [`BrokerStore::begin_read`] instead: a
//! consistent snapshot of what committed, which waits for no writer.

use borsh::{BorshDeserialize, BorshSerialize};
use scrip_proto::crypto::CustomerSecret;
use scrip_proto::crypto::Signed;
use scrip_proto::msg::{
    Intent, IntentReceipt, Licence, MerchantReceipt, PaymentRecord, ReceiptBatch,
};
use scrip_proto::{
    AccountNumber, Amount, MerchantId, PublicKey, RequestId, Scrip, ScripId, Timestamp,
};

use crate::event::BrokerEvent;
use crate::ledger::{LedgerAccount, Transfer};

/// Storage failed. The outcome of the step is unknown to the client; the core
/// turns this into [`scrip_proto::Refusal::Unavailable`] and never sends the
/// detail over the wire.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    /// A stored value that does not fit its type or does not decode: a
    /// corrupt row, reported, never a panic. `what` names the value.
    pub fn corrupt(what: &str) -> StoreError {
        StoreError(format!("corrupt {what} in database"))
    }
}

/// The result of marking a scrip id spent (or a payment recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// The id was not spent before and is now.
    Fresh,
    /// The id was already spent; nothing was written.
    AlreadySpent,
}

/// The response to a request, kept so a retry with the same id gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StoredResponse {
    /// The digest of the request's canonical bytes: a retry must match it.
    pub request_digest: [u8; 32],
    pub response: Vec<u8>,
    /// The leaf that records the step: the broker's log leaf, if the step
    /// was logged; a merchant's delivery's leaf in its receipt batch, if
    /// the batch is stored apart (`MerchantTx::store_receipt_batch`).
    pub leaf: Option<u64>,
}

impl StoredResponse {
    /// The answer to a retry: the stored response if the retry carries the
    /// same bytes as the request that was answered, else a refusal, since one
    /// request id names one request.
    pub fn replay<T: BorshDeserialize>(
        &self,
        request_digest: &[u8; 32],
        request: RequestId,
    ) -> Result<T, scrip_proto::Refusal> {
        if self.request_digest != *request_digest {
            return Err(scrip_proto::Refusal::RequestIdReused { request });
        }
        scrip_proto::decode(&self.response)
            .map_err(|_| StoreError("a stored response does not decode".into()).into())
    }
}

/// A customer account. Its balance lives in the ledger, under [`LedgerAccount::Customer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub number: AccountNumber,
    pub name: String,
    /// Argon2id, PHC string format (includes salt and parameters).
    pub pin_hash: String,
    /// The wallet key bound to the account on its first Obtain BrokerScrip.
    pub account_key: Option<PublicKey>,
    pub opened_at: Timestamp,
}

/// An account's wrong PINs in a row, and its lock. The default (no wrong
/// PIN, no lock) is what an account has until a wrong PIN, and again after
/// a step authenticates it or the operator unlocks it; a store keeps no row
/// for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinFailures {
    /// Wrong PINs since the account last authenticated a step that
    /// succeeded, or since the operator unlocked it.
    pub count: u32,
    pub lock: Option<AccountLock>,
}

/// An account locked after too many wrong PINs in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLock {
    pub at: Timestamp,
    /// When the lock lapses; `None`: when the operator unlocks the account.
    pub until: Option<Timestamp>,
}

impl AccountLock {
    /// True while the lock refuses every PIN.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// A merchant registered at the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRecord {
    pub merchant: MerchantId,
    pub name: String,
    /// The account sales are credited to.
    pub account: AccountNumber,
    pub licence: Licence,
    pub registered_at: Timestamp,
}

/// A customer's recorded intent to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRow {
    pub intent: Intent,
    pub receipt: IntentReceipt,
}

/// A merchant's recorded payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub merchant: MerchantId,
    pub record: PaymentRecord,
    pub recorded_at: Timestamp,
}

/// The broker's stored state as an auditor reads it: every table, raw.
/// Rows that do not decode are kept as errors, for the audit to report.
#[derive(Debug, Clone, Default)]
pub struct BrokerSnapshot {
    /// Log leaves, by index: the canonical bytes of each event.
    pub leaves: Vec<Vec<u8>>,
    /// Stored tree hashes, by tlog index.
    pub hashes: Vec<(u64, [u8; 32])>,
    /// Signed checkpoints, by size.
    pub checkpoints: Vec<(u64, Vec<u8>)>,
    /// The balances table, by ledger account key.
    pub balances: Vec<(String, i64)>,
    /// The journal: (seq, kind, from, to, amount).
    pub journal: Vec<(i64, String, String, String, i64)>,
    /// Accounts: number, PIN hash, bound wallet key.
    pub accounts: Vec<(AccountNumber, String, Option<PublicKey>)>,
    /// Wrong PINs in a row: account, count, locked at, locked until (raw
    /// integers, so a tampered value is shown as it is).
    pub pin_failures: Vec<(AccountNumber, i64, Option<i64>, Option<i64>)>,
    pub spent_broker_scrip: Vec<Vec<u8>>,
    /// Merchants: id, the account their sales are credited to, name, licence bytes.
    pub merchants: Vec<(MerchantId, AccountNumber, String, Vec<u8>)>,
    /// Intents: request id, buy request id, scrip id key.
    pub intents: Vec<(RequestId, RequestId, Vec<u8>)>,
    /// Payments: merchant, scrip id key, the record's canonical bytes.
    pub payments: Vec<(MerchantId, Vec<u8>, Vec<u8>)>,
}

// ---- Stored values -----------------------------------------------------------
//
// The stores keep timestamps, account numbers and amounts as signed 64-bit
// integers, and keys, ids and digests as bytes. These conversions serve every
// store alike, so a value out of range is refused, and a corrupt one reported,
// with the same error whichever database holds it.

/// A value a store keeps as a signed 64-bit integer. The conversions
/// themselves are the type's own (`TryFrom<i64>` and back, in `scrip-proto`);
/// this adds the errors.
pub trait StoredAsI64: Copy + std::fmt::Display + TryInto<i64> + TryFrom<i64> {
    /// What the value is, in errors: "timestamp".
    const NAME: &'static str;

    /// The value as stored.
    ///
    /// # Errors
    /// The value does not fit ("timestamp … is too large to store").
    fn to_stored(self) -> Result<i64, StoreError> {
        self.try_into()
            .map_err(|_| StoreError(format!("{} {self} is too large to store", Self::NAME)))
    }

    /// The value read back.
    ///
    /// # Errors
    /// The stored integer is out of the type's range: a corrupt row.
    fn from_stored(value: i64) -> Result<Self, StoreError> {
        Self::try_from(value).map_err(|_| StoreError::corrupt(Self::NAME))
    }
}

impl StoredAsI64 for Timestamp {
    const NAME: &'static str = "timestamp";
}

impl StoredAsI64 for AccountNumber {
    const NAME: &'static str = "account number";
}

impl StoredAsI64 for Amount {
    const NAME: &'static str = "amount";
}

/// A public key (a merchant id, a wallet's account key) read back from its bytes.
///
/// # Errors
/// Not 32 bytes: a corrupt row.
pub fn public_key_from_stored(bytes: &[u8]) -> Result<PublicKey, StoreError> {
    bytes
        .try_into()
        .map(PublicKey)
        .map_err(|_| StoreError::corrupt("public key"))
}

/// A request digest or a log hash read back from its bytes.
///
/// # Errors
/// Not 32 bytes: a corrupt row.
pub fn digest_from_stored(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("request digest"))
}

/// A request id read back from its bytes.
///
/// # Errors
/// Not 16 bytes: a corrupt row.
pub fn request_id_from_stored(bytes: &[u8]) -> Result<RequestId, StoreError> {
    bytes
        .try_into()
        .map(RequestId)
        .map_err(|_| StoreError::corrupt("request id"))
}

/// A value read back from bytes written with [`scrip_proto::encode`]; `what` names it in the error.
///
/// # Errors
/// The bytes do not decode: a corrupt row.
pub fn decode_stored<T: BorshDeserialize>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    scrip_proto::decode(bytes)
        .map_err(|error| StoreError(format!("corrupt {what} in database: {error}")))
}

// ---- Broker rows -------------------------------------------------------------
//
// The broker stores keep the same tables; these build the core's values from a
// row's stored columns (and back), once for every store, so a corrupt row is
// the same error everywhere.

impl AccountRecord {
    /// An account from its stored columns: number, name, PIN hash, bound key, opened at.
    ///
    /// # Errors
    /// A column out of range: a corrupt row.
    pub fn from_stored(
        number: i64,
        name: String,
        pin_hash: String,
        account_key: Option<&[u8]>,
        opened_at: i64,
    ) -> Result<AccountRecord, StoreError> {
        Ok(AccountRecord {
            number: AccountNumber::from_stored(number)?,
            name,
            pin_hash,
            account_key: account_key.map(public_key_from_stored).transpose()?,
            opened_at: Timestamp::from_stored(opened_at)?,
        })
    }
}

impl MerchantRecord {
    /// A merchant from its stored columns: id, name, account, licence bytes, registered at.
    ///
    /// # Errors
    /// A column out of range or a licence that does not decode: a corrupt row.
    pub fn from_stored(
        merchant: &[u8],
        name: String,
        account: i64,
        licence: &[u8],
        registered_at: i64,
    ) -> Result<MerchantRecord, StoreError> {
        Ok(MerchantRecord {
            merchant: public_key_from_stored(merchant)?,
            name,
            account: AccountNumber::from_stored(account)?,
            licence: decode_stored(licence, "merchant licence")?,
            registered_at: Timestamp::from_stored(registered_at)?,
        })
    }
}

impl PinFailures {
    /// An account's wrong PINs from their stored columns: count, locked at, locked until.
    ///
    /// # Errors
    /// A count or time out of range, or an end of the lock without a start: a corrupt row.
    pub fn from_stored(
        count: i64,
        locked_at: Option<i64>,
        locked_until: Option<i64>,
    ) -> Result<PinFailures, StoreError> {
        let lock = match (locked_at, locked_until) {
            (None, None) => None,
            (Some(at), until) => Some(AccountLock {
                at: Timestamp::from_stored(at)?,
                until: until.map(Timestamp::from_stored).transpose()?,
            }),
            (None, Some(_)) => {
                return Err(StoreError(
                    "corrupt account lock in database: an end without a start".into(),
                ))
            }
        };
        Ok(PinFailures {
            count: u32::try_from(count).map_err(|_| StoreError::corrupt("wrong PIN count"))?,
            lock,
        })
    }

    /// The lock as stored: locked at and locked until, each `None` where there is none.
    ///
    /// # Errors
    /// A time too large to store.
    pub fn lock_to_stored(&self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let locked_at = self.lock.map(|lock| lock.at.to_stored()).transpose()?;
        let locked_until = self
            .lock
            .and_then(|lock| lock.until)
            .map(Timestamp::to_stored)
            .transpose()?;
        Ok((locked_at, locked_until))
    }
}

/// A ledger account read back from its stored key (its `Display` form).
///
/// # Errors
/// The key names no ledger account: a corrupt row.
pub fn ledger_account_from_stored(key: &str) -> Result<LedgerAccount, StoreError> {
    key.parse()
        .map_err(|_| StoreError::corrupt("ledger account key"))
}

/// The balances of the transfer's two accounts once it is posted, from
/// their balances before: what a store writes, checked before it writes
/// anything, so a failed post leaves the transaction as it was.
///
/// # Errors
/// A balance would leave the range of `i64`.
pub fn balances_after(
    transfer: &Transfer,
    from_balance: i64,
    to_balance: i64,
) -> Result<(i64, i64), StoreError> {
    let amount = transfer.amount().as_i64();
    let overflow = |account: &LedgerAccount| {
        StoreError(format!(
            "cannot post transfer: balance of {account} would overflow"
        ))
    };
    Ok((
        from_balance
            .checked_sub(amount)
            .ok_or_else(|| overflow(&transfer.from()))?,
        to_balance
            .checked_add(amount)
            .ok_or_else(|| overflow(&transfer.to()))?,
    ))
}

impl BrokerSnapshot {
    /// Appends the log leaf stored with `seq`, which must be the next:
    /// the log's leaves are numbered from one without a gap.
    ///
    /// # Errors
    /// `seq` is not the next: the log has a gap or is out of order.
    pub fn push_leaf(&mut self, seq: i64, leaf: Vec<u8>) -> Result<(), StoreError> {
        let expected = i64::try_from(self.leaves.len()).map_or(i64::MAX, |n| n.saturating_add(1));
        if seq != expected {
            return Err(StoreError(format!(
                "the log has a gap or reordering at events.seq {seq} (expected {expected})"
            )));
        }
        self.leaves.push(leaf);
        Ok(())
    }
}

/// Group commit: many steps, one durable commit.
///
/// Between [`begin_group`](Self::begin_group) and
/// [`end_group`](Self::end_group), every transaction the store begins is
/// nested in one outer transaction: committing it keeps its changes in the
/// group, dropping it undoes only its own. `end_group` makes the whole group
/// durable at once, or none of it, so one fsync serves many steps. Nothing
/// a grouped step answers may leave the process before `end_group` succeeds.
pub trait GroupCommit {
    fn begin_group(&mut self) -> Result<(), StoreError>;
    /// Commits the group. On error nothing of the group was kept.
    fn end_group(&mut self) -> Result<(), StoreError>;
    /// Undoes the whole group.
    fn abort_group(&mut self);
}

/// Runs `body` as one group commit: the group is committed if `body`
/// succeeds and undone whole if it fails or panics.
///
/// # Errors
/// `body`'s error, or the store's if the group cannot begin or commit; in
/// every error case nothing of the group was kept.
pub fn grouped<S: GroupCommit, R, E: From<StoreError>>(
    store: &mut S,
    body: impl FnOnce(&mut S) -> Result<R, E>,
) -> Result<R, E> {
    store.begin_group()?;
    // A group left open by a panic would keep the store's write lock, and
    // the store would refuse every later group: undo it before unwinding.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(store))) {
        Ok(Ok(result)) => {
            store.end_group()?;
            Ok(result)
        }
        Ok(Err(error)) => {
            store.abort_group();
            Err(error)
        }
        Err(panic) => {
            store.abort_group();
            std::panic::resume_unwind(panic)
        }
    }
}

/// The broker's storage.
pub trait BrokerStore: GroupCommit {
    type Tx<'a>: BrokerTx
    where
        Self: 'a;
    /// A transaction for a step that may write: serializable with every
    /// other, so it waits for the one in progress (the writer lock).
    fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError>;
    /// A transaction for reads only: one consistent snapshot of what had
    /// committed, taken without the writer lock, so it is answered while
    /// steps of this or another process commit. It is never committed;
    /// nothing written through it is kept (a store may refuse the write).
    /// Inside a group commit it is a savepoint of the group, as `begin` is.
    fn begin_read(&mut self) -> Result<Self::Tx<'_>, StoreError>;
}

/// One broker transaction. See the module doc for the contract.
pub trait BrokerTx {
    fn stored_response(
        &mut self,
        request: &RequestId,
    ) -> Result<Option<StoredResponse>, StoreError>;
    fn store_response(
        &mut self,
        request: &RequestId,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    fn account(&mut self, number: AccountNumber) -> Result<Option<AccountRecord>, StoreError>;
    /// Inserts a new account; fails if the number exists.
    fn insert_account(&mut self, account: &AccountRecord) -> Result<(), StoreError>;
    fn bind_account_key(
        &mut self,
        number: AccountNumber,
        key: &PublicKey,
    ) -> Result<(), StoreError>;
    fn accounts(&mut self) -> Result<Vec<AccountRecord>, StoreError>;
    /// The account's wrong PINs in a row and its lock; the default if none.
    fn pin_failures(&mut self, account: AccountNumber) -> Result<PinFailures, StoreError>;
    /// Replaces the account's wrong PINs and lock; the default removes them.
    fn put_pin_failures(
        &mut self,
        account: AccountNumber,
        failures: &PinFailures,
    ) -> Result<(), StoreError>;

    /// The balance of a ledger account in minor units; zero if it never moved.
    fn balance(&mut self, account: &LedgerAccount) -> Result<i64, StoreError>;
    /// Every ledger account that ever moved, with its balance.
    fn balances(&mut self) -> Result<Vec<(LedgerAccount, i64)>, StoreError>;
    /// Appends the transfer to the journal and moves its amount, atomically with the transaction.
    fn post(&mut self, transfer: &Transfer) -> Result<(), StoreError>;

    /// Marks a BrokerScrip id spent: insert-or-fail.
    fn mark_broker_scrip_spent(
        &mut self,
        scrip: &ScripId,
        expiry: Timestamp,
    ) -> Result<Spend, StoreError>;

    fn merchant(&mut self, merchant: &MerchantId) -> Result<Option<MerchantRecord>, StoreError>;
    fn merchant_by_name(&mut self, name: &str) -> Result<Option<MerchantRecord>, StoreError>;
    /// Inserts or replaces the merchant's record (re-registration updates name, account and licence).
    fn put_merchant(&mut self, merchant: &MerchantRecord) -> Result<(), StoreError>;
    fn merchants(&mut self) -> Result<Vec<MerchantRecord>, StoreError>;

    fn insert_intent(&mut self, intent: &IntentRow) -> Result<(), StoreError>;
    /// True if an intent announcing the Buy with this request id, spending
    /// this scrip, was recorded (the intent's `buy_request` and scrip id).
    fn intent_for_buy(
        &mut self,
        buy_request: &RequestId,
        scrip: &ScripId,
    ) -> Result<bool, StoreError>;
    /// True if the merchant's payment with this spent VendorScrip was recorded.
    fn payment_recorded(
        &mut self,
        merchant: &MerchantId,
        scrip: &ScripId,
    ) -> Result<bool, StoreError>;
    /// Records a merchant's payment: insert-or-fail on (merchant, spent VendorScrip id).
    fn record_payment(&mut self, payment: &PaymentRow) -> Result<Spend, StoreError>;

    /// Appends the event's canonical bytes to the broker's transparency log
    /// (see [`crate::log`]), in this transaction.
    fn append_event(&mut self, event: &BrokerEvent) -> Result<(), StoreError>
    where
        Self: Sized,
    {
        crate::log::append(self, &scrip_proto::encode(event)).map(drop)
    }

    /// The number of leaves in the log.
    fn log_size(&mut self) -> Result<u64, StoreError>;
    /// The stored hashes at these indexes (tlog layout), in order; an error if any is missing.
    fn log_hashes(&mut self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError>;
    /// Appends leaf `index` with its data and the stored hashes it completes.
    fn append_log(
        &mut self,
        index: u64,
        data: &[u8],
        hashes: &[(u64, [u8; 32])],
    ) -> Result<(), StoreError>;
    /// Keeps a signed checkpoint (C2SP note bytes) of the log at `size`.
    fn put_checkpoint(&mut self, size: u64, note: &[u8]) -> Result<(), StoreError>;
    /// The checkpoint of the largest size kept, with its size.
    fn latest_checkpoint(&mut self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Everything an auditor reads, in one consistent view.
    fn snapshot(&mut self) -> Result<BrokerSnapshot, StoreError>;

    fn commit(self) -> Result<(), StoreError>;
}

/// A merchant's storage.
pub trait MerchantStore: GroupCommit {
    type Tx<'a>: MerchantTx
    where
        Self: 'a;
    fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError>;
}

/// One merchant transaction.
///
/// A sale is kept under the VendorScrip it spent: its spent mark, its
/// queued payment record and its stored delivery are all found by that one
/// id. A Buy spends exactly one scrip, so the scrip names the sale; keying
/// everything by it leaves one randomly keyed index to write per sale (see
/// PERFORMANCE.md, session 9).
pub trait MerchantTx {
    /// The delivery stored for the sale that spent `scrip` under `request`.
    /// `None` if `scrip` is not spent, or was spent under another request
    /// id (spending it again is then refused as a double spend).
    fn stored_delivery(
        &mut self,
        scrip: &ScripId,
        request: &RequestId,
    ) -> Result<Option<StoredResponse>, StoreError>;
    /// Keeps a group's signed receipt batch and the hashes of its leaves,
    /// once for the whole group, so that a retry's inclusion proof can be
    /// rebuilt; returns the batch's number for [`receipt_batch`](Self::receipt_batch).
    fn store_receipt_batch(
        &mut self,
        batch: &Signed<ReceiptBatch>,
        leaf_hashes: &[[u8; 32]],
    ) -> Result<u64, StoreError>;
    /// The receipt batch stored under `number`, and its leaves' hashes.
    fn receipt_batch(&mut self, number: u64) -> Result<Option<ReceiptBatchRow>, StoreError>;
    /// Marks a VendorScrip id spent: insert-or-fail.
    fn mark_spent(&mut self, scrip: &ScripId, expiry: Timestamp) -> Result<Spend, StoreError>;
    /// Keeps a sale: queues its payment record for the broker and stores its
    /// delivery for retries, both under the scrip it spent (the record's
    /// Buy names it, and its request id). The scrip must be marked spent,
    /// and its sale not kept yet; otherwise this is an error, and the
    /// transaction must not be committed.
    fn keep_sale(
        &mut self,
        record: &PaymentRecord,
        delivery: &StoredResponse,
    ) -> Result<(), StoreError>;
    /// The oldest queued records, at most `limit`.
    fn queued_payment_records(&mut self, limit: usize) -> Result<Vec<PaymentRecord>, StoreError>;
    /// Takes the record of `scrip` off the queue. A scrip that is not queued
    /// is no error: acknowledgements may repeat.
    fn dequeue_payment_record(&mut self, scrip: &ScripId) -> Result<(), StoreError>;
    /// Keeps a broker log receipt (for a registration or a payment record).
    fn add_receipt(&mut self, receipt: &scrip_proto::msg::LogReceipt) -> Result<(), StoreError>;
    fn receipts(&mut self) -> Result<Vec<scrip_proto::msg::LogReceipt>, StoreError>;
    /// Forgets the sales whose scrip expired before `expired_before`: each
    /// one's spent mark and stored delivery. Looks at `rows` sales at most:
    /// the oldest ([`SweepFrom::Oldest`]), or the next after those the
    /// previous such call looked at ([`SweepFrom::Where`], from the oldest
    /// again once it passed the newest), so a large spent set is swept a
    /// window at a time. Keeps a sale whose payment record is still queued,
    /// one whose expiry is unknown, and the newest sale. Only in a
    /// transaction of its own, never in a group.
    fn forget_expired_sales(
        &mut self,
        expired_before: Timestamp,
        rows: usize,
        from: SweepFrom,
    ) -> Result<Swept, StoreError>;
    /// The delivery kept longest among those whose receipt batch is stored
    /// apart ([`StoredResponse::leaf`] set): its batch is the oldest in use.
    fn oldest_delivery(&mut self) -> Result<Option<StoredResponse>, StoreError>;
    /// Forgets the receipt batches numbered below `number` that no stored
    /// answer needs (the store knows those its earlier schemas kept elsewhere).
    fn forget_receipt_batches_before(&mut self, number: u64) -> Result<(), StoreError>;
    fn commit(self) -> Result<(), StoreError>;
}

/// Where a window of the sweep of expired sales begins. Sales are kept in
/// about the order their scrip expires, so the expired ones are mostly the
/// oldest; the sweep's place walks the whole set for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepFrom {
    Oldest,
    /// Where the last window from here stopped.
    Where,
}

/// What one window of the sweep of expired sales did ([`MerchantTx::forget_expired_sales`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Sales forgotten.
    pub forgotten: usize,
    /// The window reached the newest sale: the next begins again at the oldest.
    pub reached_newest: bool,
}

/// A merchant's signed receipt batch as stored, with the hashes of its leaves in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBatchRow {
    pub batch: Signed<ReceiptBatch>,
    pub leaf_hashes: Vec<[u8; 32]>,
}

/// Whether a wallet's scrip can be used, or is locked by a request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ScripState {
    Available,
    /// Spent by this request, whose outcome is not known yet.
    Pending(RequestId),
}

/// A scrip the wallet holds, with the customer secret that spends it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct WalletScrip {
    pub scrip: Scrip,
    pub secret: CustomerSecret,
    pub state: ScripState,
}

/// Who a pending request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Destination {
    Broker,
    Merchant(MerchantId),
}

/// A request sent (or about to be sent) whose response has not been handled.
/// Retries resend `request` unchanged, so nothing is paid twice.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PendingRequest {
    pub request_id: RequestId,
    pub destination: Destination,
    /// The canonical bytes of the `BrokerRequest` or `MerchantRequest`.
    pub request: Vec<u8>,
    /// The scrip this request spends, if any.
    pub spends: Option<ScripId>,
    /// For an Obtain BrokerScrip request, the amount ordered; `None` for every
    /// other request. The order travels sealed to the broker, so the request
    /// bytes do not show it to the wallet: this is the wallet's own copy, to
    /// refuse BrokerScrip of any other value. A request stored by an older
    /// build has `None` here too.
    pub ordered: Option<Amount>,
}

/// A receipt the wallet keeps as evidence.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum WalletReceipt {
    Intent(scrip_proto::crypto::Signed<IntentReceipt>),
    /// A purchase receipt signed on its own, as merchants answered before
    /// receipt batches; kept so that wallets stored then still read.
    Purchase(scrip_proto::crypto::Signed<MerchantReceipt>),
    /// The broker's evidence that it logged a request of this wallet.
    Log(scrip_proto::msg::LogReceipt),
    /// A purchase receipt in a batch the merchant signed.
    PurchaseInBatch(scrip_proto::msg::BatchedReceipt),
}

/// An item a merchant delivered, kept in the wallet from the transaction that
/// settled its purchase until the user has it written out
/// ([`crate::wallet::forget_item`]): settling takes the pending
/// request, and with it the wallet's means to ask the merchant again, so the
/// item must not live only in memory after that.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BoughtItem {
    /// The Buy's request id: the item's name in the wallet.
    pub request_id: RequestId,
    pub merchant: MerchantId,
    /// The catalog item's id (renewals deliver nothing to keep).
    pub item: String,
    pub price: Amount,
    pub content: Vec<u8>,
}

/// A wallet's storage.
pub trait WalletStore {
    type Tx<'a>: WalletTx
    where
        Self: 'a;
    /// Begins a transaction whose commit reaches the disk before it returns.
    fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError>;
    /// Begins a transaction that settles a pending request: its commit may
    /// return before it reaches the disk (it is as atomic as any other).
    ///
    /// Why that loses nothing: the request it settles was committed as
    /// pending, durably, before it was sent. If a crash loses the settling
    /// commit, the request is pending again and is sent again with the same
    /// bytes, and its peer answers a retry with the answer it stored. So the
    /// wallet does not wait for the disk twice per step, and a purchase
    /// costs the customer one wait, before it pays. Forgetting an item the
    /// user has written out is the one other use
    /// ([`crate::wallet::forget_item`]): a crash that loses it only
    /// has the item written out again.
    fn begin_settle(&mut self) -> Result<Self::Tx<'_>, StoreError> {
        self.begin()
    }
}

/// One wallet transaction.
pub trait WalletTx {
    /// Inserts or replaces the scrip with this id.
    fn put_scrip(&mut self, scrip: &WalletScrip) -> Result<(), StoreError>;
    fn remove_scrip(&mut self, scrip: &ScripId) -> Result<(), StoreError>;
    fn all_scrip(&mut self) -> Result<Vec<WalletScrip>, StoreError>;
    /// The scrip with this id, if the wallet holds it.
    fn scrip(&mut self, id: &ScripId) -> Result<Option<WalletScrip>, StoreError>;
    fn put_pending(&mut self, pending: &PendingRequest) -> Result<(), StoreError>;
    fn take_pending(&mut self, request: &RequestId) -> Result<Option<PendingRequest>, StoreError>;
    fn all_pending(&mut self) -> Result<Vec<PendingRequest>, StoreError>;
    fn add_receipt(&mut self, receipt: &WalletReceipt) -> Result<(), StoreError>;
    fn receipts(&mut self) -> Result<Vec<WalletReceipt>, StoreError>;
    /// Keeps a delivered item; a second item under the same request id is refused.
    fn put_item(&mut self, item: &BoughtItem) -> Result<(), StoreError>;
    /// Forgets the item bought by this request; whether it was kept.
    fn remove_item(&mut self, request: &RequestId) -> Result<bool, StoreError>;
    /// Every item kept, in the order they were kept.
    fn items(&mut self) -> Result<Vec<BoughtItem>, StoreError>;
    fn commit(self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_integers_round_trip_and_out_of_range_is_refused_by_name() {
        let at = Timestamp(1_700_000_000);
        assert_eq!(Timestamp::from_stored(at.to_stored().unwrap()).unwrap(), at);
        let number = AccountNumber(100_000_000_001);
        assert_eq!(
            AccountNumber::from_stored(number.to_stored().unwrap()).unwrap(),
            number
        );
        assert_eq!(Amount::MAX.to_stored().unwrap(), i64::MAX);
        assert_eq!(Amount::from_stored(i64::MAX).unwrap(), Amount::MAX);

        let too_large = Timestamp(u64::MAX).to_stored().unwrap_err();
        assert_eq!(
            too_large.0,
            "timestamp 18446744073709551615 is too large to store"
        );
        let too_large = AccountNumber(u64::MAX).to_stored().unwrap_err();
        assert_eq!(
            too_large.0,
            "account number 18446744073709551615 is too large to store"
        );
        for (error, what) in [
            (Timestamp::from_stored(-1).unwrap_err(), "timestamp"),
            (
                AccountNumber::from_stored(-1).unwrap_err(),
                "account number",
            ),
            (Amount::from_stored(-1).unwrap_err(), "amount"),
        ] {
            assert_eq!(error.0, format!("corrupt {what} in database"));
        }
    }

    #[test]
    fn pin_failures_round_trip_and_a_lock_needs_a_start() {
        let locked = PinFailures {
            count: 3,
            lock: Some(AccountLock {
                at: Timestamp(10),
                until: Some(Timestamp(70)),
            }),
        };
        let (at, until) = locked.lock_to_stored().unwrap();
        assert_eq!((at, until), (Some(10), Some(70)));
        assert_eq!(PinFailures::from_stored(3, at, until).unwrap(), locked);
        assert_eq!(
            PinFailures::default().lock_to_stored().unwrap(),
            (None, None)
        );
        let error = PinFailures::from_stored(3, None, Some(70)).unwrap_err();
        assert!(error.0.contains("an end without a start"), "{error}");
        let error = PinFailures::from_stored(-1, None, None).unwrap_err();
        assert_eq!(error.0, "corrupt wrong PIN count in database");
    }

    #[test]
    fn a_snapshot_refuses_a_gap_in_the_leaves() {
        let mut snapshot = BrokerSnapshot::default();
        snapshot.push_leaf(1, vec![1]).unwrap();
        snapshot.push_leaf(2, vec![2]).unwrap();
        let error = snapshot.push_leaf(4, vec![4]).unwrap_err();
        assert_eq!(
            error.0,
            "the log has a gap or reordering at events.seq 4 (expected 3)"
        );
        assert_eq!(snapshot.leaves, vec![vec![1], vec![2]]);
    }

    #[test]
    fn stored_bytes_of_the_wrong_length_are_corrupt() {
        assert_eq!(
            public_key_from_stored(&[7; 32]).unwrap(),
            PublicKey([7; 32])
        );
        assert_eq!(
            request_id_from_stored(&[7; 16]).unwrap(),
            RequestId([7; 16])
        );
        assert_eq!(digest_from_stored(&[7; 32]).unwrap(), [7; 32]);
        for error in [
            public_key_from_stored(&[7; 31]).unwrap_err(),
            request_id_from_stored(&[7; 17]).unwrap_err(),
            digest_from_stored(&[]).unwrap_err(),
            decode_stored::<Timestamp>(&[1], "timestamp").unwrap_err(),
        ] {
            assert!(error.0.starts_with("corrupt "), "{error}");
            assert!(error.0.contains(" in database"), "{error}");
        }
    }
}
