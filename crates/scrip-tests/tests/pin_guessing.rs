//! PIN guessing: wrong PINs in a row are counted in the broker's store, the
//! account is locked when the count reaches the limit, a locked account is
//! refused before its PIN hash is computed, and every wrong PIN, lock and
//! unlock is in the audit log. An unknown account is answered as a wrong
//! PIN is, at the same cost, so account numbers cannot be probed.

use scrip_core::broker::{OpenedAccount, Unlocked};
use scrip_core::store::{AccountLock, BrokerStore, BrokerTx, PinFailures};
use scrip_core::{Merchant, MerchantConfig, MerchantKeys, WalletError};
use scrip_proto::msg::{BrokerRequest, BrokerResponse};
use scrip_proto::{decode, encode, AccountNumber, Pin, Refusal, RequestId, Secret32, Timestamp};
use scrip_tests::{amount, without_table, Backend, Sim};

/// The default limit of wrong PINs in a row.
const LIMIT: u32 = 5;

/// A broker with alice's account (100 deposited) and a wallet for her.
fn setup(sim: &mut Sim) -> (OpenedAccount, usize) {
    let alice = sim.open_account("alice", "100");
    let wallet = sim.add_wallet();
    (alice, wallet)
}

/// A PIN that is certainly not `pin`.
fn wrong(pin: &Pin) -> Pin {
    Pin::new(if pin.expose() == "00000000" {
        "11111111"
    } else {
        "00000000"
    })
    .unwrap()
}

/// Obtain BrokerScrip of `value` with `pin`: `Ok` or the broker's refusal.
fn attempt(
    sim: &mut Sim,
    wallet: usize,
    account: AccountNumber,
    pin: &Pin,
    value: &str,
) -> Result<(), Refusal> {
    match sim.obtain_broker_scrip(wallet, account, pin, value) {
        Ok(_) => Ok(()),
        Err(WalletError::Refused(refusal)) => Err(refusal),
        Err(other) => panic!("not a refusal: {other}"),
    }
}

/// Registers a new merchant paid into `account`, with `pin`.
fn register(sim: &mut Sim, account: AccountNumber, pin: &Pin) -> BrokerResponse {
    let keys = MerchantKeys::from_seed(&Secret32::random(&mut sim.rng));
    let merchant = Merchant::new(
        keys,
        sim.broker.info(),
        MerchantConfig::new("stall"),
        Vec::new(),
    );
    let request_id = RequestId::random(&mut sim.rng);
    let request = merchant
        .registration_request(&mut sim.rng, request_id, account, pin.clone())
        .unwrap();
    sim.broker_call(&request)
}

fn pin_failures(sim: &mut Sim, account: AccountNumber) -> PinFailures {
    let mut tx = sim.broker_store.begin().unwrap();
    tx.pin_failures(account).unwrap()
}

fn log_size(sim: &mut Sim) -> usize {
    sim.audit_snapshot().leaves.len()
}

fn locked(account: AccountNumber) -> Refusal {
    Refusal::AccountLocked {
        account,
        until: None,
    }
}

/// Gives `LIMIT` wrong PINs: the last one locks the account.
fn lock(sim: &mut Sim, wallet: usize, alice: &OpenedAccount) {
    for _ in 1..LIMIT {
        assert_eq!(
            attempt(sim, wallet, alice.number, &wrong(&alice.pin), "1"),
            Err(Refusal::WrongAccountOrPin {
                account: alice.number
            })
        );
    }
    assert_eq!(
        attempt(sim, wallet, alice.number, &wrong(&alice.pin), "1"),
        Err(locked(alice.number))
    );
}

