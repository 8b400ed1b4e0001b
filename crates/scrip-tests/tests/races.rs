//! Double spending under concurrency: many connections race to spend the same
//! scrip; exactly one wins each round, the rest are refused as double spends.

use std::sync::Barrier;

use rand::SeedableRng;
use scrip_core::store::ScripState;
use scrip_proto::crypto::Proved;
use scrip_proto::msg::{
    BrokerRequest, BrokerResponse, Buy, MerchantResponse, ObtainVendorScrip, Purchase,
};
use scrip_proto::{Refusal, RequestId, ScripKind};
use scrip_store_sqlite::SqliteMerchantStore;
use scrip_tests::{amount, Backend, Sim};

const RACERS: usize = 16;
const ROUNDS: usize = 12;

/// New BrokerScrip worth 1 for `wallet`, and [`RACERS`] different Obtain
/// VendorScrip requests that each spend 0.5 of it at `merchant`.
fn spends_of_fresh_broker_scrip(
    sim: &mut Sim,
    wallet: usize,
    account: &scrip_core::broker::OpenedAccount,
    merchant: scrip_proto::MerchantId,
) -> (scrip_core::store::WalletScrip, Vec<BrokerRequest>) {
    let issued = sim
        .obtain_broker_scrip(wallet, account.number, &account.pin, "1")
        .unwrap();
    let w = &mut sim.wallets[wallet];
    let held = w
        .wallet
        .scrip(&mut w.store)
        .unwrap()
        .into_iter()
        .find(|s| s.scrip.id() == issued[0].id())
        .unwrap();
    let requests = (0..RACERS)
        .map(|_| {
            let body = ObtainVendorScrip {
                request_id: RequestId::random(&mut sim.rng),
                scrip: held.scrip.clone(),
                merchant,
                amount: amount("0.5"),
                reply_key: sim.wallets[wallet].wallet.broker().hpke_key,
            };
            BrokerRequest::ObtainVendorScrip(Proved::prove(body, &held.secret))
        })
        .collect();
    (held, requests)
}

