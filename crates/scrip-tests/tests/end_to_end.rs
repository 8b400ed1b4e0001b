//! The whole story of the paper, in process: accounts, deposit, Obtain
//! BrokerScrip, Obtain VendorScrip, purchases with change, role inversion,
//! settlement, renewal; exact balances at every step.

use scrip_core::ledger::LedgerAccount;
use scrip_core::store::WalletReceipt;
use scrip_proto::msg::Purchase;
use scrip_proto::ScripKind;
use scrip_tests::{amount, Backend, Sim};

fn full_purchase_story_with_role_inversion_and_settlement(backend: Backend) {
    let mut sim = Sim::on(backend, 1);
    let alice = sim.open_account("alice", "100");
    let tea_shop_account = sim.open_account("tea shop", "0");
    let news_account = sim.open_account("news stand", "0");
    let tea = sim.add_merchant(
        "tea",
        &[("green", "0.002"), ("black", "0.0035")],
        &tea_shop_account,
    );
    let news = sim.add_merchant("news", &[("daily", "0.005")], &news_account);
    let wallet = sim.add_wallet();

    // Step 1: a macro-payment from the account.
    let broker_scrip = sim
        .obtain_broker_scrip(wallet, alice.number, &alice.pin, "5")
        .unwrap();
    assert_eq!(broker_scrip.len(), 1);
    assert_eq!(broker_scrip[0].body.kind, ScripKind::Broker);
    assert_eq!(sim.balance(alice.number), amount("95"));
    assert_eq!(
        sim.ledger_balance(LedgerAccount::OutstandingBrokerScrip),
        amount("5").as_i64()
    );
    assert_eq!(sim.wallet_balances(wallet).broker_scrip, amount("5"));

    // Step 2: VendorScrip of the tea merchant, change in BrokerScrip.
    let exchanged = sim.obtain_vendor_scrip(wallet, tea, "0.01").unwrap();
    assert_eq!(exchanged.len(), 2, "VendorScrip and change");
    assert_eq!(
        exchanged[1].body.cust_id, broker_scrip[0].body.cust_id,
        "change keeps the pseudonym"
    );
    assert_ne!(
        exchanged[0].body.cust_id, broker_scrip[0].body.cust_id,
        "VendorScrip gets a new pseudonym"
    );
    let balances = sim.wallet_balances(wallet);
    assert_eq!(balances.broker_scrip, amount("4.99"));
    assert_eq!(
        balances.vendor_scrip,
        vec![(sim.merchant_id(tea), amount("0.01"))]
    );

    // Step 3, several times: micro-payments with change.
    for (item, content) in [
        ("green", "content of green"),
        ("black", "content of black"),
        ("green", "content of green"),
    ] {
        let delivered = sim.buy_item(wallet, tea, item).unwrap();
        assert_eq!(delivered.content, content.as_bytes());
    }
    assert_eq!(
        sim.wallet_balances(wallet).vendor_scrip,
        vec![(sim.merchant_id(tea), amount("0.0025"))]
    );
    let receipts = sim.wallet_receipts(wallet);
    assert_eq!(
        receipts
            .iter()
            .filter(|r| matches!(r, WalletReceipt::PurchaseInBatch(_)))
            .count(),
        3
    );
    assert_eq!(
        receipts
            .iter()
            .filter(|r| matches!(r, WalletReceipt::Intent(_)))
            .count(),
        3
    );

    // Settlement: the tea shop's account is credited with exactly what was sold.
    assert_eq!(sim.balance(tea_shop_account.number), amount("0"));
    let settlement = sim.settle(tea);
    assert_eq!(settlement.recorded, 3);
    assert_eq!(settlement.credited, amount("0.0075"));
    assert!(settlement.refused.is_empty());
    assert_eq!(sim.balance(tea_shop_account.number), amount("0.0075"));
    assert_eq!(
        sim.ledger_balance(LedgerAccount::OutstandingVendorScrip(sim.merchant_id(tea))),
        amount("0.0025").as_i64()
    );
    assert_eq!(
        sim.settle(tea).recorded,
        0,
        "the queue is empty after settlement"
    );

    // Role inversion: the tea shop spends its earnings at the news stand.
    let tea_wallet = sim.add_wallet();
    sim.obtain_broker_scrip(
        tea_wallet,
        tea_shop_account.number,
        &tea_shop_account.pin,
        "0.0075",
    )
    .unwrap();
    assert_eq!(sim.balance(tea_shop_account.number), amount("0"));
    sim.obtain_vendor_scrip(tea_wallet, news, "0.0075").unwrap();
    let delivered = sim.buy_item(tea_wallet, news, "daily").unwrap();
    assert_eq!(delivered.content, b"content of daily");
    assert_eq!(
        delivered.change.as_ref().map(|c| c.value()),
        Some(amount("0.0025"))
    );
    assert_eq!(sim.settle(news).credited, amount("0.005"));
    assert_eq!(sim.balance(news_account.number), amount("0.005"));

    // Renewal: scrip near expiry is exchanged for fresh scrip of the same value.
    sim.advance(6 * 24 * 3600);
    let before = sim.wallet_balances(wallet);
    let renewed = sim.buy(wallet, tea, Purchase::Renew, "0").unwrap();
    let fresh = renewed
        .change
        .expect("renewal returns the whole value as change");
    assert_eq!(fresh.value(), amount("0.0025"));
    assert!(fresh.body.expiry.0 > sim.now.0 + 6 * 24 * 3600);
    assert_eq!(
        sim.wallet_balances(wallet),
        before,
        "renewal moves no value"
    );
    let old_broker_scrip = sim.wallet_scrip(wallet);
    let old = old_broker_scrip
        .iter()
        .find(|s| s.scrip.body.kind == ScripKind::Broker)
        .unwrap()
        .scrip
        .clone();
    let w = &mut sim.wallets[wallet];
    let pending = w
        .wallet
        .renew_broker_scrip(&mut w.store, &mut sim.rng, old.id())
        .unwrap();
    sim.send_to_broker(wallet, &pending).unwrap();
    assert_eq!(sim.wallet_balances(wallet), before);
    assert_eq!(
        sim.settle(tea).credited,
        amount("0"),
        "a renewal credits nothing"
    );

    // In the end: every unit is accounted for.
    // alice: 95 in the account, 4.99 BrokerScrip, 0.0025 tea VendorScrip; merchants' earnings.
    assert_eq!(sim.balance(alice.number), amount("95"));
    assert_eq!(
        sim.ledger_balance(LedgerAccount::OutstandingBrokerScrip),
        amount("4.99").as_i64()
    );
    assert_eq!(
        sim.ledger_balance(LedgerAccount::OutstandingVendorScrip(sim.merchant_id(tea))),
        amount("0.0025").as_i64()
    );
    assert_eq!(
        sim.ledger_balance(LedgerAccount::OutstandingVendorScrip(sim.merchant_id(news))),
        amount("0.0025").as_i64()
    );
    assert_eq!(
        sim.ledger_balance(LedgerAccount::MoneyIn),
        -amount("100").as_i64()
    );
    sim.assert_conserved();
}

