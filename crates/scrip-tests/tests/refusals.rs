//! Bad input gets a typed, explained refusal and changes nothing.
//!
//! Each test builds a real deployment, makes one bad request and checks the
//! exact refusal, then that the broker's, merchant's and wallet's stores are
//! byte for byte what they were before. The one deliberate exception is a
//! wrong PIN, which is counted in the broker's `pin_failures` (PIN guessing
//! locks the account): that test checks the count on its own and the rest
//! byte for byte.

use scrip_core::store::{BrokerStore, BrokerTx, ScripState, WalletScrip, WalletStore, WalletTx};
use scrip_core::{BrokerKeys, WalletError};
use scrip_proto::crypto::{CustomerSecret, Proved, Signed, StampingSecret};
use scrip_proto::msg::{
    BrokerRequest, BrokerResponse, Buy, MerchantRequest, MerchantResponse, ObtainVendorScrip,
    Purchase,
};
use scrip_proto::{encode, AccountNumber, Pin, Refusal, RequestId, Scrip, ScripKind, Secret32};
use scrip_tests::{amount, without_table, Backend, Sim};

/// A customer with 10 in BrokerScrip and 0.01 in VendorScrip at "tea" (items: green 0.002, pot 0.05).
struct World {
    sim: Sim,
    tea: usize,
    news: usize,
    wallet: usize,
    alice: scrip_core::broker::OpenedAccount,
}

fn world(backend: Backend) -> World {
    let mut sim = Sim::on(backend, 7);
    let alice = sim.open_account("alice", "100");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002"), ("pot", "0.05")], &shop);
    let news = sim.add_merchant("news", &[("daily", "0.01")], &shop);
    let wallet = sim.add_wallet();
    sim.obtain_broker_scrip(wallet, alice.number, &alice.pin, "10")
        .unwrap();
    sim.obtain_vendor_scrip(wallet, tea, "0.01").unwrap();
    World {
        sim,
        tea,
        news,
        wallet,
        alice,
    }
}

impl World {
    fn held(&mut self, kind: ScripKind) -> WalletScrip {
        let w = &mut self.sim.wallets[self.wallet];
        w.wallet
            .scrip(&mut w.store)
            .unwrap()
            .into_iter()
            .find(|s| s.scrip.body.kind == kind && s.state == ScripState::Available)
            .unwrap()
    }

    /// The state of every store, to compare before and after a refusal.
    fn fingerprint(&mut self) -> Vec<String> {
        let mut all = vec![self.sim.broker_store.fingerprint().unwrap()];
        all.extend(
            self.sim
                .merchants
                .iter_mut()
                .map(|m| m.store.fingerprint().unwrap()),
        );
        all.extend(
            self.sim
                .wallets
                .iter_mut()
                .map(|w| w.store.fingerprint().unwrap()),
        );
        all
    }

    /// A Buy at `merchant` spending `scrip`, proved with `secret`.
    fn buy_request(
        &mut self,
        scrip: Scrip,
        secret: &CustomerSecret,
        item: &str,
        price: &str,
    ) -> MerchantRequest {
        let body = Buy {
            request_id: RequestId::random(&mut self.sim.rng),
            scrip,
            purchase: Purchase::Item(item.into()),
            price: amount(price),
        };
        MerchantRequest::Buy(Proved::prove(body, secret))
    }

    fn exchange_request(
        &mut self,
        scrip: Scrip,
        secret: &CustomerSecret,
        value: &str,
    ) -> BrokerRequest {
        let body = ObtainVendorScrip {
            request_id: RequestId::random(&mut self.sim.rng),
            scrip,
            merchant: self.sim.merchant_id(self.tea),
            amount: amount(value),
            reply_key: scrip_proto::HpkePublicKey([9; 32]),
        };
        BrokerRequest::ObtainVendorScrip(Proved::prove(body, secret))
    }

    /// Sends `request` to the merchant, expects `expected`, and checks nothing changed.
    fn merchant_refuses(&mut self, request: MerchantRequest, expected: Refusal) {
        let before = self.fingerprint();
        let tea = self.tea;
        assert_eq!(
            self.sim.merchant_call(tea, &request),
            MerchantResponse::Refused(expected)
        );
        assert_eq!(self.fingerprint(), before, "a refusal changed state");
    }

    fn broker_refuses(&mut self, request: BrokerRequest, expected: Refusal) {
        let before = self.fingerprint();
        assert_eq!(
            self.sim.broker_call(&request),
            BrokerResponse::Refused(expected)
        );
        assert_eq!(self.fingerprint(), before, "a refusal changed state");
    }
}

fn double_spend_at_the_merchant_is_refused(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let first = w.buy_request(held.scrip.clone(), &held.secret, "green", "0.002");
    assert!(matches!(
        w.sim.merchant_call(w.tea, &first),
        MerchantResponse::ItemDelivered(_)
    ));
    let again = w.buy_request(held.scrip.clone(), &held.secret, "green", "0.002");
    w.merchant_refuses(
        again,
        Refusal::DoubleSpend {
            scrip: held.scrip.id(),
        },
    );
}

