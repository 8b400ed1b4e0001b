//! The broker store's conformance cases: what every [`BrokerStore`] must do, checked through the store traits on a [`Backend`].
//!
//! Each case is a function of the backend, and
//! [`broker_store_conformance!`](crate::broker_store_conformance) makes a
//! `#[test]` of each. A new case is a `pub fn` here and its name in that
//! macro's list; a test of this crate checks that none is left out.
//!
//! Cases that only one backend can fail stay with it: PostgreSQL's writer
//! lock, migrations and refusals of a wrong schema, SQLite's file mode.

use scrip_core::ledger::{LedgerAccount, Transfer, TransferKind};
use scrip_core::store::{
    grouped, AccountLock, AccountRecord, BrokerStore, BrokerTx, GroupCommit, PinFailures, Spend,
    StoreError,
};
use scrip_proto::{AccountNumber, PublicKey, RequestId, ScripId};

use crate::fixtures::*;

/// A broker store backend under test: one database of its own for one
/// case, and the little a case needs beyond the store traits.
pub trait Backend: Sync {
    type Store: BrokerStore;

    /// A store on this backend's database. The first call finds it empty;
    /// every call opens another store on the same database (the file again,
    /// another connection), as another broker process would.
    fn open(&self) -> Self::Store;

    /// Every row of every table but the audit log's, as text: the store's
    /// own `fingerprint`.
    fn fingerprint(&self, store: &mut Self::Store) -> String;

    /// Runs SQL on the database through a connection of its own: how cases
    /// corrupt rows.
    fn execute(&self, sql: &str);

    /// The bytes that `hex` spells, as a literal of this backend's SQL.
    fn bytes_literal(&self, hex: &str) -> String;
}

fn sum_of_balances(tx: &mut impl BrokerTx) -> i64 {
    tx.balances()
        .unwrap()
        .iter()
        .map(|(_, balance)| balance)
        .sum()
}

/// Everything the broker keeps reads back the same from another store on
/// the database, and what must stay unique does.
pub fn state_survives_reopening<B: Backend>(backend: &B) {
    {
        let mut store = backend.open();
        let mut tx = store.begin().unwrap();
        write_everything(&mut tx);
        tx.commit().unwrap();
    }

    let mut store = backend.open();
    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.stored_response(&request_id(1)).unwrap(),
        Some(response(1))
    );
    assert_eq!(tx.stored_response(&request_id(2)).unwrap(), None);
    let alice = AccountRecord {
        account_key: Some(PublicKey([8; 32])),
        ..account_record(ALICE)
    };
    assert_eq!(
        tx.account(AccountNumber(ALICE)).unwrap(),
        Some(alice.clone())
    );
    assert_eq!(tx.account(AccountNumber(BOB)).unwrap(), None);
    assert_eq!(tx.accounts().unwrap(), vec![alice]);
    assert_eq!(tx.balance(&customer(ALICE)).unwrap(), 5_000);
    assert_eq!(tx.balance(&customer(BOB)).unwrap(), 0);
    let mut balances = tx.balances().unwrap();
    balances.sort();
    assert_eq!(
        balances,
        vec![(LedgerAccount::MoneyIn, -5_000), (customer(ALICE), 5_000)]
    );
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::AlreadySpent
    );
    let tea_shop = merchant_record(merchant_id(1), "tea shop", ALICE);
    assert_eq!(
        tx.merchant(&merchant_id(1)).unwrap(),
        Some(tea_shop.clone())
    );
    assert_eq!(
        tx.merchant_by_name("tea shop").unwrap(),
        Some(tea_shop.clone())
    );
    assert_eq!(tx.merchant_by_name("Tea shop").unwrap(), None);
    assert_eq!(tx.merchants().unwrap(), vec![tea_shop]);
    assert!(tx.intent_for_buy(&request_id(99), &scrip_id(2)).unwrap());
    assert!(!tx.intent_for_buy(&request_id(98), &scrip_id(2)).unwrap());
    assert!(tx.payment_recorded(&merchant_id(1), &scrip_id(2)).unwrap());
    assert!(!tx.payment_recorded(&merchant_id(2), &scrip_id(2)).unwrap());
    assert_eq!(
        tx.record_payment(&payment_row(merchant_id(1), scrip_id(2)))
            .unwrap(),
        Spend::AlreadySpent
    );
    let snapshot = tx.snapshot().unwrap();
    assert_eq!(snapshot.leaves.len(), 1);
    assert_eq!(
        scrip_proto::decode::<scrip_core::event::BrokerEvent>(&snapshot.leaves[0]).unwrap(),
        event()
    );
    assert_eq!(tx.log_size().unwrap(), 1);
    assert_eq!(snapshot.journal.len(), 1);
    assert_eq!(
        tx.pin_failures(AccountNumber(ALICE)).unwrap(),
        alice_locked()
    );
    assert_eq!(
        tx.pin_failures(AccountNumber(BOB)).unwrap(),
        PinFailures::default()
    );
    assert!(
        tx.store_response(&request_id(1), &response(2)).is_err(),
        "an answer is never replaced"
    );
    // A failed statement ends the step in PostgreSQL: try the next in a step of its own.
    drop(tx);
    assert!(
        store
            .begin()
            .unwrap()
            .insert_account(&account_record(ALICE))
            .is_err(),
        "account numbers are unique"
    );
}

