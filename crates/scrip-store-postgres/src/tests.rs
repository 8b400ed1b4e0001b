//! The SQLite broker store's tests, ported, and the ones that only several
//! connections to one database can fail: the writer lock, group commit,
//! migrations, refusals of a wrong schema. Each runs in a schema of its own
//! and is skipped (with a note) when `SCRIP_TEST_POSTGRES_URL` is not set.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use scrip_core::event::BrokerEvent;
use scrip_core::ledger::{LedgerAccount, Transfer, TransferKind};
use scrip_core::store::{
    AccountLock, AccountRecord, BrokerStore, BrokerTx, GroupCommit, PinFailures, Spend,
};
use scrip_proto::{AccountNumber, PublicKey, RequestId, ScripId};

use crate::fixtures::*;
use crate::testing::{self, skipped, TestSchema};
use crate::{PgBrokerStore, PgBrokerTx};

const ALICE: u64 = 100_000_000_001;
const BOB: u64 = 100_000_000_002;

fn customer(number: u64) -> LedgerAccount {
    LedgerAccount::Customer(AccountNumber(number))
}

fn transfer(kind: TransferKind, from: LedgerAccount, to: LedgerAccount, minor: u64) -> Transfer {
    Transfer::new(kind, from, to, amount(minor), NOW).expect("a valid transfer")
}

fn deposit(number: u64, minor: u64) -> Transfer {
    transfer(
        TransferKind::Deposit,
        LedgerAccount::MoneyIn,
        customer(number),
        minor,
    )
}

fn event() -> BrokerEvent {
    BrokerEvent::AccountOpened {
        account: AccountNumber(ALICE),
        pin_hash: [7; 32],
        at: NOW,
    }
}

/// Writes one of everything the broker keeps.
fn write_everything(tx: &mut PgBrokerTx<'_>) {
    tx.store_response(&request_id(1), &response(1)).unwrap();
    tx.insert_account(&account_record(ALICE)).unwrap();
    tx.bind_account_key(AccountNumber(ALICE), &PublicKey([8; 32]))
        .unwrap();
    tx.post(&deposit(ALICE, 5_000)).unwrap();
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::Fresh
    );
    tx.put_merchant(&merchant_record(merchant_id(1), "tea shop", ALICE))
        .unwrap();
    tx.insert_intent(&intent_row(request_id(2), scrip_id(2)))
        .unwrap();
    assert_eq!(
        tx.record_payment(&payment_row(merchant_id(1), scrip_id(2)))
            .unwrap(),
        Spend::Fresh
    );
    tx.append_event(&event()).unwrap();
    tx.put_pin_failures(AccountNumber(ALICE), &alice_locked())
        .unwrap();
}

fn alice_locked() -> PinFailures {
    PinFailures {
        count: 5,
        lock: Some(AccountLock {
            at: NOW,
            until: None,
        }),
    }
}

/// The rows of `table` as this transaction sees them.
fn count(tx: &mut PgBrokerTx<'_>, table: &str) -> i64 {
    tx.connection()
        .client()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

/// Runs SQL through a connection of its own: how tests corrupt rows.
fn execute(url: &str, sql: &str) {
    postgres::Client::connect(url, postgres::NoTls)
        .expect("connect")
        .batch_execute(sql)
        .expect("run SQL");
}

/// One integer a query returns, through a connection of its own.
fn query_i64(url: &str, sql: &str) -> i64 {
    postgres::Client::connect(url, postgres::NoTls)
        .expect("connect")
        .query_one(sql, &[])
        .expect("run query")
        .get(0)
}

fn connect(schema: &TestSchema) -> PgBrokerStore {
    PgBrokerStore::connect(&schema.url()).unwrap()
}

#[test]
fn state_survives_reconnecting() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    {
        let mut store = connect(&schema);
        let mut tx = store.begin().unwrap();
        write_everything(&mut tx);
        tx.commit().unwrap();
    }

    let mut store = connect(&schema);
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
        scrip_proto::decode::<BrokerEvent>(&snapshot.leaves[0]).unwrap(),
        event()
    );
    assert_eq!(tx.log_size().unwrap(), 1);
    assert_eq!(count(&mut tx, "journal"), 1);
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

#[test]
fn dropping_a_transaction_without_commit_leaves_nothing() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
    write_everything(&mut store.begin().unwrap());

    let mut tx = store.begin().unwrap();
    assert_eq!(tx.stored_response(&request_id(1)).unwrap(), None);
    assert_eq!(tx.account(AccountNumber(ALICE)).unwrap(), None);
    assert!(tx.accounts().unwrap().is_empty());
    assert!(tx.balances().unwrap().is_empty());
    assert!(tx.merchants().unwrap().is_empty());
    assert!(!tx.intent_for_buy(&request_id(99), &scrip_id(2)).unwrap());
    for table in [
        "journal",
        "events",
        "log_hashes",
        "spent_broker_scrip",
        "payments",
        "intents",
        "pin_failures",
    ] {
        assert_eq!(count(&mut tx, table), 0, "{table}");
    }
    // So the whole step can be redone.
    write_everything(&mut tx);
}

