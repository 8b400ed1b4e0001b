//! Tampering with the broker's database is caught by the audit, after GNU
//! Taler's auditor tests: one pristine database from a real run, then, on a
//! copy of it per test, one targeted modification made behind the broker's
//! back with raw SQL. The audit, with the broker's public key only, must fail
//! and name the table and row, or the log leaf, that was touched.
//!
//! Every case runs on SQLite and on PostgreSQL ([`on_each_backend!`]), each
//! with a pristine database of its own made by the same run. The SQL is
//! written once, in what both accept, with `?1` placeholders.

use std::io::{Read, Write};
use std::sync::OnceLock;

use rusqlite::Connection;
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
use scrip_store::{BrokerDatabase, BrokerDb};
use scrip_tests::{amount, on_each_backend, Backend, Sim};

/// The untouched database of a real run, and what the tests know about it.
struct Pristine {
    db: Dump,
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

/// The pristine database, as it is copied for each test.
enum Dump {
    /// The file's bytes, with its WAL checkpointed in.
    Sqlite(Vec<u8>),
    /// Each table's rows in `COPY … (FORMAT binary)`, in an order that
    /// restores rows before the rows that refer to them.
    Postgres(Vec<(String, Vec<u8>)>),
}

/// The pristine database on the kind of `backend`, made on first use.
fn pristine(backend: &Backend) -> &'static Pristine {
    static SQLITE: OnceLock<Pristine> = OnceLock::new();
    static POSTGRES: OnceLock<Pristine> = OnceLock::new();
    match backend {
        Backend::Postgres(_) => POSTGRES.get_or_init(|| {
            build_pristine(Backend::postgres().expect("SCRIP_TEST_POSTGRES_URL is set"))
        }),
        Backend::SqliteMemory | Backend::SqliteFile(_) => {
            SQLITE.get_or_init(|| build_pristine(Backend::SqliteMemory.durable()))
        }
    }
}