fn wrong_pins_up_to_the_limit_then_the_account_is_locked(backend: Backend) {
    let mut sim = Sim::on(backend, 21);
    let (alice, wallet) = setup(&mut sim);
    for count in 1..LIMIT {
        let before = sim.broker_store.fingerprint().unwrap();
        assert_eq!(
            attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
            Err(Refusal::WrongAccountOrPin {
                account: alice.number
            })
        );
        // The refused step changed nothing but the count.
        let after = sim.broker_store.fingerprint().unwrap();
        assert_eq!(
            without_table(&after, "pin_failures"),
            without_table(&before, "pin_failures")
        );
        assert_ne!(after, before, "the wrong PIN was not counted in the store");
        assert_eq!(
            pin_failures(&mut sim, alice.number),
            PinFailures { count, lock: None }
        );
    }
    // The wrong PIN that reaches the limit is answered with the lock.
    let refusal = attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1").unwrap_err();
    assert_eq!(refusal, locked(alice.number));
    let message = refusal.to_string();
    assert!(
        message.contains(&alice.number.to_string()) && message.contains("contact the operator"),
        "{message}"
    );
    assert_eq!(
        pin_failures(&mut sim, alice.number),
        PinFailures {
            count: LIMIT,
            lock: Some(AccountLock {
                at: sim.now,
                until: None
            })
        }
    );
    // A lock with no end does not lapse.
    sim.advance(365 * 24 * 3600);
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &alice.pin, "1"),
        Err(locked(alice.number))
    );
    assert_eq!(sim.balance(alice.number), amount("100"));

    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(
        audit.refused_pins.get(&alice.number),
        Some(&u64::from(LIMIT))
    );
    assert_eq!(audit.account_locks.len(), 1);
    assert_eq!(audit.account_locks[0].0, alice.number);
    assert_eq!(audit.account_locks[0].2, None);
    assert_eq!(audit.locked_accounts.get(&alice.number), Some(&None));
}

fn a_locked_account_refuses_the_right_pin_without_running_argon2(backend: Backend) {
    let mut sim = Sim::on(backend, 22);
    let (alice, wallet) = setup(&mut sim);
    lock(&mut sim, wallet, &alice);
    assert_eq!(sim.broker.pin_verifications(), u64::from(LIMIT));

    let before = sim.broker_store.fingerprint().unwrap();
    let leaves = log_size(&mut sim);
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &alice.pin, "1"),
        Err(locked(alice.number))
    );
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
        Err(locked(alice.number))
    );
    assert_eq!(
        register(&mut sim, alice.number, &alice.pin),
        BrokerResponse::Refused(locked(alice.number))
    );
    // Not one PIN was hashed, and nothing was written, not even to the log:
    // guessing at a locked account costs the broker one read.
    assert_eq!(sim.broker.pin_verifications(), u64::from(LIMIT));
    assert_eq!(sim.broker_store.fingerprint().unwrap(), before);
    assert_eq!(log_size(&mut sim), leaves);
    assert_eq!(sim.balance(alice.number), amount("100"));
    // The wallet took the refusal as definitive: nothing is left pending.
    let w = &mut sim.wallets[wallet];
    assert!(w.wallet.pending(&mut w.store).unwrap().is_empty());
}