fn withdrawals_pay_out_and_are_refused_beyond_the_balance(backend: Backend) {
    let mut sim = Sim::on(backend, 2);
    let bob = sim.open_account("bob", "10");
    let paid = sim
        .broker
        .withdraw(&mut sim.broker_store, sim.now, bob.number, amount("4"))
        .unwrap();
    assert_eq!(paid, amount("6"));
    let refused = sim
        .broker
        .withdraw(
            &mut sim.broker_store,
            sim.now,
            bob.number,
            amount("6.000001"),
        )
        .unwrap_err();
    assert_eq!(
        refused,
        scrip_proto::Refusal::Overdraft {
            account: bob.number,
            balance: amount("6"),
            requested: amount("6.000001")
        }
    );
    assert_eq!(
        sim.ledger_balance(LedgerAccount::MoneyOut),
        amount("4").as_i64()
    );
    sim.assert_conserved();
}

fn deposits_beyond_the_ledgers_range_are_refused_definitively(backend: Backend) {
    let mut sim = Sim::on(backend, 3);
    let rich = sim.open_account("rich", "0");
    let poor = sim.open_account("poor", "0");
    // Amount::MAX is i64::MAX minor units: one such deposit fits, a second would take money-in past i64::MIN.
    sim.broker
        .deposit(
            &mut sim.broker_store,
            sim.now,
            rich.number,
            scrip_proto::Amount::MAX,
        )
        .unwrap();
    let refused = sim
        .broker
        .deposit(&mut sim.broker_store, sim.now, poor.number, amount("1"))
        .unwrap_err();
    assert!(
        matches!(refused, scrip_proto::Refusal::InvalidAmount { .. }),
        "{refused}"
    );
    assert!(refused.definitive());
    assert_eq!(sim.balance(poor.number), amount("0"));
    sim.assert_conserved();
}