/// A real run on a durable broker store: accounts, deposits, a
/// withdrawal, BrokerScrip, VendorScrip at two merchants, purchases with
/// change, settlement, role inversion, a refused double spend, a wrong PIN,
/// and an account locked after wrong PINs, unlocked, and locked again.
fn build_pristine(backend: Backend) -> Pristine {
    let mut sim = Sim::on(backend, 11);
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
    let snapshot = sim.audit_snapshot();
    let database = sim.backend.database().expect("a durable backend");
    // The run's connections closed, its database kept until dumped.
    let backend = std::mem::replace(&mut sim.backend, Backend::SqliteMemory);
    drop(sim);
    let db = match &database {
        BrokerDatabase::Sqlite(path) => {
            // Fold the WAL into the main file, so the file alone is the database.
            let conn = Connection::open(path).unwrap();
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .unwrap();
            assert_eq!(busy, 0, "the WAL could not be checkpointed");
            drop(conn);
            Dump::Sqlite(std::fs::read(path).unwrap())
        }
        BrokerDatabase::Postgres(url) => Dump::Postgres(dump_postgres(url)),
    };
    drop(backend);
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

/// Tables the migrations make and fill themselves: not copied.
const BOOKKEEPING: [&str; 2] = ["scrip_schema", "writer"];

/// Every table of the schema the connection works in but [`BOOKKEEPING`],
/// tables with foreign keys last, with their rows.
fn dump_postgres(url: &str) -> Vec<(String, Vec<u8>)> {
    let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
             ORDER BY EXISTS (SELECT 1 FROM pg_constraint f
                              WHERE f.conrelid = c.oid AND f.contype = 'f'), c.relname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .filter(|table: &String| !BOOKKEEPING.contains(&table.as_str()))
        .collect();
    assert!(tables.iter().any(|t| t == "events"), "tables: {tables:?}");
    tables
        .into_iter()
        .map(|table| {
            let mut rows = Vec::new();
            client
                .copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
                .unwrap()
                .read_to_end(&mut rows)
                .unwrap();
            (table, rows)
        })
        .collect()
}

/// A copy of the pristine database, on one backend, for one test.
struct DbCopy {
    /// What the tests know about the database copied.
    p: &'static Pristine,
    database: BrokerDatabase,
    /// Keeps the copy (a temporary file or schema) for the test.
    _backend: Backend,
}

impl DbCopy {
    /// Copies the pristine database of `backend`'s kind into it: the file
    /// into a temporary directory, or the rows into the fresh schema.
    fn new(backend: Backend) -> DbCopy {
        let p = pristine(&backend);
        let backend = backend.durable();
        let database = backend.database().expect("a durable backend");
        match (&p.db, &database) {
            (Dump::Sqlite(bytes), BrokerDatabase::Sqlite(path)) => {
                std::fs::write(path, bytes).unwrap();
            }
            (Dump::Postgres(tables), BrokerDatabase::Postgres(url)) => {
                // The broker's own migrations make the tables, keys and checks.
                drop(database.open().unwrap());
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
                let mut tx = client.transaction().unwrap();
                for (table, rows) in tables {
                    let mut copy = tx
                        .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
                        .unwrap();
                    copy.write_all(rows).unwrap();
                    copy.finish().unwrap();
                }
                tx.commit().unwrap();
            }
            _ => unreachable!("a pristine database of the backend's own kind"),
        }
        DbCopy {
            p,
            database,
            _backend: backend,
        }
    }

    /// The copy as the broker opens it.
    fn store(&self) -> BrokerDb {
        self.database.open().unwrap()
    }

    /// Reads the copy as the auditor does, and audits it.
    fn audit(&self) -> Result<AuditReport, StoreError> {
        let snapshot = self.database.open()?.begin()?.snapshot()?;
        Ok(audit(&self.p.broker, &snapshot, self.p.now))
    }

    /// Tampers with the copy through a raw connection, then audits it.
    fn tamper(&self, modify: impl FnOnce(&mut Sql)) -> AuditReport {
        modify(&mut self.sql());
        self.audit()
            .expect("the tampered database still gives a snapshot")
    }

    /// A raw connection to the copy, behind the broker's back.
    fn sql(&self) -> Sql {
        match &self.database {
            BrokerDatabase::Sqlite(path) => Sql::Sqlite(Connection::open(path).unwrap()),
            BrokerDatabase::Postgres(url) => {
                Sql::Postgres(::postgres::Client::connect(url, ::postgres::NoTls).unwrap())
            }
        }
    }
}

/// A raw connection to either backend.
enum Sql {
    Sqlite(Connection),
    Postgres(::postgres::Client),
}

/// A statement parameter, bound as each backend's type of the column.
enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// What a tamper case passes as a parameter.
trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).expect("a stored integer"))
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl Sql {
    /// Runs one statement, written with `?1`, `?2`… placeholders (PostgreSQL
    /// gets `$1`, `$2`…), and returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[&dyn ToValue]) -> usize {
        let params: Vec<Value> = params.iter().map(|p| p.to_value()).collect();
        match self {
            Sql::Sqlite(conn) => {
                let params = params.iter().map(|value| match value {
                    Value::Int(i) => rusqlite::types::Value::Integer(*i),
                    Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
                    Value::Bytes(b) => rusqlite::types::Value::Blob(b.clone()),
                });
                conn.execute(sql, rusqlite::params_from_iter(params))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Sql::Postgres(client) => {
                let params: Vec<&(dyn ::postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|value| -> &(dyn ::postgres::types::ToSql + Sync) {
                        match value {
                            Value::Int(i) => i,
                            Value::Text(s) => s,
                            Value::Bytes(b) => b,
                        }
                    })
                    .collect();
                let changed = client
                    .execute(&sql.replace('?', "$"), &params)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                usize::try_from(changed).unwrap()
            }
        }
    }

    /// Runs one statement that must change exactly `rows` rows.
    fn exec(&mut self, rows: usize, sql: &str, params: &[&dyn ToValue]) {
        assert_eq!(self.execute(sql, params), rows, "{sql}");
    }
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

impl Pristine {
    fn log_size(&self) -> u64 {
        self.snapshot.leaves.len() as u64
    }

    /// The first log leaf whose event matches, with its index.
    fn leaf_where(&self, matches: impl Fn(&BrokerEvent) -> bool) -> (u64, BrokerEvent) {
        self.snapshot
            .leaves
            .iter()
            .map(|leaf| decode::<BrokerEvent>(leaf).unwrap())
            .enumerate()
            .find(|(_, event)| matches(event))
            .map(|(index, event)| (index as u64, event))
            .expect("the pristine log has such an event")
    }

    fn leaf_exists(&self, matches: impl Fn(&BrokerEvent) -> bool) -> bool {
        self.snapshot
            .leaves
            .iter()
            .any(|leaf| matches(&decode::<BrokerEvent>(leaf).unwrap()))
    }
}

/// The number of stored tree hashes of a log of `leaves` leaves (tlog
/// layout): the stored-hash index of the next leaf.
fn hashes_for(leaves: u64) -> u64 {
    2 * leaves - u64::from(leaves.count_ones())
}

fn plus_minor(amount: Amount, minor: u64) -> Amount {
    Amount::from_minor(amount.as_i64() as u64 + minor).unwrap()
}

on_each_backend!(
    the_untouched_copy_audits_clean,
    a_changed_customer_balance_is_detected,
    a_changed_outstanding_broker_scrip_balance_is_detected,
    a_credit_with_no_event_is_detected,
    a_deleted_balance_row_is_detected,
    a_balance_row_of_no_ledger_account_is_detected,
    a_changed_journal_amount_is_detected,
    a_deleted_journal_row_is_detected,
    a_changed_amount_inside_a_log_leaf_is_detected,
    an_undecodable_log_leaf_is_detected,
    a_deleted_last_log_entry_is_detected,
    a_deleted_middle_log_entry_leaving_a_gap_is_detected_by_the_store,
    a_deleted_middle_log_entry_renumbered_is_detected,
    two_reordered_log_entries_are_detected,
    a_truncated_log_is_detected,
    a_log_rolled_back_to_an_earlier_checkpoint_is_detected,
    an_altered_stored_log_hash_is_detected,
    a_deleted_stored_log_hash_is_detected,
    a_forged_leaf_appended_without_a_checkpoint_is_detected,
    a_checkpoint_signed_by_another_key_is_detected,
    a_deleted_latest_checkpoint_is_detected,
    a_checkpoint_moved_to_another_size_is_detected,
    a_deleted_spent_broker_scrip_row_is_detected,
    a_fake_spent_broker_scrip_id_is_detected,
    an_altered_price_inside_a_payment_record_is_detected,
    a_deleted_payment_row_is_detected,
    a_fake_account_is_detected,
    a_deleted_account_is_detected,
    a_changed_merchant_account_is_detected,
    a_deleted_intent_is_detected,
    a_rebound_account_key_is_detected,
    a_replaced_pin_hash_is_detected,
    a_renamed_merchant_is_detected,
    a_replaced_licence_is_detected,
    a_lifted_account_lock_is_detected,
    a_lowered_wrong_pin_count_is_detected,
    a_lock_cut_short_is_detected,
    a_lock_of_no_event_is_detected,
);

// ---- The control ------------------------------------------------------------

fn the_untouched_copy_audits_clean(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let report = copy.audit().unwrap();
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
    assert_eq!(report.log_size, p.log_size());
    assert_eq!(
        report.latest_checkpoint.as_ref().map(|c| c.size),
        Some(p.log_size())
    );
    assert_eq!(p.snapshot.hashes.len() as u64, hashes_for(p.log_size()));
    // The run exercised every kind of event the tests below tamper with.
    for (kind, present) in [
        (
            "deposit",
            p.leaf_exists(|e| matches!(e, BrokerEvent::Deposit { .. })),
        ),
        (
            "withdrawal",
            p.leaf_exists(|e| matches!(e, BrokerEvent::Withdrawal { .. })),
        ),
        (
            "exchange",
            p.leaf_exists(|e| matches!(e, BrokerEvent::VendorScripExchanged { .. })),
        ),
        (
            "payment",
            p.leaf_exists(|e| matches!(e, BrokerEvent::PaymentRecorded { .. })),
        ),
    ] {
        assert!(present, "no {kind} in the pristine log");
    }
    assert!(matches!(
        decode::<BrokerEvent>(p.snapshot.leaves.last().unwrap()).unwrap(),
        BrokerEvent::PaymentRecorded { .. }
    ));
}

// ---- Balances and journal ---------------------------------------------------

fn a_changed_customer_balance_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let alice = format!("customer:{}", p.alice);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE balances SET balance = balance + 100 WHERE account = ?1",
            &[&alice],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table balances row {alice}"),
    );
    detected(&report, Check::Conservation, "table balances");
}

