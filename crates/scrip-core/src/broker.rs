//! The broker: the bank of scrip, on-line in every step.
//!
//! [`Broker::handle`] takes one request, the time, randomness and the store,
//! and returns the response. Each request runs in one store transaction that
//! commits only if the request succeeded, so a refusal changes nothing, and
//! every value movement is one balanced [`Transfer`] in that transaction.
//! A successful response is stored under its request id: a retry with the
//! same id and bytes gets the same response and moves nothing.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use scrip_proto::crypto::{digest, Labelled, Proved, Signed, StampingSecret};
use scrip_proto::msg::{
    customer_secret_aad, envelope_aad, purpose, AuditRequest, AuditResponse, BrokerAnswer,
    BrokerInfo, BrokerRequest, BrokerResponse, BrokerScripIssued, BrokerScripOrder,
    BrokerScripRenewed, Intent, IntentReceipt, IssuedScrip, Licence, LogReceipt,
    MerchantRegistered, MerchantSecrets, ObtainBrokerScrip, ObtainVendorScrip, PaymentRecord,
    PaymentRecords, PaymentRecordsAck, Purchase, RecordOutcome, RegisterMerchant, RenewBrokerScrip,
    VendorScripIssued,
};
use scrip_proto::{
    decode, encode, AccountNumber, Amount, Currency, CustId, HpkePublicKey, MerchantId, Pin,
    PublicKey, Refusal, Scrip, ScripBody, ScripId, ScripKind, Timestamp,
};

use crate::event::BrokerEvent;
use crate::keys::{pin_matches, BrokerKeys, PinHashing};
use crate::ledger::{LedgerAccount, Transfer, TransferKind};
use crate::log;
use crate::parallel;
use crate::store::{
    grouped, AccountLock, AccountRecord, BrokerStore, BrokerTx, IntentRow, MerchantRecord,
    PaymentRow, PinFailures, Spend, StoreError, StoredResponse,
};
use crate::validate::{verify_spend, verify_stamp, Expected, IssuerSecrets};

/// How a broker runs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub currency: Currency,
    /// The BrokerScrip series new scrip is stamped with; all series up to it are accepted.
    pub series: u32,
    /// Seconds from issue until BrokerScrip expires.
    pub broker_scrip_lifetime: u64,
    /// Seconds from issue until VendorScrip minted by the broker expires.
    pub vendor_scrip_lifetime: u64,
    pub pin_hashing: PinHashing,
    /// Wrong PINs in a row after which an account is locked (default 5).
    /// Every PIN for a locked account, the right one too, is refused with
    /// [`Refusal::AccountLocked`] before Argon2 runs.
    pub max_pin_failures: NonZeroU32,
    /// Seconds a lock lasts; `None` (the default): until the operator
    /// unlocks the account ([`Broker::unlock_account`], `scrip broker
    /// unlock`). See docs/PROTOCOL.md, "PIN guessing", for why.
    pub pin_lock_duration: Option<u64>,
}

impl BrokerConfig {
    pub fn new(currency: Currency) -> Self {
        BrokerConfig {
            currency,
            series: 1,
            broker_scrip_lifetime: 30 * 24 * 3600,
            vendor_scrip_lifetime: 7 * 24 * 3600,
            pin_hashing: PinHashing::RECOMMENDED,
            max_pin_failures: NonZeroU32::new(5).expect("5 is not zero"),
            pin_lock_duration: None,
        }
    }
}

/// An account as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub number: AccountNumber,
    pub name: String,
    pub balance: Amount,
    /// The merchant names whose sales this account receives.
    pub merchants: Vec<String>,
    /// Wrong PINs in a row, and the lock they led to.
    pub pin_failures: PinFailures,
}

/// What [`Broker::unlock_account`] cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlocked {
    /// The wrong PINs in a row the account had.
    pub failures: u32,
    /// The lock it had, in force or lapsed.
    pub lock: Option<AccountLock>,
}

/// A newly opened account. The PIN is shown to the operator once and never stored in clear.
#[derive(Debug)]
pub struct OpenedAccount {
    pub number: AccountNumber,
    pub pin: Pin,
}

/// The broker's state machine. Holds keys and configuration only; all state is in the store.
#[derive(Debug)]
pub struct Broker {
    keys: BrokerKeys,
    config: BrokerConfig,
    /// Stamping secrets of series 1..=config.series, index = series - 1.
    stamping: Vec<StampingSecret>,
    /// Argon2id PIN verifications run since this broker was made.
    pin_verifications: AtomicU64,
    /// [`PinHashing::dummy_hash`] of `config.pin_hashing`, made at the first
    /// PIN for an unknown account: what such a PIN is checked against.
    dummy_pin_hash: OnceLock<String>,
    /// Merchants' licences as steps last read them from the store, so that
    /// work ahead outside a group ([`Broker::prepare`]) can mint VendorScrip
    /// without reading the store. Only a hint: a step keeps what was minted
    /// ahead only under the licence the store still has, and refreshes this.
    licences: RwLock<HashMap<MerchantId, Licence>>,
}

impl IssuerSecrets for Broker {
    fn stamping_secret(&self, series: u32) -> Option<&StampingSecret> {
        self.stamping.get((series as usize).checked_sub(1)?)
    }
    fn customer_master(&self) -> &scrip_proto::crypto::CustomerMaster {
        &self.keys.customer_master
    }
}

impl IssuerSecrets for scrip_proto::msg::Licence {
    fn stamping_secret(&self, series: u32) -> Option<&StampingSecret> {
        (series == self.series).then_some(&self.stamping_secret)
    }
    fn customer_master(&self) -> &scrip_proto::crypto::CustomerMaster {
        &self.customer_master
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        // The detail stays in the broker's log; the client only learns to retry.
        tracing::error!(%error, "store failure; request outcome unknown to client");
        Refusal::Unavailable
    }
}

/// The work of one step that needs no store, done before the group's
/// transactions begin and on every core: checking an order's signature and
/// opening its envelope, and minting the scrip the step will issue with its
/// customer secret sealed (an X25519 key agreement each: most of a step's
/// work). The step uses it only if it still fits the store (VendorScrip
/// minted under the licence the merchant still has), and otherwise does the
/// work itself, so working ahead changes how fast, never what, a step answers.
#[derive(Default)]
struct Ahead {
    /// Obtain BrokerScrip: the order, or why it cannot be opened.
    order: Option<Result<BrokerScripOrder, Refusal>>,
    /// The scrip to issue, and the licence VendorScrip was minted under.
    issued: Option<(IssuedScrip, Option<Licence>)>,
}