/// A step dropped without commit leaves no row anywhere, so it can be redone whole.
pub fn dropping_a_transaction_without_commit_leaves_nothing<B: Backend>(backend: &B) {
    let mut store = backend.open();
    write_everything(&mut store.begin().unwrap());

    let mut tx = store.begin().unwrap();
    assert_eq!(tx.stored_response(&request_id(1)).unwrap(), None);
    assert_eq!(tx.account(AccountNumber(ALICE)).unwrap(), None);
    assert!(tx.accounts().unwrap().is_empty());
    assert!(tx.balances().unwrap().is_empty());
    assert!(tx.merchants().unwrap().is_empty());
    assert!(!tx.intent_for_buy(&request_id(99), &scrip_id(2)).unwrap());
    let snapshot = tx.snapshot().unwrap();
    for (table, rows) in [
        ("journal", snapshot.journal.len()),
        ("events", snapshot.leaves.len()),
        ("log_hashes", snapshot.hashes.len()),
        ("spent_broker_scrip", snapshot.spent_broker_scrip.len()),
        ("payments", snapshot.payments.len()),
        ("intents", snapshot.intents.len()),
        ("pin_failures", snapshot.pin_failures.len()),
    ] {
        assert_eq!(rows, 0, "{table}");
    }
    // So the whole step can be redone.
    write_everything(&mut tx);
}

/// A BrokerScrip id is spent, and a merchant's payment recorded, once; an id
/// of another series, or a payment of another merchant, is another key.
pub fn spending_is_insert_or_fail<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::Fresh
    );
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::AlreadySpent
    );
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(2), NOW).unwrap(),
        Spend::Fresh
    );
    let other_series = ScripId {
        series: 8,
        ..scrip_id(1)
    };
    assert_eq!(
        tx.mark_broker_scrip_spent(&other_series, NOW).unwrap(),
        Spend::Fresh
    );
    tx.commit().unwrap();

    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW.plus_seconds(1))
            .unwrap(),
        Spend::AlreadySpent
    );
    assert_eq!(
        tx.record_payment(&payment_row(merchant_id(1), scrip_id(1)))
            .unwrap(),
        Spend::Fresh
    );
    assert_eq!(
        tx.record_payment(&payment_row(merchant_id(1), scrip_id(1)))
            .unwrap(),
        Spend::AlreadySpent
    );
    // Payments are keyed by merchant and scrip id together.
    assert_eq!(
        tx.record_payment(&payment_row(merchant_id(2), scrip_id(1)))
            .unwrap(),
        Spend::Fresh
    );
}