fn a_changed_outstanding_broker_scrip_balance_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE balances SET balance = balance - 1 WHERE account = 'outstanding-broker-scrip'",
            &[],
        )
    });
    detected(
        &report,
        Check::Ledger,
        "table balances row outstanding-broker-scrip",
    );
}

fn a_credit_with_no_event_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    // A balanced deposit, journal row and all, that the log never saw. The
    // next seq is given, as PostgreSQL's journal has no sequence.
    let alice = format!("customer:{}", p.alice);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "INSERT INTO journal (seq, kind, from_account, to_account, amount, at)
             SELECT (SELECT MAX(seq) + 1 FROM journal), kind, from_account, to_account, 100000, at
             FROM journal WHERE to_account = ?1 ORDER BY seq LIMIT 1",
            &[&alice],
        );
        c.exec(
            1,
            "UPDATE balances SET balance = balance + 100000 WHERE account = ?1",
            &[&alice],
        );
        c.exec(
            1,
            "UPDATE balances SET balance = balance - 100000 WHERE account = 'money-in'",
            &[],
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

fn a_deleted_balance_row_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let report =
        copy.tamper(|c| c.exec(1, "DELETE FROM balances WHERE account = 'money-out'", &[]));
    detected(&report, Check::Ledger, "table balances row money-out");
}

