//! The wallet: keeps scrip with its customer secrets and receipts, builds the
//! customer's requests, and takes in the responses.
//!
//! Each request the wallet builds is stored as a [`PendingRequest`] before it
//! is sent, and the scrip it spends is locked ([`ScripState::Pending`]). The
//! caller sends `pending.request` to its destination and hands the response to
//! [`Wallet::handle_broker_response`] or [`Wallet::handle_merchant_response`].
//! If no response comes (or the peer was unavailable), the caller resends the
//! same bytes: the request id makes the retry safe.

use scrip_proto::crypto::{CustomerSecret, Proved, Signed};
use scrip_proto::msg::{
    customer_secret_aad, envelope_aad, purpose, BrokerInfo, BrokerRequest, BrokerResponse,
    BrokerScripOrder, Buy, Credentials, Intent, IssuedScrip, LogReceipt, MerchantRequest,
    MerchantResponse, ObtainBrokerScrip, ObtainVendorScrip, Purchase, RenewBrokerScrip,
};
use scrip_proto::{
    decode, encode, AccountNumber, Amount, MerchantId, Pin, PublicKey, Refusal, RequestId, Scrip,
    ScripId, ScripKind, Timestamp,
};

use crate::keys::WalletKeys;
use crate::merchant::verify_receipt;
use crate::store::{
    BoughtItem, Destination, PendingRequest, ScripState, StoreError, WalletReceipt, WalletScrip,
    WalletStore, WalletTx,
};

/// Why the wallet could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("no usable {kind} worth at least {needed}{}; obtain more first", merchant.map(|m| format!(" for merchant {m}")).unwrap_or_default())]
    NoScrip {
        kind: ScripKind,
        needed: Amount,
        merchant: Option<MerchantId>,
    },
    #[error("the wallet holds no scrip {0}")]
    UnknownScrip(ScripId),
    #[error(
        "the response does not fit the request: {0}; the request stays pending and can be retried"
    )]
    BadResponse(String),
    #[error("no pending request {0}: it was already answered, or never made by this wallet")]
    UnknownRequest(RequestId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Refusal> for WalletError {
    fn from(refusal: Refusal) -> Self {
        WalletError::Refused(refusal)
    }
}

/// The wallet's holdings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances {
    /// Available BrokerScrip.
    pub broker_scrip: Amount,
    /// Available VendorScrip, per merchant, sorted by merchant.
    pub vendor_scrip: Vec<(MerchantId, Amount)>,
    /// Scrip locked by requests whose outcome is not known yet.
    pub pending: Amount,
}

/// The two requests of a Buy item: the intent for the broker and the buy for the merchant, sent in that order.
#[derive(Debug, Clone)]
pub struct PendingPurchase {
    pub intent: PendingRequest,
    pub buy: PendingRequest,
}

/// What a broker response gave the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerOutcome {
    /// New scrip now in the wallet (VendorScrip, BrokerScrip, change).
    Scrip(Vec<Scrip>),
    /// The broker recorded the intent; its signed receipt is kept.
    IntentRecorded,
}

/// An item bought. Unless it was a renewal, the wallet keeps it as a
/// [`BoughtItem`] under `request_id` until [`forget_item`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub request_id: RequestId,
    pub content: Vec<u8>,
    pub change: Option<Scrip>,
}

/// The customer's state machine. Holds keys; all state is in the store.
#[derive(Debug)]
pub struct Wallet {
    keys: WalletKeys,
    broker: BrokerInfo,
}

impl Wallet {
    pub fn new(keys: WalletKeys, broker: BrokerInfo) -> Self {
        Wallet { keys, broker }
    }

    pub fn account_key(&self) -> PublicKey {
        self.keys.account.public_key()
    }

    pub fn broker(&self) -> &BrokerInfo {
        &self.broker
    }