/// Sixteen stores on one database race to spend each id; exactly one wins
/// each race, read-check-write balance updates lose nothing, and the
/// journal and the log the steps append have no gap.
pub fn racing_connections_spend_each_id_once<B: Backend>(backend: &B) {
    const THREADS: usize = 16;
    const ROUNDS: u64 = 25;
    // Created and migrated before the race.
    drop(backend.open());

    let winners = race(
        THREADS,
        ROUNDS,
        || backend.open(),
        |store, round| {
            let mut tx = store.begin().unwrap();
            tx.post(&deposit(BOB, 1)).unwrap();
            let won = tx.mark_broker_scrip_spent(&scrip_id(round), NOW).unwrap() == Spend::Fresh;
            if won {
                let spend = transfer(
                    TransferKind::ObtainVendorScrip,
                    customer(ALICE),
                    LedgerAccount::OutstandingBrokerScrip,
                    1,
                );
                tx.post(&spend).unwrap();
                tx.append_event(&event()).unwrap();
            }
            tx.commit().unwrap();
            won
        },
    );
    assert_eq!(winners, vec![1; ROUNDS as usize]);

    let mut store = backend.open();
    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.balance(&customer(BOB)).unwrap(),
        (THREADS as i64) * (ROUNDS as i64)
    );
    assert_eq!(
        tx.balance(&LedgerAccount::OutstandingBrokerScrip).unwrap(),
        ROUNDS as i64
    );
    assert_eq!(sum_of_balances(&mut tx), 0);
    let snapshot = tx.snapshot().unwrap();
    assert_eq!(snapshot.leaves.len(), ROUNDS as usize);
    let seqs: Vec<i64> = snapshot.journal.iter().map(|row| row.0).collect();
    let expected: Vec<i64> = (1..=(THREADS as i64 + 1) * ROUNDS as i64).collect();
    assert_eq!(seqs, expected, "the journal has no gap");
}

/// Each post moves value from one account to another and adds one journal
/// row, so the balances always sum to zero.
pub fn posting_keeps_the_sum_of_balances_at_zero<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let vendor = LedgerAccount::OutstandingVendorScrip(merchant_id(1));
    let steps = [
        deposit(ALICE, 10_000),
        transfer(
            TransferKind::ObtainBrokerScrip,
            customer(ALICE),
            LedgerAccount::OutstandingBrokerScrip,
            4_000,
        ),
        transfer(
            TransferKind::ObtainVendorScrip,
            LedgerAccount::OutstandingBrokerScrip,
            vendor,
            3_000,
        ),
        transfer(TransferKind::PaymentRecorded, vendor, customer(BOB), 2_500),
        transfer(
            TransferKind::Withdrawal,
            customer(BOB),
            LedgerAccount::MoneyOut,
            2_000,
        ),
    ];
    for step in &steps {
        let mut tx = store.begin().unwrap();
        tx.post(step).unwrap();
        tx.commit().unwrap();
        assert_eq!(sum_of_balances(&mut store.begin().unwrap()), 0);
    }
    let mut tx = store.begin().unwrap();
    let mut balances = tx.balances().unwrap();
    balances.sort();
    assert_eq!(
        balances,
        vec![
            (LedgerAccount::MoneyIn, -10_000),
            (LedgerAccount::MoneyOut, 2_000),
            (customer(ALICE), 6_000),
            (customer(BOB), 500),
            (LedgerAccount::OutstandingBrokerScrip, 1_000),
            (vendor, 500),
        ]
    );
    assert_eq!(tx.snapshot().unwrap().journal.len(), steps.len());
}

/// A post that would take a balance out of the range of `i64` fails before
/// it writes anything, and the step can still commit.
pub fn a_post_that_would_overflow_fails_and_writes_nothing<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let mut tx = store.begin().unwrap();
    let max = Transfer::new(
        TransferKind::Deposit,
        LedgerAccount::MoneyIn,
        customer(ALICE),
        scrip_proto::Amount::MAX,
        NOW,
    )
    .unwrap();
    tx.post(&max).unwrap();
    // ALICE would go above i64::MAX; checked before anything is written.
    let error = tx
        .post(&transfer(
            TransferKind::Deposit,
            customer(BOB),
            customer(ALICE),
            1,
        ))
        .unwrap_err();
    assert!(error.0.contains("overflow"), "{error}");
    // MoneyIn would go below i64::MIN.
    assert!(tx.post(&deposit(BOB, 2)).is_err());
    assert_eq!(tx.balance(&customer(ALICE)).unwrap(), i64::MAX);
    assert_eq!(tx.balance(&customer(BOB)).unwrap(), 0);
    assert_eq!(tx.snapshot().unwrap().journal.len(), 1);
    // Nothing failed in the database: the step can still commit.
    tx.commit().unwrap();
}

