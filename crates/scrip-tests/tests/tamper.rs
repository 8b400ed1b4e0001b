//! Tampering with the broker's database is caught by the audit, after GNU
//! Taler's auditor tests: one pristine database from a real run, then, on a
//! copy of it per test, one targeted modification made behind the broker's
//! back with raw SQL. The audit, with the broker's public key only, must fail
//! and name the table and row, or the log leaf, that was touched.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rusqlite::{params, Connection};
use scrip_core::audit::{audit, AuditReport, Check, Finding};
use scrip_core::event::BrokerEvent;
use scrip_core::log::{sign_checkpoint, verify_checkpoint};
use scrip_core::store::{BrokerSnapshot, BrokerStore, BrokerTx, ScripState, StoreError};
use scrip_core::WalletError;
use scrip_proto::crypto::{Proved, SigningKey};
use scrip_proto::msg::{BrokerRequest, BrokerResponse, ObtainVendorScrip, PaymentRecord};
use scrip_proto::{
    decode, encode, AccountNumber, Amount, MerchantId, Pin, PublicKey, Refusal, RequestId,
    ScripKind, Secret32, Timestamp,
};
use scrip_store::BrokerDb;
use scrip_store_sqlite::SqliteBrokerStore;
use scrip_tests::{amount, Sim};

/// The untouched database of a real run, and what the tests know about it.
struct Pristine {
    /// The database file's bytes, with its WAL checkpointed in.
    db: Vec<u8>,
    /// The broker's public key: all the audit is given.
    broker: PublicKey,
    now: Timestamp,
    /// Every table as the audit reads it, to pick rows to tamper with.
    snapshot: BrokerSnapshot,
    alice: AccountNumber,
    bob: AccountNumber,
    /// Locked after wrong PINs, unlocked by the operator, and locked again.
    carol: AccountNumber,
    tea_account: AccountNumber,
    tea: MerchantId,
}

fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(build_pristine)
}