fn a_step_that_authenticates_resets_the_count_and_a_refused_one_does_not(backend: Backend) {
    let mut sim = Sim::on(backend, 23);
    let (alice, wallet) = setup(&mut sim);
    for _ in 1..LIMIT {
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1").unwrap_err();
    }
    // The right PIN in a step refused for another reason keeps the count:
    // a refused step changes nothing.
    assert!(matches!(
        attempt(&mut sim, wallet, alice.number, &alice.pin, "1000"),
        Err(Refusal::Overdraft { .. })
    ));
    assert_eq!(pin_failures(&mut sim, alice.number).count, LIMIT - 1);
    attempt(&mut sim, wallet, alice.number, &alice.pin, "1").unwrap();
    assert_eq!(pin_failures(&mut sim, alice.number), PinFailures::default());
    // The count starts again from zero.
    for _ in 1..LIMIT {
        assert!(matches!(
            attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
            Err(Refusal::WrongAccountOrPin { .. })
        ));
    }
    // So does a merchant registration, which also checks the PIN.
    assert!(matches!(
        register(&mut sim, alice.number, &alice.pin),
        BrokerResponse::MerchantRegistered(_)
    ));
    assert_eq!(pin_failures(&mut sim, alice.number), PinFailures::default());
    // And wrong PINs at registration count like any other.
    for _ in 1..LIMIT {
        assert_eq!(
            register(&mut sim, alice.number, &wrong(&alice.pin)),
            BrokerResponse::Refused(Refusal::WrongAccountOrPin {
                account: alice.number
            })
        );
    }
    assert_eq!(
        register(&mut sim, alice.number, &wrong(&alice.pin)),
        BrokerResponse::Refused(locked(alice.number))
    );
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &alice.pin, "1"),
        Err(locked(alice.number))
    );

    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(
        audit.refused_pins.get(&alice.number),
        Some(&u64::from(3 * LIMIT - 2))
    );
    assert_eq!(audit.account_locks.len(), 1);
}

fn the_count_and_the_lock_survive_a_restart_and_hold_for_a_second_broker_process(backend: Backend) {
    let mut sim = Sim::on(backend.durable(), 24);
    let (alice, wallet) = setup(&mut sim);
    for _ in 0..2 {
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1").unwrap_err();
    }
    // A restart: a new broker and a new connection to the database.
    sim.broker_store = sim.connect_broker_store();
    sim.restart_broker(|_| {});
    assert_eq!(pin_failures(&mut sim, alice.number).count, 2);

    // A second broker process on the same database counts into the same row.
    let second = sim.connect_broker_store();
    let first = std::mem::replace(&mut sim.broker_store, second);
    for _ in 0..2 {
        assert!(matches!(
            attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
            Err(Refusal::WrongAccountOrPin { .. })
        ));
    }
    sim.broker_store = first;
    assert_eq!(pin_failures(&mut sim, alice.number).count, 4);
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
        Err(locked(alice.number))
    );

    // Locked for every process, and after another restart.
    sim.broker_store = sim.connect_broker_store();
    sim.restart_broker(|_| {});
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &alice.pin, "1"),
        Err(locked(alice.number))
    );
    assert_eq!(sim.broker.pin_verifications(), 0);
    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(audit.refused_pins.get(&alice.number), Some(&5));
}

fn the_operator_unlocks_a_locked_account(backend: Backend) {
    let mut sim = Sim::on(backend, 25);
    let (alice, wallet) = setup(&mut sim);
    lock(&mut sim, wallet, &alice);
    let locked_at = sim.now;
    sim.advance(600);

    let leaves = log_size(&mut sim);
    let unlocked = sim
        .broker
        .unlock_account(&mut sim.broker_store, sim.now, alice.number)
        .unwrap();
    assert_eq!(
        unlocked,
        Unlocked {
            failures: LIMIT,
            lock: Some(AccountLock {
                at: locked_at,
                until: None
            })
        }
    );
    assert_eq!(log_size(&mut sim), leaves + 1, "the unlock is logged");
    assert_eq!(pin_failures(&mut sim, alice.number), PinFailures::default());
    attempt(&mut sim, wallet, alice.number, &alice.pin, "1").unwrap();
    assert_eq!(sim.balance(alice.number), amount("99"));

    // Unlocking an account with nothing to clear changes and logs nothing.
    let before = sim.broker_store.fingerprint().unwrap();
    let leaves = log_size(&mut sim);
    assert_eq!(
        sim.broker
            .unlock_account(&mut sim.broker_store, sim.now, alice.number)
            .unwrap(),
        Unlocked {
            failures: 0,
            lock: None
        }
    );
    assert_eq!(sim.broker_store.fingerprint().unwrap(), before);
    assert_eq!(log_size(&mut sim), leaves);
    let nobody = AccountNumber(111_111_111_111);
    assert_eq!(
        sim.broker
            .unlock_account(&mut sim.broker_store, sim.now, nobody),
        Err(Refusal::UnknownAccount { account: nobody })
    );

    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(audit.account_locks, vec![(alice.number, locked_at, None)]);
    assert_eq!(audit.account_unlocks, vec![(alice.number, sim.now)]);
    assert!(audit.locked_accounts.is_empty());
}

