//! The merchant: sells items for its own VendorScrip, validated locally.
//!
//! [`Merchant::handle`] validates a Buy item with no network call: kind,
//! issuer, currency, stamp (one keyed hash), expiry, ownership proof (one
//! keyed hash) and one insert-or-fail into the local spent set. It returns the
//! item, change VendorScrip (same `cust_id`, fresh id and expiry) and a
//! receipt, and queues a payment record for the broker in the same
//! transaction. [`Merchant::answer_group`] signs the receipts of a whole group
//! at once, as a Merkle tree's root. [`Merchant::poll_payment_records`] yields
//! the records in signed batches; [`Merchant::handle_payment_records_ack`]
//! clears them.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use rand::SeedableRng;

use scrip_proto::crypto::{digest, labelled_bytes, BadSignature, Proved, Signed};
use scrip_proto::msg::{
    envelope_aad, purpose, BatchedReceipt, BrokerInfo, BrokerRequest, BrokerResponse, Buy,
    CatalogEntry, CatalogListing, Credentials, ItemDelivered, Licence, MerchantReceipt,
    MerchantRequest, MerchantResponse, MerchantSecrets, PaymentRecord, PaymentRecords, Purchase,
    ReceiptBatch, RecordOutcome, RegisterMerchant,
};
use scrip_proto::{
    decode, encode, encoding::MAX_MESSAGE_LEN, AccountNumber, Amount, MerchantId, Pin, Refusal,
    RequestId, Scrip, ScripBody, ScripId, ScripKind, Timestamp,
};

use crate::keys::MerchantKeys;
use crate::log::{record_hash, MemoryTree};
use crate::store::{
    decode_stored, MerchantStore, MerchantTx, ReceiptBatchRow, Spend, StoreError, StoredResponse,
    SweepFrom, Swept,
};
use crate::validate::{verify_spend, Expected};

/// Room a batch of payment records leaves in a message for what is not a
/// record: the request's tag, the merchant's id, the count and the signature.
const BATCH_ENVELOPE: usize = 1024;

/// One item for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogItem {
    pub id: String,
    pub title: String,
    pub price: Amount,
    pub content: Vec<u8>,
}

/// The shortest [`MerchantConfig::spent_retention`] the merchant uses: a
/// clock set back by less than this cannot reopen a forgotten sale's scrip.
pub const MIN_SPENT_RETENTION: u64 = 24 * 3600;

/// How a merchant runs.
#[derive(Debug, Clone)]
pub struct MerchantConfig {
    pub name: String,
    /// The VendorScrip series the broker is licensed to mint and change is stamped with.
    pub series: u32,
    /// Seconds from a purchase until its change expires.
    pub change_lifetime: u64,
    /// Seconds a sale is kept after its scrip expired: its spent mark and
    /// its stored delivery ([`Merchant::forget_expired_sales`]). An expired
    /// scrip is refused before the spent set is read, so forgetting it
    /// cannot let it be spent twice while the clock does not step back by
    /// more than this; until then a lost answer can be asked for again. At
    /// least [`MIN_SPENT_RETENTION`].
    pub spent_retention: u64,
}

impl MerchantConfig {
    pub fn new(name: impl Into<String>) -> Self {
        MerchantConfig {
            name: name.into(),
            series: 1,
            change_lifetime: 7 * 24 * 3600,
            spent_retention: 30 * 24 * 3600,
        }
    }
}

/// What a payment-records acknowledgement settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Records the broker recorded now or before; cleared from the queue.
    pub recorded: usize,
    /// The total credited to the merchant's account by this acknowledgement.
    pub credited: Amount,
    /// Records the broker refused for good; cleared from the queue, to be investigated.
    pub refused: Vec<(ScripId, Refusal)>,
}

/// The merchant's state machine. Holds keys, catalog and configuration; all state is in the store.
#[derive(Debug)]
pub struct Merchant {
    keys: MerchantKeys,
    broker: BrokerInfo,
    config: MerchantConfig,
    catalog: Vec<CatalogItem>,
    licence: Licence,
}