#[test]
fn spending_is_insert_or_fail() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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

/// Sixteen connections race to spend each id; exactly one wins each race,
/// read-check-write balance updates lose nothing, and the log the steps
/// append has no gap.
#[test]
fn racing_connections_spend_each_id_once() {
    const THREADS: usize = 16;
    const ROUNDS: u64 = 25;
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    drop(connect(&schema));

    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (url, barrier) = (schema.url(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut store = PgBrokerStore::connect(&url).unwrap();
                let mut won = Vec::new();
                for round in 0..ROUNDS {
                    barrier.wait();
                    let mut tx = store.begin().unwrap();
                    tx.post(&deposit(BOB, 1)).unwrap();
                    if tx.mark_broker_scrip_spent(&scrip_id(round), NOW).unwrap() == Spend::Fresh {
                        let spend = transfer(
                            TransferKind::ObtainVendorScrip,
                            customer(ALICE),
                            LedgerAccount::OutstandingBrokerScrip,
                            1,
                        );
                        tx.post(&spend).unwrap();
                        tx.append_event(&event()).unwrap();
                        won.push(round);
                    }
                    tx.commit().unwrap();
                }
                won
            })
        })
        .collect();
    let mut winners = [0; ROUNDS as usize];
    for thread in threads {
        for round in thread.join().unwrap() {
            winners[round as usize] += 1;
        }
    }
    assert_eq!(winners, [1; ROUNDS as usize]);

    let mut store = connect(&schema);
    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.balance(&customer(BOB)).unwrap(),
        (THREADS as i64) * (ROUNDS as i64)
    );
    assert_eq!(
        tx.balance(&LedgerAccount::OutstandingBrokerScrip).unwrap(),
        ROUNDS as i64
    );
    assert_eq!(
        tx.balances()
            .unwrap()
            .iter()
            .map(|(_, balance)| balance)
            .sum::<i64>(),
        0
    );
    let snapshot = tx.snapshot().unwrap();
    assert_eq!(snapshot.leaves.len(), ROUNDS as usize);
    let seqs: Vec<i64> = snapshot.journal.iter().map(|row| row.0).collect();
    let expected: Vec<i64> = (1..=(THREADS as i64 + 1) * ROUNDS as i64).collect();
    assert_eq!(seqs, expected, "the journal has no gap");
}

#[test]
fn posting_keeps_the_sum_of_balances_at_zero() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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
        let mut tx = store.begin().unwrap();
        assert_eq!(
            tx.balances()
                .unwrap()
                .iter()
                .map(|(_, balance)| balance)
                .sum::<i64>(),
            0
        );
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
    assert_eq!(count(&mut tx, "journal"), steps.len() as i64);
}

#[test]
fn a_post_that_would_overflow_fails_and_writes_nothing() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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
    assert_eq!(count(&mut tx, "journal"), 1);
    // Nothing failed in the database: the step can still commit.
    tx.commit().unwrap();
}

#[test]
fn put_merchant_replaces_by_id_and_names_stay_unique() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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

#[test]
fn wrong_pin_counts_are_replaced_and_the_default_leaves_no_row() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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
    assert_eq!(count(&mut tx, "pin_failures"), 1);
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
    assert_eq!(count(&mut tx, "pin_failures"), 0);
    assert_eq!(
        tx.pin_failures(AccountNumber(ALICE)).unwrap(),
        PinFailures::default()
    );
    // Only accounts that exist can be counted.
    assert!(tx.put_pin_failures(AccountNumber(BOB), &two).is_err());
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
    execute(
        &schema.url(),
        r"INSERT INTO balances VALUES ('nonsense', 1);
          INSERT INTO accounts VALUES (100000000001, 'a', 'h', '\x0102', 0);
          INSERT INTO accounts VALUES (100000000002, 'b', 'h', NULL, -1);
          INSERT INTO merchants VALUES (decode(repeat('00', 32), 'hex'), 'm', 1, '\x00', 0);
          INSERT INTO responses VALUES (decode(repeat('00', 16), 'hex'), '\x01', '', NULL);
          INSERT INTO pin_failures VALUES (100000000002, 4294967296, NULL, NULL);",
    );
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

#[test]
fn a_gap_in_the_log_is_an_error_of_the_snapshot() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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
    execute(&schema.url(), "DELETE FROM events WHERE seq = 2");
    let error = store.begin().unwrap().snapshot().unwrap_err();
    assert!(error.0.contains("gap"), "{error}");
}

