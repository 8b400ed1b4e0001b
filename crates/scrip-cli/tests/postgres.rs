//! A broker on PostgreSQL, served by two `scrip broker run` processes of one
//! directory at once: one broker identity, one database.
//!
//! Runs when `SCRIP_TEST_POSTGRES_URL` names a PostgreSQL database (`.ci/run`
//! starts a private cluster); each test works in a fresh schema of it.

mod util;

use std::path::Path;
use std::thread;

use scrip_store_postgres::testing::{skipped, test_url, TestSchema};
use util::{balance, micros, wallet, Item, Network};

const ROUNDS: usize = 4;

fn postgres() -> Option<TestSchema> {
    let Some(url) = test_url() else {
        skipped();
        return None;
    };
    Some(TestSchema::new(&url).expect("a fresh schema"))
}

/// A copy of the wallet of `from` in `to`: the same seed and the same scrip,
/// as a customer who copied their wallet to spend it twice would have.
fn clone_wallet(from: &Path, to: &Path) {
    for file in ["peer.seed", "wallet.db", "wallet.db-wal", "wallet.db-shm"] {
        let _ = std::fs::remove_file(to.join(file));
        if from.join(file).exists() {
            std::fs::copy(from.join(file), to.join(file)).expect("copy the wallet");
        }
    }
}

#[test]
fn two_broker_processes_on_one_database_let_each_broker_scrip_be_spent_once() {
    let Some(schema) = postgres() else { return };
    let url = schema.url();
    let net = Network::start_with(&["--database", &url]);
    // broker.toml holds the URL, which may hold a password: owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(net.broker_dir.join("broker.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!net.broker_dir.join("broker.db").exists(), "no SQLite file");
    let second = net.another_broker_process("broker-2");
    let shop_account = net.open_account("bit shop");
    let (_shop_dir, _shop) = net.merchant(
        "bits",
        &shop_account,
        &[Item {
            id: "bit",
            title: "A bit",
            price: "0.001",
            text: "one bit of news",
        }],
    );
    let mut customers = Vec::new();
    for round in 0..ROUNDS {
        // One wallet holding fresh BrokerScrip through the first process, and
        // its copy talking to the second. (An account is bound to the key of
        // the first wallet that used it: one account per round.)
        let alice = net.funded_account(&format!("alice-{round}"), "10");
        let first = net.peer(&format!("alice-{round}"));
        let obtained = wallet(
            &first,
            &["obtain-broker-scrip", "1", "--account", &alice.number],
        )
        .pin(&alice.pin)
        .ok("broker-scrip-obtained");
        assert_eq!(obtained["scrip"][0]["value"], "1.00", "{obtained}");
        let copy = net.peer_of(&format!("alice-copy-{round}"), &second.address());
        clone_wallet(&first, &copy);

        // Both spend the same BrokerScrip at once, each through its own process.
        let outcomes: Vec<_> = thread::scope(|scope| {
            let spends: Vec<_> = [&first, &copy]
                .into_iter()
                .map(|dir| {
                    scope.spawn(move || {
                        wallet(dir, &["obtain-vendor-scrip", "bits", "0.5"]).outcome()
                    })
                })
                .collect();
            spends.into_iter().map(|s| s.join().unwrap()).collect()
        });
        let won: Vec<_> = outcomes.iter().filter(|o| o.status.success()).collect();
        let lost: Vec<_> = outcomes.iter().filter(|o| !o.status.success()).collect();
        assert_eq!(
            (won.len(), lost.len()),
            (1, 1),
            "round {round}: {outcomes:#?}"
        );
        assert_eq!(lost[0].status.code(), Some(1), "{:#?}", lost[0]);
        assert!(
            lost[0].stderr.contains("already been spent"),
            "a double spend, said so: {}",
            lost[0].stderr
        );
        customers.push(alice);
    }

    // The log is one sequence whichever process wrote it, the books balance,
    // and each round's BrokerScrip was paid for once.
    let audit = net.audit();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(
        audit["refused_double_spends"].as_u64(),
        Some(ROUNDS as u64),
        "{audit}"
    );
    net.assert_conserved();
    for alice in &customers {
        assert_eq!(net.balance(&alice.number), micros("9"));
    }
    drop(second);
    drop(net);
}

/// The rendezvous point is per process (see docs/SCALING.md): the merchant
/// and the buyer meet at the second process, while another customer is
/// served by the first; both write one log, which audits clean.
#[test]
fn both_processes_serve_one_story_and_write_one_log() {
    let Some(schema) = postgres() else { return };
    let net = Network::start_with(&["--database", &schema.url()]);
    let second = net.another_broker_process("broker-2");
    let shop_account = net.open_account("tea shop");
    let shop_dir = net.peer_of("tea", &second.address());
    std::fs::write(
        shop_dir.join("catalog.toml"),
        "[[item]]\nid = \"green\"\ntitle = \"Green tea\"\nprice = \"0.002\"\ntext = \"a cup of green tea\"\n",
    )
    .unwrap();
    let _shop = net.sell(&shop_dir, "tea", &shop_account);

    let bob = net.funded_account("bob", "10");
    let bob_dir = net.peer_of("bob", &second.address());
    let carol = net.funded_account("carol", "10");
    let carol_dir = net.peer("carol");
    thread::scope(|scope| {
        let bob = scope.spawn(|| {
            wallet(
                &bob_dir,
                &["obtain-broker-scrip", "1", "--account", &bob.number],
            )
            .pin(&bob.pin)
            .ok("broker-scrip-obtained");
            let data =
                wallet(&bob_dir, &["buy", "tea", "green", "--top-up", "0.01"]).ok("purchase");
            assert_eq!(data["content"], "a cup of green tea");
        });
        let carol = scope.spawn(|| {
            wallet(
                &carol_dir,
                &["obtain-broker-scrip", "2", "--account", &carol.number],
            )
            .pin(&carol.pin)
            .ok("broker-scrip-obtained");
            wallet(&carol_dir, &["obtain-vendor-scrip", "tea", "0.5"]).ok("vendor-scrip-obtained");
        });
        bob.join().unwrap();
        carol.join().unwrap();
    });
    assert_eq!(balance(&bob_dir).total(), micros("1") - micros("0.002"));
    assert_eq!(balance(&carol_dir).total(), micros("2"));
    net.wait_for_balance(&shop_account.number, micros("0.002"));
    let audit = net.audit();
    assert_eq!(audit["clean"], true, "{audit}");
    net.assert_conserved();
}

/// A second `init` on a database that holds a broker would mix two brokers'
/// logs: it is refused, and leaves no directory behind.
#[test]
fn init_refuses_a_database_that_holds_a_broker() {
    let Some(schema) = postgres() else { return };
    let net = Network::start_with(&["--database", &schema.url()]);
    net.open_account("alice");
    let other = net.path("other-broker");
    let error = util::Scrip::new([
        "broker".as_ref(),
        "init".as_ref(),
        other.as_os_str(),
        "--database".as_ref(),
        schema.url().as_ref(),
    ])
    .fails(2);
    assert!(error.contains("already holds a broker"), "{error}");
    assert!(!other.exists(), "nothing written");
}