impl Merchant {
    pub fn new(
        keys: MerchantKeys,
        broker: BrokerInfo,
        config: MerchantConfig,
        catalog: Vec<CatalogItem>,
    ) -> Self {
        let licence = keys.licence(config.series);
        Merchant {
            keys,
            broker,
            config,
            catalog,
            licence,
        }
    }

    pub fn id(&self) -> MerchantId {
        self.keys.public_key()
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The merchant's identity key; the node gives libp2p the same identity,
    /// so the merchant's peer id names its merchant id.
    pub fn signing_key(&self) -> &scrip_proto::crypto::SigningKey {
        &self.keys.signing
    }

    /// The request that registers this merchant at the broker: name, and the
    /// account and licence sealed to the broker.
    pub fn registration_request(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request_id: RequestId,
        account: AccountNumber,
        pin: Pin,
    ) -> Result<BrokerRequest, Refusal> {
        let secrets = MerchantSecrets {
            credentials: Credentials { account, pin },
            licence: self.licence.clone(),
        };
        let sealed = self
            .broker
            .hpke_key
            .seal_value(
                rng,
                purpose::MERCHANT_SECRETS,
                &envelope_aad(&request_id, &self.id()),
                &secrets,
            )
            .map_err(|e| Refusal::invalid_request(e.to_string()))?;
        let body = RegisterMerchant {
            request_id,
            merchant: self.id(),
            name: self.config.name.clone(),
            secrets: sealed,
        };
        Ok(BrokerRequest::RegisterMerchant(Signed::sign(
            body,
            &self.keys.signing,
        )))
    }

    pub fn catalog(&self) -> CatalogListing {
        CatalogListing {
            merchant: self.id(),
            name: self.config.name.clone(),
            currency: self.broker.currency,
            items: self
                .catalog
                .iter()
                .map(|i| CatalogEntry {
                    id: i.id.clone(),
                    title: i.title.clone(),
                    price: i.price,
                })
                .collect(),
        }
    }

    /// Handles the canonical bytes of a [`MerchantRequest`].
    pub fn handle_bytes(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &[u8],
    ) -> Vec<u8> {
        let response = match decode::<MerchantRequest>(request) {
            Ok(request) => self.handle(store, now, rng, &request),
            Err(error) => MerchantResponse::Refused(error.into()),
        };
        encode(&response)
    }

    /// Handles one request; a refusal leaves the store as it was.
    pub fn handle(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &MerchantRequest,
    ) -> MerchantResponse {
        let mut answers = self.answer_group(store, now, rng, std::slice::from_ref(request));
        answers
            .pop()
            .unwrap_or(MerchantResponse::Refused(Refusal::Unavailable))
    }

    /// Answers a group of requests with one durable commit (group commit)
    /// and one signature over all their receipts (a [`ReceiptBatch`]). The
    /// requests share one transaction, and a refused one writes nothing, so
    /// it leaves the others' changes and the store as it was. If the group
    /// cannot be committed, every request is answered
    /// [`Refusal::Unavailable`] and nothing was kept.
    pub fn answer_group(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        requests: &[MerchantRequest],
    ) -> Vec<MerchantResponse> {
        // One transaction for the whole group, not a group commit of one
        // transaction per sale: a sale refuses only before its first write
        // (see `sell`), so a refusal has nothing to undo, and the commit is
        // the group's one durable write. (A savepoint per group would only
        // copy every page it changes a second time.)
        let answered = (|| {
            let mut tx = store.begin()?;
            // One draw from the caller's generator per group, not one system
            // call per change id: a ChaCha stream seeded from it is as
            // unpredictable.
            let mut rng =
                rand_chacha::ChaCha12Rng::from_rng(&mut *rng).map_err(|_| Refusal::Unavailable)?;
            let rng = &mut rng;
            let mut sales = Sales::default();
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                let answer = match request {
                    MerchantRequest::Catalog => {
                        Answer::Done(Box::new(MerchantResponse::Catalog(self.catalog())))
                    }
                    MerchantRequest::Buy(buy) => match self.buy(&mut tx, now, rng, buy, &sales) {
                        Ok(Bought::New(sale)) => Answer::Sale(sales.push(sale)),
                        Ok(Bought::Earlier(sale)) => Answer::Retry(sale),
                        Ok(Bought::Stored(delivered)) => {
                            Answer::Done(Box::new(MerchantResponse::ItemDelivered(delivered)))
                        }
                        // The store failed: nothing of the group can be trusted to commit.
                        Err(Refusal::Unavailable) => return Err(Refusal::Unavailable),
                        Err(refusal) => Answer::Done(Box::new(MerchantResponse::Refused(refusal))),
                    },
                };
                answers.push(answer);
            }
            let mut delivered: Vec<_> = self
                .deliver(&mut tx, now, sales.made)?
                .into_iter()
                .map(Some)
                .collect();
            tx.commit()?;
            // Backwards, so that a sale's retries, which come after it, copy
            // its delivery before the sale itself takes it.
            let mut responses: Vec<_> = answers
                .into_iter()
                .rev()
                .map(|answer| match answer {
                    Answer::Done(response) => *response,
                    Answer::Retry(sale) => MerchantResponse::ItemDelivered(
                        delivered[sale].clone().expect("taken only by its sale"),
                    ),
                    Answer::Sale(sale) => MerchantResponse::ItemDelivered(
                        delivered[sale].take().expect("taken only by its sale"),
                    ),
                })
                .collect();
            responses.reverse();
            Ok::<_, Refusal>(responses)
        })();
        answered.unwrap_or_else(|refusal| vec![MerchantResponse::Refused(refusal); requests.len()])
    }

