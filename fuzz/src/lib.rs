//! What scrip's fuzz targets share: one deterministic world to fuzz against,
//! the canonical-encoding check, and the seed corpus.
//!
//! [`World::build`] always makes the same broker, merchant and wallet (fixed
//! seed, fixed clock), so the seed corpus ([`seeds`]) made from one build
//! carries signatures, proofs and sealed secrets that are valid in the world
//! every target builds: mutations of a seed start deep in the handlers, past
//! the signature and stamp checks.

use borsh::{BorshDeserialize, BorshSerialize};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use scrip_core::broker::OpenedAccount;
use scrip_core::store::{
    BrokerStore, BrokerTx, PendingRequest, WalletReceipt, WalletScrip, WalletStore, WalletTx,
};
use scrip_core::{log, CatalogItem, Merchant, MerchantConfig, MerchantKeys};
use scrip_proto::crypto::CustomerSecret;
use scrip_proto::msg::{
    AuditRequest, AuditResponse, BrokerAnswer, BrokerRequest, BrokerResponse, BrokerScripOrder,
    Credentials, LogReceipt, MerchantDirectory, MerchantEntry, MerchantRequest, MerchantResponse,
    MerchantSecrets, Purchase, RecordOutcome,
};
use scrip_proto::{decode, encode, Refusal, RequestId, ScripKind, Secret32};
use scrip_store_sqlite::{SqliteMerchantStore, SqliteWalletStore};
use scrip_tests::{amount, Sim};

/// The seed of the world's keys and randomness. Changing it invalidates the seed corpus.
pub const SEED: u64 = 6;

/// Decodes `bytes` as a `T` and checks the encoding is canonical: a value
/// that decodes re-encodes to exactly the same bytes, since signatures,
/// stamps and request digests are taken over the bytes.
pub fn round_trip<T: BorshSerialize + BorshDeserialize>(bytes: &[u8]) -> Option<T> {
    let value = decode::<T>(bytes).ok()?;
    assert!(
        encode(&value) == bytes,
        "{} decodes but does not re-encode to the same bytes",
        std::any::type_name::<T>()
    );
    Some(value)
}

/// Randomness for a handler call: the same for every input, so a crash replays.
pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(SEED)
}

/// The number of leaves in the broker's log.
pub fn log_size(store: &mut impl BrokerStore) -> u64 {
    store
        .begin()
        .and_then(|mut tx| tx.log_size())
        .expect("log size")
}

/// The total value of the scrip a wallet holds, locked or not, in minor units.
pub fn wallet_value(store: &mut SqliteWalletStore) -> u128 {
    let mut tx = store.begin().expect("wallet transaction");
    let scrip = tx.all_scrip().expect("wallet scrip");
    scrip
        .iter()
        .map(|s| u128::from(s.scrip.value().minor()))
        .sum()
}

/// Every scrip locked by a request must be locked by a request still pending.
pub fn assert_locks_consistent(store: &mut SqliteWalletStore) {
    let mut tx = store.begin().expect("wallet transaction");
    let pending: Vec<RequestId> = tx
        .all_pending()
        .expect("pending")
        .iter()
        .map(|p| p.request_id)
        .collect();
    for held in tx.all_scrip().expect("wallet scrip") {
        if let scrip_core::store::ScripState::Pending(request) = held.state {
            assert!(
                pending.contains(&request),
                "scrip {} is locked by {request}, which is no longer pending",
                held.scrip.id()
            );
        }
    }
}

/// Requests the wallet made and never sent: each is still pending in the wallet.
pub struct Unsent {
    pub obtain_broker_scrip: PendingRequest,
    pub obtain_vendor_scrip: PendingRequest,
    pub renew_broker_scrip: PendingRequest,
    pub intent: PendingRequest,
    pub buy: PendingRequest,
    /// The registration of a second merchant ("cake shop"), not sent either.
    pub register_merchant: Vec<u8>,
}