/// Registering again replaces a merchant's record by id; no two merchants share a name.
pub fn put_merchant_replaces_by_id_and_names_stay_unique<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let mut tx = store.begin().unwrap();
    tx.put_merchant(&merchant_record(merchant_id(1), "tea shop", ALICE))
        .unwrap();
    tx.put_merchant(&merchant_record(merchant_id(2), "book shop", BOB))
        .unwrap();
    let renamed = merchant_record(merchant_id(1), "tea house", BOB);
    tx.put_merchant(&renamed).unwrap();
    assert_eq!(tx.merchant(&merchant_id(1)).unwrap(), Some(renamed.clone()));
    assert_eq!(tx.merchant_by_name("tea shop").unwrap(), None);
    assert_eq!(tx.merchants().unwrap().len(), 2);
    tx.commit().unwrap();

    // A failed statement ends the step in PostgreSQL: try it in a step of its own.
    let mut tx = store.begin().unwrap();
    assert!(tx
        .put_merchant(&merchant_record(merchant_id(3), "tea house", ALICE))
        .is_err());
    drop(tx);
    let mut tx = store.begin().unwrap();
    assert_eq!(tx.merchant_by_name("tea house").unwrap(), Some(renamed));
    assert_eq!(tx.merchant(&merchant_id(3)).unwrap(), None);
}

/// An account has one row of wrong PINs, replaced each time; the default
/// removes it, and only an account that exists can have one.
pub fn wrong_pin_counts_are_replaced_and_the_default_leaves_no_row<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let mut tx = store.begin().unwrap();
    tx.insert_account(&account_record(ALICE)).unwrap();
    let two = PinFailures {
        count: 2,
        lock: None,
    };
    tx.put_pin_failures(AccountNumber(ALICE), &two).unwrap();
    assert_eq!(tx.pin_failures(AccountNumber(ALICE)).unwrap(), two);
    let timed = PinFailures {
        count: 3,
        lock: Some(AccountLock {
            at: NOW,
            until: Some(NOW.plus_seconds(60)),
        }),
    };
    tx.put_pin_failures(AccountNumber(ALICE), &timed).unwrap();
    assert_eq!(tx.pin_failures(AccountNumber(ALICE)).unwrap(), timed);
    // One row, replaced.
    assert_eq!(
        tx.snapshot().unwrap().pin_failures,
        vec![(
            AccountNumber(ALICE),
            3,
            Some(NOW.0 as i64),
            Some(NOW.0 as i64 + 60)
        )]
    );
    tx.put_pin_failures(AccountNumber(ALICE), &PinFailures::default())
        .unwrap();
    assert!(tx.snapshot().unwrap().pin_failures.is_empty());
    assert_eq!(
        tx.pin_failures(AccountNumber(ALICE)).unwrap(),
        PinFailures::default()
    );
    // Only accounts that exist can be counted.
    assert!(tx.put_pin_failures(AccountNumber(BOB), &two).is_err());
}

/// Rows that do not fit their types are errors that say so, never panics.
pub fn corrupt_rows_are_errors_not_panics<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let bytes = |hex: &str| backend.bytes_literal(hex);
    backend.execute(&format!(
        "INSERT INTO balances VALUES ('nonsense', 1);
         INSERT INTO accounts VALUES (100000000001, 'a', 'h', {two_bytes}, 0);
         INSERT INTO accounts VALUES (100000000002, 'b', 'h', NULL, -1);
         INSERT INTO merchants VALUES ({zero_key}, 'm', 1, {zero_byte}, 0);
         INSERT INTO responses VALUES ({zero_id}, {one_byte}, {no_bytes}, NULL);
         INSERT INTO pin_failures VALUES (100000000002, 4294967296, NULL, NULL);",
        two_bytes = bytes("0102"),
        zero_key = bytes(&"00".repeat(32)),
        zero_byte = bytes("00"),
        zero_id = bytes(&"00".repeat(16)),
        one_byte = bytes("01"),
        no_bytes = bytes(""),
    ));
    let mut tx = store.begin().unwrap();
    let errors = [
        tx.balances().unwrap_err(),
        tx.account(AccountNumber(ALICE)).unwrap_err(),
        tx.account(AccountNumber(BOB)).unwrap_err(),
        tx.accounts().unwrap_err(),
        tx.merchant(&PublicKey([0; 32])).unwrap_err(),
        tx.merchants().unwrap_err(),
        tx.stored_response(&RequestId([0; 16])).unwrap_err(),
        tx.pin_failures(AccountNumber(BOB)).unwrap_err(),
    ];
    for error in errors {
        assert!(error.0.contains("corrupt"), "{error}");
    }
}