    /// Buy item, in a group of its own; see [`Merchant::answer_group`].
    pub fn handle_buy(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Proved<Buy>,
    ) -> Result<ItemDelivered, Refusal> {
        let request = MerchantRequest::Buy(request.clone());
        match self.handle(store, now, rng, &request) {
            MerchantResponse::ItemDelivered(delivered) => Ok(delivered),
            MerchantResponse::Refused(refusal) => Err(refusal),
            MerchantResponse::Catalog(_) => Err(Refusal::Unavailable),
        }
    }

    /// Buy item: validate locally, mark spent and mint change, in the
    /// group's transaction. The receipt is signed, the payment record queued
    /// and the answer stored for retries once the whole group has been
    /// through ([`Merchant::deliver`]). A sale is named by the scrip it spends and
    /// its request id: a retry with the same scrip, request id and bytes gets
    /// the same delivery, also within the group (`sales`); the same scrip and
    /// id with other bytes is `RequestIdReused`; the same scrip under another
    /// id is a double spend.
    fn buy(
        &self,
        tx: &mut impl MerchantTx,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Proved<Buy>,
        sales: &Sales,
    ) -> Result<Bought, Refusal> {
        let body = &request.body;
        let request_digest = digest(request);
        let scrip = body.scrip.body.id;
        if let Some(earlier) = sales.of(&scrip, &body.request_id) {
            if sales.made[earlier].request_digest != request_digest {
                return Err(Refusal::RequestIdReused {
                    request: body.request_id,
                });
            }
            return Ok(Bought::Earlier(earlier));
        }
        // A retry of a sale answered by an earlier group is refused by the
        // sale's checks (its scrip is spent now, or has expired, or the
        // catalog has changed), and only then looked for: a new sale, the
        // common case, reads nothing more than its spent mark.
        match self.sell(tx, now, rng, request, request_digest) {
            Ok(sale) => Ok(Bought::New(sale)),
            Err(Refusal::Unavailable) => Err(Refusal::Unavailable),
            Err(refusal) => match tx.stored_delivery(&scrip, &body.request_id)? {
                Some(stored) => Ok(Bought::Stored(replay(
                    tx,
                    self.id(),
                    stored,
                    &request_digest,
                    body,
                )?)),
                None => Err(refusal),
            },
        }
    }

