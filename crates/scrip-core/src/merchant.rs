//! The merchant: sells items for its own VendorScrip, validated locally.
//!
//! [`Merchant::handle`] validates a Buy item with no network call: kind,
//! issuer, currency, stamp (one keyed hash), expiry, ownership proof (one
//! keyed hash) and one insert-or-fail into the local spent set. It returns the
//! item, change VendorScrip (same `cust_id`, fresh id and expiry) and a signed
//! receipt, and queues a payment record for the broker in the same
//! transaction. [`Merchant::poll_payment_records`] yields those records in
//! signed batches; [`Merchant::handle_payment_records_ack`] clears them.

use scrip_proto::crypto::{digest, Proved, Signed};
use scrip_proto::msg::{
    envelope_aad, purpose, BrokerInfo, BrokerRequest, BrokerResponse, Buy, CatalogEntry,
    CatalogListing, Credentials, ItemDelivered, Licence, MerchantReceipt, MerchantRequest,
    MerchantResponse, MerchantSecrets, PaymentRecord, PaymentRecords, Purchase, RecordOutcome,
    RegisterMerchant,
};
use scrip_proto::{
    decode, encode, AccountNumber, Amount, MerchantId, Pin, Refusal, RequestId, Scrip, ScripBody,
    ScripId, ScripKind, Timestamp,
};

use crate::keys::MerchantKeys;
use crate::store::{grouped, MerchantStore, MerchantTx, Spend, StoreError, StoredResponse};
use crate::validate::{verify_spend, Expected};

/// One item for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogItem {
    pub id: String,
    pub title: String,
    pub price: Amount,
    pub content: Vec<u8>,
}

/// How a merchant runs.
#[derive(Debug, Clone)]
pub struct MerchantConfig {
    pub name: String,
    /// The VendorScrip series the broker is licensed to mint and change is stamped with.
    pub series: u32,
    /// Seconds from a purchase until its change expires.
    pub change_lifetime: u64,
}

impl MerchantConfig {
    pub fn new(name: impl Into<String>) -> Self {
        MerchantConfig {
            name: name.into(),
            series: 1,
            change_lifetime: 7 * 24 * 3600,
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

    /// Answers a group of requests with one durable commit (group commit).
    /// Each request runs in its own transaction, so a refused one leaves the
    /// others' changes and the store as it was. If the group cannot be
    /// committed, every request is answered [`Refusal::Unavailable`] and
    /// nothing was kept.
    pub fn answer_group(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        requests: &[MerchantRequest],
    ) -> Vec<MerchantResponse> {
        grouped(store, |store| {
            Ok::<_, StoreError>(
                requests
                    .iter()
                    .map(|request| self.step(store, now, rng, request))
                    .collect(),
            )
        })
        .unwrap_or_else(|error| {
            vec![MerchantResponse::Refused(Refusal::from(error)); requests.len()]
        })
    }

    fn step(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &MerchantRequest,
    ) -> MerchantResponse {
        match request {
            MerchantRequest::Catalog => MerchantResponse::Catalog(self.catalog()),
            MerchantRequest::Buy(buy) => match self.handle_buy(store, now, rng, buy) {
                Ok(delivered) => MerchantResponse::ItemDelivered(delivered),
                Err(refusal) => MerchantResponse::Refused(refusal),
            },
        }
    }

    /// Buy item: validate locally, mark spent, mint change, sign the receipt,
    /// queue the payment record, all in one transaction. A retry with the
    /// same request id and bytes returns the same delivery.
    pub fn handle_buy(
        &self,
        store: &mut impl MerchantStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Proved<Buy>,
    ) -> Result<ItemDelivered, Refusal> {
        let body = &request.body;
        let mut tx = store.begin()?;
        let request_digest = digest(request);
        if let Some(stored) = tx.stored_response(&body.request_id)? {
            return stored.replay(&request_digest, body.request_id);
        }

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
        let receipt = MerchantReceipt {
            request_id: body.request_id,
            merchant: id,
            scrip: spent.id(),
            purchase: body.purchase.clone(),
            price,
            change: change.as_ref().map(Scrip::id),
            at: now,
        };
        let delivered = ItemDelivered {
            request_id: body.request_id,
            content,
            change,
            receipt: Signed::sign(receipt, &self.keys.signing),
        };
        tx.queue_payment_record(&PaymentRecord {
            buy: request.clone(),
            change: delivered.change.as_ref().map(|c| c.body.clone()),
            at: now,
        })?;
        tx.store_response(
            &body.request_id,
            &StoredResponse {
                request_digest,
                response: encode(&delivered),
                leaf: None,
            },
        )?;
        tx.commit()?;
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

    /// The oldest queued payment records, at most `max`, as one signed batch
    /// for the broker; `None` when nothing is queued.
    pub fn poll_payment_records(
        &self,
        store: &mut impl MerchantStore,
        max: usize,
    ) -> Result<Option<BrokerRequest>, Refusal> {
        let mut tx = store.begin()?;
        let records = tx.queued_payment_records(max)?;
        if records.is_empty() {
            return Ok(None);
        }
        let batch = PaymentRecords {
            merchant: self.id(),
            records,
        };
        Ok(Some(BrokerRequest::PaymentRecords(Signed::sign(
            batch,
            &self.keys.signing,
        ))))
    }

    /// Keeps the broker's log receipts, to verify later that its log still holds them.
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

    /// Clears the records the broker acknowledged (recorded or refused for good).
    ///
    /// # Errors
    /// The broker's refusal of the whole batch, or [`Refusal::BadSignature`]
    /// if the acknowledgement is not the broker's; then nothing is cleared.
    pub fn handle_payment_records_ack(
        &self,
        store: &mut impl MerchantStore,
        response: &BrokerResponse,
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
        tx.commit()?;
        Ok(settlement)
    }
}

fn purchase_name(purchase: &Purchase) -> String {
    match purchase {
        Purchase::Item(item) => item.clone(),
        Purchase::Renew => "renewal".into(),
    }
}
