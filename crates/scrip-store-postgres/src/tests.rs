//! The broker store's conformance cases (`scrip-store-conformance`), and the
//! tests that only PostgreSQL can fail: a failed statement ending the step,
//! the writer lock, migrations, refusals of a wrong schema, the password in
//! errors. Each runs in a schema of its own and is skipped (with a note) when
//! `SCRIP_TEST_POSTGRES_URL` is not set.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use scrip_core::store::{BrokerStore, BrokerTx, GroupCommit};
use scrip_proto::{AccountNumber, PublicKey};
use scrip_store_conformance::fixtures::*;
use scrip_store_conformance::Backend;

use crate::testing::{self, skipped, TestSchema};
use crate::{PgBrokerStore, PgBrokerTx};

/// A schema of its own for one test.
struct PgSchema {
    schema: TestSchema,
}

/// A fresh schema, or `None`, after the note that says so, when
/// `SCRIP_TEST_POSTGRES_URL` is not set.
fn backend() -> Option<PgSchema> {
    let Some(base) = testing::test_url() else {
        skipped();
        return None;
    };
    let schema = TestSchema::new(&base).unwrap();
    Some(PgSchema { schema })
}

impl Backend for PgSchema {
    type Store = PgBrokerStore;

    fn open(&self) -> PgBrokerStore {
        connect(&self.schema)
    }

    fn fingerprint(&self, store: &mut PgBrokerStore) -> String {
        store.fingerprint().unwrap()
    }

    fn execute(&self, sql: &str) {
        execute(&self.schema.url(), sql);
    }

    fn bytes_literal(&self, hex: &str) -> String {
        format!("'\\x{hex}'")
    }
}

scrip_store_conformance::broker_store_conformance!(backend());

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

// ---- A failed statement ends the step ------------------------------------

#[test]
fn a_commit_after_a_failed_statement_is_an_error_and_keeps_nothing() {
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
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

/// SQLite carries on after a failed statement; PostgreSQL refuses the rest
/// of the step, so a grouped step that commits anyway is an error and is
/// undone alone, and the group goes on.
#[test]
fn a_commit_after_a_failed_statement_inside_a_group_is_an_error_and_undoes_the_step_alone() {
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
    let mut store = connect(&schema);
    store.begin_group().unwrap();
    begin_a_logged_spend(&mut store, 1).commit().unwrap();
    let mut tx = begin_a_logged_spend(&mut store, 3);
    assert!(tx
        .put_pin_failures(AccountNumber(BOB), &alice_locked())
        .is_err());
    assert!(tx.commit().is_err(), "a step with a failed statement");
    begin_a_logged_spend(&mut store, 4).commit().unwrap();
    store.end_group().unwrap();

    assert_spent_and_logged(&mut connect(&schema), &[1, 4]);
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
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
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
    wait_until_blocked(&schema.url(), pid.recv().unwrap());
    assert_eq!(balance.try_recv(), Err(mpsc::TryRecvError::Empty));
    tx.commit().unwrap();
    assert_eq!(balance.recv().unwrap(), 5);
    second.join().unwrap();
}

// ---- Migrations and refusals ---------------------------------------------

#[test]
fn migrations_are_idempotent_across_reconnects() {
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
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
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
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
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
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
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
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

// ---- A connection the server ends ----------------------------------------

/// Ends the backend `pid` and waits until the server has closed it.
fn terminate(url: &str, pid: i32) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    // A bound on a test that would otherwise hang, not a measurement.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .is_some()
    {
        assert!(Instant::now() < deadline, "backend {pid} outlived its end");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A store whose connection the server ended fails its next step and says
/// it is broken, so a pool replaces it; `check` finds it out without a step.
#[test]
fn a_connection_the_server_ends_is_broken() {
    let Some(PgSchema { schema }) = backend() else {
        return;
    };
    for step_first in [true, false] {
        let mut store = connect(&schema);
        store.check().unwrap();
        let pid: i32 = store
            .connection()
            .client()
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        assert!(!store.is_broken());
        terminate(&schema.url(), pid);
        if step_first {
            let failed = store.begin().err().expect("the connection is gone");
            assert!(
                failed.0.contains("cannot begin broker transaction"),
                "{failed}"
            );
        } else {
            assert!(store.check().is_err());
        }
        assert!(store.is_broken());
    }
}