    /// The checks and changes of one sale, in `tx`. Every refusal comes
    /// before the first write: marking the scrip spent is insert-or-fail and
    /// writes nothing when it fails, and nothing after it can refuse. So a
    /// refused sale leaves `tx` as it was.
    fn sell(
        &self,
        tx: &mut impl MerchantTx,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Proved<Buy>,
        request_digest: [u8; 32],
    ) -> Result<Sale, Refusal> {
        let body = &request.body;
        let id = self.id();
        let expected = Expected {
            kind: ScripKind::Vendor,
            issuer: &id,
            currency: self.broker.currency,
        };
        let spent = verify_spend(request, &body.scrip, &expected, &self.licence, now)?.scrip();
        let (price, content) = self.price_of(&body.purchase)?;
        if body.price != price {
            return Err(Refusal::PriceMismatch {
                item: purchase_name(&body.purchase),
                price,
                offered: body.price,
            });
        }
        let change_value = spent
            .value()
            .checked_sub(price)
            .ok_or(Refusal::InsufficientValue {
                value: spent.value(),
                needed: price,
            })?;
        if tx.mark_spent(&spent.id(), spent.body.expiry)? == Spend::AlreadySpent {
            return Err(Refusal::DoubleSpend { scrip: spent.id() });
        }
        let change = (!change_value.is_zero()).then(|| {
            Scrip::mint(
                ScripBody {
                    kind: ScripKind::Vendor,
                    issuer: id,
                    id: ScripId::random(self.licence.series, rng),
                    value: change_value,
                    currency: self.broker.currency,
                    cust_id: spent.body.cust_id,
                    expiry: now.plus_seconds(self.config.change_lifetime),
                },
                &self.licence.stamping_secret,
            )
        });
        Ok(Sale {
            request_digest,
            receipt: receipt_of(id, body, change.as_ref().map(Scrip::id), now),
            record: PaymentRecord {
                buy: request.clone(),
                change: change.as_ref().map(|c| c.body.clone()),
                at: now,
            },
            content,
            change,
        })
    }