/// A broker with a funded customer account and a registered merchant that
/// sold one item, and a wallet holding real BrokerScrip and VendorScrip with
/// one request of every kind pending.
pub struct World {
    pub sim: Sim,
    pub customer: OpenedAccount,
    /// The bytes of the merchant's first sale (tea), delivered and settled.
    pub first_buy: Vec<u8>,
    pub unsent: Unsent,
    /// The wallet's rows, to give each input a fresh copy of the wallet.
    pub wallet_scrip: Vec<WalletScrip>,
    pub wallet_pending: Vec<PendingRequest>,
    pub wallet_receipts: Vec<WalletReceipt>,
    /// Messages that travelled while the world was built, for the seed corpus.
    pub corpus: Corpus,
}

/// Seed inputs by target: (target, file name, bytes).
#[derive(Default)]
pub struct Corpus(pub Vec<(&'static str, String, Vec<u8>)>);

impl Corpus {
    pub fn add(&mut self, targets: &[&'static str], name: &str, bytes: &[u8]) {
        for target in targets {
            self.0
                .push((target, format!("seed-{name}"), bytes.to_vec()));
        }
    }

    fn add_broker_answer(&mut self, targets: &[&'static str], name: &str, answer: &BrokerAnswer) {
        self.add(&["decode_broker_response"], name, &encode(&answer.response));
        self.add(&["decode_broker_answer"], name, &encode(answer));
        self.add(targets, name, &encode(answer));
    }
}

const MERCHANT: usize = 0;
const WALLET: usize = 0;

impl World {
    /// Builds the world; the same every time.
    pub fn build() -> World {
        let mut sim = Sim::new(SEED);
        let mut corpus = Corpus::default();
        let customer = sim.open_account("alice", "100");
        let shop = sim.open_account("tea shop", "0");
        sim.add_merchant("tea shop", &[("tea", "0.002"), ("cake", "0.5")], &shop);
        sim.add_wallet();

        // Two pieces of BrokerScrip, so one can be renewed while the other buys VendorScrip.
        for (name, value) in [
            ("obtain-broker-scrip", "10"),
            ("obtain-broker-scrip-2", "3"),
        ] {
            let w = &mut sim.wallets[WALLET];
            let pending = w
                .wallet
                .obtain_broker_scrip(
                    &mut w.store,
                    &mut sim.rng,
                    customer.number,
                    customer.pin.clone(),
                    amount(value),
                )
                .expect("obtain BrokerScrip");
            send_to_broker(&mut sim, &mut corpus, name, &pending);
        }
        let merchant = sim.merchant_id(MERCHANT);
        let w = &mut sim.wallets[WALLET];
        let pending = w
            .wallet
            .obtain_vendor_scrip(&mut w.store, &mut sim.rng, sim.now, merchant, amount("1"))
            .expect("obtain VendorScrip");
        send_to_broker(&mut sim, &mut corpus, "obtain-vendor-scrip", &pending);

        // Buy tea: the intent to the broker, the buy to the merchant.
        let w = &mut sim.wallets[WALLET];
        let purchase = w
            .wallet
            .buy(
                &mut w.store,
                &mut sim.rng,
                sim.now,
                merchant,
                Purchase::Item("tea".into()),
                amount("0.002"),
            )
            .expect("buy tea");
        send_to_broker(&mut sim, &mut corpus, "intent", &purchase.intent);
        let first_buy = purchase.buy.request.clone();
        let m = &mut sim.merchants[MERCHANT];
        let delivered = m
            .merchant
            .handle_bytes(&mut m.store, sim.now, &mut sim.rng, &first_buy);
        corpus.add(&["decode_merchant_response"], "item-delivered", &delivered);
        let w = &mut sim.wallets[WALLET];
        w.wallet
            .handle_merchant_response(
                &mut w.store,
                purchase.buy.request_id,
                &decode(&delivered).expect("merchant response"),
            )
            .expect("tea delivered");

        // The merchant reports the sale.
        let m = &mut sim.merchants[MERCHANT];
        let batch = m
            .merchant
            .poll_payment_records(&mut m.store, 64)
            .expect("poll")
            .expect("a queued payment record");
        let batch = encode(&batch);
        let answer = broker_answer(&mut sim, &batch);
        corpus.add(
            &["decode_broker_request", "broker_request"],
            "payment-records",
            &batch,
        );
        corpus.add_broker_answer(&[], "payment-records-ack", &answer);
        let m = &mut sim.merchants[MERCHANT];
        m.merchant
            .handle_payment_records_ack(&mut m.store, &answer.response, &answer.receipts)
            .expect("acknowledged");

        let unsent = make_unsent(&mut sim, &customer, &shop);
        let w = &mut sim.wallets[WALLET];
        let mut tx = w.store.begin().expect("wallet transaction");
        let wallet_scrip = tx.all_scrip().expect("scrip");
        let wallet_pending = tx.all_pending().expect("pending");
        let wallet_receipts = tx.receipts().expect("receipts");
        drop(tx);
        World {
            sim,
            customer,
            first_buy,
            unsent,
            wallet_scrip,
            wallet_pending,
            wallet_receipts,
            corpus,
        }
    }

    pub fn merchant(&self) -> &Merchant {
        &self.sim.merchants[MERCHANT].merchant
    }

    pub fn wallet(&self) -> &scrip_core::Wallet {
        &self.sim.wallets[WALLET].wallet
    }

    /// A fresh copy of the wallet's store, as it was when the world was built.
    pub fn wallet_store(&self) -> SqliteWalletStore {
        let mut store = SqliteWalletStore::open_in_memory().expect("wallet store");
        let mut tx = store.begin().expect("wallet transaction");
        for scrip in &self.wallet_scrip {
            tx.put_scrip(scrip).expect("put scrip");
        }
        for pending in &self.wallet_pending {
            tx.put_pending(pending).expect("put pending");
        }
        for receipt in &self.wallet_receipts {
            tx.add_receipt(receipt).expect("add receipt");
        }
        tx.commit().expect("commit");
        store
    }

    /// A fresh merchant store holding the first sale (spent, stored, queued),
    /// and the unsent cake sale too if `second_sale`.
    pub fn merchant_store(&self, second_sale: bool) -> SqliteMerchantStore {
        let mut store = SqliteMerchantStore::open_in_memory().expect("merchant store");
        let mut sales = vec![&self.first_buy];
        if second_sale {
            sales.push(&self.unsent.buy.request);
        }
        for sale in sales {
            let response = self
                .merchant()
                .handle_bytes(&mut store, self.sim.now, &mut rng(), sale);
            assert!(
                matches!(decode(&response), Ok(MerchantResponse::ItemDelivered(_))),
                "a sale of the world is delivered"
            );
        }
        store
    }
}

/// Sends a wallet's pending request to the broker, hands the answer to the
/// wallet, and keeps both for the corpus.
fn send_to_broker(sim: &mut Sim, corpus: &mut Corpus, name: &str, pending: &PendingRequest) {
    let answer = broker_answer(sim, &pending.request);
    corpus.add(
        &["decode_broker_request", "broker_request"],
        name,
        &pending.request,
    );
    corpus.add_broker_answer(&[], name, &answer);
    let w = &mut sim.wallets[WALLET];
    w.wallet
        .handle_broker_response(
            &mut w.store,
            pending.request_id,
            &answer.response,
            &answer.receipts,
        )
        .expect("the wallet takes the broker's answer");
}

/// The broker's answer to `request` with its log receipts, as the broker node
/// sends it: the leaf of the step (or of each credited payment record) under
/// the latest checkpoint.
fn broker_answer(sim: &mut Sim, request: &[u8]) -> BrokerAnswer {
    let first_leaf = log_size(&mut sim.broker_store);
    let response = sim
        .broker
        .handle_bytes(&mut sim.broker_store, sim.now, &mut sim.rng, request);
    let response: BrokerResponse = decode(&response).expect("broker response");
    let request: BrokerRequest = decode(request).expect("broker request");
    let leaves: Vec<(RequestId, u64)> = match (&request, &response) {
        (_, BrokerResponse::Refused(_)) => vec![],
        (BrokerRequest::PaymentRecords(batch), BrokerResponse::PaymentRecordsAck(ack)) => batch
            .body
            .records
            .iter()
            .zip(&ack.body.outcomes)
            .filter_map(|(record, (_, outcome))| match outcome {
                RecordOutcome::Credited { leaf, .. } => Some((record.buy.body.request_id, *leaf)),
                _ => None,
            })
            .collect(),
        _ if log_size(&mut sim.broker_store) > first_leaf => {
            vec![(request.request_id().expect("a request id"), first_leaf)]
        }
        _ => vec![],
    };
    let mut tx = sim.broker_store.begin().expect("broker transaction");
    let (_, checkpoint) = tx
        .latest_checkpoint()
        .expect("checkpoint")
        .expect("a checkpoint");
    let receipts = leaves
        .into_iter()
        .map(|(request_id, leaf_index)| LogReceipt {
            request_id,
            leaf_index,
            leaf_hash: log::leaf_hash(&mut tx, leaf_index).expect("leaf hash"),
            checkpoint: checkpoint.clone(),
        })
        .collect();
    BrokerAnswer { response, receipts }
}

/// One request of every kind, made and left pending in the wallet.
fn make_unsent(sim: &mut Sim, customer: &OpenedAccount, shop: &OpenedAccount) -> Unsent {
    let merchant = sim.merchant_id(MERCHANT);
    let now = sim.now;
    let rng = &mut sim.rng;
    let w = &mut sim.wallets[WALLET];
    let (wallet, store) = (&w.wallet, &mut w.store);
    let obtain_broker_scrip = wallet
        .obtain_broker_scrip(
            store,
            rng,
            customer.number,
            customer.pin.clone(),
            amount("5"),
        )
        .expect("obtain BrokerScrip");
    // Picks the 2 left from the second BrokerScrip, so the 10 stays free to renew.
    let obtain_vendor_scrip = wallet
        .obtain_vendor_scrip(store, rng, now, merchant, amount("1.5"))
        .expect("obtain VendorScrip");
    let ten = wallet
        .scrip(store)
        .expect("scrip")
        .into_iter()
        .find(|s| {
            s.scrip.body.kind == ScripKind::Broker
                && s.state == scrip_core::store::ScripState::Available
        })
        .expect("BrokerScrip to renew");
    let renew_broker_scrip = wallet
        .renew_broker_scrip(store, rng, ten.scrip.id())
        .expect("renew BrokerScrip");
    let purchase = wallet
        .buy(
            store,
            rng,
            now,
            merchant,
            Purchase::Item("cake".into()),
            amount("0.5"),
        )
        .expect("buy cake");
    let keys = MerchantKeys::from_seed(&Secret32::random(rng));
    let cake_shop = Merchant::new(
        keys,
        sim.broker.info(),
        MerchantConfig::new("cake shop"),
        vec![CatalogItem {
            id: "cake".into(),
            title: "Cake".into(),
            price: amount("0.5"),
            content: b"a slice of cake".to_vec(),
        }],
    );
    let request_id = RequestId::random(rng);
    let register_merchant = cake_shop
        .registration_request(rng, request_id, shop.number, shop.pin.clone())
        .expect("registration");
    Unsent {
        obtain_broker_scrip,
        obtain_vendor_scrip,
        renew_broker_scrip,
        intent: purchase.intent,
        buy: purchase.buy,
        register_merchant: encode(&register_merchant),
    }
}

/// The seed corpus: real messages of the world, by target. `examples/seed.rs` writes it out.
pub fn seeds() -> Corpus {
    let mut world = World::build();
    let mut corpus = std::mem::take(&mut world.corpus);
    let sim = &mut world.sim;
    let u = &world.unsent;

    // Fresh requests: the broker target takes each all the way to success.
    corpus.add(
        &["decode_broker_request", "broker_request"],
        "register-merchant",
        &u.register_merchant,
    );
    let fresh = [
        ("unsent-obtain-broker-scrip", &u.obtain_broker_scrip),
        ("unsent-obtain-vendor-scrip", &u.obtain_vendor_scrip),
        ("unsent-renew-broker-scrip", &u.renew_broker_scrip),
        ("unsent-intent", &u.intent),
    ];
    for (name, pending) in fresh {
        corpus.add(
            &["decode_broker_request", "broker_request"],
            name,
            &pending.request,
        );
        // Their answers are what the wallet target takes in.
        let answer = broker_answer(sim, &pending.request);
        corpus.add_broker_answer(&["wallet_broker_answer"], name, &answer);
    }
    let answer = broker_answer(sim, &u.register_merchant);
    corpus.add_broker_answer(&[], "merchant-registered", &answer);
    let refusals = [
        (
            "refused-double-spend",
            Refusal::DoubleSpend {
                scrip: world.wallet_scrip[0].scrip.id(),
            },
        ),
        ("refused-unavailable", Refusal::Unavailable),
    ];
    for (name, refusal) in &refusals {
        let answer = BrokerAnswer {
            response: BrokerResponse::Refused(refusal.clone()),
            receipts: vec![],
        };
        corpus.add_broker_answer(&["wallet_broker_answer", "merchant_ack"], name, &answer);
        let response = encode(&MerchantResponse::Refused(refusal.clone()));
        corpus.add(
            &["decode_merchant_response", "wallet_merchant_answer"],
            name,
            &response,
        );
    }

    // The merchant: a replayed sale, a fresh one, the catalog.
    let merchant = &world.sim.merchants[MERCHANT].merchant;
    let mut store = world.merchant_store(false);
    let catalog = encode(&MerchantRequest::Catalog);
    for (name, request) in [
        ("first-buy", &world.first_buy),
        ("unsent-buy", &u.buy.request),
        ("catalog", &catalog),
    ] {
        let response = merchant.handle_bytes(&mut store, world.sim.now, &mut rng(), request);
        corpus.add(
            &["decode_merchant_request", "merchant_request"],
            name,
            request,
        );
        corpus.add(&["decode_merchant_response"], name, &response);
        if name == "unsent-buy" {
            corpus.add(&["wallet_merchant_answer"], name, &response);
        }
    }

    // The broker's acknowledgement of both sales (the tea one was recorded before).
    let batch = merchant
        .poll_payment_records(&mut store, 64)
        .expect("poll")
        .expect("queued records");
    let answer = broker_answer(&mut world.sim, &encode(&batch));
    corpus.add_broker_answer(&["merchant_ack"], "payment-records-ack-2", &answer);

    // The log, as auditors and receipts see it.
    let sim = &mut world.sim;
    let size = log_size(&mut sim.broker_store);
    let audits = [
        ("checkpoint", AuditRequest::Checkpoint),
        (
            "inclusion",
            AuditRequest::Inclusion {
                leaf_index: 1,
                tree_size: size,
            },
        ),
        (
            "consistency",
            AuditRequest::Consistency {
                old_size: 3,
                new_size: size,
            },
        ),
        (
            "refused",
            AuditRequest::Inclusion {
                leaf_index: size,
                tree_size: size,
            },
        ),
    ];
    let mut tx = sim.broker_store.begin().expect("broker transaction");
    let root = log::root(&mut tx, size).expect("root");
    let old_root = log::root(&mut tx, 3).expect("root");
    let leaf = log::leaf_hash(&mut tx, 1).expect("leaf hash");
    drop(tx);
    for (name, request) in audits {
        let response = sim.broker.handle_audit(&mut sim.broker_store, &request);
        corpus.add(
            &["decode_audit_request", "broker_audit"],
            name,
            &encode(&request),
        );
        corpus.add(&["decode_audit_response"], name, &encode(&response));
        match (&request, response) {
            (_, AuditResponse::Checkpoint(note)) => {
                corpus.add(&["verify_checkpoint"], "note", &note);
                let text_end = note
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .expect("note text")
                    + 1;
                corpus.add(&["verify_checkpoint"], "text", &note[..text_end]);
            }
            (AuditRequest::Inclusion { .. }, AuditResponse::Proof(proof)) => {
                corpus.add(
                    &["check_log_proofs"],
                    name,
                    &encode(&(size, root, 1u64, leaf, proof)),
                );
            }
            (AuditRequest::Consistency { .. }, AuditResponse::Proof(proof)) => {
                corpus.add(
                    &["check_log_proofs"],
                    name,
                    &encode(&(size, root, 3u64, old_root, proof)),
                );
            }
            _ => {}
        }
    }

    // What peers ask of the broker without a request body.
    corpus.add(&["decode_broker_info"], "info", &encode(&sim.broker.info()));
    let directory: MerchantDirectory = Ok(sim
        .broker
        .merchants(&mut sim.broker_store)
        .expect("merchants")
        .into_iter()
        .map(|(merchant, name)| MerchantEntry { merchant, name })
        .collect());
    corpus.add(
        &["decode_merchant_directory"],
        "directory",
        &encode(&directory),
    );
    let refused: MerchantDirectory = Err(Refusal::Unavailable);
    corpus.add(&["decode_merchant_directory"], "refused", &encode(&refused));

    // What envelopes carry: anyone can seal bytes to the broker's or a wallet's public key.
    let credentials = Credentials {
        account: world.customer.number,
        pin: world.customer.pin.clone(),
    };
    let order = BrokerScripOrder {
        credentials: credentials.clone(),
        amount: amount("5"),
    };
    corpus.add(&["decode_broker_scrip_order"], "order", &encode(&order));
    let licence = MerchantKeys::from_seed(&Secret32::from_bytes([SEED as u8; 32])).licence(1);
    corpus.add(
        &["decode_merchant_secrets"],
        "secrets",
        &encode(&MerchantSecrets {
            credentials,
            licence,
        }),
    );
    let secret: &CustomerSecret = &world.wallet_scrip[0].secret;
    corpus.add(&["decode_customer_secret"], "secret", &encode(secret));
    corpus
}

/// Checks one answer taken in by a wallet against the rules of `Wallet::settle`:
/// a definitive refusal settles the request and unlocks its scrip (drops it,
/// after a double spend); any other rejection changes nothing; an answer taken
/// settles the request and changes the value held by `gain`, where the wallet
/// can know it. Either way no scrip stays locked by a request no longer pending.
pub fn check_wallet_answer(
    store: &mut SqliteWalletStore,
    pending: &PendingRequest,
    gain: Option<i128>,
    take: impl FnOnce(&mut SqliteWalletStore) -> Result<(), scrip_core::WalletError>,
) {
    let fingerprint = store.fingerprint().expect("fingerprint");
    let value = wallet_value(store) as i128;
    let spent = {
        let mut tx = store.begin().expect("wallet transaction");
        let scrip = tx.all_scrip().expect("scrip");
        scrip
            .iter()
            .filter(|s| Some(s.scrip.id()) == pending.spends)
            .map(|s| i128::from(s.scrip.value().minor()))
            .sum::<i128>()
    };
    let result = take(store);
    let still_pending = {
        let mut tx = store.begin().expect("wallet transaction");
        let pending_now = tx.all_pending().expect("pending");
        pending_now
            .iter()
            .any(|p| p.request_id == pending.request_id)
    };
    let after = wallet_value(store) as i128;
    match result {
        Err(scrip_core::WalletError::Refused(refusal)) if refusal.definitive() => {
            assert!(
                !still_pending,
                "a definitive refusal leaves the request pending"
            );
            let lost = if matches!(refusal, Refusal::DoubleSpend { .. }) {
                spent
            } else {
                0
            };
            assert_eq!(after, value - lost, "value after the refusal \"{refusal}\"");
        }
        Err(error) => {
            let unchanged = store.fingerprint().expect("fingerprint") == fingerprint;
            assert!(unchanged, "a rejected answer ({error}) changed the wallet");
        }
        Ok(()) => {
            assert!(!still_pending, "a request answered stays pending");
            if let Some(gain) = gain {
                assert_eq!(after, value + gain, "value held after taking the answer");
            }
        }
    }
    assert_locks_consistent(store);
}