fn double_spend_at_the_broker_is_refused(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Broker);
    let first = w.exchange_request(held.scrip.clone(), &held.secret, "1");
    assert!(matches!(
        w.sim.broker_call(&first),
        BrokerResponse::VendorScripIssued(_)
    ));
    let again = w.exchange_request(held.scrip.clone(), &held.secret, "1");
    w.broker_refuses(
        again,
        Refusal::DoubleSpend {
            scrip: held.scrip.id(),
        },
    );
}

fn forged_stamp_is_refused_by_merchant_and_broker(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let forged = Scrip::mint(
        held.scrip.body.clone(),
        &StampingSecret(Secret32::random(&mut w.sim.rng)),
    );
    let request = w.buy_request(forged.clone(), &held.secret, "green", "0.002");
    w.merchant_refuses(request, Refusal::ForgedStamp { scrip: forged.id() });

    let held = w.held(ScripKind::Broker);
    let forged = Scrip::mint(
        held.scrip.body.clone(),
        &StampingSecret(Secret32::random(&mut w.sim.rng)),
    );
    let request = w.exchange_request(forged.clone(), &held.secret, "1");
    w.broker_refuses(request, Refusal::ForgedStamp { scrip: forged.id() });
}

fn tampered_value_or_expiry_breaks_the_stamp(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let mut richer = held.scrip.clone();
    richer.body.value = amount("1000");
    let request = w.buy_request(richer, &held.secret, "pot", "0.05");
    w.merchant_refuses(
        request,
        Refusal::ForgedStamp {
            scrip: held.scrip.id(),
        },
    );

    let mut longer = held.scrip.clone();
    longer.body.expiry = longer.body.expiry.plus_seconds(365 * 24 * 3600);
    let request = w.buy_request(longer, &held.secret, "green", "0.002");
    w.merchant_refuses(
        request,
        Refusal::ForgedStamp {
            scrip: held.scrip.id(),
        },
    );

    let held = w.held(ScripKind::Broker);
    let mut richer = held.scrip.clone();
    richer.body.value = amount("1000");
    let request = w.exchange_request(richer, &held.secret, "500");
    w.broker_refuses(
        request,
        Refusal::ForgedStamp {
            scrip: held.scrip.id(),
        },
    );
}

fn vendor_scrip_is_valid_only_at_its_merchant(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let request = w.buy_request(held.scrip.clone(), &held.secret, "daily", "0.01");
    let before = w.fingerprint();
    let expected = Refusal::WrongIssuer {
        scrip: held.scrip.id(),
        expected: w.sim.merchant_id(w.news),
        found: w.sim.merchant_id(w.tea),
    };
    assert_eq!(
        w.sim.merchant_call(w.news, &request),
        MerchantResponse::Refused(expected)
    );
    assert_eq!(w.fingerprint(), before);
}

fn broker_scrip_is_not_spendable_at_a_merchant_nor_vendor_scrip_at_the_broker(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Broker);
    let request = w.buy_request(held.scrip.clone(), &held.secret, "green", "0.002");
    w.merchant_refuses(
        request,
        Refusal::WrongKind {
            scrip: held.scrip.id(),
            expected: ScripKind::Vendor,
            found: ScripKind::Broker,
        },
    );
    let held = w.held(ScripKind::Vendor);
    let request = w.exchange_request(held.scrip.clone(), &held.secret, "0.001");
    w.broker_refuses(
        request,
        Refusal::WrongKind {
            scrip: held.scrip.id(),
            expected: ScripKind::Broker,
            found: ScripKind::Vendor,
        },
    );
}

fn wrong_currency_is_refused(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let mut dollars = held.scrip.clone();
    dollars.body.currency = "USD".parse().unwrap();
    let request = w.buy_request(dollars, &held.secret, "green", "0.002");
    w.merchant_refuses(
        request,
        Refusal::WrongCurrency {
            expected: "EUR".parse().unwrap(),
            found: "USD".parse().unwrap(),
        },
    );
}

fn expired_scrip_is_refused_and_kept(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    w.sim.advance(8 * 24 * 3600);
    let before = w.fingerprint();
    let error = w.sim.buy_item(w.wallet, w.tea, "green").unwrap_err();
    assert!(
        matches!(error, WalletError::NoScrip { .. }),
        "the wallet does not offer expired scrip: {error}"
    );
    let request = w.buy_request(held.scrip.clone(), &held.secret, "green", "0.002");
    assert_eq!(w.fingerprint(), before);
    w.merchant_refuses(
        request,
        Refusal::Expired {
            scrip: held.scrip.id(),
            expiry: held.scrip.body.expiry,
            now: w.sim.now,
        },
    );
}