/// A real run on a file-backed broker store: accounts, deposits, a
/// withdrawal, BrokerScrip, VendorScrip at two merchants, purchases with
/// change, settlement, role inversion, a refused double spend, a wrong PIN,
/// and an account locked after wrong PINs, unlocked, and locked again.
fn build_pristine() -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    let mut sim = Sim::new(11);
    // A file the test keeps after the run, to copy and tamper with.
    sim.broker_store = BrokerDb::Sqlite(SqliteBrokerStore::open(&path).unwrap());
    let alice = sim.open_account("alice", "100");
    let bob = sim.open_account("bob", "50");
    let tea_account = sim.open_account("tea shop", "0");
    let news_account = sim.open_account("news stand", "0");
    let paid = sim
        .broker
        .withdraw(&mut sim.broker_store, sim.now, bob.number, amount("5"))
        .unwrap();
    assert_eq!(paid, amount("45"));
    let tea = sim.add_merchant(
        "tea",
        &[("green", "0.002"), ("black", "0.0035")],
        &tea_account,
    );
    let news = sim.add_merchant("news", &[("daily", "0.005")], &news_account);

    // Alice: BrokerScrip, then VendorScrip at both merchants.
    let wallet = sim.add_wallet();
    sim.obtain_broker_scrip(wallet, alice.number, &alice.pin, "5")
        .unwrap();
    let spent = sim
        .wallet_scrip(wallet)
        .into_iter()
        .find(|s| s.scrip.body.kind == ScripKind::Broker && s.state == ScripState::Available)
        .unwrap();
    sim.obtain_vendor_scrip(wallet, tea, "0.01").unwrap();
    sim.obtain_vendor_scrip(wallet, news, "0.01").unwrap();

    // The BrokerScrip spent above, spent again: refused, and logged.
    let replay = BrokerRequest::ObtainVendorScrip(Proved::prove(
        ObtainVendorScrip {
            request_id: RequestId::random(&mut sim.rng),
            scrip: spent.scrip.clone(),
            merchant: sim.merchant_id(tea),
            amount: amount("1"),
            reply_key: scrip_proto::HpkePublicKey([9; 32]),
        },
        &spent.secret,
    ));
    assert_eq!(
        sim.broker_call(&replay),
        BrokerResponse::Refused(Refusal::DoubleSpend {
            scrip: spent.scrip.id()
        })
    );

    // Bob: a wrong PIN, refused and logged, then the right one.
    let bob_wallet = sim.add_wallet();
    let wrong = if bob.pin.expose() == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let error = sim
        .obtain_broker_scrip(bob_wallet, bob.number, &Pin::new(wrong).unwrap(), "1")
        .unwrap_err();
    assert!(
        matches!(&error, WalletError::Refused(Refusal::WrongAccountOrPin { account }) if *account == bob.number),
        "{error}"
    );
    sim.obtain_broker_scrip(bob_wallet, bob.number, &bob.pin, "1")
        .unwrap();
    sim.obtain_vendor_scrip(bob_wallet, tea, "0.005").unwrap();

    // Carol: wrong PINs until her account locks, so even her right PIN is
    // refused; the operator unlocks it, she pays, then locks it again.
    let carol = sim.open_account("carol", "10");
    let carol_wallet = sim.add_wallet();
    let carol_wrong = Pin::new(if carol.pin.expose() == "00000000" {
        "11111111"
    } else {
        "00000000"
    })
    .unwrap();
    let locked = Refusal::AccountLocked {
        account: carol.number,
        until: None,
    };
    for round in 0..2 {
        for _ in 0..5 {
            sim.obtain_broker_scrip(carol_wallet, carol.number, &carol_wrong, "1")
                .unwrap_err();
        }
        let error = sim
            .obtain_broker_scrip(carol_wallet, carol.number, &carol.pin, "1")
            .unwrap_err();
        assert!(
            matches!(&error, WalletError::Refused(r) if *r == locked),
            "{error}"
        );
        if round == 0 {
            sim.advance(60);
            sim.broker
                .unlock_account(&mut sim.broker_store, sim.now, carol.number)
                .unwrap();
            sim.obtain_broker_scrip(carol_wallet, carol.number, &carol.pin, "1")
                .unwrap();
        }
    }

    // Purchases with change, then settlement.
    for item in ["green", "black", "green"] {
        sim.buy_item(wallet, tea, item).unwrap();
    }
    sim.buy_item(bob_wallet, tea, "black").unwrap();
    sim.buy_item(wallet, news, "daily").unwrap();
    sim.advance(60);
    assert_eq!(sim.settle(tea).credited, amount("0.011"));
    assert_eq!(sim.settle(news).credited, amount("0.005"));

    // Role inversion: the tea shop spends its earnings at the news stand.
    let tea_wallet = sim.add_wallet();
    sim.obtain_broker_scrip(tea_wallet, tea_account.number, &tea_account.pin, "0.011")
        .unwrap();
    sim.obtain_vendor_scrip(tea_wallet, news, "0.011").unwrap();
    sim.buy_item(tea_wallet, news, "daily").unwrap();
    sim.advance(60);
    assert_eq!(sim.settle(news).credited, amount("0.005"));
    assert_eq!(sim.balance(news_account.number), amount("0.01"));
    sim.assert_conserved();

    let broker = sim.broker.info().broker;
    let now = sim.now;
    let tea_id = sim.merchant_id(tea);
    drop(sim);

    // Fold the WAL into the main file, so the file alone is the database.
    let conn = Connection::open(&path).unwrap();
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .unwrap();
    assert_eq!(busy, 0, "the WAL could not be checkpointed");
    drop(conn);
    let db = std::fs::read(&path).unwrap();
    let snapshot = snapshot_of(&path).unwrap();
    Pristine {
        db,
        broker,
        now,
        snapshot,
        alice: alice.number,
        bob: bob.number,
        carol: carol.number,
        tea_account: tea_account.number,
        tea: tea_id,
    }
}

fn snapshot_of(path: &Path) -> Result<BrokerSnapshot, StoreError> {
    let mut store = SqliteBrokerStore::open(path)?;
    let mut tx = store.begin()?;
    let snapshot = tx.snapshot()?;
    Ok(snapshot)
}