fn a_timed_lock_lapses_and_one_more_wrong_pin_locks_again(backend: Backend) {
    let mut sim = Sim::on(backend, 26);
    sim.restart_broker(|config| {
        config.max_pin_failures = std::num::NonZeroU32::new(3).unwrap();
        config.pin_lock_duration = Some(3600);
    });
    let (alice, wallet) = setup(&mut sim);
    for _ in 0..2 {
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1").unwrap_err();
    }
    let first_until = Timestamp(sim.now.0 + 3600);
    let locked_until = |until| Refusal::AccountLocked {
        account: alice.number,
        until: Some(until),
    };
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
        Err(locked_until(first_until))
    );
    let message = locked_until(first_until).to_string();
    assert!(message.contains(&first_until.to_string()), "{message}");
    sim.advance(3599);
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &alice.pin, "1"),
        Err(locked_until(first_until))
    );
    // Lapsed: the PIN is checked again, but the count was not reset, so
    // one more wrong PIN locks again.
    sim.advance(1);
    let second_until = Timestamp(sim.now.0 + 3600);
    assert_eq!(
        attempt(&mut sim, wallet, alice.number, &wrong(&alice.pin), "1"),
        Err(locked_until(second_until))
    );
    assert_eq!(pin_failures(&mut sim, alice.number).count, 4);
    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(
        audit.locked_accounts.get(&alice.number),
        Some(&Some(second_until))
    );
    sim.advance(3600);
    attempt(&mut sim, wallet, alice.number, &alice.pin, "1").unwrap();
    assert_eq!(pin_failures(&mut sim, alice.number), PinFailures::default());

    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(audit.refused_pins.get(&alice.number), Some(&4));
    assert_eq!(
        audit
            .account_locks
            .iter()
            .map(|(_, _, until)| *until)
            .collect::<Vec<_>>(),
        vec![Some(first_until), Some(second_until)]
    );
    assert!(audit.locked_accounts.is_empty());
}

fn wrong_pins_in_one_group_commit_are_each_counted_and_the_lock_holds_within_it(backend: Backend) {
    let mut sim = Sim::on(backend, 27);
    let (alice, wallet) = setup(&mut sim);
    let mut requests: Vec<BrokerRequest> = Vec::new();
    for n in 0..=LIMIT {
        // The right PIN last: the group has locked the account by then.
        let pin = if n == LIMIT {
            alice.pin.clone()
        } else {
            wrong(&alice.pin)
        };
        let w = &mut sim.wallets[wallet];
        let pending = w
            .wallet
            .obtain_broker_scrip(&mut w.store, &mut sim.rng, alice.number, pin, amount("1"))
            .unwrap();
        requests.push(decode(&pending.request).unwrap());
    }
    let answers = sim
        .broker
        .answer_group(&mut sim.broker_store, sim.now, &mut sim.rng, &requests);
    let refusals: Vec<_> = answers.into_iter().map(|a| a.response).collect();
    let mut expected = vec![
        BrokerResponse::Refused(Refusal::WrongAccountOrPin {
            account: alice.number
        });
        LIMIT as usize - 1
    ];
    expected.extend([
        BrokerResponse::Refused(locked(alice.number)),
        BrokerResponse::Refused(locked(alice.number)),
    ]);
    assert_eq!(refusals, expected);
    assert_eq!(sim.broker.pin_verifications(), u64::from(LIMIT));
    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(
        audit.refused_pins.get(&alice.number),
        Some(&u64::from(LIMIT))
    );
    assert_eq!(audit.account_locks.len(), 1);
}