fn value_below_price_is_refused_and_the_wallet_keeps_its_scrip(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let request = w.buy_request(held.scrip.clone(), &held.secret, "pot", "0.05");
    w.merchant_refuses(
        request,
        Refusal::InsufficientValue {
            value: amount("0.01"),
            needed: amount("0.05"),
        },
    );
    // Through the wallet: it finds no scrip worth 0.05 and says what to do.
    let error = w.sim.buy_item(w.wallet, w.tea, "pot").unwrap_err();
    assert!(error.to_string().contains("obtain more first"), "{error}");
}

fn stolen_scrip_without_its_customer_secret_is_refused(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let thief = CustomerSecret(Secret32::random(&mut w.sim.rng));
    let request = w.buy_request(held.scrip.clone(), &thief, "green", "0.002");
    w.merchant_refuses(
        request,
        Refusal::NotOwner {
            scrip: held.scrip.id(),
        },
    );
    let held = w.held(ScripKind::Broker);
    let request = w.exchange_request(held.scrip.clone(), &thief, "1");
    w.broker_refuses(
        request,
        Refusal::NotOwner {
            scrip: held.scrip.id(),
        },
    );
}

fn wrong_pin_unknown_account_and_overdraft_are_refused(backend: Backend) {
    let mut w = world(backend);
    let wallet = w.wallet;
    let account = w.alice.number;
    let cases = [
        (
            account,
            Pin::new("00000000").unwrap(),
            "1",
            Refusal::WrongAccountOrPin { account },
        ),
        // An unknown account gets the wrong PIN's answer (no probing), and
        // is not counted: there is no account to lock.
        (
            AccountNumber(111_111_111_111),
            w.alice.pin.clone(),
            "1",
            Refusal::WrongAccountOrPin {
                account: AccountNumber(111_111_111_111),
            },
        ),
        (
            account,
            w.alice.pin.clone(),
            "90.01",
            Refusal::Overdraft {
                account,
                balance: amount("90"),
                requested: amount("90.01"),
            },
        ),
    ];
    for (number, pin, value, expected) in cases {
        let before = w.fingerprint();
        let error = w
            .sim
            .obtain_broker_scrip(wallet, number, &pin, value)
            .unwrap_err();
        assert!(
            matches!(&error, WalletError::Refused(r) if *r == expected),
            "{error}"
        );
        let mut after = w.fingerprint();
        if number == account && matches!(expected, Refusal::WrongAccountOrPin { .. }) {
            // A wrong PIN is counted on purpose (PROTOCOL.md, PIN guessing):
            // the count is checked on its own, everything else must be as it was.
            let counted = w
                .sim
                .broker_store
                .begin()
                .and_then(|mut tx| tx.pin_failures(account))
                .unwrap();
            assert_eq!(counted.count, 1);
            assert_eq!(counted.lock, None);
            assert_ne!(after[0], before[0], "the wrong PIN was not counted");
            after[0] = without_table(&after[0], "pin_failures");
            let mut before = before.clone();
            before[0] = without_table(&before[0], "pin_failures");
            assert_eq!(after, before, "refused {expected:?} changed state");
        } else {
            // The right PIN in a refused step leaves the count of wrong ones as it was.
            assert_eq!(after, before, "refused {expected:?} changed state");
        }
    }
    assert_eq!(w.sim.balance(account), amount("90"));
    let audit = w.sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(
        audit.refused_pins.get(&account),
        Some(&1),
        "the wrong PIN is in the audit log"
    );
}

fn another_wallet_cannot_use_an_account_bound_to_the_first(backend: Backend) {
    let mut w = world(backend);
    let intruder = w.sim.add_wallet();
    let before = w.fingerprint();
    let error = w
        .sim
        .obtain_broker_scrip(intruder, w.alice.number, &w.alice.pin.clone(), "1")
        .unwrap_err();
    assert!(
        matches!(
            error,
            WalletError::Refused(Refusal::AccountKeyMismatch { .. })
        ),
        "{error}"
    );
    assert_eq!(w.fingerprint(), before);
}

fn malformed_and_truncated_bytes_are_refused_without_panicking(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let good = encode(&w.buy_request(held.scrip.clone(), &held.secret, "green", "0.002"));
    let before = w.fingerprint();
    for cut in [0, 1, 10, good.len() / 2, good.len() - 1] {
        assert!(
            matches!(
                w.sim.merchant_bytes(w.tea, &good[..cut]),
                MerchantResponse::Refused(Refusal::Malformed(_))
            ),
            "cut at {cut}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        w.sim.merchant_bytes(w.tea, &trailing),
        MerchantResponse::Refused(Refusal::Malformed(_))
    ));
    for garbage in [vec![0xFF; 3], vec![7; 200], vec![]] {
        assert!(matches!(
            w.sim.broker_bytes(&garbage),
            BrokerResponse::Refused(Refusal::Malformed(_))
        ));
    }
    assert_eq!(w.fingerprint(), before);
}