/// Copies the pristine database, lets `modify` tamper with the copy, then
/// reads the copy as the auditor does and audits it.
fn audit_copy(modify: impl FnOnce(&Path)) -> Result<AuditReport, StoreError> {
    let p = pristine();
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("broker.db");
    std::fs::write(&path, &p.db).unwrap();
    modify(&path);
    let snapshot = snapshot_of(&path)?;
    Ok(audit(&p.broker, &snapshot, p.now))
}

/// [`audit_copy`] with the modification made through a raw SQLite connection.
fn tamper(modify: impl FnOnce(&Connection)) -> AuditReport {
    audit_copy(|path| modify(&Connection::open(path).unwrap()))
        .expect("the tampered database still gives a snapshot")
}

/// Runs one statement that must change exactly `rows` rows.
fn exec(conn: &Connection, rows: usize, sql: &str, params: impl rusqlite::Params) {
    assert_eq!(conn.execute(sql, params).unwrap(), rows, "{sql}");
}

/// The finding of `check` whose location contains `location` and that
/// satisfies `also`; fails the test if the audit was clean or has none.
fn detected_where<'a>(
    report: &'a AuditReport,
    check: Check,
    location: &str,
    also: impl Fn(&Finding) -> bool,
) -> &'a Finding {
    assert!(!report.clean(), "the audit found nothing");
    let finding = report
        .findings
        .iter()
        .find(|f| f.check == check && f.location.contains(location) && also(f))
        .unwrap_or_else(|| {
            panic!(
                "no {check} finding at {location:?} among {:#?}",
                report.findings
            )
        });
    println!(
        "detected: [{}] {}: expected {}, found {}",
        finding.check, finding.location, finding.expected, finding.found
    );
    finding
}

fn detected<'a>(report: &'a AuditReport, check: Check, location: &str) -> &'a Finding {
    detected_where(report, check, location, |_| true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn log_size() -> u64 {
    pristine().snapshot.leaves.len() as u64
}

/// The number of stored tree hashes of a log of `leaves` leaves (tlog
/// layout): the stored-hash index of the next leaf.
fn hashes_for(leaves: u64) -> u64 {
    2 * leaves - u64::from(leaves.count_ones())
}

/// The first log leaf whose event matches, with its index.
fn leaf_where(matches: impl Fn(&BrokerEvent) -> bool) -> (u64, BrokerEvent) {
    pristine()
        .snapshot
        .leaves
        .iter()
        .map(|leaf| decode::<BrokerEvent>(leaf).unwrap())
        .enumerate()
        .find(|(_, event)| matches(event))
        .map(|(index, event)| (index as u64, event))
        .expect("the pristine log has such an event")
}

fn plus_minor(amount: Amount, minor: u64) -> Amount {
    Amount::from_minor(amount.as_i64() as u64 + minor).unwrap()
}

// ---- The control ------------------------------------------------------------

#[test]
fn the_untouched_copy_audits_clean() {
    let p = pristine();
    let report = audit_copy(|_| {}).unwrap();
    assert!(report.clean(), "{:#?}", report.findings);
    assert_eq!(report.refused_double_spends, 1);
    assert_eq!(report.refused_pins.len(), 2);
    assert_eq!(report.refused_pins.get(&p.bob), Some(&1));
    assert_eq!(report.refused_pins.get(&p.carol), Some(&10));
    assert_eq!(report.account_locks.len(), 2);
    assert!(report.account_locks.iter().all(|(a, _, _)| *a == p.carol));
    assert_eq!(report.account_unlocks.len(), 1);
    assert_eq!(
        report.locked_accounts.keys().collect::<Vec<_>>(),
        vec![&p.carol]
    );
    assert_eq!(
        p.snapshot
            .pin_failures
            .iter()
            .map(|row| row.0)
            .collect::<Vec<_>>(),
        vec![p.carol],
        "only carol has wrong PINs left"
    );
    assert_eq!(report.pending_intents, 0);
    assert_eq!(report.log_size, log_size());
    assert_eq!(
        report.latest_checkpoint.as_ref().map(|c| c.size),
        Some(log_size())
    );
    assert_eq!(p.snapshot.hashes.len() as u64, hashes_for(log_size()));
    // The run exercised every kind of event the tests below tamper with.
    for (kind, present) in [
        (
            "deposit",
            leaf_exists(|e| matches!(e, BrokerEvent::Deposit { .. })),
        ),
        (
            "withdrawal",
            leaf_exists(|e| matches!(e, BrokerEvent::Withdrawal { .. })),
        ),
        (
            "exchange",
            leaf_exists(|e| matches!(e, BrokerEvent::VendorScripExchanged { .. })),
        ),
        (
            "payment",
            leaf_exists(|e| matches!(e, BrokerEvent::PaymentRecorded { .. })),
        ),
    ] {
        assert!(present, "no {kind} in the pristine log");
    }
    assert!(matches!(
        decode::<BrokerEvent>(p.snapshot.leaves.last().unwrap()).unwrap(),
        BrokerEvent::PaymentRecorded { .. }
    ));
}

fn leaf_exists(matches: impl Fn(&BrokerEvent) -> bool) -> bool {
    pristine()
        .snapshot
        .leaves
        .iter()
        .any(|leaf| matches(&decode::<BrokerEvent>(leaf).unwrap()))
}

// ---- Balances and journal ---------------------------------------------------

#[test]
fn a_changed_customer_balance_is_detected() {
    let alice = format!("customer:{}", pristine().alice);
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE balances SET balance = balance + 100 WHERE account = ?1",
            [&alice],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table balances row {alice}"),
    );
    detected(&report, Check::Conservation, "table balances");
}