/// Each racer has its own connection, as separate broker processes do.
fn racing_spends_of_one_broker_scrip_have_exactly_one_winner(backend: Backend) {
    let mut sim = Sim::on(backend.durable(), 11);
    let alice = sim.open_account("alice", "1000");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let wallet = sim.add_wallet();
    let merchant = sim.merchant_id(tea);

    for round in 0..ROUNDS {
        let (held, requests) = spends_of_fresh_broker_scrip(&mut sim, wallet, &alice, merchant);
        let barrier = Barrier::new(RACERS);
        let (broker, now) = (&sim.broker, sim.now);
        let responses: Vec<BrokerResponse> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .iter()
                .enumerate()
                .map(|(i, request)| {
                    let (barrier, backend) = (&barrier, &sim.backend);
                    scope.spawn(move || {
                        let mut store = backend.connect();
                        let mut rng =
                            rand_chacha::ChaCha20Rng::seed_from_u64((round * RACERS + i) as u64);
                        barrier.wait();
                        broker.handle(&mut store, now, &mut rng, request)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = responses
            .iter()
            .filter(|r| matches!(r, BrokerResponse::VendorScripIssued(_)))
            .count();
        let double_spends = responses
            .iter()
            .filter(|r| {
                **r == BrokerResponse::Refused(Refusal::DoubleSpend {
                    scrip: held.scrip.id(),
                })
            })
            .count();
        assert_eq!(
            (winners, double_spends),
            (1, RACERS - 1),
            "round {round}: {responses:?}"
        );
    }
    // Each round moved exactly 0.5 into VendorScrip, never more.
    assert_eq!(
        sim.ledger_balance(scrip_core::ledger::LedgerAccount::OutstandingVendorScrip(
            merchant
        )),
        amount("0.5").as_i64() * ROUNDS as i64
    );
    sim.assert_conserved();
}

/// The merchant's race: its store is SQLite whatever the broker's backend.
#[test]
fn racing_spends_of_one_vendor_scrip_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merchant.db");
    let mut sim = Sim::new(12);
    let alice = sim.open_account("alice", "1000");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant_with_store(
        "tea",
        &[("green", "0.002")],
        &shop,
        SqliteMerchantStore::open(&path).unwrap(),
    );
    let wallet = sim.add_wallet();
    sim.obtain_broker_scrip(wallet, alice.number, &alice.pin, "10")
        .unwrap();

    for round in 0..ROUNDS {
        let vendor_scrip = sim.obtain_vendor_scrip(wallet, tea, "0.01").unwrap()[0].id();
        let w = &mut sim.wallets[wallet];
        let held = w
            .wallet
            .scrip(&mut w.store)
            .unwrap()
            .into_iter()
            .find(|s| s.scrip.id() == vendor_scrip)
            .unwrap();
        assert_eq!(
            (held.scrip.body.kind, held.state),
            (ScripKind::Vendor, ScripState::Available)
        );
        let requests: Vec<Proved<Buy>> = (0..RACERS)
            .map(|_| {
                let body = Buy {
                    request_id: RequestId::random(&mut sim.rng),
                    scrip: held.scrip.clone(),
                    purchase: Purchase::Item("green".into()),
                    price: amount("0.002"),
                };
                Proved::prove(body, &held.secret)
            })
            .collect();
        let barrier = Barrier::new(RACERS);
        let (merchant, now) = (&sim.merchants[tea].merchant, sim.now);
        let responses: Vec<MerchantResponse> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .iter()
                .enumerate()
                .map(|(i, request)| {
                    let (barrier, path) = (&barrier, &path);
                    scope.spawn(move || {
                        let mut store = SqliteMerchantStore::open(path).unwrap();
                        let mut rng =
                            rand_chacha::ChaCha20Rng::seed_from_u64((round * RACERS + i) as u64);
                        barrier.wait();
                        match merchant.handle_buy(&mut store, now, &mut rng, request) {
                            Ok(delivered) => MerchantResponse::ItemDelivered(delivered),
                            Err(refusal) => MerchantResponse::Refused(refusal),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = responses
            .iter()
            .filter(|r| matches!(r, MerchantResponse::ItemDelivered(_)))
            .count();
        let double_spends = responses
            .iter()
            .filter(|r| {
                **r == MerchantResponse::Refused(Refusal::DoubleSpend {
                    scrip: held.scrip.id(),
                })
            })
            .count();
        assert_eq!(
            (winners, double_spends),
            (1, RACERS - 1),
            "round {round}: {responses:?}"
        );
    }
    // One payment record per round reaches the broker: the shop is paid once per round.
    let settlement = sim.settle(tea);
    assert_eq!(settlement.recorded, ROUNDS);
    assert_eq!(
        sim.balance(shop.number),
        scrip_proto::Amount::from_minor(amount("0.002").minor() * ROUNDS as u64).unwrap()
    );
    sim.assert_conserved();
}

/// Group commit answers many requests in one transaction: spends of one
/// BrokerScrip in the same group still have exactly one winner, the refusals
/// are in the audit log, and the group's log growth gets one checkpoint that
/// the winner's receipt points into.
fn spends_of_one_broker_scrip_in_one_group_have_exactly_one_winner(backend: Backend) {
    let mut sim = Sim::on(backend, 13);
    let alice = sim.open_account("alice", "1000");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let wallet = sim.add_wallet();
    let merchant = sim.merchant_id(tea);
    let (held, requests) = spends_of_fresh_broker_scrip(&mut sim, wallet, &alice, merchant);
    let checkpoints_before = sim.audit_snapshot().checkpoints.len();

    let answers = sim
        .broker
        .answer_group(&mut sim.broker_store, sim.now, &mut sim.rng, &requests);

    assert_eq!(answers.len(), RACERS);
    assert!(matches!(
        answers[0].response,
        BrokerResponse::VendorScripIssued(_)
    ));
    assert_eq!(answers[0].receipts.len(), 1, "the winner gets its receipt");
    for answer in &answers[1..] {
        assert_eq!(
            answer.response,
            BrokerResponse::Refused(Refusal::DoubleSpend {
                scrip: held.scrip.id()
            })
        );
        assert!(answer.receipts.is_empty());
    }
    let snapshot = sim.audit_snapshot();
    assert_eq!(snapshot.checkpoints.len(), checkpoints_before + 1);
    let (size, _) = snapshot.checkpoints.last().unwrap();
    assert_eq!(*size, snapshot.leaves.len() as u64, "it covers the group");
    assert!(answers[0].receipts[0].leaf_index < *size);
    let report = sim.audit();
    assert!(report.clean(), "{report:?}");
    assert_eq!(report.refused_double_spends, (RACERS - 1) as u64);
    sim.assert_conserved();
}

/// The licence of merchant `tea` for series 2 of its VendorScrip, and the
/// registration that grants it to the broker.
fn relicensing_to_series_2(
    sim: &mut Sim,
    tea: usize,
    shop: &scrip_core::broker::OpenedAccount,
) -> (scrip_proto::msg::Licence, BrokerRequest) {
    let keys = scrip_core::MerchantKeys::from_seed(&sim.merchants[tea].seed);
    let licence = keys.licence(2);
    let mut config = scrip_core::MerchantConfig::new("tea");
    config.series = 2;
    let relicensed = scrip_core::Merchant::new(keys, sim.broker.info(), config, Vec::new());
    let request_id = RequestId::random(&mut sim.rng);
    let registration = relicensed
        .registration_request(&mut sim.rng, request_id, shop.number, shop.pin.clone())
        .unwrap();
    (licence, registration)
}

/// `answer` issued VendorScrip of series 2 that `licence` validates.
fn assert_minted_under_series_2(
    answer: &scrip_proto::msg::BrokerAnswer,
    merchant: &scrip_proto::MerchantId,
    licence: &scrip_proto::msg::Licence,
) {
    let BrokerResponse::VendorScripIssued(issued) = &answer.response else {
        panic!("exchange refused: {:?}", answer.response);
    };
    let scrip = &issued.vendor_scrip.scrip;
    assert_eq!(scrip.body.id.series, 2, "minted under the new licence");
    let expected = scrip_core::validate::Expected {
        kind: ScripKind::Vendor,
        issuer: merchant,
        currency: scrip.body.currency,
    };
    scrip_core::validate::verify_stamp(scrip, &expected, licence)
        .expect("the merchant's new licence takes it");
}

/// The broker mints a group's VendorScrip before the group's transactions,
/// under the licences merchants had then. A merchant that re-registers with
/// a new licence in the same group must still get VendorScrip it can take:
/// minted under the licence it has when the exchange runs.
fn vendor_scrip_follows_a_licence_changed_earlier_in_the_same_group(backend: Backend) {
    let mut sim = Sim::on(backend, 17);
    let alice = sim.open_account("alice", "1000");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let wallet = sim.add_wallet();
    let merchant = sim.merchant_id(tea);
    let (_, mut exchanges) = spends_of_fresh_broker_scrip(&mut sim, wallet, &alice, merchant);
    exchanges.truncate(1);

    // The same merchant, now licensing series 2 of its VendorScrip.
    let (licence, registration) = relicensing_to_series_2(&mut sim, tea, &shop);
    // Enough requests after it that the work ahead is shared between threads.
    let (_, more) = spends_of_fresh_broker_scrip(&mut sim, wallet, &alice, merchant);
    let group: Vec<_> = std::iter::once(registration)
        .chain(exchanges)
        .chain(more.into_iter().take(7))
        .collect();

    let answers = sim
        .broker
        .answer_group(&mut sim.broker_store, sim.now, &mut sim.rng, &group);

    assert!(matches!(
        answers[0].response,
        BrokerResponse::MerchantRegistered(_)
    ));
    for answer in &answers[1..=2] {
        assert_minted_under_series_2(answer, &merchant, &licence);
    }
    sim.assert_conserved();
}

/// A node prepares each request (mints VendorScrip, seals its secret) in the
/// request's own thread, before it queues, under the licence the broker last
/// read. A merchant that re-registers while requests wait must still get
/// VendorScrip minted under the licence it has when each exchange runs.
fn vendor_scrip_prepared_before_a_licence_changed_follows_the_new_licence(backend: Backend) {
    let mut sim = Sim::on(backend, 18);
    let alice = sim.open_account("alice", "1000");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let wallet = sim.add_wallet();
    let merchant = sim.merchant_id(tea);
    // Each exchange spends BrokerScrip of its own.
    let mut exchanges: Vec<BrokerRequest> = (0..5)
        .map(|_| spends_of_fresh_broker_scrip(&mut sim, wallet, &alice, merchant).1[0].clone())
        .collect();
    let waiting = exchanges.split_off(1);
    // One exchange answered: the broker now knows the series 1 licence.
    let answers = sim
        .broker
        .answer_group(&mut sim.broker_store, sim.now, &mut sim.rng, &exchanges);
    let BrokerResponse::VendorScripIssued(issued) = &answers[0].response else {
        panic!("exchange refused: {:?}", answers[0].response);
    };
    assert_eq!(issued.vendor_scrip.scrip.body.id.series, 1);
    let prepared: Vec<_> = waiting
        .into_iter()
        .map(|request| sim.broker.prepare(sim.now, &mut sim.rng, request))
        .collect();

    // While they wait, the merchant licenses series 2 instead.
    let (licence, registration) = relicensing_to_series_2(&mut sim, tea, &shop);
    let registered = sim.broker.answer_group(
        &mut sim.broker_store,
        sim.now,
        &mut sim.rng,
        &[registration],
    );
    assert!(matches!(
        registered[0].response,
        BrokerResponse::MerchantRegistered(_)
    ));

    let answers =
        sim.broker
            .answer_prepared(&mut sim.broker_store, sim.now, &mut sim.rng, prepared);
    assert_eq!(answers.len(), 4);
    for answer in &answers {
        assert_minted_under_series_2(answer, &merchant, &licence);
    }
    sim.assert_conserved();
}

scrip_tests::on_each_backend!(
    racing_spends_of_one_broker_scrip_have_exactly_one_winner,
    spends_of_one_broker_scrip_in_one_group_have_exactly_one_winner,
    vendor_scrip_follows_a_licence_changed_earlier_in_the_same_group,
    vendor_scrip_prepared_before_a_licence_changed_follows_the_new_licence,
);