fn a_retried_request_moves_value_once_and_an_altered_replay_is_refused(backend: Backend) {
    let mut w = world(backend);
    let wallet = w.wallet;
    let purchase = w
        .sim
        .buy_unsent(wallet, w.tea, Purchase::Item("green".into()), "0.002")
        .unwrap();
    let first = w.sim.merchant_bytes(w.tea, &purchase.buy.request);
    let before = w.fingerprint();
    let retry = w.sim.merchant_bytes(w.tea, &purchase.buy.request);
    assert_eq!(retry, first, "a retry gets the same delivery and change");
    assert_eq!(w.fingerprint(), before, "a retry moves nothing");

    // Same request id, different content: refused.
    let MerchantRequest::Buy(mut altered) =
        scrip_proto::decode::<MerchantRequest>(&purchase.buy.request).unwrap()
    else {
        panic!()
    };
    altered.body.purchase = Purchase::Item("pot".into());
    altered.body.price = amount("0.05");
    let request_id = altered.body.request_id;
    w.merchant_refuses(
        MerchantRequest::Buy(altered),
        Refusal::RequestIdReused {
            request: request_id,
        },
    );

    // At the broker: an Obtain BrokerScrip retried, then replayed with an altered amount.
    let alice = (w.alice.number, w.alice.pin.clone());
    let ww = &mut w.sim.wallets[wallet];
    let pending = ww
        .wallet
        .obtain_broker_scrip(&mut ww.store, &mut w.sim.rng, alice.0, alice.1, amount("1"))
        .unwrap();
    let first = w.sim.broker_bytes(&pending.request);
    let balance = w.sim.balance(w.alice.number);
    assert_eq!(w.sim.broker_bytes(&pending.request), first);
    assert_eq!(w.sim.balance(w.alice.number), balance, "debited once");
    let BrokerRequest::ObtainBrokerScrip(mut altered) =
        scrip_proto::decode::<BrokerRequest>(&pending.request).unwrap()
    else {
        panic!()
    };
    altered.body.reply_key = scrip_proto::HpkePublicKey([1; 32]);
    let request_id = altered.body.request_id;
    w.broker_refuses(
        BrokerRequest::ObtainBrokerScrip(altered),
        Refusal::RequestIdReused {
            request: request_id,
        },
    );
}

fn a_bad_signature_or_a_lifted_envelope_is_refused(backend: Backend) {
    let mut w = world(backend);
    let wallet = w.wallet;
    let alice = (w.alice.number, w.alice.pin.clone());
    let ww = &mut w.sim.wallets[wallet];
    let pending = ww
        .wallet
        .obtain_broker_scrip(&mut ww.store, &mut w.sim.rng, alice.0, alice.1, amount("1"))
        .unwrap();
    let BrokerRequest::ObtainBrokerScrip(signed) =
        scrip_proto::decode::<BrokerRequest>(&pending.request).unwrap()
    else {
        panic!()
    };

    let mut bad_signature = signed.clone();
    bad_signature.signature.0[0] ^= 1;
    w.broker_refuses(
        BrokerRequest::ObtainBrokerScrip(bad_signature),
        Refusal::BadSignature {
            what: "scrip/v1/obtain-broker-scrip".into(),
        },
    );

    // An eavesdropper lifts the sealed PIN into its own, validly signed request.
    let thief = scrip_proto::crypto::SigningKey::from_secret(&Secret32::random(&mut w.sim.rng));
    let mut lifted = signed.body.clone();
    lifted.request_id = RequestId::random(&mut w.sim.rng);
    lifted.account_key = thief.public_key();
    w.broker_refuses(
        BrokerRequest::ObtainBrokerScrip(Signed::sign(lifted, &thief)),
        Refusal::CannotOpenEnvelope,
    );
}

fn unknown_item_wrong_price_and_unknown_merchant_are_refused(backend: Backend) {
    let mut w = world(backend);
    let held = w.held(ScripKind::Vendor);
    let request = w.buy_request(held.scrip.clone(), &held.secret, "coffee", "0.002");
    w.merchant_refuses(
        request,
        Refusal::UnknownItem {
            item: "coffee".into(),
        },
    );
    let request = w.buy_request(held.scrip.clone(), &held.secret, "green", "0.001");
    w.merchant_refuses(
        request,
        Refusal::PriceMismatch {
            item: "green".into(),
            price: amount("0.002"),
            offered: amount("0.001"),
        },
    );

    let held = w.held(ScripKind::Broker);
    let BrokerRequest::ObtainVendorScrip(mut request) =
        w.exchange_request(held.scrip.clone(), &held.secret, "1")
    else {
        panic!()
    };
    let stranger = scrip_proto::PublicKey([5; 32]);
    request.body.merchant = stranger;
    let request = Proved::prove(request.body, &held.secret);
    w.broker_refuses(
        BrokerRequest::ObtainVendorScrip(request),
        Refusal::UnknownMerchant { merchant: stranger },
    );
}