#[test]
fn a_changed_outstanding_broker_scrip_balance_is_detected() {
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE balances SET balance = balance - 1 WHERE account = 'outstanding-broker-scrip'",
            [],
        )
    });
    detected(
        &report,
        Check::Ledger,
        "table balances row outstanding-broker-scrip",
    );
}

#[test]
fn a_credit_with_no_event_is_detected() {
    // A balanced deposit, journal row and all, that the log never saw.
    let alice = format!("customer:{}", pristine().alice);
    let report = tamper(|c| {
        exec(
            c,
            1,
            "INSERT INTO journal (kind, from_account, to_account, amount, at)
             SELECT kind, from_account, to_account, 100000, at FROM journal
             WHERE to_account = ?1 ORDER BY seq LIMIT 1",
            [&alice],
        );
        exec(
            c,
            1,
            "UPDATE balances SET balance = balance + 100000 WHERE account = ?1",
            [&alice],
        );
        exec(
            c,
            1,
            "UPDATE balances SET balance = balance - 100000 WHERE account = 'money-in'",
            [],
        );
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table balances row {alice}"),
    );
    detected(&report, Check::Ledger, "table balances row money-in");
    detected_where(&report, Check::Ledger, "table journal", |f| {
        f.location == "table journal"
    });
}

#[test]
fn a_deleted_balance_row_is_detected() {
    let report = tamper(|c| exec(c, 1, "DELETE FROM balances WHERE account = 'money-out'", []));
    detected(&report, Check::Ledger, "table balances row money-out");
}

#[test]
fn a_balance_row_of_no_ledger_account_is_detected() {
    let report = tamper(|c| {
        exec(
            c,
            1,
            "INSERT INTO balances (account, balance) VALUES ('slush-fund', 500)",
            [],
        )
    });
    detected(
        &report,
        Check::Conservation,
        "table balances row slush-fund",
    );
}

#[test]
fn a_changed_journal_amount_is_detected() {
    let seq = pristine().snapshot.journal[2].0;
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE journal SET amount = amount + 1 WHERE seq = ?1",
            [seq],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table journal row seq {seq}"),
    );
}

#[test]
fn a_deleted_journal_row_is_detected() {
    let seq = pristine().snapshot.journal[2].0;
    let report = tamper(|c| exec(c, 1, "DELETE FROM journal WHERE seq = ?1", [seq]));
    let finding = detected_where(&report, Check::Ledger, "table journal", |f| {
        f.location == "table journal"
    });
    assert_eq!(
        finding.found,
        format!("{} rows", pristine().snapshot.journal.len() - 1)
    );
}