/// A leaf missing from the log, or a stored hash, is an error, not a shorter log.
pub fn a_gap_in_the_log_is_an_error_of_the_snapshot<B: Backend>(backend: &B) {
    let mut store = backend.open();
    for _ in 0..3 {
        let mut tx = store.begin().unwrap();
        tx.append_event(&event()).unwrap();
        tx.commit().unwrap();
    }
    let mut tx = store.begin().unwrap();
    assert_eq!(tx.log_size().unwrap(), 3);
    assert_eq!(tx.snapshot().unwrap().leaves.len(), 3);
    assert!(tx.log_hashes(&[1_000_000]).is_err(), "a missing hash");
    drop(tx);
    backend.execute("DELETE FROM events WHERE seq = 2");
    let error = store.begin().unwrap().snapshot().unwrap_err();
    assert!(error.0.contains("gap"), "{error}");
}

/// The fingerprint lists every table but the log's, shows their rows, and
/// changes neither with a dropped step nor with a logged event.
pub fn the_fingerprint_shows_every_row_but_the_logs_and_only_changes_with_them<B: Backend>(
    backend: &B,
) {
    let mut store = backend.open();
    let empty = backend.fingerprint(&mut store);
    assert_eq!(
        empty,
        "[accounts]\n[balances]\n[intents]\n[journal]\n[merchants]\n[payments]\n\
         [pin_failures]\n[responses]\n[spent_broker_scrip]\n"
    );
    let mut tx = store.begin().unwrap();
    write_everything(&mut tx);
    tx.commit().unwrap();
    let full = backend.fingerprint(&mut store);
    for row in [
        "Text(\"customer:100000000001\")\tInteger(5000)\t\n",
        "Text(\"money-in\")\tInteger(-5000)\t\n",
    ] {
        assert!(full.contains(row), "{full}");
    }
    assert!(full.contains("[spent_broker_scrip]\nBlob(["), "{full}");
    // A refused step changes nothing; a logged event is left out.
    let mut tx = store.begin().unwrap();
    tx.mark_broker_scrip_spent(&scrip_id(9), NOW).unwrap();
    drop(tx);
    let mut tx = store.begin().unwrap();
    tx.append_event(&event()).unwrap();
    tx.commit().unwrap();
    assert_eq!(backend.fingerprint(&mut store), full);
    // Another store on the database reads the same.
    assert_eq!(backend.fingerprint(&mut backend.open()), full);
}

// ---- Group commit --------------------------------------------------------

/// Inside a group, a dropped step (one whose statement failed, too) is undone
/// alone; the others commit with the group, and the log has no gap.
pub fn a_step_dropped_inside_a_group_is_undone_alone<B: Backend>(backend: &B) {
    let mut store = backend.open();
    store.begin_group().unwrap();
    begin_a_logged_spend(&mut store, 1).commit().unwrap();
    drop(begin_a_logged_spend(&mut store, 2));
    // A step whose statement failed is undone alone too.
    let mut tx = begin_a_logged_spend(&mut store, 3);
    assert!(tx
        .put_pin_failures(AccountNumber(BOB), &alice_locked())
        .is_err());
    drop(tx);
    begin_a_logged_spend(&mut store, 4).commit().unwrap();
    store.end_group().unwrap();

    assert_spent_and_logged(&mut backend.open(), &[1, 4]);
}

/// Aborting a group undoes every step in it.
pub fn abort_group_undoes_the_whole_group<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let before = backend.fingerprint(&mut store);
    store.begin_group().unwrap();
    for id in 1..=3 {
        let mut tx = store.begin().unwrap();
        tx.post(&deposit(ALICE, id)).unwrap();
        tx.mark_broker_scrip_spent(&scrip_id(id), NOW).unwrap();
        tx.append_event(&event()).unwrap();
        tx.commit().unwrap();
    }
    store.abort_group();
    assert_eq!(backend.fingerprint(&mut store), before);
    let mut tx = store.begin().unwrap();
    assert_eq!(tx.log_size().unwrap(), 0);
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::Fresh
    );
}