fn a_merchant_cannot_claim_payments_it_did_not_receive_nor_claim_twice(backend: Backend) {
    let mut w = world(backend);
    w.sim.buy_item(w.wallet, w.tea, "green").unwrap();
    let tea = w.tea;
    let batch = w.sim.poll_payment_records(tea, 10).unwrap();
    let first = w.sim.broker_call(&batch);
    let BrokerResponse::PaymentRecordsAck(ack) = &first else {
        panic!("{first:?}")
    };
    assert!(
        matches!(ack.body.outcomes[0].1, scrip_proto::msg::RecordOutcome::Credited { amount: a, leaf } if a == amount("0.002") && leaf > 0),
        "{:?}",
        ack.body.outcomes
    );
    let shop_balance = w
        .sim
        .broker
        .accounts(&mut w.sim.broker_store)
        .unwrap()
        .into_iter()
        .find(|a| a.name == "shop")
        .unwrap()
        .balance;
    assert_eq!(shop_balance, amount("0.002"));

    // The same batch again: recorded before, credited once.
    let BrokerResponse::PaymentRecordsAck(again) = w.sim.broker_call(&batch) else {
        panic!()
    };
    assert_eq!(
        again.body.outcomes[0].1,
        scrip_proto::msg::RecordOutcome::AlreadyRecorded
    );

    // A record the customer never proved: refused, nothing credited.
    let BrokerRequest::PaymentRecords(signed) = &batch else {
        panic!()
    };
    let mut forged = signed.body.clone();
    let held = w.held(ScripKind::Vendor);
    forged.records[0].buy = Proved::prove(
        Buy {
            request_id: RequestId::random(&mut w.sim.rng),
            scrip: held.scrip.clone(),
            purchase: Purchase::Item("pot".into()),
            price: held.scrip.value(),
        },
        &CustomerSecret(Secret32::random(&mut w.sim.rng)),
    );
    forged.records[0].change = None;
    let merchant_keys = scrip_core::MerchantKeys::from_seed(&w.sim.merchants[tea].seed);
    let forged_request =
        BrokerRequest::PaymentRecords(Signed::sign(forged.clone(), &merchant_keys.signing));
    let BrokerResponse::PaymentRecordsAck(ack) = w.sim.broker_call(&forged_request) else {
        panic!()
    };
    assert_eq!(
        ack.body.outcomes[0].1,
        scrip_proto::msg::RecordOutcome::Refused(Refusal::NotOwner {
            scrip: held.scrip.id()
        })
    );

    // Signed by anyone but the merchant: the whole batch is refused.
    let stranger = scrip_proto::crypto::SigningKey::from_secret(&Secret32::from_bytes([0; 32]));
    let forged_request = BrokerRequest::PaymentRecords(Signed::sign(forged, &stranger));
    assert!(matches!(
        w.sim.broker_call(&forged_request),
        BrokerResponse::Refused(Refusal::BadSignature { .. })
    ));
    let shop = w
        .sim
        .broker
        .accounts(&mut w.sim.broker_store)
        .unwrap()
        .into_iter()
        .find(|a| a.name == "shop")
        .unwrap();
    assert_eq!(shop.balance, shop_balance, "credited exactly once");
    w.sim.assert_conserved();
}

/// Captured messages replayed a day later, or to another party, move no
/// value: the same request id gets the stored answer (nothing a captor can
/// use: the customer secret in it is sealed to the wallet), and a message
/// sent to a party it was not made for is refused.
fn captured_messages_replayed_later_or_elsewhere_move_nothing(backend: Backend) {
    let mut w = world(backend);
    let (wallet, tea, news) = (w.wallet, w.tea, w.news);
    let purchase = w
        .sim
        .buy_unsent(wallet, tea, Purchase::Item("green".into()), "0.002")
        .unwrap();
    let intent_answer = w.sim.broker_bytes(&purchase.intent.request);
    let delivery = w.sim.merchant_bytes(tea, &purchase.buy.request);
    assert!(matches!(delivery, MerchantResponse::ItemDelivered(_)));
    let batch = w
        .sim
        .poll_payment_records(tea, 256)
        .expect("one record queued");
    let ack = w.sim.broker_call(&batch);
    let BrokerResponse::PaymentRecordsAck(ack) = ack else {
        panic!("records refused: {ack:?}")
    };
    assert!(matches!(
        ack.body.outcomes[0].1,
        scrip_proto::msg::RecordOutcome::Credited { .. }
    ));

    w.sim.advance(24 * 3600);
    let before = w.fingerprint();
    // Later, to the same party: the stored answers, nothing moves.
    assert_eq!(w.sim.broker_bytes(&purchase.intent.request), intent_answer);
    assert_eq!(w.sim.merchant_bytes(tea, &purchase.buy.request), delivery);
    match w.sim.broker_call(&batch) {
        BrokerResponse::PaymentRecordsAck(again) => assert_eq!(
            again.body.outcomes[0].1,
            scrip_proto::msg::RecordOutcome::AlreadyRecorded,
            "a replayed record is not credited twice"
        ),
        other => panic!("{other:?}"),
    }
    // To another party: refused.
    let MerchantRequest::Buy(buy) = scrip_proto::decode(&purchase.buy.request).unwrap() else {
        panic!()
    };
    assert_eq!(
        w.sim.merchant_bytes(news, &purchase.buy.request),
        MerchantResponse::Refused(Refusal::WrongIssuer {
            scrip: buy.body.scrip.id(),
            expected: w.sim.merchant_id(news),
            found: w.sim.merchant_id(tea),
        })
    );
    assert!(matches!(
        w.sim.merchant_bytes(news, &purchase.intent.request),
        MerchantResponse::Refused(Refusal::Malformed(_))
    ));
    // Every balance, spent set and queue, at broker, merchants and wallet.
    assert_eq!(w.fingerprint(), before, "the replays moved nothing");
}