fn a_balance_row_of_no_ledger_account_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "INSERT INTO balances (account, balance) VALUES ('slush-fund', 500)",
            &[],
        )
    });
    detected(
        &report,
        Check::Conservation,
        "table balances row slush-fund",
    );
}

fn a_changed_journal_amount_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let seq = p.snapshot.journal[2].0;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE journal SET amount = amount + 1 WHERE seq = ?1",
            &[&seq],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table journal row seq {seq}"),
    );
}

fn a_deleted_journal_row_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let seq = p.snapshot.journal[2].0;
    let report = copy.tamper(|c| c.exec(1, "DELETE FROM journal WHERE seq = ?1", &[&seq]));
    let finding = detected_where(&report, Check::Ledger, "table journal", |f| {
        f.location == "table journal"
    });
    assert_eq!(
        finding.found,
        format!("{} rows", p.snapshot.journal.len() - 1)
    );
}

// ---- The log ------------------------------------------------------------------

fn a_changed_amount_inside_a_log_leaf_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let (index, event) = p.leaf_where(|e| matches!(e, BrokerEvent::Deposit { .. }));
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
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            &[&encode(&forged), &(index + 1)],
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
        &format!("table checkpoints row size {}", p.log_size()),
        |f| f.found.contains("altered"),
    );
    detected(
        &report,
        Check::Ledger,
        &format!("table balances row customer:{account}"),
    );
}

fn an_undecodable_log_leaf_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let (index, _) = p.leaf_where(|e| matches!(e, BrokerEvent::Withdrawal { .. }));
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            &[&[0xff_u8, 0x00, 0xff], &(index + 1)],
        )
    });
    detected_where(&report, Check::Log, &format!("log leaf {index}"), |f| {
        f.location == format!("log leaf {index}") && f.found.contains("do not decode")
    });
}

fn a_deleted_last_log_entry_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let n = p.log_size();
    let report = copy.tamper(|c| c.exec(1, "DELETE FROM events WHERE seq = ?1", &[&n]));
    detected_where(
        &report,
        Check::Log,
        &format!("table checkpoints row size {n}"),
        |f| f.found.contains("truncated or rolled back"),
    );
}

fn a_deleted_middle_log_entry_leaving_a_gap_is_detected_by_the_store(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let seq = p.log_size() / 2;
    copy.sql()
        .exec(1, "DELETE FROM events WHERE seq = ?1", &[&seq]);
    let error = copy
        .audit()
        .expect_err("the store refuses to read a log with a gap");
    let expected = format!("gap or reordering at events.seq {}", seq + 1);
    assert!(error.to_string().contains(&expected), "{error}");
    println!("detected by the store: {error}");
}

fn a_deleted_middle_log_entry_renumbered_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let seq = p.log_size() / 2;
    let report = copy.tamper(|c| {
        c.exec(1, "DELETE FROM events WHERE seq = ?1", &[&seq]);
        let later = (p.log_size() - seq) as usize;
        c.exec(
            later,
            "UPDATE events SET seq = -seq WHERE seq > ?1",
            &[&seq],
        );
        c.exec(later, "UPDATE events SET seq = -seq - 1 WHERE seq < 0", &[]);
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
        &format!("table checkpoints row size {}", p.log_size()),
        |f| f.found.contains("truncated or rolled back"),
    );
}

fn two_reordered_log_entries_are_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let (index, _) = p.leaf_where(|e| matches!(e, BrokerEvent::Withdrawal { .. }));
    let leaves = &p.snapshot.leaves;
    let (a, b) = (&leaves[index as usize], &leaves[index as usize + 1]);
    assert_ne!(a, b);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            &[b, &(index + 1)],
        );
        c.exec(
            1,
            "UPDATE events SET bytes = ?1 WHERE seq = ?2",
            &[a, &(index + 2)],
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
        &format!("table checkpoints row size {}", p.log_size()),
        |f| f.found.contains("reordered"),
    );
}