scrip_tests::on_each_backend!(
    full_purchase_story_with_role_inversion_and_settlement,
    withdrawals_pay_out_and_are_refused_beyond_the_balance,
    deposits_beyond_the_ledgers_range_are_refused_definitively,
);

/// Under load a merchant answers many buys with one group commit and one
/// signature: every receipt of the group is a leaf of the same signed batch.
/// A retry of a buy, in the same group or a later one, gets the same
/// delivery; other bytes under a used request id, spending the same scrip,
/// are refused; another scrip under a used request id is another sale (a
/// Buy is named by the scrip it spends and its request id).
#[test]
fn a_group_of_buys_shares_one_signed_batch_of_receipts() {
    use scrip_proto::crypto::Proved;
    use scrip_proto::msg::{Buy, MerchantRequest, MerchantResponse};
    use scrip_proto::{CustId, Refusal, RequestId, Scrip, ScripBody, ScripId};

    let mut sim = Sim::new(21);
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let merchant = sim.merchant_id(tea);
    let licence = scrip_core::MerchantKeys::from_seed(&sim.merchants[tea].seed).licence(1);
    let buy = |sim: &mut Sim| {
        let body = ScripBody {
            kind: ScripKind::Vendor,
            issuer: merchant,
            id: ScripId::random(1, &mut sim.rng),
            value: amount("0.01"),
            currency: sim.broker.info().currency,
            cust_id: CustId::random(&mut sim.rng),
            expiry: sim.now.plus_seconds(3600),
        };
        let secret = licence.customer_master.customer_secret(&body.cust_id);
        let buy = Buy {
            request_id: RequestId::random(&mut sim.rng),
            scrip: Scrip::mint(body, &licence.stamping_secret),
            purchase: Purchase::Item("green".into()),
            price: amount("0.002"),
        };
        MerchantRequest::Buy(Proved::prove(buy, &secret))
    };
    let mut group: Vec<_> = (0..5).map(|_| buy(&mut sim)).collect();
    group.push(group[1].clone());
    let MerchantRequest::Buy(first) = group[0].clone() else {
        unreachable!()
    };
    let mut altered = first.body.clone();
    altered.price = amount("0.003");
    let secret = licence
        .customer_master
        .customer_secret(&altered.scrip.body.cust_id);
    group.push(MerchantRequest::Buy(Proved::prove(altered, &secret)));
    // A second spend of the fourth buy's scrip, under a request id of its own.
    let MerchantRequest::Buy(fourth) = &group[3] else {
        unreachable!()
    };
    let mut double = fourth.body.clone();
    double.request_id = RequestId::random(&mut sim.rng);
    let double_spent = double.scrip.id();
    let secret = licence
        .customer_master
        .customer_secret(&double.scrip.body.cust_id);
    group.push(MerchantRequest::Buy(Proved::prove(double, &secret)));
    group.push(buy(&mut sim));
    let MerchantRequest::Buy(another) = buy(&mut sim) else {
        unreachable!()
    };
    let mut another = another.body;
    another.request_id = first.body.request_id;
    let secret = licence
        .customer_master
        .customer_secret(&another.scrip.body.cust_id);
    group.push(MerchantRequest::Buy(Proved::prove(another, &secret)));

    let m = &mut sim.merchants[tea];
    let answers = m
        .merchant
        .answer_group(&mut m.store, sim.now, &mut sim.rng, &group);

    let delivered: Vec<_> = answers[..6]
        .iter()
        .chain(&answers[8..])
        .map(|answer| match answer {
            MerchantResponse::ItemDelivered(d) => d.clone(),
            other => panic!("not delivered: {other:?}"),
        })
        .collect();
    let batch = &delivered[0].receipt.batch;
    assert_eq!(batch.body.size, 7, "one leaf per sale, not per retry");
    let sales = delivered[..5].iter().chain(&delivered[6..]);
    for (leaf, d) in sales.enumerate() {
        assert_eq!(&d.receipt.batch, batch, "one signature for the group");
        assert_eq!(d.receipt.leaf, leaf as u64);
        scrip_core::merchant::verify_receipt(&d.receipt, &merchant).unwrap();
    }
    assert_eq!(delivered[5], delivered[1], "a retry in the group");
    assert_eq!(
        answers[6],
        MerchantResponse::Refused(Refusal::RequestIdReused {
            request: delivered[0].request_id
        })
    );
    assert_eq!(
        answers[7],
        MerchantResponse::Refused(Refusal::DoubleSpend {
            scrip: double_spent
        }),
        "a refusal inside the group leaves the sales around it"
    );
    let queued = {
        use scrip_core::store::{MerchantStore, MerchantTx};
        m.store
            .begin()
            .unwrap()
            .queued_payment_records(100)
            .unwrap()
    };
    assert_eq!(queued.len(), 7, "one payment record per sale");
    assert_eq!(
        delivered[7].request_id, delivered[0].request_id,
        "another scrip under a used request id"
    );
    assert_ne!(
        delivered[7].receipt.receipt.scrip,
        delivered[0].receipt.receipt.scrip
    );
    let again = m
        .merchant
        .answer_group(&mut m.store, sim.now, &mut sim.rng, &group[2..8]);
    let retried: Vec<_> = delivered[2..6]
        .iter()
        .cloned()
        .map(MerchantResponse::ItemDelivered)
        .collect();
    assert_eq!(&again[..4], &retried[..], "retries in a later group");
    assert_eq!(
        &again[4..],
        &answers[6..8],
        "the same refusals in a later group"
    );
}