fn an_unknown_account_gets_the_answer_of_a_wrong_pin_at_the_same_cost(backend: Backend) {
    let mut sim = Sim::on(backend, 28);
    let (alice, wallet) = setup(&mut sim);
    let nobody = AccountNumber(111_111_111_111);
    let answer_bytes = |sim: &mut Sim, account: AccountNumber, pin: Pin| {
        let w = &mut sim.wallets[wallet];
        let pending = w
            .wallet
            .obtain_broker_scrip(&mut w.store, &mut sim.rng, account, pin, amount("1"))
            .unwrap();
        let request = decode(&pending.request).unwrap();
        let verified = sim.broker.pin_verifications();
        let answers =
            sim.broker
                .answer_group(&mut sim.broker_store, sim.now, &mut sim.rng, &[request]);
        assert_eq!(
            sim.broker.pin_verifications(),
            verified + 1,
            "not one Argon2id check"
        );
        encode(&answers[0])
    };
    let wrong_pin = answer_bytes(&mut sim, alice.number, wrong(&alice.pin));
    let before = sim.broker_store.fingerprint().unwrap();
    let leaves = log_size(&mut sim);
    let unknown = answer_bytes(&mut sim, nobody, alice.pin.clone());

    // Byte for byte the same answer, but for the account number the
    // requester sent, which the refusal repeats (a refusal carries no request id).
    let echo = |account: AccountNumber| encode(&account);
    let position = wrong_pin
        .windows(8)
        .position(|w| w == echo(alice.number))
        .expect("the refusal repeats the account number");
    let mut expected = wrong_pin.clone();
    expected[position..position + 8].copy_from_slice(&echo(nobody));
    assert_eq!(unknown, expected);
    let refusal = |bytes: &[u8]| match decode::<scrip_proto::msg::BrokerAnswer>(bytes)
        .unwrap()
        .response
    {
        BrokerResponse::Refused(refusal) => refusal,
        other => panic!("not a refusal: {other:?}"),
    };
    let (wrong_pin, unknown) = (refusal(&wrong_pin), refusal(&unknown));
    assert_eq!(unknown, Refusal::WrongAccountOrPin { account: nobody });
    assert_eq!(wrong_pin.code(), unknown.code());
    assert_eq!(
        wrong_pin
            .to_string()
            .replace(&alice.number.to_string(), &nobody.to_string()),
        unknown.to_string()
    );
    assert!(unknown.to_string().contains("PIN"), "{unknown}");

    // Merchant registration, the other step that checks a PIN, answers alike.
    assert_eq!(
        register(&mut sim, nobody, &alice.pin),
        BrokerResponse::Refused(Refusal::WrongAccountOrPin { account: nobody })
    );
    // The broker keeps its own distinction: the wrong PIN was counted and
    // logged; the unknown account left nothing, so it cannot be locked
    // into existence nor grow the log.
    assert_eq!(pin_failures(&mut sim, alice.number).count, 1);
    assert_eq!(sim.broker_store.fingerprint().unwrap(), before);
    assert_eq!(log_size(&mut sim), leaves);
    let audit = sim.audit();
    assert!(audit.clean(), "{:#?}", audit.findings);
    assert_eq!(audit.refused_pins.get(&nobody), None);
}

scrip_tests::on_each_backend!(
    wrong_pins_up_to_the_limit_then_the_account_is_locked,
    a_locked_account_refuses_the_right_pin_without_running_argon2,
    a_step_that_authenticates_resets_the_count_and_a_refused_one_does_not,
    the_count_and_the_lock_survive_a_restart_and_hold_for_a_second_broker_process,
    the_operator_unlocks_a_locked_account,
    a_timed_lock_lapses_and_one_more_wrong_pin_locks_again,
    wrong_pins_in_one_group_commit_are_each_counted_and_the_lock_holds_within_it,
    an_unknown_account_gets_the_answer_of_a_wrong_pin_at_the_same_cost,
);