// ---- The log ------------------------------------------------------------------

#[test]
fn a_changed_amount_inside_a_log_leaf_is_detected() {
    let (index, event) = leaf_where(|e| matches!(e, BrokerEvent::Deposit { .. }));
    let BrokerEvent::Deposit {
        account,
        amount,
        at,
    } = event
    else {
        unreachable!()
    };
    let forged = BrokerEvent::Deposit {
        account,
        amount: plus_minor(amount, amount.as_i64() as u64),
        at,
    };
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            params![encode(&forged), index + 1],
        )
    });
    detected(
        &report,
        Check::Log,
        &format!("(the hash of log leaf {index})"),
    );
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {}", log_size()),
        |f| f.found.contains("altered"),
    );
    detected(
        &report,
        Check::Ledger,
        &format!("table balances row customer:{account}"),
    );
}

#[test]
fn an_undecodable_log_leaf_is_detected() {
    let (index, _) = leaf_where(|e| matches!(e, BrokerEvent::Withdrawal { .. }));
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE events SET bytes = x'ff00ff' WHERE seq = ?1",
            [index + 1],
        )
    });
    detected_where(&report, Check::Log, &format!("log leaf {index}"), |f| {
        f.location == format!("log leaf {index}") && f.found.contains("do not decode")
    });
}

#[test]
fn a_deleted_last_log_entry_is_detected() {
    let n = log_size();
    let report = tamper(|c| exec(c, 1, "DELETE FROM events WHERE seq = ?1", [n]));
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {n}"),
        |f| f.found.contains("truncated or rolled back"),
    );
}

#[test]
fn a_deleted_middle_log_entry_leaving_a_gap_is_detected_by_the_store() {
    let seq = log_size() / 2;
    let error = audit_copy(|path| {
        exec(
            &Connection::open(path).unwrap(),
            1,
            "DELETE FROM events WHERE seq = ?1",
            [seq],
        )
    })
    .expect_err("the store refuses to read a log with a gap");
    let expected = format!("gap or reordering at events.seq {}", seq + 1);
    assert!(error.to_string().contains(&expected), "{error}");
    println!("detected by the store: {error}");
}

#[test]
fn a_deleted_middle_log_entry_renumbered_is_detected() {
    let seq = log_size() / 2;
    let report = tamper(|c| {
        exec(c, 1, "DELETE FROM events WHERE seq = ?1", [seq]);
        c.execute("UPDATE events SET seq = -seq WHERE seq > ?1", [seq])
            .unwrap();
        c.execute("UPDATE events SET seq = -seq - 1 WHERE seq < 0", [])
            .unwrap();
    });
    let index = seq - 1;
    detected(
        &report,
        Check::Log,
        &format!("(the hash of log leaf {index})"),
    );
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {}", log_size()),
        |f| f.found.contains("truncated or rolled back"),
    );
}

#[test]
fn two_reordered_log_entries_are_detected() {
    let (index, _) = leaf_where(|e| matches!(e, BrokerEvent::Withdrawal { .. }));
    let leaves = &pristine().snapshot.leaves;
    let (a, b) = (&leaves[index as usize], &leaves[index as usize + 1]);
    assert_ne!(a, b);
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            params![b, index + 1],
        );
        exec(
            c,
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            params![a, index + 2],
        );
    });
    detected(
        &report,
        Check::Log,
        &format!("(the hash of log leaf {index})"),
    );
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {}", log_size()),
        |f| f.found.contains("reordered"),
    );
}

#[test]
fn a_truncated_log_is_detected() {
    // The last three leaves and their hashes go; the signed checkpoints stay.
    let (n, kept) = (log_size(), log_size() - 3);
    let report = tamper(|c| {
        exec(c, 3, "DELETE FROM events WHERE seq > ?1", [kept]);
        let hashes = (hashes_for(n) - hashes_for(kept)) as usize;
        exec(
            c,
            hashes,
            "DELETE FROM log_hashes WHERE idx >= ?1",
            [hashes_for(kept)],
        );
    });
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.location.starts_with("table log_hashes")),
        "the hashes were truncated consistently: {:#?}",
        report.findings
    );
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {n}"),
        |f| f.found.contains("truncated or rolled back"),
    );
}

