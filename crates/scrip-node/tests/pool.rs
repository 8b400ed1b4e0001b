//! The broker's connections as a broker process uses them, through
//! `BrokerService::handle`: reads are answered while another connection
//! holds the writer lock, and a connection the database server kills is
//! replaced without restarting the process. On SQLite, and on PostgreSQL
//! when `SCRIP_TEST_POSTGRES_URL` is set (skipped with a note otherwise).

mod common;

use std::time::{Duration, Instant};

use common::{broker, open_account};
use libp2p::PeerId;
use rand::rngs::OsRng;
use scrip_core::store::PendingRequest;
use scrip_core::{Wallet, WalletKeys};
use scrip_node::broker::BrokerService;
use scrip_node::node::Inbound;
use scrip_node::protocol;
use scrip_proto::msg::{
    AuditRequest, AuditResponse, BrokerAnswer, BrokerRequest, BrokerResponse, MerchantEntry,
};
use scrip_proto::{decode, Amount, Refusal, Secret32};
use scrip_store::BrokerDatabase;
use scrip_store_postgres::testing::{self, TestSchema};
use scrip_store_sqlite::SqliteWalletStore;

/// A broker service on `database` with one account holding 10 EUR, and a
/// wallet of that account.
struct Served {
    service: BrokerService,
    wallet: Wallet,
    wallet_store: SqliteWalletStore,
    account: scrip_proto::AccountNumber,
    pin: scrip_proto::Pin,
}

fn serve(database: &BrokerDatabase) -> Served {
    let seed = Secret32::random(&mut OsRng);
    let operator = broker(&seed);
    let mut books = database.open().unwrap();
    let alice = open_account(&operator, &mut books, "alice", "10");
    drop(books);
    let wallet = Wallet::new(
        WalletKeys::from_seed(&Secret32::random(&mut OsRng)),
        operator.info(),
    );
    Served {
        service: BrokerService::new(broker(&seed), database.pool().unwrap()),
        wallet,
        wallet_store: SqliteWalletStore::open_in_memory().unwrap(),
        account: alice.number,
        pin: alice.pin,
    }
}

impl Served {
    fn ask(&self, protocol: libp2p::StreamProtocol, request: Vec<u8>) -> Vec<u8> {
        self.service.handle(Inbound {
            peer: PeerId::random(),
            protocol,
            request,
        })
    }

    /// A new Obtain BrokerScrip request for 1 EUR.
    fn order(&mut self) -> PendingRequest {
        self.wallet
            .obtain_broker_scrip(
                &mut self.wallet_store,
                &mut OsRng,
                self.account,
                self.pin.clone(),
                Amount::from_major(1).unwrap(),
            )
            .unwrap()
    }

    /// Sends the request's bytes (again, for a retry) and returns the answer.
    fn send(&self, pending: &PendingRequest) -> BrokerResponse {
        let request: BrokerRequest = decode(&pending.request).unwrap();
        let answer = self.ask(
            protocol::for_broker_request(&request),
            pending.request.clone(),
        );
        decode::<BrokerAnswer>(&answer).unwrap().response
    }

    fn checkpoint(&self) -> AuditResponse {
        let request = scrip_proto::encode(&AuditRequest::Checkpoint);
        decode(&self.ask(protocol::AUDIT, request)).unwrap()
    }

    fn directory(&self) -> Result<Vec<MerchantEntry>, Refusal> {
        decode(&self.ask(protocol::MERCHANTS, Vec::new())).unwrap()
    }
}

fn issued(response: &BrokerResponse) -> bool {
    matches!(response, BrokerResponse::BrokerScripIssued(_))
}

/// Reads while another connection holds the writer lock, which would make
/// a read that took it wait ten seconds and fail as unavailable.
fn reads_are_answered_while_the_writer_lock_is_held(
    database: &BrokerDatabase,
    hold_writer_lock: impl FnOnce() -> Box<dyn FnOnce()>,
) {
    let mut served = serve(database);
    let order = served.order();
    assert!(issued(&served.send(&order)));
    let release = hold_writer_lock();
    let started = Instant::now();
    assert_eq!(served.directory(), Ok(Vec::new()));
    assert!(
        matches!(served.checkpoint(), AuditResponse::Checkpoint(_)),
        "the checkpoint is read beside the writer"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the reads waited for the writer lock"
    );
    release();
    let order = served.order();
    assert!(issued(&served.send(&order)));
}

#[test]
fn on_sqlite_reads_are_answered_while_another_connection_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    reads_are_answered_while_the_writer_lock_is_held(&BrokerDatabase::Sqlite(path.clone()), || {
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        Box::new(move || holder.execute_batch("ROLLBACK").unwrap())
    });
}

#[test]
fn on_postgres_reads_are_answered_while_another_connection_holds_the_writer_lock() {
    let Some(base) = testing::test_url() else {
        testing::skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    let url = schema.url();
    reads_are_answered_while_the_writer_lock_is_held(
        &BrokerDatabase::Postgres(url.clone()),
        || {
            let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            holder
                .batch_execute("BEGIN; SELECT id FROM writer FOR UPDATE")
                .unwrap();
            Box::new(move || holder.batch_execute("ROLLBACK").unwrap())
        },
    );
}

/// Ends every connection whose `application_name` is `name` and waits until
/// the server has closed them; returns how many there were.
fn kill_connections(url: &str, name: &str) -> i64 {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    // A bound on a test that would otherwise hang, not a measurement.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            return killed;
        }
        assert!(
            Instant::now() < deadline,
            "the connections outlived their end"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn on_postgres_a_connection_the_server_ends_is_replaced_without_a_restart() {
    let Some(base) = testing::test_url() else {
        testing::skipped();
        return;
    };
    let schema = TestSchema::new(&base).unwrap();
    // Names the broker's connections, so only they are ended.
    let url = format!("{}&application_name={}", schema.url(), schema.name());
    let mut served = serve(&BrokerDatabase::Postgres(url.clone()));
    let order = served.order();
    assert!(issued(&served.send(&order)));
    assert!(matches!(served.checkpoint(), AuditResponse::Checkpoint(_)));

    assert!(
        kill_connections(&schema.url(), schema.name()) >= 2,
        "the writer and a reader"
    );

    // The step that finds the writer's connection gone is unavailable, an
    // ambiguous answer; the same bytes again are answered on a new one.
    let order = served.order();
    let first = served.send(&order);
    assert!(
        issued(&first) || first == BrokerResponse::Refused(Refusal::Unavailable),
        "{first:?}"
    );
    let retried = served.send(&order);
    assert!(issued(&retried), "{retried:?}");
    if issued(&first) {
        assert_eq!(retried, first, "a retry gets the stored answer");
    }
    let next = served.order();
    assert!(issued(&served.send(&next)));

    // Reads too: at most one is unavailable, then they are answered again.
    let first = served.checkpoint();
    assert!(
        matches!(
            first,
            AuditResponse::Checkpoint(_) | AuditResponse::Refused(Refusal::Unavailable)
        ),
        "{first:?}"
    );
    assert!(matches!(served.checkpoint(), AuditResponse::Checkpoint(_)));
    assert_eq!(served.directory(), Ok(Vec::new()));
}
