//! Every message of the three transaction steps, as it travels.
//!
//! **API boundary**: these types and their canonical bytes are the wire
//! protocol. Changing a field changes the protocol; add a new labelled type
//! (and a new protocol version) instead.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::amount::{Amount, Currency};
use crate::crypto::{CustomerMaster, Labelled, Proved, Sealed, Signed, StampingSecret};
use crate::ids::{
    AccountNumber, HpkePublicKey, MerchantId, PublicKey, RequestId, ScripId, Timestamp,
};
use crate::refusal::Refusal;
use crate::scrip::{Scrip, ScripBody};
use crate::secret::Pin;

macro_rules! labelled {
    ($($ty:ty => $domain:literal),* $(,)?) => {
        $(impl Labelled for $ty { const DOMAIN: &'static str = $domain; })*
    };
}

labelled! {
    ObtainBrokerScrip => "scrip/v1/obtain-broker-scrip",
    ObtainVendorScrip => "scrip/v1/obtain-vendor-scrip",
    RenewBrokerScrip => "scrip/v1/renew-broker-scrip",
    RegisterMerchant => "scrip/v1/register-merchant",
    Intent => "scrip/v1/intent",
    IntentReceipt => "scrip/v1/intent-receipt",
    Buy => "scrip/v1/buy",
    MerchantReceipt => "scrip/v1/merchant-receipt",
    ReceiptBatch => "scrip/v1/merchant-receipt-batch",
    PaymentRecords => "scrip/v1/payment-records",
    PaymentRecordsAck => "scrip/v1/payment-records-ack",
}

/// HPKE `info` labels: an envelope opens only for the purpose it was sealed for.
pub mod purpose {
    pub const CREDENTIALS: &str = "scrip/v1/sealed/credentials";
    pub const MERCHANT_SECRETS: &str = "scrip/v1/sealed/merchant-secrets";
    pub const CUSTOMER_SECRET: &str = "scrip/v1/sealed/customer-secret";
}

/// What every peer must know of the broker before talking to it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BrokerInfo {
    /// The broker's Ed25519 identity: issuer of BrokerScrip, signer of receipts.
    pub broker: PublicKey,
    /// Where credentials and licences are sealed to.
    pub hpke_key: HpkePublicKey,
    pub currency: Currency,
}

/// An account number and its PIN. Only ever sealed to the broker.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct Credentials {
    pub account: AccountNumber,
    pub pin: Pin,
}

// ---- Obtain BrokerScrip -------------------------------------------------

/// The sealed part of [`ObtainBrokerScrip`]: who pays, and how much.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct BrokerScripOrder {
    pub credentials: Credentials,
    pub amount: Amount,
}

/// Step 1, customer to broker. Signed by `account_key`; the order is sealed to the broker.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ObtainBrokerScrip {
    pub request_id: RequestId,
    /// The wallet's Ed25519 account key; bound to the account on first use.
    pub account_key: PublicKey,
    /// Where the customer secret is sealed to.
    pub reply_key: HpkePublicKey,
    /// A [`BrokerScripOrder`], sealed with [`purpose::CREDENTIALS`] and [`envelope_aad`].
    pub order: Sealed,
}

/// The associated data that binds an envelope to the request that carries it,
/// so a sealed PIN cannot be lifted into another request.
pub fn envelope_aad(request_id: &RequestId, sender: &PublicKey) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(request_id.as_bytes());
    aad.extend_from_slice(sender.as_bytes());
    aad
}

/// The associated data of a sealed customer secret: the scrip it belongs to.
pub fn customer_secret_aad(scrip: &ScripId) -> Vec<u8> {
    scrip.to_key().to_vec()
}

/// New scrip and its customer secret, sealed to the requester's reply key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IssuedScrip {
    pub scrip: Scrip,
    /// A [`crate::crypto::CustomerSecret`], sealed with [`purpose::CUSTOMER_SECRET`] and [`customer_secret_aad`].
    pub customer_secret: Sealed,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BrokerScripIssued {
    pub request_id: RequestId,
    pub issued: IssuedScrip,
}

// ---- Obtain VendorScrip -------------------------------------------------

/// Step 2, customer to broker: exchange BrokerScrip for VendorScrip of one merchant.
/// Proved with the BrokerScrip's customer secret.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ObtainVendorScrip {
    pub request_id: RequestId,
    /// BrokerScrip worth at least `amount`.
    pub scrip: Scrip,
    pub merchant: MerchantId,
    pub amount: Amount,
    pub reply_key: HpkePublicKey,
}