#[test]
fn a_log_rolled_back_to_an_earlier_checkpoint_is_detected() {
    // Leaves, hashes and checkpoints after size `kept` go: the log is a
    // valid, signed log of `kept` leaves, and the tables no longer match it.
    let kept = log_size() - 3;
    let report = tamper(|c| {
        exec(c, 3, "DELETE FROM events WHERE seq > ?1", [kept]);
        c.execute("DELETE FROM log_hashes WHERE idx >= ?1", [hashes_for(kept)])
            .unwrap();
        exec(c, 3, "DELETE FROM checkpoints WHERE size > ?1", [kept]);
    });
    assert!(
        report.findings.iter().all(|f| f.check != Check::Log),
        "the rolled-back log is itself consistent: {:#?}",
        report.findings
    );
    let BrokerEvent::PaymentRecorded {
        merchant, scrip, ..
    } = decode(pristine().snapshot.leaves.last().unwrap()).unwrap()
    else {
        panic!("the last pristine leaf is a payment")
    };
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table payments row {merchant}/{}", hex(&scrip.to_key())),
    );
    assert_eq!(finding.found, "present");
}

#[test]
fn an_altered_stored_log_hash_is_detected() {
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE log_hashes SET hash = zeroblob(32) WHERE idx = 7",
            [],
        )
    });
    let finding = detected(&report, Check::Log, "table log_hashes row idx 7 (");
    assert_eq!(finding.found, "00".repeat(32));
}

#[test]
fn a_deleted_stored_log_hash_is_detected() {
    let report = tamper(|c| exec(c, 1, "DELETE FROM log_hashes WHERE idx = 9", []));
    let finding = detected(&report, Check::Log, "table log_hashes row idx 9 (");
    assert_eq!(finding.found, "missing");
}

#[test]
fn a_forged_leaf_appended_without_a_checkpoint_is_detected() {
    let p = pristine();
    let n = log_size();
    let forged = BrokerEvent::Deposit {
        account: p.alice,
        amount: amount("1000"),
        at: p.now,
    };
    let report = audit_copy(|path| {
        let mut store = SqliteBrokerStore::open(path).unwrap();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            scrip_core::log::append(&mut tx, &encode(&forged)).unwrap(),
            n
        );
        tx.commit().unwrap();
    })
    .unwrap();
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.location.starts_with("table log_hashes")),
        "the forger recomputed the hashes: {:#?}",
        report.findings
    );
    detected_where(&report, Check::Log, "table checkpoints (latest)", |f| {
        f.found.contains(&format!("covers {n}:"))
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table balances row customer:{}", p.alice),
    );
}

// ---- Checkpoints ----------------------------------------------------------------

#[test]
fn a_checkpoint_signed_by_another_key_is_detected() {
    let p = pristine();
    let n = log_size();
    let other = SigningKey::from_secret(&Secret32::from_bytes([7; 32]));
    let true_root = p
        .snapshot
        .checkpoints
        .iter()
        .find(|(size, _)| *size == n)
        .map(|(_, note)| verify_checkpoint(&p.broker, note).unwrap().root)
        .unwrap();
    let report = audit_copy(|path| {
        let mut store = SqliteBrokerStore::open(path).unwrap();
        let mut tx = store.begin().unwrap();
        let root = scrip_core::log::root(&mut tx, n).unwrap();
        assert_eq!(root, true_root);
        let note = sign_checkpoint(&other, n, root, p.now).unwrap();
        // A good checkpoint in every way but its signer.
        assert_eq!(
            verify_checkpoint(&other.public_key(), &note).unwrap().root,
            root
        );
        tx.put_checkpoint(n, &note).unwrap();
        tx.commit().unwrap();
    })
    .unwrap();
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {n}"),
        |f| f.found.contains("not signed by the broker's key"),
    );
    detected_where(&report, Check::Log, "table checkpoints (latest)", |f| {
        f.found.contains(&format!("covers {}:", n - 1))
    });
}