/// A merchant `tea` selling green tea at 0.002, and a wallet on `store` of
/// an account of 100, holding 0.01 of tea's VendorScrip and BrokerScrip for
/// the rest of 10.
fn tea_customer(sim: &mut Sim, store: scrip_store_sqlite::SqliteWalletStore) -> (usize, usize) {
    let alice = sim.open_account("alice", "100");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let wallet = sim.add_wallet_with_store(store);
    sim.obtain_broker_scrip(wallet, alice.number, &alice.pin, "10")
        .unwrap();
    sim.obtain_vendor_scrip(wallet, tea, "0.01").unwrap();
    (tea, wallet)
}

/// A wallet settles each answer without waiting for the disk
/// (`WalletStore::begin_settle`), having stored the request before it was
/// sent. A power cut right after a purchase can leave the wallet as it was
/// before the answers came, never before the request: resent, the requests
/// get the same answers, and the wallet ends as it would have.
#[test]
fn a_purchase_whose_settling_commit_was_lost_is_settled_again_by_resending_it() {
    use scrip_core::store::Destination;
    use scrip_store_sqlite::SqliteWalletStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.db");
    let mut sim = Sim::new(12);
    let (tea, wallet) = tea_customer(&mut sim, SqliteWalletStore::open(&path).unwrap());
    let purchase = sim
        .buy_unsent(wallet, tea, Purchase::Item("green".into()), "0.002")
        .unwrap();
    // What the disk holds if the cut comes before the settling commits reach it.
    let at_the_cut = dir.path().join("at-the-cut.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("VACUUM INTO ?1", [at_the_cut.to_str().unwrap()])
        .unwrap();

    let intent = sim.broker_bytes(&purchase.intent.request);
    let bought = sim.merchant_bytes(tea, &purchase.buy.request);
    let ww = &mut sim.wallets[wallet];
    ww.wallet
        .handle_broker_response(&mut ww.store, purchase.intent.request_id, &intent, &[])
        .unwrap();
    let delivered = ww
        .wallet
        .handle_merchant_response(&mut ww.store, purchase.buy.request_id, &bought)
        .unwrap();
    let settled = (
        ww.wallet.scrip(&mut ww.store).unwrap(),
        ww.wallet.receipts(&mut ww.store).unwrap(),
        scrip_core::wallet::kept_items(&mut ww.store).unwrap(),
    );
    assert_eq!(settled.2.len(), 1, "the item is kept with the settlement");

    // The wallet restarts from the disk the cut left, and resends what is
    // pending there, the broker's first as `Customer::recover` does.
    ww.store = SqliteWalletStore::open(&at_the_cut).unwrap();
    let mut pending = ww.wallet.pending(&mut ww.store).unwrap();
    pending.sort_by_key(|p| p.destination != Destination::Broker);
    let resent: Vec<_> = pending.iter().map(|p| p.request_id).collect();
    assert_eq!(
        resent,
        [purchase.intent.request_id, purchase.buy.request_id],
        "the purchase is pending on disk"
    );
    let intent_again = sim.broker_bytes(&pending[0].request);
    let bought_again = sim.merchant_bytes(tea, &pending[1].request);
    let ww = &mut sim.wallets[wallet];
    ww.wallet
        .handle_broker_response(&mut ww.store, resent[0], &intent_again, &[])
        .unwrap();
    let delivered_again = ww
        .wallet
        .handle_merchant_response(&mut ww.store, resent[1], &bought_again)
        .unwrap();
    assert_eq!(delivered_again, delivered);
    let recovered = (
        ww.wallet.scrip(&mut ww.store).unwrap(),
        ww.wallet.receipts(&mut ww.store).unwrap(),
        scrip_core::wallet::kept_items(&mut ww.store).unwrap(),
    );
    assert_eq!(recovered, settled);
    sim.assert_conserved();
}

/// Settling a purchase takes its pending request, and with it the wallet's
/// means to ask the merchant for the item again; so the item is kept in the
/// same commit, and across a restart, until the wallet is told that its user
/// has it. A renewal and a refused purchase deliver nothing to keep.
#[test]
fn a_bought_item_is_kept_in_the_wallet_until_it_is_forgotten() {
    use scrip_core::store::BoughtItem;
    use scrip_core::wallet::forget_item;
    use scrip_store_sqlite::SqliteWalletStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.db");
    let mut sim = Sim::new(13);
    let (tea, wallet) = tea_customer(&mut sim, SqliteWalletStore::open(&path).unwrap());
    let delivered = sim.buy_item(wallet, tea, "green").unwrap();
    sim.buy(wallet, tea, Purchase::Renew, "0").unwrap();
    let refused = sim.buy(wallet, tea, Purchase::Item("green".into()), "0.001");
    assert!(
        matches!(refused, Err(scrip_core::WalletError::Refused(_))),
        "{refused:?}"
    );

    sim.wallets[wallet].store = SqliteWalletStore::open(&path).unwrap();
    let kept = BoughtItem {
        request_id: delivered.request_id,
        merchant: sim.merchant_id(tea),
        item: "green".into(),
        price: amount("0.002"),
        content: b"content of green".to_vec(),
    };
    assert_eq!(sim.wallet_items(wallet), vec![kept]);

    let store = &mut sim.wallets[wallet].store;
    assert!(forget_item(store, delivered.request_id).unwrap());
    assert!(!forget_item(store, delivered.request_id).unwrap());
    assert!(sim.wallet_items(wallet).is_empty());
    sim.assert_conserved();
}

/// A merchant forgets a sale once its scrip expired more than its retention
/// ago (`Merchant::forget_expired_sales`): a retry of it is then refused
/// `Expired`, as a new spend of that scrip always was. A sale not yet
/// reported to the broker is kept until it is, the newest sale is kept, and
/// a kept sale's retry still gets its receipt and its proof, since the
/// receipt batches still in use are kept.
#[test]
fn a_merchant_forgets_expired_sales_and_their_scrip_stays_refused() {
    use scrip_core::store::SweepFrom;
    use scrip_proto::msg::MerchantResponse;
    use scrip_proto::Refusal;

    let mut sim = Sim::new(14);
    let (tea, wallet) = tea_customer(
        &mut sim,
        scrip_store_sqlite::SqliteWalletStore::open_in_memory().unwrap(),
    );
    let buy = |sim: &mut Sim| {
        let purchase = sim
            .buy_unsent(wallet, tea, Purchase::Item("green".into()), "0.002")
            .unwrap();
        sim.send_to_broker(wallet, &purchase.intent).unwrap();
        let answer = sim.merchant_bytes(tea, &purchase.buy.request);
        let w = &mut sim.wallets[wallet];
        w.wallet
            .handle_merchant_response(&mut w.store, purchase.buy.request_id, &answer)
            .unwrap();
        purchase.buy.request
    };
    let reported: Vec<Vec<u8>> = (0..3).map(|_| buy(&mut sim)).collect();
    assert_eq!(sim.settle(tea).credited, amount("0.006"));
    let unreported: Vec<Vec<u8>> = (0..2).map(|_| buy(&mut sim)).collect();
    let batches = |sim: &Sim| {
        let dump = sim.merchants[tea].store.fingerprint().unwrap();
        let (_, rest) = dump.split_once("[receipt_batches]\n").unwrap();
        rest.lines().take_while(|l| !l.starts_with('[')).count()
    };
    assert_eq!(batches(&sim), 5, "one group, one batch, per sale");

    let forget = |sim: &mut Sim| {
        let m = &mut sim.merchants[tea];
        let swept = m
            .merchant
            .forget_expired_sales(&mut m.store, sim.now, 4096, SweepFrom::Where)
            .unwrap();
        swept.forgotten
    };
    let answered_again = |sim: &mut Sim, request: &[u8]| match sim.merchant_bytes(tea, request) {
        MerchantResponse::ItemDelivered(delivered) => {
            scrip_core::merchant::verify_receipt(&delivered.receipt, &sim.merchant_id(tea))
                .expect("a receipt in a batch the merchant signed, and its proof");
            true
        }
        MerchantResponse::Refused(Refusal::Expired { .. }) => false,
        other => panic!("{other:?}"),
    };
    // Expired, but not for longer than the retention: kept.
    sim.advance(8 * 24 * 3600);
    assert_eq!(forget(&mut sim), 0);
    assert!(answered_again(&mut sim, &reported[0]));
    sim.advance(30 * 24 * 3600);
    assert_eq!(forget(&mut sim), 3, "the reported sales");
    assert_eq!(batches(&sim), 2, "the kept sales' batches");
    for request in &reported {
        assert!(!answered_again(&mut sim, request));
    }
    for request in &unreported {
        assert!(answered_again(&mut sim, request));
    }

    // Reported late, they are credited once; then the older is forgotten,
    // and the newest stays.
    assert_eq!(sim.settle(tea).credited, amount("0.004"));
    assert_eq!(forget(&mut sim), 1);
    assert!(!answered_again(&mut sim, &unreported[0]));
    assert!(answered_again(&mut sim, &unreported[1]));
    assert_eq!(batches(&sim), 1);
    sim.assert_conserved();
}

/// The broker's answer carries the log receipt of the request's leaf; the
/// wallet keeps it with the answer, and no receipt of another request.
#[test]
fn a_wallet_keeps_the_log_receipt_of_its_request_and_no_other() {
    use scrip_proto::msg::LogReceipt;
    use scrip_proto::RequestId;

    let mut sim = Sim::new(13);
    let alice = sim.open_account("alice", "100");
    let wallet = sim.add_wallet();
    let ww = &mut sim.wallets[wallet];
    let pending = ww
        .wallet
        .obtain_broker_scrip(
            &mut ww.store,
            &mut sim.rng,
            alice.number,
            alice.pin.clone(),
            amount("1"),
        )
        .unwrap();
    let response = sim.broker_bytes(&pending.request);
    let receipt = |request_id| LogReceipt {
        request_id,
        leaf_index: 3,
        leaf_hash: [7; 32],
        checkpoint: b"a checkpoint".to_vec(),
    };
    let ours = receipt(pending.request_id);
    let another = receipt(RequestId([9; 16]));
    let ww = &mut sim.wallets[wallet];
    ww.wallet
        .handle_broker_response(
            &mut ww.store,
            pending.request_id,
            &response,
            &[another, ours.clone()],
        )
        .unwrap();
    assert_eq!(
        ww.wallet.receipts(&mut ww.store).unwrap(),
        [WalletReceipt::Log(ours)]
    );
}

/// A merchant keeps the broker's log receipts of its payment records with
/// the acknowledgement that clears them, and none with one it rejects.
#[test]
fn a_merchant_keeps_the_log_receipts_of_an_acknowledgement_it_takes() {
    use scrip_core::store::{MerchantStore, MerchantTx};
    use scrip_proto::msg::{BrokerResponse, LogReceipt};
    use scrip_proto::{Refusal, RequestId};

    let mut sim = Sim::new(14);
    let (tea, wallet) = tea_customer(
        &mut sim,
        scrip_store_sqlite::SqliteWalletStore::open_in_memory().unwrap(),
    );
    sim.buy_item(wallet, tea, "green").unwrap();
    let batch = sim
        .poll_payment_records(tea, 64)
        .expect("a record is queued");
    let ack = sim.broker_call(&batch);
    let receipt = LogReceipt {
        request_id: RequestId([5; 16]),
        leaf_index: 9,
        leaf_hash: [3; 32],
        checkpoint: b"a checkpoint".to_vec(),
    };
    let kept = |sim: &mut Sim| {
        sim.merchants[tea]
            .store
            .begin()
            .unwrap()
            .receipts()
            .unwrap()
    };
    let before = kept(&mut sim);

    let m = &mut sim.merchants[tea];
    let refused = BrokerResponse::Refused(Refusal::Unavailable);
    assert!(m
        .merchant
        .handle_payment_records_ack(&mut m.store, &refused, std::slice::from_ref(&receipt))
        .is_err());
    assert_eq!(kept(&mut sim), before, "a rejected answer keeps nothing");

    let m = &mut sim.merchants[tea];
    let settled = m
        .merchant
        .handle_payment_records_ack(&mut m.store, &ack, std::slice::from_ref(&receipt))
        .unwrap();
    assert_eq!(settled.recorded, 1);
    assert_eq!(kept(&mut sim), [before, vec![receipt]].concat());
}

/// Payment records are as large as the Buys they record: a merchant whose
/// item ids are long still forwards them, in batches that fit a message,
/// and is credited for every sale (a batch cut by count alone was refused
/// as too large, and polled again and again).
#[test]
fn payment_records_of_long_item_ids_go_in_batches_that_fit_a_message() {
    use scrip_proto::msg::{BrokerResponse, RecordOutcome};

    let mut sim = Sim::new(15);
    let alice = sim.open_account("alice", "100");
    let shop = sim.open_account("shop", "0");
    let item = "x".repeat(8_000);
    let tea = sim.add_merchant("tea", &[(item.as_str(), "0.001")], &shop);
    let wallet = sim.add_wallet();
    sim.obtain_broker_scrip(wallet, alice.number, &alice.pin, "10")
        .unwrap();
    sim.obtain_vendor_scrip(wallet, tea, "1").unwrap();
    let sales = 200;
    for _ in 0..sales {
        sim.buy(wallet, tea, Purchase::Item(item.clone()), "0.001")
            .unwrap();
    }
    let batch = sim
        .poll_payment_records(tea, 256)
        .expect("records are queued");
    assert!(scrip_proto::encode(&batch).len() <= scrip_proto::encoding::MAX_MESSAGE_LEN);
    let BrokerResponse::PaymentRecordsAck(ack) = sim.broker_call(&batch) else {
        panic!("the broker refused the batch");
    };
    let first = ack.body.outcomes.len();
    assert!(
        first > 0 && first < sales,
        "{first} records in the first batch"
    );
    assert!(ack
        .body
        .outcomes
        .iter()
        .all(|(_, outcome)| matches!(outcome, RecordOutcome::Credited { .. })));
    // The first batch's acknowledgement was not taken in: it is sent again
    // (recorded already), and then the rest.
    assert_eq!(sim.settle(tea).recorded, sales);
    let shop = sim
        .broker
        .accounts(&mut sim.broker_store)
        .unwrap()
        .into_iter()
        .find(|a| a.name == "shop")
        .unwrap();
    assert_eq!(shop.balance, amount("0.2"), "every sale credited once");
    sim.assert_conserved();
}