fn a_truncated_log_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    // The last three leaves and their hashes go; the signed checkpoints stay.
    let (n, kept) = (p.log_size(), p.log_size() - 3);
    let report = copy.tamper(|c| {
        c.exec(3, "DELETE FROM events WHERE seq > ?1", &[&kept]);
        let hashes = (hashes_for(n) - hashes_for(kept)) as usize;
        c.exec(
            hashes,
            "DELETE FROM log_hashes WHERE idx >= ?1",
            &[&hashes_for(kept)],
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

fn a_log_rolled_back_to_an_earlier_checkpoint_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    // Leaves, hashes and checkpoints after size `kept` go: the log is a
    // valid, signed log of `kept` leaves, and the tables no longer match it.
    let kept = p.log_size() - 3;
    let report = copy.tamper(|c| {
        c.exec(3, "DELETE FROM events WHERE seq > ?1", &[&kept]);
        let hashes = (hashes_for(p.log_size()) - hashes_for(kept)) as usize;
        c.exec(
            hashes,
            "DELETE FROM log_hashes WHERE idx >= ?1",
            &[&hashes_for(kept)],
        );
        c.exec(3, "DELETE FROM checkpoints WHERE size > ?1", &[&kept]);
    });
    assert!(
        report.findings.iter().all(|f| f.check != Check::Log),
        "the rolled-back log is itself consistent: {:#?}",
        report.findings
    );
    let BrokerEvent::PaymentRecorded {
        merchant, scrip, ..
    } = decode(p.snapshot.leaves.last().unwrap()).unwrap()
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

fn an_altered_stored_log_hash_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE log_hashes SET hash = ?1 WHERE idx = 7",
            &[&[0_u8; 32]],
        )
    });
    let finding = detected(&report, Check::Log, "table log_hashes row idx 7 (");
    assert_eq!(finding.found, "00".repeat(32));
}

fn a_deleted_stored_log_hash_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let report = copy.tamper(|c| c.exec(1, "DELETE FROM log_hashes WHERE idx = 9", &[]));
    let finding = detected(&report, Check::Log, "table log_hashes row idx 9 (");
    assert_eq!(finding.found, "missing");
}

fn a_forged_leaf_appended_without_a_checkpoint_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let n = p.log_size();
    let forged = BrokerEvent::Deposit {
        account: p.alice,
        amount: amount("1000"),
        at: p.now,
    };
    {
        let mut store = copy.store();
        let mut tx = store.begin().unwrap();
        assert_eq!(
            scrip_core::log::append(&mut tx, &encode(&forged)).unwrap(),
            n
        );
        tx.commit().unwrap();
    }
    let report = copy.audit().unwrap();
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

fn a_checkpoint_signed_by_another_key_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let n = p.log_size();
    let other = SigningKey::from_secret(&Secret32::from_bytes([7; 32]));
    let true_root = p
        .snapshot
        .checkpoints
        .iter()
        .find(|(size, _)| *size == n)
        .map(|(_, note)| verify_checkpoint(&p.broker, note).unwrap().root)
        .unwrap();
    {
        let mut store = copy.store();
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
    }
    let report = copy.audit().unwrap();
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

fn a_deleted_latest_checkpoint_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let n = p.log_size();
    let report = copy.tamper(|c| c.exec(1, "DELETE FROM checkpoints WHERE size = ?1", &[&n]));
    detected_where(&report, Check::Log, "table checkpoints (latest)", |f| {
        f.found.contains(&format!("covers {}:", n - 1))
    });
}

fn a_checkpoint_moved_to_another_size_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let n = p.log_size();
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE checkpoints SET size = ?1 WHERE size = ?2",
            &[&(n + 5), &n],
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

fn a_deleted_spent_broker_scrip_row_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let id = p.snapshot.spent_broker_scrip[0].clone();
    let report = copy.tamper(|c| c.exec(1, "DELETE FROM spent_broker_scrip WHERE id = ?1", &[&id]));
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table spent_broker_scrip row {}", hex(&id)),
    );
    assert_eq!(finding.found, "missing");
}

fn a_fake_spent_broker_scrip_id_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let id = [0xab_u8; 20];
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "INSERT INTO spent_broker_scrip (id, expiry) VALUES (?1, 0)",
            &[&id],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table spent_broker_scrip row {}", hex(&id)),
    );
    assert_eq!(finding.found, "present");
}