/// A broker request with its work ahead done (see [`Broker::prepare`]):
/// what a node queues for the next group commit.
pub struct Prepared {
    request: BrokerRequest,
    ahead: Ahead,
}

impl Prepared {
    pub fn request(&self) -> &BrokerRequest {
        &self.request
    }
}

/// Which way money crosses between an account and the outside bank.
enum Outside {
    Deposit,
    Withdrawal,
}

/// Whether `request` issues scrip, and so has public-key work to do ahead.
fn issues_scrip(request: &BrokerRequest) -> bool {
    matches!(
        request,
        BrokerRequest::ObtainBrokerScrip(_) | BrokerRequest::ObtainVendorScrip(_)
    )
}

/// Runs a read-only `step` in one read transaction: a snapshot that waits
/// for no writer.
fn reading<S: BrokerStore, R>(
    store: &mut S,
    step: impl FnOnce(&mut S::Tx<'_>) -> Result<R, Refusal>,
) -> Result<R, Refusal> {
    let mut tx = store.begin_read()?;
    step(&mut tx)
}

/// Runs `step` in one transaction and keeps its changes only if it succeeded.
fn transaction<S: BrokerStore, R>(
    store: &mut S,
    step: impl FnOnce(&mut S::Tx<'_>) -> Result<R, Refusal>,
) -> Result<R, Refusal> {
    let mut tx = store.begin()?;
    let result = step(&mut tx)?;
    tx.commit()?;
    Ok(result)
}

impl Broker {
    pub fn new(keys: BrokerKeys, config: BrokerConfig) -> Self {
        let stamping = (1..=config.series)
            .map(|series| keys.stamping_secret(series))
            .collect();
        Broker {
            keys,
            config,
            stamping,
            pin_verifications: AtomicU64::new(0),
            dummy_pin_hash: OnceLock::new(),
            licences: RwLock::default(),
        }
    }

    /// How many PINs this broker has checked against an Argon2id hash
    /// since it was made (an account's, or the dummy for an unknown
    /// account): the costly part of authenticating, which an attempt on a
    /// locked account never reaches.
    pub fn pin_verifications(&self) -> u64 {
        self.pin_verifications.load(Ordering::Relaxed)
    }

    /// Runs `steps` as one group commit (see [`GroupCommit`]): they become
    /// durable together. If they appended to the log, one checkpoint of the
    /// new log, signed by the broker, is kept in the same group.
    ///
    /// # Errors
    /// The group could not be begun, checkpointed or committed; then none of
    /// it was kept, whatever `steps` returned.
    fn group<S: BrokerStore, R>(
        &self,
        store: &mut S,
        now: Timestamp,
        steps: impl FnOnce(&mut S) -> R,
    ) -> Result<R, Refusal> {
        grouped(store, |store| {
            let result = steps(store);
            transaction(store, |tx| self.checkpoint(tx, now))?;
            Ok(result)
        })
    }

    /// Signs and keeps a checkpoint of the log, if it grew since the latest one.
    fn checkpoint(&self, tx: &mut impl BrokerTx, now: Timestamp) -> Result<(), Refusal> {
        let size = tx.log_size()?;
        let checkpointed = tx.latest_checkpoint()?.map_or(0, |(size, _)| size);
        if size > checkpointed {
            let root = log::root(tx, size)?;
            tx.put_checkpoint(
                size,
                &log::sign_checkpoint(&self.keys.signing, size, root, now)?,
            )?;
        }
        Ok(())
    }

    /// Runs one operator `step` in its own transaction and group commit.
    fn in_transaction<S: BrokerStore, R>(
        &self,
        store: &mut S,
        now: Timestamp,
        step: impl FnOnce(&mut S::Tx<'_>) -> Result<R, Refusal>,
    ) -> Result<R, Refusal> {
        self.group(store, now, |store| transaction(store, step))?
    }

    /// What peers need to know to talk to this broker.
    pub fn info(&self) -> BrokerInfo {
        BrokerInfo {
            broker: self.keys.public_key(),
            hpke_key: self.keys.hpke.public_key(),
            currency: self.config.currency,
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The broker's identity key; the node gives libp2p the same identity.
    pub fn signing_key(&self) -> &scrip_proto::crypto::SigningKey {
        &self.keys.signing
    }

    // ---- Operator commands ------------------------------------------------

    /// Opens a customer account with a random number and PIN.
    pub fn open_account(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        name: &str,
    ) -> Result<OpenedAccount, Refusal> {
        check_name(name)?;
        let pin = random_pin(rng);
        let pin_hash = self.config.pin_hashing.hash(&pin, rng);
        self.in_transaction(store, now, |tx| {
            let number = loop {
                let candidate = AccountNumber::random(rng);
                if tx.account(candidate)?.is_none() {
                    break candidate;
                }
            };
            tx.insert_account(&AccountRecord {
                number,
                name: name.to_owned(),
                pin_hash: pin_hash.clone(),
                account_key: None,
                opened_at: now,
            })?;
            tx.append_event(&BrokerEvent::AccountOpened {
                account: number,
                pin_hash: digest(&pin_hash),
                at: now,
            })?;
            Ok(OpenedAccount { number, pin })
        })
    }

    /// Money arriving from the outside bank. Returns the new balance.
    pub fn deposit(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        account: AccountNumber,
        amount: Amount,
    ) -> Result<Amount, Refusal> {
        self.move_outside_money(store, now, account, amount, Outside::Deposit)
    }

    /// Money paid out to the outside bank. Returns the new balance.
    pub fn withdraw(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        account: AccountNumber,
        amount: Amount,
    ) -> Result<Amount, Refusal> {
        self.move_outside_money(store, now, account, amount, Outside::Withdrawal)
    }

    /// A deposit or a withdrawal: one transfer between the account and the
    /// outside bank, and its event. Returns the account's new balance.
    fn move_outside_money(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        account: AccountNumber,
        amount: Amount,
        direction: Outside,
    ) -> Result<Amount, Refusal> {
        let customer = LedgerAccount::Customer(account);
        let (kind, from, to, event) = match direction {
            Outside::Deposit => (
                TransferKind::Deposit,
                LedgerAccount::MoneyIn,
                customer,
                BrokerEvent::Deposit {
                    account,
                    amount,
                    at: now,
                },
            ),
            Outside::Withdrawal => (
                TransferKind::Withdrawal,
                customer,
                LedgerAccount::MoneyOut,
                BrokerEvent::Withdrawal {
                    account,
                    amount,
                    at: now,
                },
            ),
        };
        self.in_transaction(store, now, |tx| {
            existing_account(tx, account)?;
            transfer(tx, kind, from, to, amount, now)?;
            tx.append_event(&event)?;
            customer_balance(tx, account)
        })
    }

    /// Clears the account's wrong PINs and lifts its lock, if it has either,
    /// and logs that ([`BrokerEvent::AccountUnlocked`]). An account with
    /// neither is left as it is and nothing is logged. The operator runs
    /// this once the account holder has been identified (out of band).
    pub fn unlock_account(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        account: AccountNumber,
    ) -> Result<Unlocked, Refusal> {
        self.in_transaction(store, now, |tx| {
            existing_account(tx, account)?;
            let failures = tx.pin_failures(account)?;
            if failures != PinFailures::default() {
                tx.put_pin_failures(account, &PinFailures::default())?;
                tx.append_event(&BrokerEvent::AccountUnlocked { account, at: now })?;
            }
            Ok(Unlocked {
                failures: failures.count,
                lock: failures.lock,
            })
        })
    }

    /// Every account with its balance and the merchants it receives sales for.
    pub fn accounts(&self, store: &mut impl BrokerStore) -> Result<Vec<AccountSummary>, Refusal> {
        reading(store, |tx| {
            let merchants = tx.merchants()?;
            let mut summaries = Vec::new();
            for account in tx.accounts()? {
                summaries.push(AccountSummary {
                    number: account.number,
                    balance: customer_balance(tx, account.number)?,
                    pin_failures: tx.pin_failures(account.number)?,
                    merchants: merchants
                        .iter()
                        .filter(|m| m.account == account.number)
                        .map(|m| m.name.clone())
                        .collect(),
                    name: account.name,
                });
            }
            Ok(summaries)
        })
    }

    /// Every ledger account with its balance, for reports and audits.
    pub fn ledger(
        &self,
        store: &mut impl BrokerStore,
    ) -> Result<Vec<(LedgerAccount, i64)>, Refusal> {
        reading(store, |tx| Ok(tx.balances()?))
    }

    /// The registered merchants: id and name.
    pub fn merchants(
        &self,
        store: &mut impl BrokerStore,
    ) -> Result<Vec<(MerchantId, String)>, Refusal> {
        reading(store, |tx| {
            Ok(tx
                .merchants()?
                .into_iter()
                .map(|m| (m.merchant, m.name))
                .collect())
        })
    }

    // ---- Requests from peers ----------------------------------------------

    /// Handles the canonical bytes of a [`BrokerRequest`] and returns the bytes of the [`BrokerResponse`].
    pub fn handle_bytes(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &[u8],
    ) -> Vec<u8> {
        let response = match decode::<BrokerRequest>(request) {
            Ok(request) => self.handle(store, now, rng, &request),
            Err(error) => BrokerResponse::Refused(error.into()),
        };
        encode(&response)
    }

    /// Handles one request. Never panics on any input; every refusal is a
    /// [`BrokerResponse::Refused`] and leaves the store as it was.
    pub fn handle(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &BrokerRequest,
    ) -> BrokerResponse {
        let mut answers = self.answer_group(store, now, rng, std::slice::from_ref(request));
        answers
            .pop()
            .map_or(BrokerResponse::Refused(Refusal::Unavailable), |answer| {
                answer.response
            })
    }

    /// Answers a group of requests with one durable commit and one signed
    /// checkpoint (group commit): under load, one fsync and one signature
    /// serve many steps. Each request still runs in its own transaction, so a
    /// refused one leaves the others' changes and the store as it was. If the
    /// group cannot be committed, every request is answered
    /// [`Refusal::Unavailable`] and nothing was kept.
    ///
    /// Each answer carries the log receipts of its request (see [`BrokerAnswer`]).
    pub fn answer_group(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        requests: &[BrokerRequest],
    ) -> Vec<BrokerAnswer> {
        let ahead = self.work_ahead(store, now, rng, requests);
        self.answer(store, now, rng, requests, ahead)
    }

    /// Does the work of `request` that needs no store (see [`Ahead`]) before
    /// it joins a group: a node calls this in each request's own thread, so
    /// that the public-key work of the next group overlaps the commit of the
    /// one before ([`Broker::answer_prepared`] then answers the group).
    /// VendorScrip is minted ahead only for merchants whose licence an
    /// earlier step has read.
    pub fn prepare(
        &self,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: BrokerRequest,
    ) -> Prepared {
        let ahead = if issues_scrip(&request) {
            self.ahead(now, rng, &request)
        } else {
            Ahead::default()
        };
        Prepared { request, ahead }
    }

    /// [`Broker::answer_group`] for requests already prepared: the same answers.
    pub fn answer_prepared(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        group: Vec<Prepared>,
    ) -> Vec<BrokerAnswer> {
        let (requests, ahead): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|prepared| (prepared.request, prepared.ahead))
            .unzip();
        self.answer(store, now, rng, &requests, ahead)
    }

    /// Runs the steps of a group, each with its work ahead, and makes their receipts.
    fn answer(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        requests: &[BrokerRequest],
        ahead: Vec<Ahead>,
    ) -> Vec<BrokerAnswer> {
        let responses = self
            .group(store, now, |store| {
                requests
                    .iter()
                    .zip(ahead)
                    .map(|(request, ahead)| self.step(store, now, rng, request, ahead))
                    .collect()
            })
            .unwrap_or_else(|refusal| vec![BrokerResponse::Refused(refusal); requests.len()]);
        // The group is durable and checkpointed: the receipts can point into it.
        let receipts = reading(store, |tx| {
            requests
                .iter()
                .zip(&responses)
                .map(|(request, response)| receipts(tx, request, response))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_else(|refusal| {
            tracing::warn!(%refusal, "cannot make log receipts");
            vec![Vec::new(); requests.len()]
        });
        responses
            .into_iter()
            .zip(receipts)
            .map(|(response, receipts)| BrokerAnswer { response, receipts })
            .collect()
    }

    /// The work of `requests` that needs no store, done on every core before
    /// the group's transactions begin (see [`Ahead`]).
    fn work_ahead(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        requests: &[BrokerRequest],
    ) -> Vec<Ahead> {
        if !requests.iter().any(issues_scrip) {
            // Intents and payment records, the bulk under load: nothing to seal.
            return requests.iter().map(|_| Ahead::default()).collect();
        }
        self.learn_licences(store, requests);
        // One generator per request that issues scrip, drawn in order: the
        // same seed gives the same answers however many cores share the work.
        let work: Vec<_> = requests
            .iter()
            .map(|request| {
                let rng = issues_scrip(request)
                    .then(|| ChaCha20Rng::from_rng(&mut *rng).ok())
                    .flatten();
                (request, rng)
            })
            .collect();
        parallel::map(&work, |(request, rng)| match (request, rng.clone()) {
            (request, Some(mut rng)) => self.ahead(now, &mut rng, request),
            (_, None) => Ahead::default(),
        })
    }

    /// Reads from the store the licences of the merchants whose VendorScrip
    /// `requests` obtain and that no step has read yet; the steps check them
    /// again in their transactions.
    fn learn_licences(&self, store: &mut impl BrokerStore, requests: &[BrokerRequest]) {
        let mut merchants: Vec<MerchantId> = {
            let known = self.known_licences();
            requests
                .iter()
                .filter_map(|request| match request {
                    BrokerRequest::ObtainVendorScrip(r) => Some(r.body.merchant),
                    _ => None,
                })
                .filter(|merchant| !known.contains_key(merchant))
                .collect()
        };
        if merchants.is_empty() {
            return;
        }
        merchants.sort_unstable();
        merchants.dedup();
        // Without them each step seals for itself: slower, same answers.
        let _ = reading(store, |tx| {
            for merchant in merchants {
                if let Some(record) = tx.merchant(&merchant)? {
                    self.remember_licence(&record);
                }
            }
            Ok(())
        });
    }

    fn known_licences(&self) -> std::sync::RwLockReadGuard<'_, HashMap<MerchantId, Licence>> {
        // A thread that panicked while inserting left a whole map behind.
        self.licences
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember_licence(&self, merchant: &MerchantRecord) {
        // Steps without work ahead (one request at a time) land here on every
        // exchange: only a new or changed licence takes the write lock.
        if self.known_licences().get(&merchant.merchant) == Some(&merchant.licence) {
            return;
        }
        self.licences
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(merchant.merchant, merchant.licence.clone());
    }

    /// One request's work ahead.
    fn ahead(
        &self,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &BrokerRequest,
    ) -> Ahead {
        match request {
            BrokerRequest::ObtainBrokerScrip(request) => {
                let body = &request.body;
                let order = self.open_order(request);
                let issued = order.as_ref().ok().and_then(|order| {
                    self.issue_broker_scrip(rng, order.amount, &body.reply_key, now)
                        .ok()
                });
                Ahead {
                    order: Some(order),
                    issued: issued.map(|issued| (issued, None)),
                }
            }
            BrokerRequest::ObtainVendorScrip(request) => {
                let body = &request.body;
                let licence = self.known_licences().get(&body.merchant).cloned();
                let issued = licence.and_then(|licence| {
                    let scrip =
                        self.mint_vendor_scrip(rng, body.merchant, &licence, body.amount, now);
                    self.issue(rng, scrip, &licence.customer_master, &body.reply_key)
                        .ok()
                        .map(|issued| (issued, Some(licence)))
                });
                Ahead {
                    order: None,
                    issued,
                }
            }
            _ => Ahead::default(),
        }
    }

    /// One request of a group, in its own transaction.
    fn step<S: BrokerStore>(
        &self,
        store: &mut S,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &BrokerRequest,
        ahead: Ahead,
    ) -> BrokerResponse {
        let result = transaction(store, |tx| {
            let Some(request_id) = request.request_id() else {
                return self.dispatch(tx, now, rng, request, ahead);
            };
            let request_digest = digest(request);
            if let Some(stored) = tx.stored_response(&request_id)? {
                return stored.replay(&request_digest, request_id);
            }
            let size_before = tx.log_size()?;
            let response = self.dispatch(tx, now, rng, request, ahead)?;
            // The step's first event is the leaf its receipt points at.
            let leaf = (tx.log_size()? > size_before).then_some(size_before);
            tx.store_response(
                &request_id,
                &StoredResponse {
                    request_digest,
                    response: encode(&response),
                    leaf,
                },
            )?;
            Ok(response)
        });
        result.unwrap_or_else(|refusal| {
            BrokerResponse::Refused(self.record_refusal(store, now, refusal))
        })
    }

    /// Answers questions about the log: the latest checkpoint, inclusion and consistency proofs.
    pub fn handle_audit(
        &self,
        store: &mut impl BrokerStore,
        request: &AuditRequest,
    ) -> AuditResponse {
        let answer = reading(store, |tx| {
            let size = tx.log_size()?;
            match *request {
                AuditRequest::Checkpoint => tx
                    .latest_checkpoint()?
                    .map(|(_, note)| AuditResponse::Checkpoint(note))
                    .ok_or_else(|| Refusal::invalid_request("the log is empty")),
                AuditRequest::Inclusion {
                    leaf_index,
                    tree_size,
                } if leaf_index < tree_size && tree_size <= size => Ok(AuditResponse::Proof(
                    log::prove_inclusion(tx, tree_size, leaf_index)?,
                )),
                AuditRequest::Consistency { old_size, new_size }
                    if 1 <= old_size && old_size <= new_size && new_size <= size =>
                {
                    Ok(AuditResponse::Proof(log::prove_consistency(
                        tx, new_size, old_size,
                    )?))
                }
                _ => Err(Refusal::invalid_request(format!(
                    "no such proof in a log of {size} leaves"
                ))),
            }
        });
        answer.unwrap_or_else(AuditResponse::Refused)
    }

    /// Records the refusals an auditor looks for as misuse (double spends,
    /// wrong PINs) in a transaction of their own, after the refused request
    /// rolled back, and returns the answer to give. A wrong PIN is also
    /// counted there, and locks the account when the count reaches
    /// [`BrokerConfig::max_pin_failures`]; then, or if the account was
    /// locked meanwhile, the answer is [`Refusal::AccountLocked`]. Failing
    /// to record one does not change the answer.
    fn record_refusal(
        &self,
        store: &mut impl BrokerStore,
        now: Timestamp,
        refusal: Refusal,
    ) -> Refusal {
        let recorded = match &refusal {
            Refusal::DoubleSpend { scrip } => {
                let event = BrokerEvent::DoubleSpendRefused {
                    scrip: *scrip,
                    at: now,
                };
                transaction(store, |tx| Ok(tx.append_event(&event)?)).map(|()| None)
            }
            Refusal::WrongAccountOrPin { account } => {
                transaction(store, |tx| self.count_wrong_pin(tx, now, *account))
            }
            _ => return refusal,
        };
        match recorded {
            Ok(None) => refusal,
            Ok(Some(locked)) => locked,
            Err(error) => {
                tracing::warn!(%error, "cannot record a refusal in the audit log");
                refusal
            }
        }
    }

    /// Logs a wrong PIN for `account` and counts it; at the limit, locks the
    /// account and logs the lock. Returns the lock refusal if the account
    /// is now locked. An account that does not exist has nothing to count
    /// or lock, and is not logged: that would let anyone grow the log.
    fn count_wrong_pin(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        account: AccountNumber,
    ) -> Result<Option<Refusal>, Refusal> {
        if tx.account(account)?.is_none() {
            return Ok(None);
        }
        let mut failures = tx.pin_failures(account)?;
        failures.count = failures.count.saturating_add(1);
        tx.append_event(&BrokerEvent::PinRefused { account, at: now })?;
        let in_force = |lock: &AccountLock| lock.in_force(now);
        // A lapsed lock does not reset the count: after it, one more wrong PIN locks again.
        if failures.count >= self.config.max_pin_failures.get()
            && !failures.lock.as_ref().is_some_and(in_force)
        {
            let lock = AccountLock {
                at: now,
                until: self.config.pin_lock_duration.map(|s| now.plus_seconds(s)),
            };
            failures.lock = Some(lock);
            tx.append_event(&BrokerEvent::AccountLocked {
                account,
                failures: failures.count,
                until: lock.until,
                at: now,
            })?;
            tracing::warn!(%account, failures = failures.count, "account locked after wrong PINs");
        }
        tx.put_pin_failures(account, &failures)?;
        Ok(failures
            .lock
            .filter(in_force)
            .map(|lock| Refusal::AccountLocked {
                account,
                until: lock.until,
            }))
    }

    fn dispatch(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &BrokerRequest,
        ahead: Ahead,
    ) -> Result<BrokerResponse, Refusal> {
        Ok(match request {
            BrokerRequest::ObtainBrokerScrip(r) => {
                BrokerResponse::BrokerScripIssued(self.obtain_broker_scrip(tx, now, rng, r, ahead)?)
            }
            BrokerRequest::ObtainVendorScrip(r) => {
                BrokerResponse::VendorScripIssued(self.obtain_vendor_scrip(tx, now, rng, r, ahead)?)
            }
            BrokerRequest::RenewBrokerScrip(r) => {
                BrokerResponse::BrokerScripRenewed(self.renew_broker_scrip(tx, now, rng, r)?)
            }
            BrokerRequest::RegisterMerchant(r) => {
                BrokerResponse::MerchantRegistered(self.register_merchant(tx, now, r)?)
            }
            BrokerRequest::Intent(r) => {
                BrokerResponse::IntentRecorded(self.record_intent(tx, now, r)?)
            }
            BrokerRequest::PaymentRecords(r) => {
                BrokerResponse::PaymentRecordsAck(self.record_payments(tx, now, r)?)
            }
        })
    }

    /// Step 1: debit the account, mint BrokerScrip, seal its customer secret to the wallet.
    fn obtain_broker_scrip(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Signed<ObtainBrokerScrip>,
        ahead: Ahead,
    ) -> Result<BrokerScripIssued, Refusal> {
        let body = &request.body;
        let order = ahead.order.unwrap_or_else(|| self.open_order(request))?;
        let account =
            self.authenticate(tx, now, order.credentials.account, &order.credentials.pin)?;
        match account.account_key {
            Some(bound) if bound != body.account_key => {
                return Err(Refusal::AccountKeyMismatch {
                    account: account.number,
                })
            }
            Some(_) => {}
            None => {
                tx.bind_account_key(account.number, &body.account_key)?;
                tx.append_event(&BrokerEvent::AccountKeyBound {
                    account: account.number,
                    key: body.account_key,
                    at: now,
                })?;
            }
        }
        transfer(
            tx,
            TransferKind::ObtainBrokerScrip,
            LedgerAccount::Customer(account.number),
            LedgerAccount::OutstandingBrokerScrip,
            order.amount,
            now,
        )?;
        let issued = match ahead.issued {
            Some((issued, _)) => issued,
            None => self.issue_broker_scrip(rng, order.amount, &body.reply_key, now)?,
        };
        tx.append_event(&BrokerEvent::BrokerScripIssued {
            request: body.request_id,
            account: account.number,
            scrip: issued.scrip.id(),
            value: order.amount,
            at: now,
        })?;
        Ok(BrokerScripIssued {
            request_id: body.request_id,
            issued,
        })
    }

    /// Step 2: spend BrokerScrip, mint VendorScrip under the merchant's licence and change BrokerScrip.
    fn obtain_vendor_scrip(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Proved<ObtainVendorScrip>,
        ahead: Ahead,
    ) -> Result<VendorScripIssued, Refusal> {
        let body = &request.body;
        let spent = self.verify_broker_scrip(request, &body.scrip, now)?.scrip();
        if body.amount.is_zero() {
            return Err(Refusal::invalid_amount(
                "VendorScrip of zero value cannot be obtained",
            ));
        }
        let change_value =
            spent
                .value()
                .checked_sub(body.amount)
                .ok_or(Refusal::InsufficientValue {
                    value: spent.value(),
                    needed: body.amount,
                })?;
        let merchant = tx
            .merchant(&body.merchant)?
            .ok_or(Refusal::UnknownMerchant {
                merchant: body.merchant,
            })?;
        mark_spent(tx, spent)?;
        let vendor_scrip = match ahead.issued {
            // Minted ahead under the licence the merchant still has.
            Some((issued, Some(licence))) if licence == merchant.licence => issued,
            _ => {
                // Not read yet, or changed since: ahead work can use it from now on.
                self.remember_licence(&merchant);
                let scrip = self.mint_vendor_scrip(
                    rng,
                    merchant.merchant,
                    &merchant.licence,
                    body.amount,
                    now,
                );
                self.issue(
                    rng,
                    scrip,
                    &merchant.licence.customer_master,
                    &body.reply_key,
                )?
            }
        };
        let change = (!change_value.is_zero())
            .then(|| self.mint_broker_scrip(rng, change_value, spent.body.cust_id, now));
        transfer(
            tx,
            TransferKind::ObtainVendorScrip,
            LedgerAccount::OutstandingBrokerScrip,
            LedgerAccount::OutstandingVendorScrip(merchant.merchant),
            body.amount,
            now,
        )?;
        tx.append_event(&BrokerEvent::VendorScripExchanged {
            request: body.request_id,
            spent: spent.id(),
            merchant: merchant.merchant,
            vendor_scrip: vendor_scrip.scrip.id(),
            amount: body.amount,
            change: change.as_ref().map(|c| (c.id(), c.value())),
            at: now,
        })?;
        Ok(VendorScripIssued {
            request_id: body.request_id,
            vendor_scrip,
            change,
        })
    }

    /// Exchanges BrokerScrip for fresh BrokerScrip of the same value and `cust_id`.
    fn renew_broker_scrip(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        request: &Proved<RenewBrokerScrip>,
    ) -> Result<BrokerScripRenewed, Refusal> {
        let body = &request.body;
        let spent = self.verify_broker_scrip(request, &body.scrip, now)?.scrip();
        mark_spent(tx, spent)?;
        let scrip = self.mint_broker_scrip(rng, spent.value(), spent.body.cust_id, now);
        tx.append_event(&BrokerEvent::BrokerScripRenewed {
            request: body.request_id,
            spent: spent.id(),
            renewed: scrip.id(),
            value: scrip.value(),
            at: now,
        })?;
        Ok(BrokerScripRenewed {
            request_id: body.request_id,
            scrip,
        })
    }

    /// Registers a merchant (or updates its name, account and licence) after checking the account's PIN.
    fn register_merchant(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        request: &Signed<RegisterMerchant>,
    ) -> Result<MerchantRegistered, Refusal> {
        let body = &request.body;
        request
            .verify(&body.merchant)
            .map_err(|_| bad_signature::<RegisterMerchant>())?;
        check_name(&body.name)?;
        let secrets: MerchantSecrets = self.open_sealed(
            purpose::MERCHANT_SECRETS,
            &body.request_id,
            &body.merchant,
            &body.secrets,
        )?;
        let account = self.authenticate(
            tx,
            now,
            secrets.credentials.account,
            &secrets.credentials.pin,
        )?;
        if let Some(holder) = tx.merchant_by_name(&body.name)? {
            if holder.merchant != body.merchant {
                return Err(Refusal::MerchantNameTaken {
                    name: body.name.clone(),
                });
            }
        }
        let licence = digest(&secrets.licence);
        tx.put_merchant(&MerchantRecord {
            merchant: body.merchant,
            name: body.name.clone(),
            account: account.number,
            licence: secrets.licence,
            registered_at: now,
        })?;
        tx.append_event(&BrokerEvent::MerchantRegistered {
            merchant: body.merchant,
            name: body.name.clone(),
            account: account.number,
            licence,
            at: now,
        })?;
        Ok(MerchantRegistered {
            request_id: body.request_id,
            merchant: body.merchant,
            name: body.name.clone(),
        })
    }

    /// Step 3a: the customer announces a payment; the broker records it and signs a receipt.
    fn record_intent(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        request: &Proved<Intent>,
    ) -> Result<Signed<IntentReceipt>, Refusal> {
        let body = &request.body;
        let merchant = tx
            .merchant(&body.scrip.body.issuer)?
            .ok_or(Refusal::UnknownMerchant {
                merchant: body.scrip.body.issuer,
            })?;
        let expected = Expected {
            kind: ScripKind::Vendor,
            issuer: &merchant.merchant,
            currency: self.config.currency,
        };
        let scrip = verify_spend(request, &body.scrip, &expected, &merchant.licence, now)?.scrip();
        if body.price > scrip.value() {
            return Err(Refusal::InsufficientValue {
                value: scrip.value(),
                needed: body.price,
            });
        }
        let receipt = IntentReceipt {
            request_id: body.request_id,
            buy_request: body.buy_request,
            scrip: scrip.id(),
            merchant: merchant.merchant,
            price: body.price,
            recorded_at: now,
        };
        tx.insert_intent(&IntentRow {
            intent: body.clone(),
            receipt: receipt.clone(),
        })?;
        tx.append_event(&BrokerEvent::IntentRecorded {
            request: body.request_id,
            buy_request: body.buy_request,
            merchant: merchant.merchant,
            scrip: scrip.id(),
            price: body.price,
            at: now,
        })?;
        Ok(Signed::sign(receipt, &self.keys.signing))
    }

    /// Step 3c: the merchant reports payments; each verified record credits its account with the price.
    fn record_payments(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        request: &Signed<PaymentRecords>,
    ) -> Result<Signed<PaymentRecordsAck>, Refusal> {
        let body = &request.body;
        request
            .verify(&body.merchant)
            .map_err(|_| bad_signature::<PaymentRecords>())?;
        let merchant = tx
            .merchant(&body.merchant)?
            .ok_or(Refusal::UnknownMerchant {
                merchant: body.merchant,
            })?;
        let mut outcomes = Vec::with_capacity(body.records.len());
        for record in &body.records {
            let outcome = match self.record_payment(tx, now, &merchant, record) {
                Ok(outcome) => outcome,
                Err(Refusal::Unavailable) => return Err(Refusal::Unavailable),
                Err(refusal) => RecordOutcome::Refused(refusal),
            };
            outcomes.push((record.buy.body.scrip.id(), outcome));
        }
        Ok(Signed::sign(
            PaymentRecordsAck {
                merchant: merchant.merchant,
                outcomes,
                at: now,
            },
            &self.keys.signing,
        ))
    }

    fn record_payment(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        merchant: &MerchantRecord,
        record: &PaymentRecord,
    ) -> Result<RecordOutcome, Refusal> {
        let buy = &record.buy;
        let expected = Expected {
            kind: ScripKind::Vendor,
            issuer: &merchant.merchant,
            currency: self.config.currency,
        };
        let spent = verify_stamp(&buy.body.scrip, &expected, &merchant.licence)?.scrip();
        // The customer's proof shows the customer really made this purchase;
        // a merchant cannot invent payments with scrip it saw elsewhere.
        let customer_secret = merchant
            .licence
            .customer_master
            .customer_secret(&spent.body.cust_id);
        if !buy.proof_matches(&customer_secret) {
            return Err(Refusal::NotOwner { scrip: spent.id() });
        }
        let price = buy.body.price;
        if matches!(buy.body.purchase, Purchase::Renew) && !price.is_zero() {
            return Err(Refusal::invalid_request("a renewal must have price zero"));
        }
        let change_value = spent
            .value()
            .checked_sub(price)
            .ok_or(Refusal::InsufficientValue {
                value: spent.value(),
                needed: price,
            })?;
        check_change(spent, change_value, record.change.as_ref())?;
        // Already recorded: answer so, before any check that the first recording changed.
        if tx.payment_recorded(&merchant.merchant, &spent.id())? {
            return Ok(RecordOutcome::AlreadyRecorded);
        }
        let credit = Transfer::new(
            TransferKind::PaymentRecorded,
            LedgerAccount::OutstandingVendorScrip(merchant.merchant),
            LedgerAccount::Customer(merchant.account),
            price,
            now,
        );
        if let Some(credit) = &credit {
            // Checked before anything is written, so a refused record leaves no trace.
            check_transfer(tx, credit)?;
        }
        if tx.record_payment(&PaymentRow {
            merchant: merchant.merchant,
            record: record.clone(),
            recorded_at: now,
        })? == Spend::AlreadySpent
        {
            return Ok(RecordOutcome::AlreadyRecorded);
        }
        if let Some(credit) = &credit {
            tx.post(credit)?;
        }
        let leaf = tx.log_size()?;
        let intent_seen = tx.intent_for_buy(&buy.body.request_id, &spent.id())?;
        tx.append_event(&BrokerEvent::PaymentRecorded {
            merchant: merchant.merchant,
            buy_request: buy.body.request_id,
            scrip: spent.id(),
            price,
            intent_seen,
            at: now,
        })?;
        Ok(RecordOutcome::Credited {
            amount: price,
            leaf,
        })
    }

    // ---- Helpers ----------------------------------------------------------

    fn verify_broker_scrip<'a, T: Labelled>(
        &self,
        request: &Proved<T>,
        scrip: &'a Scrip,
        now: Timestamp,
    ) -> Result<crate::validate::VerifiedScrip<'a>, Refusal> {
        let broker = self.keys.public_key();
        let expected = Expected {
            kind: ScripKind::Broker,
            issuer: &broker,
            currency: self.config.currency,
        };
        verify_spend(request, scrip, &expected, self, now)
    }

    fn mint_broker_scrip(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        value: Amount,
        cust_id: CustId,
        now: Timestamp,
    ) -> Scrip {
        let series = self.config.series;
        let body = ScripBody {
            kind: ScripKind::Broker,
            issuer: self.keys.public_key(),
            id: ScripId::random(series, rng),
            value,
            currency: self.config.currency,
            cust_id,
            expiry: now.plus_seconds(self.config.broker_scrip_lifetime),
        };
        Scrip::mint(body, &self.stamping[series as usize - 1])
    }

    /// New BrokerScrip of a new `cust_id`, its customer secret sealed to `reply_key`.
    fn issue_broker_scrip(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        value: Amount,
        reply_key: &HpkePublicKey,
        now: Timestamp,
    ) -> Result<IssuedScrip, Refusal> {
        let cust_id = CustId::random(rng);
        let scrip = self.mint_broker_scrip(rng, value, cust_id, now);
        self.issue(rng, scrip, &self.keys.customer_master, reply_key)
    }

    /// VendorScrip of `merchant`, minted under the licence it granted the broker.
    fn mint_vendor_scrip(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        merchant: MerchantId,
        licence: &Licence,
        value: Amount,
        now: Timestamp,
    ) -> Scrip {
        let body = ScripBody {
            kind: ScripKind::Vendor,
            issuer: merchant,
            id: ScripId::random(licence.series, rng),
            value,
            currency: self.config.currency,
            cust_id: CustId::random(rng),
            expiry: now.plus_seconds(self.config.vendor_scrip_lifetime),
        };
        Scrip::mint(body, &licence.stamping_secret)
    }

    /// Checks an Obtain BrokerScrip's signature and opens the order sealed in it.
    fn open_order(&self, request: &Signed<ObtainBrokerScrip>) -> Result<BrokerScripOrder, Refusal> {
        let body = &request.body;
        request
            .verify(&body.account_key)
            .map_err(|_| bad_signature::<ObtainBrokerScrip>())?;
        self.open_sealed(
            purpose::CREDENTIALS,
            &body.request_id,
            &body.account_key,
            &body.order,
        )
    }

    /// Seals the new scrip's customer secret to the requester's reply key.
    fn issue(
        &self,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
        scrip: Scrip,
        master: &scrip_proto::crypto::CustomerMaster,
        reply_key: &HpkePublicKey,
    ) -> Result<IssuedScrip, Refusal> {
        let secret = master.customer_secret(&scrip.body.cust_id);
        let customer_secret = reply_key
            .seal_value(
                rng,
                purpose::CUSTOMER_SECRET,
                &customer_secret_aad(&scrip.id()),
                &secret,
            )
            .map_err(|e| Refusal::invalid_request(e.to_string()))?;
        Ok(IssuedScrip {
            scrip,
            customer_secret,
        })
    }

    fn open_sealed<T: borsh::BorshDeserialize>(
        &self,
        purpose: &'static str,
        request_id: &scrip_proto::RequestId,
        sender: &PublicKey,
        sealed: &scrip_proto::crypto::Sealed,
    ) -> Result<T, Refusal> {
        let plaintext = self
            .keys
            .hpke
            .open(purpose, &envelope_aad(request_id, sender), sealed)
            .map_err(|_| Refusal::CannotOpenEnvelope)?;
        Ok(decode(&plaintext)?)
    }

    /// Checks the account's PIN. An unknown account is refused as a wrong
    /// PIN is, after as long a check (against the dummy hash), so neither
    /// the answer nor its time tells a stranger which account numbers
    /// exist. A locked account is refused before its hash is computed, so
    /// guessing at it costs the broker one read. The
    /// right PIN clears the count of wrong ones, in the step's transaction:
    /// kept only if the step succeeds (its event, `BrokerScripIssued` or
    /// `MerchantRegistered`, tells the audit so). A wrong PIN is counted by
    /// [`Self::record_refusal`], after the step rolled back.
    fn authenticate(
        &self,
        tx: &mut impl BrokerTx,
        now: Timestamp,
        number: AccountNumber,
        pin: &Pin,
    ) -> Result<AccountRecord, Refusal> {
        let Some(account) = tx.account(number)? else {
            self.pin_verifications.fetch_add(1, Ordering::Relaxed);
            let dummy = self
                .dummy_pin_hash
                .get_or_init(|| self.config.pin_hashing.dummy_hash());
            std::hint::black_box(pin_matches(pin, dummy));
            tracing::debug!(account = %number, "PIN for an unknown account refused as a wrong one");
            return Err(Refusal::WrongAccountOrPin { account: number });
        };
        let failures = tx.pin_failures(number)?;
        if let Some(lock) = failures.lock.filter(|lock| lock.in_force(now)) {
            tracing::info!(account = %number, "PIN for a locked account refused unchecked");
            return Err(Refusal::AccountLocked {
                account: number,
                until: lock.until,
            });
        }
        self.pin_verifications.fetch_add(1, Ordering::Relaxed);
        if !pin_matches(pin, &account.pin_hash) {
            return Err(Refusal::WrongAccountOrPin { account: number });
        }
        if failures != PinFailures::default() {
            tx.put_pin_failures(number, &PinFailures::default())?;
        }
        Ok(account)
    }
}

/// The log receipts for an answered request: its logged step (a retry gets
/// the same leaf under a newer checkpoint), or each credited payment record.
fn receipts(
    tx: &mut impl BrokerTx,
    request: &BrokerRequest,
    response: &BrokerResponse,
) -> Result<Vec<LogReceipt>, Refusal> {
    if let (BrokerRequest::PaymentRecords(batch), BrokerResponse::PaymentRecordsAck(ack)) =
        (request, response)
    {
        let mut receipts = Vec::new();
        for (record, (_, outcome)) in batch.body.records.iter().zip(&ack.body.outcomes) {
            if let RecordOutcome::Credited { leaf, .. } = outcome {
                receipts.extend(receipt_for_leaf(tx, record.buy.body.request_id, *leaf)?);
            }
        }
        return Ok(receipts);
    }
    let Some(request_id) = request.request_id() else {
        return Ok(Vec::new());
    };
    if matches!(response, BrokerResponse::Refused(_)) {
        return Ok(Vec::new());
    }
    let leaf = tx
        .stored_response(&request_id)?
        .and_then(|stored| stored.leaf);
    Ok(match leaf {
        Some(leaf) => receipt_for_leaf(tx, request_id, leaf)?
            .into_iter()
            .collect(),
        None => Vec::new(),
    })
}

/// The receipt for log leaf `leaf_index`, which records request
/// `request_id`, under the latest checkpoint; `None` while no checkpoint covers it.
fn receipt_for_leaf(
    tx: &mut impl BrokerTx,
    request_id: scrip_proto::RequestId,
    leaf_index: u64,
) -> Result<Option<LogReceipt>, Refusal> {
    let Some((size, checkpoint)) = tx.latest_checkpoint()? else {
        return Ok(None);
    };
    if leaf_index >= size {
        return Ok(None);
    }
    Ok(Some(LogReceipt {
        request_id,
        leaf_index,
        leaf_hash: log::leaf_hash(tx, leaf_index)?,
        checkpoint,
    }))
}

fn bad_signature<T: Labelled>() -> Refusal {
    Refusal::BadSignature {
        what: T::DOMAIN.to_owned(),
    }
}

fn existing_account(
    tx: &mut impl BrokerTx,
    number: AccountNumber,
) -> Result<AccountRecord, Refusal> {
    tx.account(number)?
        .ok_or(Refusal::UnknownAccount { account: number })
}

fn customer_balance(tx: &mut impl BrokerTx, number: AccountNumber) -> Result<Amount, Refusal> {
    let balance = tx.balance(&LedgerAccount::Customer(number))?;
    u64::try_from(balance)
        .ok()
        .and_then(Amount::from_minor)
        .ok_or_else(|| StoreError(format!("account {number} has an impossible balance")).into())
}

fn mark_spent(tx: &mut impl BrokerTx, scrip: &Scrip) -> Result<(), Refusal> {
    match tx.mark_broker_scrip_spent(&scrip.id(), scrip.body.expiry)? {
        Spend::Fresh => Ok(()),
        Spend::AlreadySpent => Err(Refusal::DoubleSpend { scrip: scrip.id() }),
    }
}

/// Posts one balanced transfer, refusing it if the paying account cannot cover it.
fn transfer(
    tx: &mut impl BrokerTx,
    kind: TransferKind,
    from: LedgerAccount,
    to: LedgerAccount,
    amount: Amount,
    now: Timestamp,
) -> Result<(), Refusal> {
    let entry = Transfer::new(kind, from, to, amount, now).ok_or_else(|| {
        Refusal::invalid_amount(format!("the amount of a {kind} must be positive"))
    })?;
    check_transfer(tx, &entry)?;
    Ok(tx.post(&entry)?)
}

/// Refuses a transfer the paying account cannot cover or the receiving account cannot hold.
fn check_transfer(tx: &mut impl BrokerTx, entry: &Transfer) -> Result<(), Refusal> {
    let (from, to, amount) = (entry.from(), entry.to(), entry.amount());
    if from.must_stay_non_negative() {
        let balance = tx.balance(&from)?;
        if balance < amount.as_i64() {
            let held = Amount::from_minor(balance.max(0) as u64).unwrap_or(Amount::ZERO);
            return Err(match from {
                LedgerAccount::Customer(account) => Refusal::Overdraft {
                    account,
                    balance: held,
                    requested: amount,
                },
                other => Refusal::invalid_request(format!(
                    "{other} holds {held}, less than the {amount} claimed"
                )),
            });
        }
    }
    // The ledger's range is i64: money-in runs negative with every deposit.
    if tx.balance(&from)?.checked_sub(amount.as_i64()).is_none() {
        return Err(Refusal::invalid_amount(format!(
            "{from} would leave the ledger's range"
        )));
    }
    if tx.balance(&to)?.checked_add(amount.as_i64()).is_none() {
        return Err(Refusal::invalid_amount(format!(
            "{to} would leave the ledger's range"
        )));
    }
    Ok(())
}

/// The change a merchant returned must be VendorScrip of the same merchant and
/// pseudonym worth exactly what was not paid.
fn check_change(
    spent: &Scrip,
    change_value: Amount,
    change: Option<&ScripBody>,
) -> Result<(), Refusal> {
    match change {
        None if change_value.is_zero() => Ok(()),
        Some(c)
            if c.value == change_value
                && c.kind == ScripKind::Vendor
                && c.issuer == spent.body.issuer
                && c.cust_id == spent.body.cust_id
                && c.currency == spent.body.currency =>
        {
            Ok(())
        }
        _ => Err(Refusal::invalid_request(format!(
            "the recorded change does not equal the {change_value} left of scrip {}",
            spent.id()
        ))),
    }
}

fn check_name(name: &str) -> Result<(), Refusal> {
    let length = name.chars().count();
    if (1..=64).contains(&length) && !name.chars().any(char::is_control) && name.trim() == name {
        Ok(())
    } else {
        Err(Refusal::invalid_request(
            "a name is 1 to 64 characters, without control characters or surrounding spaces",
        ))
    }
}

/// A random 8-digit PIN.
fn random_pin(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Pin {
    use rand::Rng;
    Pin::new(format!("{:08}", rng.gen_range(0..100_000_000u32))).expect("8 digits make a valid PIN")
}