// ---- The wallet refusing a faulty broker's answer ---------------------------
//
// Checks made by the wallet alone: they run once, on the SQLite broker.

/// The broker's genuine answer to `request` and, for each value in `values`,
/// the same answer with its BrokerScrip re-minted at that value with the
/// broker's own stamping secret: scrip the broker could issue, opening with
/// the same customer secret, only of another value than was ordered.
fn genuine_and_revalued(
    sim: &mut Sim,
    request: &[u8],
    values: &[&str],
) -> (BrokerResponse, Vec<BrokerResponse>) {
    let genuine = sim.broker_bytes(request);
    let BrokerResponse::BrokerScripIssued(issued) = &genuine else {
        panic!("BrokerScrip not issued: {genuine:?}")
    };
    let keys = BrokerKeys::from_seed(&sim.broker_seed);
    let revalued = values
        .iter()
        .map(|value| {
            let mut forged = issued.clone();
            let mut body = forged.issued.scrip.body.clone();
            body.value = amount(value);
            forged.issued.scrip = Scrip::mint(body.clone(), &keys.stamping_secret(body.id.series));
            assert!(forged
                .issued
                .scrip
                .stamp_matches(&keys.stamping_secret(body.id.series)));
            BrokerResponse::BrokerScripIssued(forged)
        })
        .collect();
    (genuine, revalued)
}

#[test]
fn broker_scrip_of_another_value_than_ordered_is_refused_by_the_wallet() {
    let mut w = world(Backend::SqliteMemory);
    let alice = w.alice.number;
    let pin = w.alice.pin.clone();
    let pending = {
        let ww = &mut w.sim.wallets[w.wallet];
        ww.wallet
            .obtain_broker_scrip(&mut ww.store, &mut w.sim.rng, alice, pin, amount("5"))
            .unwrap()
    };
    assert_eq!(pending.ordered, Some(amount("5")));
    let (genuine, forged) = genuine_and_revalued(
        &mut w.sim,
        &pending.request,
        &["5000", "4.999999", "0.000001"],
    );

    let ww = &mut w.sim.wallets[w.wallet];
    let store_before = ww.store.fingerprint().unwrap();
    let balances_before = ww.wallet.balances(&mut ww.store).unwrap();
    let scrip_before = ww.wallet.scrip(&mut ww.store).unwrap();
    for answer in &forged {
        let BrokerResponse::BrokerScripIssued(r) = answer else {
            unreachable!()
        };
        let error = ww
            .wallet
            .handle_broker_response(&mut ww.store, pending.request_id, answer, &[])
            .unwrap_err();
        let expected = format!(
            "asked for {} of BrokerScrip, got {}",
            amount("5"),
            r.issued.scrip.value()
        );
        assert!(
            matches!(&error, WalletError::BadResponse(why) if *why == expected),
            "{error}"
        );
        assert_eq!(ww.store.fingerprint().unwrap(), store_before);
        assert_eq!(ww.wallet.balances(&mut ww.store).unwrap(), balances_before);
        assert_eq!(ww.wallet.scrip(&mut ww.store).unwrap(), scrip_before);
        assert!(
            ww.wallet.pending(&mut ww.store).unwrap().contains(&pending),
            "the request stays pending"
        );
    }

    // The genuine answer, when it comes, is taken.
    ww.wallet
        .handle_broker_response(&mut ww.store, pending.request_id, &genuine, &[])
        .unwrap();
    let balances = ww.wallet.balances(&mut ww.store).unwrap();
    assert_eq!(
        balances.broker_scrip,
        balances_before
            .broker_scrip
            .checked_add(amount("5"))
            .unwrap()
    );
    assert!(ww.wallet.pending(&mut ww.store).unwrap().is_empty());
    w.sim.assert_conserved();
}

/// A wallet of `alice` holding `vendor_scrip` of `tea`'s VendorScrip, and
/// its purchase of green tea at 0.002, built but not sent.
fn green_tea_bought_unsent(
    sim: &mut Sim,
    alice: &scrip_core::broker::OpenedAccount,
    tea: usize,
    vendor_scrip: &str,
) -> scrip_core::wallet::PendingPurchase {
    let wallet = sim.add_wallet();
    sim.obtain_broker_scrip(wallet, alice.number, &alice.pin, "10")
        .unwrap();
    sim.obtain_vendor_scrip(wallet, tea, vendor_scrip).unwrap();
    sim.buy_unsent(wallet, tea, Purchase::Item("green".into()), "0.002")
        .unwrap()
}