    /// Step 1: an Obtain BrokerScrip request, its credentials sealed to the broker.
    pub fn obtain_broker_scrip(
        &self,
        store: &mut impl WalletStore,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        account: AccountNumber,
        pin: Pin,
        amount: Amount,
    ) -> Result<PendingRequest, WalletError> {
        let request_id = RequestId::random(rng);
        let account_key = self.account_key();
        let order = BrokerScripOrder {
            credentials: Credentials { account, pin },
            amount,
        };
        let order = self
            .broker
            .hpke_key
            .seal_value(
                rng,
                purpose::CREDENTIALS,
                &envelope_aad(&request_id, &account_key),
                &order,
            )
            .map_err(|e| WalletError::BadResponse(e.to_string()))?;
        let body = ObtainBrokerScrip {
            request_id,
            account_key,
            reply_key: self.keys.reply.public_key(),
            order,
        };
        let request = BrokerRequest::ObtainBrokerScrip(Signed::sign(body, &self.keys.account));
        // The amount is inside the sealed order: keep a copy to check the answer.
        self.remember(
            store,
            PendingRequest {
                request_id,
                destination: Destination::Broker,
                request: encode(&request),
                spends: None,
                ordered: Some(amount),
            },
        )
    }

    /// Step 2: exchange the smallest sufficient BrokerScrip for `amount` of VendorScrip of `merchant`.
    pub fn obtain_vendor_scrip(
        &self,
        store: &mut impl WalletStore,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        now: Timestamp,
        merchant: MerchantId,
        amount: Amount,
    ) -> Result<PendingRequest, WalletError> {
        let mut tx = store.begin()?;
        let source = pick(&mut tx, now, ScripKind::Broker, self.broker.broker, amount)?;
        let request_id = RequestId::random(rng);
        let body = ObtainVendorScrip {
            request_id,
            scrip: source.scrip.clone(),
            merchant,
            amount,
            reply_key: self.keys.reply.public_key(),
        };
        let request = BrokerRequest::ObtainVendorScrip(Proved::prove(body, &source.secret));
        let pending = lock(
            &mut tx,
            source,
            request_id,
            Destination::Broker,
            encode(&request),
        )?;
        tx.commit()?;
        Ok(pending)
    }

    /// Exchanges BrokerScrip near expiry for fresh BrokerScrip of the same value.
    pub fn renew_broker_scrip(
        &self,
        store: &mut impl WalletStore,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        scrip: ScripId,
    ) -> Result<PendingRequest, WalletError> {
        let mut tx = store.begin()?;
        let source = tx
            .all_scrip()?
            .into_iter()
            .find(|s| {
                s.scrip.id() == scrip
                    && s.state == ScripState::Available
                    && s.scrip.body.kind == ScripKind::Broker
            })
            .ok_or(WalletError::UnknownScrip(scrip))?;
        let request_id = RequestId::random(rng);
        let request = BrokerRequest::RenewBrokerScrip(Proved::prove(
            RenewBrokerScrip {
                request_id,
                scrip: source.scrip.clone(),
            },
            &source.secret,
        ));
        let pending = lock(
            &mut tx,
            source,
            request_id,
            Destination::Broker,
            encode(&request),
        )?;
        tx.commit()?;
        Ok(pending)
    }

    /// Step 3: the intent for the broker and the buy for the merchant, paying
    /// `price` with the smallest sufficient VendorScrip of `merchant`.
    /// `Purchase::Renew` with price zero renews VendorScrip near expiry.
    pub fn buy(
        &self,
        store: &mut impl WalletStore,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        now: Timestamp,
        merchant: MerchantId,
        purchase: Purchase,
        price: Amount,
    ) -> Result<PendingPurchase, WalletError> {
        let mut tx = store.begin()?;
        let source = pick(&mut tx, now, ScripKind::Vendor, merchant, price)?;
        let buy_id = RequestId::random(rng);
        let intent_id = RequestId::random(rng);
        let intent = Intent {
            request_id: intent_id,
            buy_request: buy_id,
            scrip: source.scrip.clone(),
            purchase: purchase.clone(),
            price,
        };
        let intent = encode(&BrokerRequest::Intent(Proved::prove(
            intent,
            &source.secret,
        )));
        let buy = Buy {
            request_id: buy_id,
            scrip: source.scrip.clone(),
            purchase,
            price,
        };
        let buy = encode(&MerchantRequest::Buy(Proved::prove(buy, &source.secret)));
        let intent = PendingRequest {
            request_id: intent_id,
            destination: Destination::Broker,
            request: intent,
            spends: None,
            ordered: None,
        };
        tx.put_pending(&intent)?;
        let buy = lock(
            &mut tx,
            source,
            buy_id,
            Destination::Merchant(merchant),
            buy,
        )?;
        tx.commit()?;
        Ok(PendingPurchase { intent, buy })
    }