/// A group whose body panics is undone, and neither the store nor the
/// database stays locked: the next group and another store's step go on.
pub fn a_group_that_panicked_is_undone_and_frees_the_store<B: Backend>(backend: &B) {
    let mut store = backend.open();
    let before = backend.fingerprint(&mut store);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = grouped(&mut store, |store| -> Result<(), StoreError> {
            begin_a_logged_spend(store, 1).commit()?;
            panic!("a step's bug");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(backend.fingerprint(&mut store), before);
    // Were the group still open, this would wait for the database's lock
    // and fail after the stores' lock timeout.
    begin_a_logged_spend(&mut backend.open(), 2)
        .commit()
        .unwrap();
    grouped(&mut store, |store| begin_a_logged_spend(store, 3).commit()).unwrap();
    assert_spent_and_logged(&mut backend.open(), &[2, 3]);
}

/// Ending a group makes all of it durable and visible to another store;
/// groups do not nest, and ending one that is not open is an error.
pub fn end_group_makes_the_group_durable_and_visible_to_another_connection<B: Backend>(
    backend: &B,
) {
    let mut store = backend.open();
    assert!(store.end_group().is_err(), "no group is open");
    store.begin_group().unwrap();
    assert!(store.begin_group().is_err(), "groups do not nest");
    for id in 1..=3 {
        let mut tx = store.begin().unwrap();
        tx.post(&deposit(ALICE, 10)).unwrap();
        tx.mark_broker_scrip_spent(&scrip_id(id), NOW).unwrap();
        tx.commit().unwrap();
    }
    store.end_group().unwrap();
    let grouped = backend.fingerprint(&mut store);
    drop(store);

    let mut other = backend.open();
    assert_eq!(backend.fingerprint(&mut other), grouped);
    let mut tx = other.begin().unwrap();
    assert_eq!(tx.balance(&customer(ALICE)).unwrap(), 30);
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(3), NOW).unwrap(),
        Spend::AlreadySpent
    );
}

// ---- Reads ----------------------------------------------------------------

/// A read waits for no writer: while another store's step holds the write
/// lock over a change it has not committed, a read begins at once and sees
/// what had committed, and keeps seeing it (one snapshot) after that step
/// commits; a new read sees the commit. Nothing written through a read is
/// kept. Inside a group, a read sees the group's own steps.
pub fn a_read_waits_for_no_writer_and_sees_one_snapshot<B: Backend>(backend: &B) {
    let mut writer = backend.open();
    let mut reader = backend.open();
    let mut tx = writer.begin().unwrap();
    tx.post(&deposit(ALICE, 5)).unwrap();
    tx.commit().unwrap();

    let mut tx = writer.begin().unwrap();
    tx.post(&deposit(ALICE, 7)).unwrap();
    tx.append_event(&event()).unwrap();
    // Were the read to wait for the lock, it would fail after the stores'
    // lock timeout, since the step holding it only commits below.
    let mut read = reader.begin_read().unwrap();
    assert_eq!(read.balance(&customer(ALICE)).unwrap(), 5);
    assert_eq!(read.log_size().unwrap(), 0);
    tx.commit().unwrap();
    assert_eq!(read.balance(&customer(ALICE)).unwrap(), 5, "one snapshot");
    assert_eq!(read.log_size().unwrap(), 0, "one snapshot");
    drop(read);

    let mut read = reader.begin_read().unwrap();
    assert_eq!(read.balance(&customer(ALICE)).unwrap(), 12);
    assert_eq!(read.log_size().unwrap(), 1);
    // PostgreSQL refuses the write; SQLite rolls it back with the read.
    let _ = read.post(&deposit(ALICE, 100));
    drop(read);
    let before = backend.fingerprint(&mut reader);
    assert_eq!(
        writer
            .begin_read()
            .unwrap()
            .balance(&customer(ALICE))
            .unwrap(),
        12
    );

    writer.begin_group().unwrap();
    let mut tx = writer.begin().unwrap();
    tx.post(&deposit(ALICE, 1)).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        writer
            .begin_read()
            .unwrap()
            .balance(&customer(ALICE))
            .unwrap(),
        13
    );
    writer.abort_group();
    assert_eq!(backend.fingerprint(&mut writer), before);
}