#[test]
fn a_retry_of_a_sale_that_left_no_change_gets_the_same_delivery() {
    // The stored delivery keeps no receipt: the retry's request rebuilds it,
    // here with no change scrip to name.
    let mut sim = Sim::new(10);
    let alice = sim.open_account("alice", "100");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let purchase = green_tea_bought_unsent(&mut sim, &alice, tea, "0.002");
    let first = sim.merchant_bytes(tea, &purchase.buy.request);
    let MerchantResponse::ItemDelivered(delivered) = &first else {
        panic!("not delivered: {first:?}");
    };
    assert_eq!(delivered.change, None);
    assert_eq!(sim.merchant_bytes(tea, &purchase.buy.request), first);
}

#[test]
fn a_retry_after_the_scrip_expired_gets_the_same_delivery() {
    // The merchant looks for a stored sale when a Buy is refused: a retry
    // is refused by the spent set, or here, first, by the scrip's expiry.
    let mut sim = Sim::new(11);
    let alice = sim.open_account("alice", "100");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant("tea", &[("green", "0.002")], &shop);
    let purchase = green_tea_bought_unsent(&mut sim, &alice, tea, "0.01");
    let first = sim.merchant_bytes(tea, &purchase.buy.request);
    assert!(
        matches!(first, MerchantResponse::ItemDelivered(_)),
        "not delivered: {first:?}"
    );
    sim.advance(400 * 24 * 3600);
    assert_eq!(sim.merchant_bytes(tea, &purchase.buy.request), first);
}