#[test]
fn the_fingerprint_shows_every_row_but_the_logs_and_only_changes_with_them() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
    let empty = store.fingerprint().unwrap();
    assert_eq!(
        empty,
        "[accounts]\n[balances]\n[intents]\n[journal]\n[merchants]\n[payments]\n\
         [pin_failures]\n[responses]\n[spent_broker_scrip]\n"
    );
    let mut tx = store.begin().unwrap();
    write_everything(&mut tx);
    tx.commit().unwrap();
    let full = store.fingerprint().unwrap();
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
    assert_eq!(store.fingerprint().unwrap(), full);
    // Another connection reads the same.
    assert_eq!(connect(&schema).fingerprint().unwrap(), full);
}

// ---- Group commit --------------------------------------------------------

#[test]
fn a_step_dropped_inside_a_group_is_undone_alone() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
    store.begin_group().unwrap();
    let mut tx = store.begin().unwrap();
    tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap();
    tx.append_event(&event()).unwrap();
    tx.commit().unwrap();

    let mut tx = store.begin().unwrap();
    tx.mark_broker_scrip_spent(&scrip_id(2), NOW).unwrap();
    tx.append_event(&event()).unwrap();
    drop(tx);

    // A step whose statement failed is undone alone too.
    let mut tx = store.begin().unwrap();
    tx.mark_broker_scrip_spent(&scrip_id(3), NOW).unwrap();
    assert!(tx
        .put_pin_failures(AccountNumber(BOB), &alice_locked())
        .is_err());
    assert!(tx.commit().is_err(), "a step with a failed statement");

    let mut tx = store.begin().unwrap();
    tx.mark_broker_scrip_spent(&scrip_id(4), NOW).unwrap();
    tx.append_event(&event()).unwrap();
    tx.commit().unwrap();
    store.end_group().unwrap();

    let mut other = connect(&schema);
    let mut tx = other.begin().unwrap();
    let snapshot = tx.snapshot().unwrap();
    assert_eq!(
        snapshot.spent_broker_scrip,
        vec![scrip_id(1).to_key().to_vec(), scrip_id(4).to_key().to_vec()]
    );
    assert_eq!(snapshot.leaves.len(), 2, "the log has no gap");
}

#[test]
fn abort_group_undoes_the_whole_group() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
    let before = store.fingerprint().unwrap();
    store.begin_group().unwrap();
    for id in 1..=3 {
        let mut tx = store.begin().unwrap();
        tx.post(&deposit(ALICE, id)).unwrap();
        tx.mark_broker_scrip_spent(&scrip_id(id), NOW).unwrap();
        tx.append_event(&event()).unwrap();
        tx.commit().unwrap();
    }
    store.abort_group();
    assert_eq!(store.fingerprint().unwrap(), before);
    let mut tx = store.begin().unwrap();
    assert_eq!(tx.log_size().unwrap(), 0);
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::Fresh
    );
}

#[test]
fn end_group_makes_the_group_durable_and_visible_to_another_connection() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
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
    let grouped = store.fingerprint().unwrap();
    drop(store);

    let mut other = connect(&schema);
    assert_eq!(other.fingerprint().unwrap(), grouped);
    let mut tx = other.begin().unwrap();
    assert_eq!(tx.balance(&customer(ALICE)).unwrap(), 30);
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(3), NOW).unwrap(),
        Spend::AlreadySpent
    );
}

#[test]
fn a_commit_after_a_failed_statement_is_an_error_and_keeps_nothing() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut store = connect(&schema);
    let mut tx = store.begin().unwrap();
    tx.post(&deposit(ALICE, 10)).unwrap();
    assert!(tx
        .bind_account_key(AccountNumber(BOB), &PublicKey([1; 32]))
        .is_err());
    assert!(tx
        .put_pin_failures(AccountNumber(BOB), &alice_locked())
        .is_err());
    assert!(tx.commit().is_err());
    let mut tx = store.begin().unwrap();
    assert_eq!(tx.balance(&customer(ALICE)).unwrap(), 0);
    assert_eq!(count(&mut tx, "journal"), 0);
}

// ---- The writer lock -----------------------------------------------------