fn an_altered_price_inside_a_payment_record_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let (merchant, scrip, bytes) = p.snapshot.payments[0].clone();
    let mut record: PaymentRecord = decode(&bytes).unwrap();
    let price = plus_minor(record.buy.body.price, 1);
    record.buy.body.price = price;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE payments SET record = ?1 WHERE merchant = ?2 AND scrip = ?3",
            &[&encode(&record), merchant.as_bytes(), &scrip],
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

fn a_deleted_payment_row_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let (merchant, scrip, _) = p.snapshot.payments[0].clone();
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "DELETE FROM payments WHERE merchant = ?1 AND scrip = ?2",
            &[merchant.as_bytes(), &scrip],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table payments row {merchant}/{}", hex(&scrip)),
    );
    assert_eq!(finding.found, "missing");
}

fn a_fake_account_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "INSERT INTO accounts (number, name, pin_hash, account_key, opened_at)
             VALUES (999999999999, 'mallory', 'x', NULL, 1800000000)",
            &[],
        )
    });
    let finding = detected(&report, Check::Ledger, "table accounts row 999999999999");
    assert_eq!(finding.found, "present");
}

fn a_deleted_account_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let bob = p.bob;
    let report = copy.tamper(|c| c.exec(1, "DELETE FROM accounts WHERE number = ?1", &[&bob.0]));
    let finding = detected(&report, Check::Ledger, &format!("table accounts row {bob}"));
    assert_eq!(finding.found, "missing");
}

fn a_changed_merchant_account_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE merchants SET account = ?1 WHERE merchant = ?2",
            &[&p.alice.0, p.tea.as_bytes()],
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

fn a_deleted_intent_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let (request, _, _) = p.snapshot.intents[0].clone();
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "DELETE FROM intents WHERE request_id = ?1",
            &[request.as_bytes()],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table intents row {request}"),
    );
    assert_eq!(finding.found, "missing");
}

fn a_rebound_account_key_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let intruder =
        scrip_proto::crypto::SigningKey::from_secret(&Secret32::from_bytes([42; 32])).public_key();
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE accounts SET account_key = ?1 WHERE number = ?2",
            &[intruder.as_bytes(), &p.alice.0],
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

fn a_replaced_pin_hash_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE accounts SET pin_hash = 'attacker-chosen' WHERE number = ?1",
            &[&p.alice.0],
        )
    });
    detected(
        &report,
        Check::Ledger,
        &format!("table accounts row {} (PIN hash digest", p.alice),
    );
}

fn a_renamed_merchant_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE merchants SET name = 'news2' WHERE merchant = ?1",
            &[p.tea.as_bytes()],
        )
    });
    let found = detected(
        &report,
        Check::Ledger,
        &format!("table merchants row {} (\"news2\"", p.tea),
    );
    assert_eq!(found.found, "present");
}

fn a_replaced_licence_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let forged = scrip_proto::encode(
        &scrip_core::MerchantKeys::from_seed(&Secret32::from_bytes([9; 32])).licence(1),
    );
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE merchants SET licence = ?1 WHERE merchant = ?2",
            &[&forged, p.tea.as_bytes()],
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

fn a_lifted_account_lock_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let carol = p.carol;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "DELETE FROM pin_failures WHERE account = ?1",
            &[&carol.0],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table pin_failures row {carol}"),
    );
    assert_eq!(finding.found, "missing");
}

fn a_lowered_wrong_pin_count_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let carol = p.carol;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE pin_failures SET failures = 1 WHERE account = ?1",
            &[&carol.0],
        )
    });
    detected_where(
        &report,
        Check::Ledger,
        &format!("table pin_failures row {carol} (1 wrong PINs"),
        |f| f.found == "present",
    );
}

fn a_lock_cut_short_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "UPDATE pin_failures SET locked_until = ?2 WHERE account = ?1",
            &[&p.carol.0, &p.now.0],
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

fn a_lock_of_no_event_is_detected(backend: Backend) {
    let copy = DbCopy::new(backend);
    let p = copy.p;
    // An insider locking a customer out behind the log's back.
    let report = copy.tamper(|c| {
        c.exec(
            1,
            "INSERT INTO pin_failures (account, failures, locked_at) VALUES (?1, 5, ?2)",
            &[&p.alice.0, &p.now.0],
        )
    });
    let finding = detected(
        &report,
        Check::Ledger,
        &format!("table pin_failures row {}", p.alice),
    );
    assert_eq!(finding.expected, "absent: the log records no such thing");
}