#[test]
fn a_delivery_stored_whole_by_an_earlier_build_is_replayed_to_a_retry() {
    // Earlier builds stored each delivery whole, receipt batch and proof
    // included, with no leaf, under its request id alone (in `responses`,
    // before migration 6 kept sales under their scrip); a retry after the
    // upgrade still gets it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("merchant.db");
    let mut sim = Sim::new(9);
    let alice = sim.open_account("alice", "100");
    let shop = sim.open_account("shop", "0");
    let tea = sim.add_merchant_with_store(
        "tea",
        &[("green", "0.002")],
        &shop,
        scrip_store_sqlite::SqliteMerchantStore::open(&path).unwrap(),
    );
    let purchase = green_tea_bought_unsent(&mut sim, &alice, tea, "0.01");
    let first = sim.merchant_bytes(tea, &purchase.buy.request);
    let MerchantResponse::ItemDelivered(delivered) = &first else {
        panic!("not delivered: {first:?}");
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rewritten = conn
        .execute(
            "INSERT INTO responses (request_id, request_digest, response, leaf)
             SELECT request_id, request_digest, ?1, NULL FROM deliveries WHERE request_id = ?2",
            rusqlite::params![encode(delivered), delivered.request_id.as_bytes()],
        )
        .unwrap();
    assert_eq!(rewritten, 1);
    conn.execute_batch(
        "UPDATE spent SET delivery = NULL;
         DELETE FROM deliveries;
         DELETE FROM receipt_batches;",
    )
    .unwrap();
    assert_eq!(sim.merchant_bytes(tea, &purchase.buy.request), first);
}

#[test]
fn a_pending_order_stored_without_its_amount_takes_the_broker_scrip_as_before() {
    // A request stored by a build that kept no copy of the order: the
    // genuine answer is still taken after the upgrade.
    let mut w = world(Backend::SqliteMemory);
    let alice = w.alice.number;
    let pin = w.alice.pin.clone();
    let ww = &mut w.sim.wallets[w.wallet];
    let pending = ww
        .wallet
        .obtain_broker_scrip(&mut ww.store, &mut w.sim.rng, alice, pin, amount("2"))
        .unwrap();
    let mut tx = ww.store.begin().unwrap();
    let mut old = tx.take_pending(&pending.request_id).unwrap().unwrap();
    old.ordered = None;
    tx.put_pending(&old).unwrap();
    tx.commit().unwrap();
    let before = ww.wallet.balances(&mut ww.store).unwrap();
    w.sim.send_to_broker(w.wallet, &old).unwrap();
    let after = w.sim.wallet_balances(w.wallet);
    assert_eq!(
        after.broker_scrip,
        before.broker_scrip.checked_add(amount("2")).unwrap()
    );
}

#[test]
fn broker_scrip_answering_a_request_that_did_not_order_it_is_refused_by_the_wallet() {
    let mut w = world(Backend::SqliteMemory);
    let alice = w.alice.number;
    let pin = w.alice.pin.clone();
    let tea = w.sim.merchant_id(w.tea);
    let (order, exchange) = {
        let ww = &mut w.sim.wallets[w.wallet];
        let order = ww
            .wallet
            .obtain_broker_scrip(&mut ww.store, &mut w.sim.rng, alice, pin, amount("1"))
            .unwrap();
        let exchange = ww
            .wallet
            .obtain_vendor_scrip(
                &mut ww.store,
                &mut w.sim.rng,
                w.sim.now,
                tea,
                amount("0.01"),
            )
            .unwrap();
        (order, exchange)
    };
    let BrokerResponse::BrokerScripIssued(mut misdirected) = w.sim.broker_bytes(&order.request)
    else {
        panic!("BrokerScrip not issued")
    };
    misdirected.request_id = exchange.request_id;
    let misdirected = BrokerResponse::BrokerScripIssued(misdirected);

    let ww = &mut w.sim.wallets[w.wallet];
    let before = ww.store.fingerprint().unwrap();
    let error = ww
        .wallet
        .handle_broker_response(&mut ww.store, exchange.request_id, &misdirected, &[])
        .unwrap_err();
    assert!(matches!(error, WalletError::BadResponse(_)), "{error}");
    assert_eq!(ww.store.fingerprint().unwrap(), before);
}

scrip_tests::on_each_backend!(
    double_spend_at_the_merchant_is_refused,
    double_spend_at_the_broker_is_refused,
    forged_stamp_is_refused_by_merchant_and_broker,
    tampered_value_or_expiry_breaks_the_stamp,
    vendor_scrip_is_valid_only_at_its_merchant,
    broker_scrip_is_not_spendable_at_a_merchant_nor_vendor_scrip_at_the_broker,
    wrong_currency_is_refused,
    expired_scrip_is_refused_and_kept,
    value_below_price_is_refused_and_the_wallet_keeps_its_scrip,
    stolen_scrip_without_its_customer_secret_is_refused,
    wrong_pin_unknown_account_and_overdraft_are_refused,
    another_wallet_cannot_use_an_account_bound_to_the_first,
    malformed_and_truncated_bytes_are_refused_without_panicking,
    a_retried_request_moves_value_once_and_an_altered_replay_is_refused,
    a_bad_signature_or_a_lifted_envelope_is_refused,
    unknown_item_wrong_price_and_unknown_merchant_are_refused,
    a_merchant_cannot_claim_payments_it_did_not_receive_nor_claim_twice,
    captured_messages_replayed_later_or_elsewhere_move_nothing,
);

// ---- The wallet refusing a faulty merchant's receipt --------------------------

/// A merchant signs one batch of receipts per group commit; the wallet takes
/// a delivery only if its receipt leads, by its inclusion proof, to the root
/// of a batch that merchant signed. Altered receipts, proofs and batches, or
/// a batch signed with another key, are refused and leave the wallet as it was.
#[test]
fn a_receipt_not_in_a_batch_the_merchant_signed_is_refused_by_the_wallet() {
    let mut w = world(Backend::SqliteMemory);
    let purchase = w
        .sim
        .buy_unsent(w.wallet, w.tea, Purchase::Item("green".into()), "0.002")
        .unwrap();
    w.sim.send_to_broker(w.wallet, &purchase.intent).unwrap();
    let genuine = w.sim.merchant_bytes(w.tea, &purchase.buy.request);
    let MerchantResponse::ItemDelivered(delivered) = &genuine else {
        panic!("not delivered: {genuine:?}")
    };
    let impostor = scrip_proto::crypto::SigningKey::from_secret(&Secret32::random(&mut w.sim.rng));
    let forge = |change: &dyn Fn(&mut scrip_proto::msg::BatchedReceipt)| {
        let mut forged = delivered.clone();
        change(&mut forged.receipt);
        MerchantResponse::ItemDelivered(forged)
    };
    let forged = [
        forge(&|r| r.receipt.price = amount("0.001")),
        forge(&|r| r.leaf += 1),
        forge(&|r| r.proof.push([7; 32])),
        forge(&|r| r.batch.body.root[0] ^= 1),
        forge(&|r| r.batch = Signed::sign(r.batch.body.clone(), &impostor)),
    ];

    let ww = &mut w.sim.wallets[w.wallet];
    let store_before = ww.store.fingerprint().unwrap();
    for answer in &forged {
        let error = ww
            .wallet
            .handle_merchant_response(&mut ww.store, purchase.buy.request_id, answer)
            .unwrap_err();
        assert!(
            matches!(&error, WalletError::BadResponse(why)
                if why == "the receipt is not in a batch signed by the merchant"),
            "{error}"
        );
        assert_eq!(ww.store.fingerprint().unwrap(), store_before);
    }
    ww.wallet
        .handle_merchant_response(&mut ww.store, purchase.buy.request_id, &genuine)
        .unwrap();
    assert!(ww.wallet.receipts(&mut ww.store).unwrap().iter().any(
        |r| matches!(r, scrip_core::store::WalletReceipt::PurchaseInBatch(b) if b == &delivered.receipt)
    ));
}