/// Waits until the backend `pid` waits for a lock: what `begin` does while
/// another connection's step holds the writer row.
fn wait_until_blocked(url: &str, pid: i32) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    // A bound on a test that would otherwise hang, not a measurement.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = client
            .query_opt(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap();
        let waiting: Option<String> = row.and_then(|row| row.get(0));
        if waiting.as_deref() == Some("Lock") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid} never waited for the writer lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_second_connection_waits_for_the_first_to_commit() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let mut first = connect(&schema);
    let mut tx = first.begin().unwrap();
    tx.post(&deposit(ALICE, 5)).unwrap();

    let (pid_sender, pid) = mpsc::channel();
    let (balance_sender, balance) = mpsc::channel();
    let second = std::thread::spawn({
        let url = schema.url();
        move || {
            // Connecting to an up-to-date schema does not wait for the writer.
            let mut store = PgBrokerStore::connect(&url).unwrap();
            let backend: i32 = store
                .connection()
                .client()
                .query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get(0);
            pid_sender.send(backend).unwrap();
            let mut tx = store.begin().unwrap();
            // Without the lock, READ COMMITTED would read 0 here.
            balance_sender
                .send(tx.balance(&customer(ALICE)).unwrap())
                .unwrap();
            tx.commit().unwrap();
        }
    });
    wait_until_blocked(&base, pid.recv().unwrap());
    assert_eq!(balance.try_recv(), Err(mpsc::TryRecvError::Empty));
    tx.commit().unwrap();
    assert_eq!(balance.recv().unwrap(), 5);
    second.join().unwrap();
}

// ---- Migrations and refusals ---------------------------------------------

#[test]
fn migrations_are_idempotent_across_reconnects() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let url = schema.url();
    let mut store = connect(&schema);
    let mut tx = store.begin().unwrap();
    tx.post(&deposit(ALICE, 7)).unwrap();
    tx.commit().unwrap();
    drop(store);
    for _ in 0..3 {
        let mut store = connect(&schema);
        assert_eq!(store.begin().unwrap().balance(&customer(ALICE)).unwrap(), 7);
    }
    assert_eq!(
        query_i64(
            &url,
            "SELECT version::BIGINT FROM scrip_schema WHERE role = 'broker'"
        ),
        crate::broker::SCHEMA.version()
    );
    assert_eq!(query_i64(&url, "SELECT count(*) FROM scrip_schema"), 1);
    assert_eq!(query_i64(&url, "SELECT count(*) FROM writer"), 1);
}

#[test]
fn connections_migrating_a_new_schema_at_once_all_succeed() {
    const THREADS: usize = 8;
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (url, barrier) = (schema.url(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut store = PgBrokerStore::connect(&url)?;
                let mut tx = store.begin()?;
                tx.post(&deposit(ALICE, 1))?;
                tx.commit()
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    let url = schema.url();
    assert_eq!(
        query_i64(&url, "SELECT version::BIGINT FROM scrip_schema"),
        crate::broker::SCHEMA.version()
    );
    assert_eq!(
        connect(&schema)
            .begin()
            .unwrap()
            .balance(&customer(ALICE))
            .unwrap(),
        THREADS as i64
    );
}

#[test]
fn a_schema_of_another_role_is_refused() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    execute(
        &schema.url(),
        "CREATE TABLE scrip_schema (role TEXT PRIMARY KEY, version INTEGER NOT NULL);
         INSERT INTO scrip_schema VALUES ('merchant', 1);",
    );
    let error = PgBrokerStore::connect(&schema.url())
        .err()
        .expect("a merchant schema is not a broker's");
    assert!(error.0.contains("not a scrip broker database"), "{error}");
    // Refused before anything was created.
    assert_eq!(
        query_i64(
            &schema.url(),
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ),
        1
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    drop(connect(&schema));
    execute(&schema.url(), "UPDATE scrip_schema SET version = 99");
    let error = PgBrokerStore::connect(&schema.url())
        .err()
        .expect("version 99 is unknown");
    assert!(error.0.contains("schema version 99"), "{error}");
}

#[test]
fn the_password_never_appears_in_a_connect_error() {
    // Port 1 on loopback refuses the connection: no server is needed.
    let url = "postgres://scrip:hunter2-secret@127.0.0.1:1/postgres?connect_timeout=5";
    let error = PgBrokerStore::connect(url)
        .err()
        .expect("nothing listens on port 1");
    assert!(!error.0.contains("hunter2"), "{error}");
    assert!(
        error
            .0
            .contains("postgres://scrip:***@127.0.0.1:1/postgres"),
        "{error}"
    );

    let Some(base) = testing::test_url() else {
        skipped();
        return;
    };
    // A server that is there, and a login it refuses.
    let mut url = base.clone();
    if let Some((scheme, rest)) = base.split_once("://") {
        let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
        url = format!("{scheme}://no_such_role_scrip:hunter2-secret@{rest}");
    }
    let error = PgBrokerStore::connect(&url)
        .err()
        .expect("the role does not exist");
    assert!(!error.0.contains("hunter2"), "{error}");
    assert!(error.0.contains("no_such_role_scrip:***@"), "{error}");
}