    /// Signs the receipts of a group's sales at once, and keeps each sale:
    /// its payment record queued, its delivery stored for retries.
    fn deliver(
        &self,
        tx: &mut impl MerchantTx,
        now: Timestamp,
        sales: Vec<Sale>,
    ) -> Result<Vec<ItemDelivered>, Refusal> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let leaf_hashes: Vec<[u8; 32]> = sales
            .iter()
            .map(|sale| record_hash(&labelled_bytes(&sale.receipt)))
            .collect();
        let mut tree = MemoryTree::default();
        for &leaf_hash in &leaf_hashes {
            tree.push_hash(leaf_hash);
        }
        let batch = Signed::sign(
            ReceiptBatch {
                merchant: self.id(),
                size: tree.size(),
                root: tree.root(),
                at: now,
            },
            &self.keys.signing,
        );
        // The batch and its leaves once for the group; each delivery is
        // stored without them, less than half the bytes per sale.
        let number = tx.store_receipt_batch(&batch, &leaf_hashes)?;
        let mut delivered = Vec::with_capacity(sales.len());
        for (leaf, sale) in (0..).zip(sales) {
            let item = ItemDelivered {
                request_id: sale.record.buy.body.request_id,
                content: sale.content,
                change: sale.change,
                receipt: BatchedReceipt {
                    receipt: sale.receipt,
                    leaf,
                    proof: tree.prove(leaf).ok_or(Refusal::Unavailable)?,
                    batch: batch.clone(),
                },
            };
            // The bytes of a `StoredDelivery`, from the item's own fields.
            let stored = encode(&(number, &item.content, &item.change));
            tx.keep_sale(
                &sale.record,
                &StoredResponse {
                    request_digest: sale.request_digest,
                    response: stored,
                    leaf: Some(leaf),
                },
            )?;
            delivered.push(item);
        }
        Ok(delivered)
    }

    fn price_of(&self, purchase: &Purchase) -> Result<(Amount, Vec<u8>), Refusal> {
        match purchase {
            Purchase::Renew => Ok((Amount::ZERO, Vec::new())),
            Purchase::Item(item) => self
                .catalog
                .iter()
                .find(|i| &i.id == item)
                .map(|i| (i.price, i.content.clone()))
                .ok_or_else(|| Refusal::UnknownItem { item: item.clone() }),
        }
    }

    /// The oldest queued payment records, at most `max` and as many as one
    /// message holds, as one signed batch for the broker; `None` when
    /// nothing is queued.
    pub fn poll_payment_records(
        &self,
        store: &mut impl MerchantStore,
        max: usize,
    ) -> Result<Option<BrokerRequest>, Refusal> {
        let mut tx = store.begin()?;
        let mut records = tx.queued_payment_records(max)?;
        if records.is_empty() {
            return Ok(None);
        }
        // A record is as large as the Buy it records, item id included: a
        // batch the broker refused as too large would be polled again and
        // again, and no later record would ever be forwarded.
        let mut size = 0;
        let fit = records
            .iter()
            .take_while(|record| {
                size += scrip_proto::encode(record).len();
                size <= MAX_MESSAGE_LEN - BATCH_ENVELOPE
            })
            .count();
        records.truncate(fit.max(1));
        let batch = PaymentRecords {
            merchant: self.id(),
            records,
        };
        Ok(Some(BrokerRequest::PaymentRecords(Signed::sign(
            batch,
            &self.keys.signing,
        ))))
    }

    /// Forgets the sales whose scrip expired more than
    /// [`MerchantConfig::spent_retention`] before `now`, of the next `rows`
    /// the sweep looks at ([`MerchantTx::forget_expired_sales`]), and the
    /// receipt batches no delivery kept needs any more, in one transaction.
    /// So a merchant's store, and its spent set in memory, stop growing once
    /// sales are forgotten as fast as they are made.
    ///
    /// A Buy of a forgotten sale's scrip is refused `Expired`, as it was
    /// before: the expiry is checked before the spent set. A retry of the
    /// sale itself is refused `Expired` too, where it was answered again.
    pub fn forget_expired_sales(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rows: usize,
        from: SweepFrom,
    ) -> Result<Swept, StoreError> {
        let retention = self.config.spent_retention.max(MIN_SPENT_RETENTION);
        let Some(before) = now.0.checked_sub(retention) else {
            return Ok(Swept::default());
        };
        let mut tx = store.begin()?;
        let swept = tx.forget_expired_sales(Timestamp(before), rows, from)?;
        // Batches are numbered in the order sales are kept. With no kept
        // delivery to say which is the oldest in use, none is forgotten.
        if let (true, Some(oldest)) = (swept.forgotten > 0, tx.oldest_delivery()?) {
            let batch = decode_stored::<StoredDelivery>(&oldest.response, "stored delivery")?.batch;
            tx.forget_receipt_batches_before(batch)?;
        }
        tx.commit()?;
        Ok(swept)
    }

    /// Keeps the broker's log receipts of the merchant's registration, to
    /// verify later that its log still holds them. (Those of payment records
    /// come with their acknowledgement: [`Merchant::handle_payment_records_ack`].)
    pub fn keep_log_receipts(
        &self,
        store: &mut impl MerchantStore,
        receipts: &[scrip_proto::msg::LogReceipt],
    ) -> Result<(), Refusal> {
        let mut tx = store.begin()?;
        for receipt in receipts {
            tx.add_receipt(receipt)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Clears the records the broker acknowledged (recorded or refused for
    /// good), and keeps the broker's log receipts that came with the
    /// acknowledgement in the same transaction.
    ///
    /// # Errors
    /// The broker's refusal of the whole batch, or [`Refusal::BadSignature`]
    /// if the acknowledgement is not the broker's; then nothing is cleared.
    pub fn handle_payment_records_ack(
        &self,
        store: &mut impl MerchantStore,
        response: &BrokerResponse,
        log_receipts: &[scrip_proto::msg::LogReceipt],
    ) -> Result<Settlement, Refusal> {
        let ack = match response {
            BrokerResponse::PaymentRecordsAck(ack) => ack,
            BrokerResponse::Refused(refusal) => return Err(refusal.clone()),
            _ => {
                return Err(Refusal::invalid_request(
                    "the broker answered payment records with another kind of response",
                ))
            }
        };
        let ack = ack
            .verify(&self.broker.broker)
            .map_err(|_| Refusal::BadSignature {
                what: "payment records acknowledgement".into(),
            })?;
        if ack.merchant != self.id() {
            return Err(Refusal::invalid_request(
                "the acknowledgement is for another merchant",
            ));
        }
        let mut tx = store.begin()?;
        let mut settlement = Settlement::default();
        for (scrip, outcome) in &ack.outcomes {
            tx.dequeue_payment_record(scrip)?;
            match outcome {
                RecordOutcome::Credited { amount, .. } => {
                    settlement.recorded += 1;
                    settlement.credited = settlement
                        .credited
                        .checked_add(*amount)
                        .unwrap_or(Amount::MAX);
                }
                RecordOutcome::AlreadyRecorded => settlement.recorded += 1,
                RecordOutcome::Refused(refusal) => {
                    tracing::warn!(%scrip, %refusal, "broker refused a payment record");
                    settlement.refused.push((*scrip, refusal.clone()));
                }
            }
        }
        for receipt in log_receipts {
            tx.add_receipt(receipt)?;
        }
        tx.commit()?;
        Ok(settlement)
    }
}

/// The receipt, if `merchant` signed a batch that holds it.
///
/// # Errors
/// [`BadSignature`] if the batch is not signed by `merchant`, or is
/// another merchant's, or the proof does not lead from the receipt to the
/// batch's root.
pub fn verify_receipt<'a>(
    receipt: &'a BatchedReceipt,
    merchant: &MerchantId,
) -> Result<&'a MerchantReceipt, BadSignature> {
    let batch = receipt.batch.verify(merchant)?;
    let leaf_hash = crate::log::record_hash(&labelled_bytes(&receipt.receipt));
    if batch.merchant != *merchant
        || receipt.receipt.merchant != *merchant
        || !crate::log::check_inclusion(
            &receipt.proof,
            batch.size,
            batch.root,
            receipt.leaf,
            leaf_hash,
        )
    {
        return Err(BadSignature);
    }
    Ok(&receipt.receipt)
}