/// VendorScrip (with its new pseudonym's customer secret) and change BrokerScrip,
/// which keeps the spent scrip's `cust_id` and so its customer secret.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VendorScripIssued {
    pub request_id: RequestId,
    pub vendor_scrip: IssuedScrip,
    pub change: Option<Scrip>,
}

/// Customer to broker: exchange BrokerScrip near expiry for fresh BrokerScrip of
/// the same value and `cust_id`. Proved with its customer secret.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RenewBrokerScrip {
    pub request_id: RequestId,
    pub scrip: Scrip,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BrokerScripRenewed {
    pub request_id: RequestId,
    pub scrip: Scrip,
}

// ---- Merchant registration ----------------------------------------------

/// Millicent's licensed scrip production: the secrets that let the broker mint
/// one series of a merchant's VendorScrip and its customer secrets.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Licence {
    pub series: u32,
    pub stamping_secret: StampingSecret,
    pub customer_master: CustomerMaster,
}

/// The sealed part of [`RegisterMerchant`].
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct MerchantSecrets {
    /// The account sales are credited to.
    pub credentials: Credentials,
    pub licence: Licence,
}

/// Merchant to broker, signed by the merchant's key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RegisterMerchant {
    pub request_id: RequestId,
    pub merchant: MerchantId,
    /// 1 to 64 characters, unique at the broker; how customers find the merchant.
    pub name: String,
    /// [`MerchantSecrets`], sealed with [`purpose::MERCHANT_SECRETS`] and [`envelope_aad`].
    pub secrets: Sealed,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MerchantRegistered {
    pub request_id: RequestId,
    pub merchant: MerchantId,
    pub name: String,
}

// ---- Buy item -----------------------------------------------------------

/// What a Buy item pays for: a catalog item, or a renewal (price zero, fresh change).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Purchase {
    Item(String),
    Renew,
}

/// Step 3a, customer to broker: a payment is about to take place.
/// Proved with the VendorScrip's customer secret, which the broker can check
/// under the merchant's licence.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Intent {
    pub request_id: RequestId,
    /// The request id of the [`Buy`] this intent announces.
    pub buy_request: RequestId,
    pub scrip: Scrip,
    pub purchase: Purchase,
    pub price: Amount,
}

/// The broker's signed acknowledgement of an intent.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IntentReceipt {
    pub request_id: RequestId,
    pub buy_request: RequestId,
    pub scrip: ScripId,
    pub merchant: MerchantId,
    pub price: Amount,
    pub recorded_at: Timestamp,
}

/// Step 3b, customer to merchant. Proved with the VendorScrip's customer secret.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Buy {
    pub request_id: RequestId,
    pub scrip: Scrip,
    pub purchase: Purchase,
    /// The price the customer agreed to; must equal the catalog price.
    pub price: Amount,
}

/// The merchant's signed receipt for a purchase.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MerchantReceipt {
    pub request_id: RequestId,
    pub merchant: MerchantId,
    pub scrip: ScripId,
    pub purchase: Purchase,
    pub price: Amount,
    pub change: Option<ScripId>,
    pub at: Timestamp,
}

/// The receipts of one group of purchases, signed once: the root of an
/// RFC 6962 Merkle tree whose leaves are the receipts' labelled bytes. One
/// signature serves a whole group commit, so a receipt costs the merchant a
/// few hashes instead of an Ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ReceiptBatch {
    pub merchant: MerchantId,
    /// Number of receipts (leaves) in the batch.
    pub size: u64,
    pub root: [u8; 32],
    pub at: Timestamp,
}

/// A purchase receipt and the proof that it is leaf `leaf` of a batch the
/// merchant signed: as binding as a signature on the receipt itself.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BatchedReceipt {
    pub receipt: MerchantReceipt,
    pub leaf: u64,
    /// The RFC 6962 inclusion proof of the receipt in `batch`.
    pub proof: Vec<[u8; 32]>,
    pub batch: Signed<ReceiptBatch>,
}

/// The item, the change (same `cust_id`, so same customer secret) and the receipt.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ItemDelivered {
    pub request_id: RequestId,
    pub content: Vec<u8>,
    pub change: Option<Scrip>,
    pub receipt: BatchedReceipt,
}

/// Step 3c, merchant to broker: a payment has taken place. Carries the
/// customer's proved request, so the broker can check the customer really paid.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PaymentRecord {
    pub buy: Proved<Buy>,
    pub change: Option<ScripBody>,
    pub at: Timestamp,
}

/// A batch of payment records, signed by the merchant.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PaymentRecords {
    pub merchant: MerchantId,
    pub records: Vec<PaymentRecord>,
}