#[test]
fn a_deleted_latest_checkpoint_is_detected() {
    let n = log_size();
    let report = tamper(|c| exec(c, 1, "DELETE FROM checkpoints WHERE size = ?1", [n]));
    detected_where(&report, Check::Log, "table checkpoints (latest)", |f| {
        f.found.contains(&format!("covers {}:", n - 1))
    });
}

#[test]
fn a_checkpoint_moved_to_another_size_is_detected() {
    let n = log_size();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE checkpoints SET size = ?1 WHERE size = ?2",
            [n + 5, n],
        )
    });
    let finding = detected(
        &report,
        Check::Log,
        &format!("table checkpoints row size {}", n + 5),
    );
    assert_eq!(finding.found, format!("size {n}"));
}

// ---- The other tables -------------------------------------------------------------

#[test]
fn a_deleted_spent_broker_scrip_row_is_detected() {
    let id = pristine().snapshot.spent_broker_scrip[0].clone();
    let report = tamper(|c| exec(c, 1, "DELETE FROM spent_broker_scrip WHERE id = ?1", [&id]));
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table spent_broker_scrip row {}", hex(&id)),
    );
    assert_eq!(finding.found, "missing");
}

#[test]
fn a_fake_spent_broker_scrip_id_is_detected() {
    let id = [0xab_u8; 20];
    let report = tamper(|c| {
        exec(
            c,
            1,
            "INSERT INTO spent_broker_scrip (id, expiry) VALUES (?1, 0)",
            [&id[..]],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table spent_broker_scrip row {}", hex(&id)),
    );
    assert_eq!(finding.found, "present");
}

#[test]
fn an_altered_price_inside_a_payment_record_is_detected() {
    let (merchant, scrip, bytes) = pristine().snapshot.payments[0].clone();
    let mut record: PaymentRecord = decode(&bytes).unwrap();
    let price = plus_minor(record.buy.body.price, 1);
    record.buy.body.price = price;
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE payments SET record = ?1 WHERE merchant = ?2 AND scrip = ?3",
            params![encode(&record), merchant.as_bytes(), scrip],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table payments row {merchant}/{}", hex(&scrip)),
    );
    assert!(
        finding.found.contains(&format!("price {price}")),
        "{finding:?}"
    );
}

#[test]
fn a_deleted_payment_row_is_detected() {
    let (merchant, scrip, _) = pristine().snapshot.payments[0].clone();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "DELETE FROM payments WHERE merchant = ?1 AND scrip = ?2",
            params![merchant.as_bytes(), scrip],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table payments row {merchant}/{}", hex(&scrip)),
    );
    assert_eq!(finding.found, "missing");
}

#[test]
fn a_fake_account_is_detected() {
    let report = tamper(|c| {
        exec(
            c,
            1,
            "INSERT INTO accounts (number, name, pin_hash, account_key, opened_at)
             VALUES (999999999999, 'mallory', 'x', NULL, 1800000000)",
            [],
        )
    });
    let finding = detected(&report, Check::Ledger, "table accounts row 999999999999");
    assert_eq!(finding.found, "present");
}

#[test]
fn a_deleted_account_is_detected() {
    let bob = pristine().bob;
    let report = tamper(|c| {
        exec(
            c,
            1,
            "DELETE FROM accounts WHERE number = ?1",
            [bob.0 as i64],
        )
    });
    let finding = detected(&report, Check::Ledger, &format!("table accounts row {bob}"));
    assert_eq!(finding.found, "missing");
}

#[test]
fn a_changed_merchant_account_is_detected() {
    let p = pristine();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE merchants SET account = ?1 WHERE merchant = ?2",
            params![p.alice.0 as i64, p.tea.as_bytes()],
        )
    });
    let moved = detected(
        &report,
        Check::Ledger,
        &format!(
            "table merchants row {} (\"tea\", account {}",
            p.tea, p.alice
        ),
    );
    assert_eq!(moved.found, "present");
    let lost = detected(
        &report,
        Check::Ledger,
        &format!(
            "table merchants row {} (\"tea\", account {}",
            p.tea, p.tea_account
        ),
    );
    assert_eq!(lost.found, "missing");
}