    /// Takes in the broker's answer to a pending request.
    ///
    /// # Errors
    /// [`WalletError::Refused`] with the broker's refusal: if definitive, the
    /// request is dropped and its scrip unlocked (or removed, after a double
    /// spend); if not, the request stays pending for a retry.
    pub fn handle_broker_response(
        &self,
        store: &mut impl WalletStore,
        request_id: RequestId,
        response: &BrokerResponse,
        log_receipts: &[LogReceipt],
    ) -> Result<BrokerOutcome, WalletError> {
        self.settle(store, request_id, |tx, pending| {
            if pending.destination != Destination::Broker {
                return Err(WalletError::BadResponse(
                    "a broker answered a request sent to a merchant".into(),
                ));
            }
            let outcome = match response {
                BrokerResponse::Refused(refusal) => Err(WalletError::Refused(refusal.clone())),
                BrokerResponse::BrokerScripIssued(r) if r.request_id == request_id => {
                    let BrokerRequest::ObtainBrokerScrip(_) = decode(&pending.request)
                        .map_err(|e| WalletError::BadResponse(e.to_string()))?
                    else {
                        return Err(WalletError::BadResponse(
                            "BrokerScrip answers a request that did not ask for it".into(),
                        ));
                    };
                    // A request stored by an older build kept no copy of its
                    // order (`ordered` is `None`): its answer is taken as before.
                    if let Some(ordered) = pending.ordered {
                        let issued = r.issued.scrip.value();
                        if issued != ordered {
                            return Err(WalletError::BadResponse(format!(
                                "asked for {ordered} of BrokerScrip, got {issued}"
                            )));
                        }
                    }
                    let scrip =
                        self.take_issued(tx, &r.issued, ScripKind::Broker, self.broker.broker)?;
                    Ok(BrokerOutcome::Scrip(vec![scrip]))
                }
                BrokerResponse::VendorScripIssued(r) if r.request_id == request_id => {
                    let BrokerRequest::ObtainVendorScrip(asked) = decode(&pending.request)
                        .map_err(|e| WalletError::BadResponse(e.to_string()))?
                    else {
                        return Err(WalletError::BadResponse(
                            "VendorScrip answers a request that did not ask for it".into(),
                        ));
                    };
                    let spent = spent_scrip(tx, pending)?;
                    if r.vendor_scrip.scrip.value() != asked.body.amount {
                        return Err(WalletError::BadResponse(format!(
                            "asked for {} of VendorScrip, got {}",
                            asked.body.amount,
                            r.vendor_scrip.scrip.value()
                        )));
                    }
                    check_change_value(&spent, asked.body.amount, r.change.as_ref())?;
                    let vendor_scrip = self.take_issued(
                        tx,
                        &r.vendor_scrip,
                        ScripKind::Vendor,
                        asked.body.merchant,
                    )?;
                    let mut new = vec![vendor_scrip];
                    if let Some(change) = &r.change {
                        new.push(take_change(tx, &spent, change, self.broker.broker)?);
                    }
                    tx.remove_scrip(&spent.scrip.id())?;
                    Ok(BrokerOutcome::Scrip(new))
                }
                BrokerResponse::BrokerScripRenewed(r) if r.request_id == request_id => {
                    let spent = spent_scrip(tx, pending)?;
                    check_change_value(&spent, Amount::ZERO, Some(&r.scrip))?;
                    let renewed = take_change(tx, &spent, &r.scrip, self.broker.broker)?;
                    tx.remove_scrip(&spent.scrip.id())?;
                    Ok(BrokerOutcome::Scrip(vec![renewed]))
                }
                BrokerResponse::IntentRecorded(receipt)
                    if receipt.body.request_id == request_id =>
                {
                    receipt.verify(&self.broker.broker).map_err(|_| {
                        WalletError::BadResponse(
                            "the intent receipt is not signed by the broker".into(),
                        )
                    })?;
                    tx.add_receipt(&WalletReceipt::Intent(receipt.clone()))?;
                    Ok(BrokerOutcome::IntentRecorded)
                }
                _ => Err(WalletError::BadResponse(
                    "the broker answered with another kind of response or request id".into(),
                )),
            }?;
            // Only receipts of this request's leaf: another's would prove nothing.
            for receipt in log_receipts.iter().filter(|r| r.request_id == request_id) {
                tx.add_receipt(&WalletReceipt::Log(receipt.clone()))?;
            }
            Ok(outcome)
        })
    }