/// The receipt of a sale of `buy`: all of it but the change comes from the
/// request, whose price the sale checked against the catalog.
fn receipt_of(
    merchant: MerchantId,
    buy: &Buy,
    change: Option<ScripId>,
    at: Timestamp,
) -> MerchantReceipt {
    MerchantReceipt {
        request_id: buy.request_id,
        merchant,
        scrip: buy.scrip.body.id,
        purchase: buy.purchase.clone(),
        price: buy.price,
        change,
        at,
    }
}

/// A delivery as the merchant stores it for retries: the [`ItemDelivered`]
/// without its receipt, which a retry's request (the same bytes) and the
/// batch rebuild, and without its leaf, inclusion proof and signed batch,
/// which the store keeps once per group ([`MerchantTx::store_receipt_batch`]).
#[derive(BorshSerialize, BorshDeserialize)]
struct StoredDelivery {
    /// The number of the group's receipt batch in the store.
    batch: u64,
    content: Vec<u8>,
    change: Option<Scrip>,
}

/// The delivery stored for `buy`'s request id, if `request_digest` is the
/// digest of the request it answered, with its receipt and inclusion proof
/// rebuilt: the receipt must be the leaf it was, and the leaves must make
/// the root the merchant signed.
fn replay(
    tx: &mut impl MerchantTx,
    merchant: MerchantId,
    stored: StoredResponse,
    request_digest: &[u8; 32],
    buy: &Buy,
) -> Result<ItemDelivered, Refusal> {
    let request = buy.request_id;
    let Some(leaf) = stored.leaf else {
        // Stored whole, before receipt batches were stored apart.
        return stored.replay(request_digest, request);
    };
    if stored.request_digest != *request_digest {
        return Err(Refusal::RequestIdReused { request });
    }
    let corrupt = || StoreError::corrupt("receipt batch of a stored delivery");
    let delivery: StoredDelivery = decode_stored(&stored.response, "stored delivery")?;
    let ReceiptBatchRow { batch, leaf_hashes } =
        tx.receipt_batch(delivery.batch)?.ok_or_else(corrupt)?;
    let receipt = receipt_of(
        merchant,
        buy,
        delivery.change.as_ref().map(Scrip::id),
        batch.body.at,
    );
    let leaf_hash = usize::try_from(leaf).ok().and_then(|i| leaf_hashes.get(i));
    if leaf_hash != Some(&record_hash(&labelled_bytes(&receipt))) {
        return Err(corrupt().into());
    }
    let mut tree = MemoryTree::default();
    for leaf_hash in leaf_hashes {
        tree.push_hash(leaf_hash);
    }
    let proof = tree
        .prove(leaf)
        .filter(|_| tree.size() == batch.body.size && tree.root() == batch.body.root)
        .ok_or_else(corrupt)?;
    Ok(ItemDelivered {
        request_id: request,
        content: delivery.content,
        change: delivery.change,
        receipt: BatchedReceipt {
            receipt,
            leaf,
            proof,
            batch,
        },
    })
}