#[test]
fn a_deleted_intent_is_detected() {
    let (request, _, _) = pristine().snapshot.intents[0].clone();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "DELETE FROM intents WHERE request_id = ?1",
            [&request.as_bytes()[..]],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table intents row {request}"),
    );
    assert_eq!(finding.found, "missing");
}

#[test]
fn a_rebound_account_key_is_detected() {
    let p = pristine();
    let intruder =
        scrip_proto::crypto::SigningKey::from_secret(&Secret32::from_bytes([42; 32])).public_key();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE accounts SET account_key = ?1 WHERE number = ?2",
            params![intruder.as_bytes().as_slice(), p.alice.0 as i64],
        )
    });
    let found = detected(
        &report,
        Check::Ledger,
        &format!("table accounts row {} (PIN hash digest", p.alice),
    );
    assert!(
        found.found == "present" || found.found == "missing",
        "{found:?}"
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.location.contains(&intruder.to_string())),
        "the intruder's key is named: {:#?}",
        report.findings
    );
}

#[test]
fn a_replaced_pin_hash_is_detected() {
    let p = pristine();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE accounts SET pin_hash = 'attacker-chosen' WHERE number = ?1",
            params![p.alice.0 as i64],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table accounts row {} (PIN hash digest", p.alice),
    );
}

#[test]
fn a_renamed_merchant_is_detected() {
    let p = pristine();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE merchants SET name = 'news2' WHERE merchant = ?1",
            params![p.tea.as_bytes().as_slice()],
        )
    });
    let found = detected(
        &report,
        Check::Ledger,
        &format!("table merchants row {} (\"news2\"", p.tea),
    );
    assert_eq!(found.found, "present");
}

#[test]
fn a_replaced_licence_is_detected() {
    let p = pristine();
    let forged = scrip_proto::encode(
        &scrip_core::MerchantKeys::from_seed(&Secret32::from_bytes([9; 32])).licence(1),
    );
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE merchants SET licence = ?1 WHERE merchant = ?2",
            params![forged, p.tea.as_bytes().as_slice()],
        )
    });
    let found = detected(
        &report,
        Check::Ledger,
        &format!("table merchants row {} (\"tea\"", p.tea),
    );
    assert!(
        found.found == "present" || found.found == "missing",
        "{found:?}"
    );
}

// ---- Wrong PINs and account locks -------------------------------------------

#[test]
fn a_lifted_account_lock_is_detected() {
    let carol = pristine().carol;
    let report = tamper(|c| {
        exec(
            c,
            1,
            "DELETE FROM pin_failures WHERE account = ?1",
            [carol.0 as i64],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table pin_failures row {carol}"),
    );
    assert_eq!(finding.found, "missing");
}

#[test]
fn a_lowered_wrong_pin_count_is_detected() {
    let carol = pristine().carol;
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE pin_failures SET failures = 1 WHERE account = ?1",
            [carol.0 as i64],
        )
    });
    detected_where(
        &report,
        Check::Ledger,
        &format!("table pin_failures row {carol} (1 wrong PINs"),
        |f| f.found == "present",
    );
}

#[test]
fn a_lock_cut_short_is_detected() {
    let p = pristine();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "UPDATE pin_failures SET locked_until = ?2 WHERE account = ?1",
            [p.carol.0 as i64, p.now.0 as i64],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!(
            "table pin_failures row {} (5 wrong PINs in a row, locked at",
            p.carol
        ),
    );
}

#[test]
fn a_lock_of_no_event_is_detected() {
    // An insider locking a customer out behind the log's back.
    let p = pristine();
    let report = tamper(|c| {
        exec(
            c,
            1,
            "INSERT INTO pin_failures (account, failures, locked_at) VALUES (?1, 5, ?2)",
            [p.alice.0 as i64, p.now.0 as i64],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table pin_failures row {}", p.alice),
    );
    assert_eq!(finding.expected, "absent: the log records no such thing");
}