    /// Takes in the merchant's answer to a pending buy: keeps the change and the receipt.
    ///
    /// # Errors
    /// As for [`Wallet::handle_broker_response`].
    pub fn handle_merchant_response(
        &self,
        store: &mut impl WalletStore,
        request_id: RequestId,
        response: &MerchantResponse,
    ) -> Result<Delivered, WalletError> {
        self.settle(store, request_id, |tx, pending| {
            let Destination::Merchant(merchant) = pending.destination else {
                return Err(WalletError::BadResponse(
                    "a merchant answered a request sent to the broker".into(),
                ));
            };
            match response {
                MerchantResponse::Refused(refusal) => Err(WalletError::Refused(refusal.clone())),
                MerchantResponse::ItemDelivered(delivered)
                    if delivered.request_id == request_id =>
                {
                    let receipt = verify_receipt(&delivered.receipt, &merchant).map_err(|_| {
                        WalletError::BadResponse(
                            "the receipt is not in a batch signed by the merchant".into(),
                        )
                    })?;
                    let spent = spent_scrip(tx, pending)?;
                    let MerchantRequest::Buy(asked) = decode(&pending.request)
                        .map_err(|e| WalletError::BadResponse(e.to_string()))?
                    else {
                        return Err(WalletError::BadResponse(
                            "an item answers a request that was not a purchase".into(),
                        ));
                    };
                    if receipt.scrip != spent.scrip.id()
                        || receipt.request_id != request_id
                        || receipt.purchase != asked.body.purchase
                        || receipt.price != asked.body.price
                    {
                        return Err(WalletError::BadResponse(
                            "the receipt is for another purchase".into(),
                        ));
                    }
                    check_change_value(&spent, asked.body.price, delivered.change.as_ref())?;
                    if let Some(change) = &delivered.change {
                        take_change(tx, &spent, change, merchant)?;
                    }
                    tx.remove_scrip(&spent.scrip.id())?;
                    tx.add_receipt(&WalletReceipt::PurchaseInBatch(delivered.receipt.clone()))?;
                    // Settling takes the pending request, and with it the means
                    // to ask for the item again: it is kept in the same commit.
                    if let Purchase::Item(item) = &asked.body.purchase {
                        tx.put_item(&BoughtItem {
                            request_id,
                            merchant,
                            item: item.clone(),
                            price: asked.body.price,
                            content: delivered.content.clone(),
                        })?;
                    }
                    Ok(Delivered {
                        request_id,
                        content: delivered.content.clone(),
                        change: delivered.change.clone(),
                    })
                }
                _ => Err(WalletError::BadResponse(
                    "the merchant answered with another kind of response or request id".into(),
                )),
            }
        })
    }