fn purchase_name(purchase: &Purchase) -> String {
    match purchase {
        Purchase::Item(item) => item.clone(),
        Purchase::Renew => "renewal".into(),
    }
}

/// What one request of a group comes to before the group's receipts are signed.
enum Answer {
    /// Answered already: a refusal, the catalog, or a delivery stored before.
    Done(Box<MerchantResponse>),
    /// Delivered with the group's sale of this index.
    Sale(usize),
    /// A retry of the group's sale of this index, later in the same group.
    Retry(usize),
}

/// What a Buy item came to in its transaction.
enum Bought {
    /// A sale made now.
    New(Sale),
    /// A retry of the sale of this index, earlier in the same group.
    Earlier(usize),
    /// A retry of a sale answered by an earlier group.
    Stored(ItemDelivered),
}

/// The sales made so far in a group, found by the scrip they spent.
#[derive(Default)]
struct Sales {
    made: Vec<Sale>,
    /// Ordered, not hashed: SipHash of a 20-byte id cost more than a few
    /// comparisons in a group of hundreds, and a weaker hash would let
    /// customers choose colliding ids.
    by_scrip: BTreeMap<ScripId, usize>,
}

impl Sales {
    /// Adds `sale`; returns its index.
    fn push(&mut self, sale: Sale) -> usize {
        let index = self.made.len();
        self.by_scrip.insert(sale.receipt.scrip, index);
        self.made.push(sale);
        index
    }

    /// The index of the group's sale that spent `scrip` under `request`.
    fn of(&self, scrip: &ScripId, request: &RequestId) -> Option<usize> {
        let &index = self.by_scrip.get(scrip)?;
        (self.made[index].receipt.request_id == *request).then_some(index)
    }
}

/// A sale made in a group, waiting for its receipt to be signed.
struct Sale {
    request_digest: [u8; 32],
    receipt: MerchantReceipt,
    /// Queued with the delivery, when the group's receipts are signed.
    record: PaymentRecord,
    content: Vec<u8>,
    change: Option<Scrip>,
}