/// What the broker did with one payment record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RecordOutcome {
    /// Recorded now, in log leaf `leaf`; the merchant's account was credited with `amount`.
    Credited { amount: Amount, leaf: u64 },
    /// Recorded before (a retried batch); nothing moved this time.
    AlreadyRecorded,
    /// Not recorded, and never will be: the merchant should investigate.
    Refused(Refusal),
}

/// The broker's signed answer to a batch, one outcome per record, in order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PaymentRecordsAck {
    pub merchant: MerchantId,
    pub outcomes: Vec<(ScripId, RecordOutcome)>,
    pub at: Timestamp,
}

// ---- Catalog ------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CatalogEntry {
    pub id: String,
    pub title: String,
    pub price: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CatalogListing {
    pub merchant: MerchantId,
    pub name: String,
    pub currency: Currency,
    pub items: Vec<CatalogEntry>,
}

// ---- Envelopes ----------------------------------------------------------

/// Everything a peer can ask the broker.
// Built once per message and moved, never stored in bulk: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BrokerRequest {
    ObtainBrokerScrip(Signed<ObtainBrokerScrip>),
    ObtainVendorScrip(Proved<ObtainVendorScrip>),
    RenewBrokerScrip(Proved<RenewBrokerScrip>),
    RegisterMerchant(Signed<RegisterMerchant>),
    Intent(Proved<Intent>),
    PaymentRecords(Signed<PaymentRecords>),
}

impl BrokerRequest {
    /// The id that makes the request idempotent; payment records are
    /// idempotent per spent VendorScrip id instead.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            BrokerRequest::ObtainBrokerScrip(r) => Some(r.body.request_id),
            BrokerRequest::ObtainVendorScrip(r) => Some(r.body.request_id),
            BrokerRequest::RenewBrokerScrip(r) => Some(r.body.request_id),
            BrokerRequest::RegisterMerchant(r) => Some(r.body.request_id),
            BrokerRequest::Intent(r) => Some(r.body.request_id),
            BrokerRequest::PaymentRecords(_) => None,
        }
    }
}

// Built once per message and moved, never stored in bulk: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BrokerResponse {
    BrokerScripIssued(BrokerScripIssued),
    VendorScripIssued(VendorScripIssued),
    BrokerScripRenewed(BrokerScripRenewed),
    MerchantRegistered(MerchantRegistered),
    IntentRecorded(Signed<IntentReceipt>),
    PaymentRecordsAck(Signed<PaymentRecordsAck>),
    Refused(Refusal),
}

/// Everything a peer can ask a merchant.
// Built once per message and moved, never stored in bulk: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum MerchantRequest {
    Buy(Proved<Buy>),
    Catalog,
}

impl MerchantRequest {
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            MerchantRequest::Buy(r) => Some(r.body.request_id),
            MerchantRequest::Catalog => None,
        }
    }
}

// Built once per message and moved, never stored in bulk: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum MerchantResponse {
    ItemDelivered(ItemDelivered),
    Catalog(CatalogListing),
    Refused(Refusal),
}

// ---- Directory ----------------------------------------------------------

/// A registered merchant, as the broker lists it to customers.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MerchantEntry {
    pub merchant: MerchantId,
    pub name: String,
}

/// The broker's answer to a directory request.
pub type MerchantDirectory = Result<Vec<MerchantEntry>, Refusal>;

// ---- Audit --------------------------------------------------------------

/// The broker's evidence that it logged what a request did: the leaf, and a
/// checkpoint of the log that includes it. Peers keep these and later check
/// that every one is still in the log and that the log only grew.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct LogReceipt {
    pub request_id: RequestId,
    pub leaf_index: u64,
    /// RFC 6962 leaf hash of the event's canonical bytes.
    pub leaf_hash: [u8; 32],
    /// A C2SP signed-note checkpoint of a log of more than `leaf_index` leaves.
    pub checkpoint: Vec<u8>,
}

/// What the broker answers on every step protocol.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BrokerAnswer {
    pub response: BrokerResponse,
    /// The receipt of the request's logged step (one, for a request with an
    /// id) or of each credited payment record (for a batch).
    pub receipts: Vec<LogReceipt>,
}

/// Questions anyone may ask about the broker's log (`/scrip/audit/1`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum AuditRequest {
    /// The latest signed checkpoint.
    Checkpoint,
    /// An RFC 6962 inclusion proof of a leaf in the tree of `tree_size` leaves.
    Inclusion { leaf_index: u64, tree_size: u64 },
    /// A consistency proof between two tree sizes.
    Consistency { old_size: u64, new_size: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum AuditResponse {
    /// A C2SP signed-note checkpoint.
    Checkpoint(Vec<u8>),
    /// The hashes of an inclusion or consistency proof.
    Proof(Vec<[u8; 32]>),
    Refused(Refusal),
}