    /// Runs `handle` on the pending request in one transaction, and applies
    /// the wallet's rule for refusals (see [`Wallet::handle_broker_response`]).
    fn settle<S: WalletStore, R>(
        &self,
        store: &mut S,
        request_id: RequestId,
        handle: impl FnOnce(&mut S::Tx<'_>, &PendingRequest) -> Result<R, WalletError>,
    ) -> Result<R, WalletError> {
        let mut tx = store.begin_settle()?;
        let pending = tx
            .take_pending(&request_id)?
            .ok_or(WalletError::UnknownRequest(request_id))?;
        match handle(&mut tx, &pending) {
            Ok(result) => {
                tx.commit()?;
                Ok(result)
            }
            Err(WalletError::Refused(refusal)) if refusal.definitive() => {
                if let Some(scrip) = pending.spends {
                    let mut held = held(&mut tx, scrip)?;
                    if matches!(refusal, Refusal::DoubleSpend { .. }) {
                        // Spent elsewhere: the scrip is gone; keeping it would only fail again.
                        tx.remove_scrip(&scrip)?;
                    } else {
                        held.state = ScripState::Available;
                        tx.put_scrip(&held)?;
                    }
                }
                tx.commit()?;
                Err(WalletError::Refused(refusal))
            }
            // Outcome unknown or answer unusable: roll back, the request stays pending.
            Err(error) => Err(error),
        }
    }

    /// Opens a newly issued scrip's customer secret and keeps both.
    fn take_issued(
        &self,
        tx: &mut impl WalletTx,
        issued: &IssuedScrip,
        kind: ScripKind,
        issuer: PublicKey,
    ) -> Result<Scrip, WalletError> {
        let body = &issued.scrip.body;
        if body.kind != kind || body.issuer != issuer || body.currency != self.broker.currency {
            return Err(WalletError::BadResponse(format!(
                "issued scrip {} is not {kind} of {issuer} in {}",
                body.id, self.broker.currency
            )));
        }
        let plaintext = self
            .keys
            .reply
            .open(
                purpose::CUSTOMER_SECRET,
                &customer_secret_aad(&body.id),
                &issued.customer_secret,
            )
            .map_err(|e| WalletError::BadResponse(e.to_string()))?;
        let secret: CustomerSecret = decode(&plaintext)
            .map_err(|e| WalletError::BadResponse(format!("customer secret: {e}")))?;
        tx.put_scrip(&WalletScrip {
            scrip: issued.scrip.clone(),
            secret,
            state: ScripState::Available,
        })?;
        Ok(issued.scrip.clone())
    }

    /// Drops a pending request that was never sent and unlocks its scrip;
    /// for a purchase whose intent the broker refused. Never call it for a
    /// request that may have reached its peer: resend that one instead.
    pub fn cancel_unsent(
        &self,
        store: &mut impl WalletStore,
        request_id: RequestId,
    ) -> Result<(), WalletError> {
        let mut tx = store.begin()?;
        let pending = tx
            .take_pending(&request_id)?
            .ok_or(WalletError::UnknownRequest(request_id))?;
        if let Some(scrip) = pending.spends {
            let mut held = held(&mut tx, scrip)?;
            held.state = ScripState::Available;
            tx.put_scrip(&held)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// All pending requests, to resend after a restart or a lost connection.
    pub fn pending(
        &self,
        store: &mut impl WalletStore,
    ) -> Result<Vec<PendingRequest>, WalletError> {
        Ok(store.begin()?.all_pending()?)
    }

    /// Every scrip held, with its state.
    pub fn scrip(&self, store: &mut impl WalletStore) -> Result<Vec<WalletScrip>, WalletError> {
        Ok(store.begin()?.all_scrip()?)
    }

    pub fn receipts(
        &self,
        store: &mut impl WalletStore,
    ) -> Result<Vec<WalletReceipt>, WalletError> {
        Ok(store.begin()?.receipts()?)
    }

    /// Balances by kind and merchant.
    pub fn balances(&self, store: &mut impl WalletStore) -> Result<Balances, WalletError> {
        let mut balances = Balances::default();
        let add = |total: &mut Amount, value: Amount| -> Result<(), WalletError> {
            *total = total
                .checked_add(value)
                .ok_or_else(|| StoreError("wallet balance overflows".into()))?;
            Ok(())
        };
        for held in self.scrip(store)? {
            let body = &held.scrip.body;
            match (held.state, body.kind) {
                (ScripState::Pending(_), _) => add(&mut balances.pending, body.value)?,
                (ScripState::Available, ScripKind::Broker) => {
                    add(&mut balances.broker_scrip, body.value)?
                }
                (ScripState::Available, ScripKind::Vendor) => match balances
                    .vendor_scrip
                    .iter_mut()
                    .find(|(m, _)| *m == body.issuer)
                {
                    Some((_, total)) => add(total, body.value)?,
                    None => balances.vendor_scrip.push((body.issuer, body.value)),
                },
            }
        }
        balances.vendor_scrip.sort();
        Ok(balances)
    }

    fn remember(
        &self,
        store: &mut impl WalletStore,
        pending: PendingRequest,
    ) -> Result<PendingRequest, WalletError> {
        let mut tx = store.begin()?;
        tx.put_pending(&pending)?;
        tx.commit()?;
        Ok(pending)
    }
}

/// The items bought and kept in the wallet: delivered, not yet
/// [forgotten](forget_item), oldest first. They need no keys, so a wallet
/// can hand them over before it reaches its broker.
pub fn kept_items(store: &mut impl WalletStore) -> Result<Vec<BoughtItem>, WalletError> {
    Ok(store.begin()?.items()?)
}

/// Forgets the item bought by `request_id`, once the user has it (written
/// out and synced); whether the wallet still kept it.
///
/// Its commit need not wait for the disk: if a crash loses it, the item
/// is kept again and written out once more, a copy, never a loss.
pub fn forget_item(
    store: &mut impl WalletStore,
    request_id: RequestId,
) -> Result<bool, WalletError> {
    let mut tx = store.begin_settle()?;
    let kept = tx.remove_item(&request_id)?;
    tx.commit()?;
    Ok(kept)
}

/// The smallest available, unexpired scrip of `kind` from `issuer` worth at least `needed`.
fn pick(
    tx: &mut impl WalletTx,
    now: Timestamp,
    kind: ScripKind,
    issuer: PublicKey,
    needed: Amount,
) -> Result<WalletScrip, WalletError> {
    tx.all_scrip()?
        .into_iter()
        .filter(|s| {
            s.state == ScripState::Available
                && s.scrip.body.kind == kind
                && s.scrip.body.issuer == issuer
        })
        .filter(|s| s.scrip.body.expiry > now && s.scrip.value() >= needed)
        .min_by_key(|s| s.scrip.value())
        .ok_or(WalletError::NoScrip {
            kind,
            needed,
            merchant: (kind == ScripKind::Vendor).then_some(issuer),
        })
}

/// Locks `source` to the request and stores the request as pending.
fn lock(
    tx: &mut impl WalletTx,
    mut source: WalletScrip,
    request_id: RequestId,
    destination: Destination,
    request: Vec<u8>,
) -> Result<PendingRequest, WalletError> {
    source.state = ScripState::Pending(request_id);
    tx.put_scrip(&source)?;
    let pending = PendingRequest {
        request_id,
        destination,
        request,
        spends: Some(source.scrip.id()),
        ordered: None,
    };
    tx.put_pending(&pending)?;
    Ok(pending)
}

fn spent_scrip(
    tx: &mut impl WalletTx,
    pending: &PendingRequest,
) -> Result<WalletScrip, WalletError> {
    let id = pending
        .spends
        .ok_or_else(|| WalletError::BadResponse("the request spent no scrip".into()))?;
    held(tx, id)
}

/// The scrip with this id, which the wallet must hold.
fn held(tx: &mut impl WalletTx, id: ScripId) -> Result<WalletScrip, WalletError> {
    tx.scrip(&id)?.ok_or(WalletError::UnknownScrip(id))
}

/// Change must be worth exactly what was not paid: `spent - paid`, none if zero.
fn check_change_value(
    spent: &WalletScrip,
    paid: Amount,
    change: Option<&Scrip>,
) -> Result<(), WalletError> {
    let owed = spent
        .scrip
        .value()
        .checked_sub(paid)
        .ok_or_else(|| WalletError::BadResponse("paid more than the scrip is worth".into()))?;
    let given = change.map(Scrip::value).unwrap_or(Amount::ZERO);
    if given != owed || change.is_some_and(|c| c.value().is_zero()) {
        return Err(WalletError::BadResponse(format!(
            "change of {given} where {owed} was owed"
        )));
    }
    Ok(())
}

/// Keeps change: same pseudonym as the spent scrip, so the same customer secret spends it.
fn take_change(
    tx: &mut impl WalletTx,
    spent: &WalletScrip,
    change: &Scrip,
    issuer: PublicKey,
) -> Result<Scrip, WalletError> {
    let body = &change.body;
    if body.kind != spent.scrip.body.kind
        || body.cust_id != spent.scrip.body.cust_id
        || body.issuer != issuer
        || body.currency != spent.scrip.body.currency
    {
        return Err(WalletError::BadResponse(format!(
            "change {} does not belong to spent scrip {}",
            body.id,
            spent.scrip.id()
        )));
    }
    tx.put_scrip(&WalletScrip {
        scrip: change.clone(),
        secret: spent.secret.clone(),
        state: ScripState::Available,
    })?;
    Ok(change.clone())
}
