//! Crash safety: the broker and a merchant, as real processes, are killed
//! with SIGKILL at random moments while customers keep buying, and are
//! restarted on the same addresses. Some restarts arm the fault hook
//! ([`scrip_node::fault`]): that process then exits by itself right after a
//! group commit, before any answer of the group is sent. Customers whose
//! command failed with an unknown outcome (exit 3) just run the next
//! command, which resends what is pending with the same request id. At the end every wallet settles its
//! pending requests, the merchant forwards its payment records, and the test
//! checks that nothing acknowledged was lost, nothing was done twice, and
//! wallets, merchant and broker agree on every balance, in micro-units.
//!
//! The kill schedule (which process, when, for how long) and the customers'
//! choices come from one seed, printed at the start; `SCRIP_CRASH_SEED=N`
//! runs the schedule of seed N again. Process timing is not seeded, so a
//! rerun follows the same schedule, not necessarily the same interleaving.
//! `SCRIP_CRASH_KEEP=1` keeps the directories and daemon logs.
//!
//! What it can and cannot see: SIGKILL ends a process but not the operating
//! system, so what SQLite wrote survives even without fsync; this checks that
//! nothing is answered before it is committed and that retries are answered
//! from the stored response, not durability across a power cut. A SIGKILL
//! lands between a commit and its answers only now and then; the fault hook
//! lands there every time, at least [`FAULTS_EACH`] times in each process,
//! so a node that does a retried step again instead of answering it from
//! its stored response is caught by every run, not by some.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scrip_core::event::BrokerEvent;
use scrip_core::store::{
    BrokerStore, BrokerTx, Destination, MerchantStore, MerchantTx, WalletReceipt, WalletStore,
    WalletTx,
};
use scrip_node::fault;
use scrip_proto::RequestId;
use scrip_store_sqlite::{SqliteBrokerStore, SqliteMerchantStore, SqliteWalletStore};
use serde_json::Value;

use util::{amount_at, balance, micros, path_str, rows, wallet, Account, Daemon, Item, Network};

/// Customers buying at once, each one `scrip wallet` process at a time.
const CUSTOMERS: usize = 3;
/// Crashes per run, over the broker and the merchant: SIGKILLs and exits
/// by the fault hook.
const KILLS: usize = 24;
/// Of those, at least this many exits by the fault hook in each process.
const FAULTS_EACH: usize = 3;
/// The longest a process with the fault hook armed may take to reach its
/// group commit; under the customers' load it takes well under a second.
const FAULT_WAIT: Duration = Duration::from_secs(5);
/// A bound on the kill schedule, should the fault hook never fire.
const MAX_EVENTS: usize = 60;
const PRICE: &str = "0.001";
/// VendorScrip obtained when a purchase finds too little: a top-up every few purchases.
const TOP_UP: &str = "0.004";
/// BrokerScrip obtained from the account now and then during the load.
const REFILL: &str = "0.02";
const FUNDS: &str = "10";
const ITEM: &str = "one crash-tested byte";
/// How long the final settling of pending requests may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The seed: `SCRIP_CRASH_SEED`, or a fresh one.
fn seed() -> u64 {
    match std::env::var("SCRIP_CRASH_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("SCRIP_CRASH_SEED={text:?} is not an unsigned 64-bit integer")
        }),
        Err(_) => rand::random(),
    }
}

/// A customer: its account and its peer directory.
struct Customer {
    account: Account,
    dir: PathBuf,
}

/// What one customer's commands showed it.
#[derive(Default)]
struct Seen {
    /// Buy request ids whose item a `buy` printed (exit 0).
    bought: BTreeSet<String>,
    /// Buy request ids whose item a later command handed over in a `recovered-<id>` file.
    recovered: BTreeSet<String>,
    /// BrokerScrip an `obtain-broker-scrip` printed (exit 0): scrip id → value.
    obtained: BTreeMap<String, i128>,
    /// Requests left pending after an unknown outcome (exit 3), so resent by
    /// a later command: request id → whether it goes to the merchant.
    retried: BTreeMap<String, bool>,
    commands: usize,
    unknown: usize,
}

impl Seen {
    fn delivered(&self) -> BTreeSet<String> {
        self.bought.union(&self.recovered).cloned().collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Buy,
    Obtain,
    Balance,
}

fn wallet_store(dir: &Path) -> SqliteWalletStore {
    SqliteWalletStore::open(&dir.join("wallet.db"))
        .unwrap_or_else(|e| panic!("cannot open the wallet of {}: {e}", dir.display()))
}

/// The wallet's purchase receipts: buy request id → price in micro-units.
fn purchases(dir: &Path) -> BTreeMap<String, i128> {
    let mut store = wallet_store(dir);
    let receipts = store
        .begin()
        .and_then(|mut tx| tx.receipts())
        .expect("the wallet's receipts");
    let mut found = BTreeMap::new();
    for receipt in receipts {
        if let WalletReceipt::PurchaseInBatch(batched) = receipt {
            let id = batched.receipt.request_id.to_string();
            let price = i128::from(batched.receipt.price.minor());
            assert!(
                found.insert(id.clone(), price).is_none(),
                "{}: two purchase receipts for buy {id}",
                dir.display()
            );
        }
    }
    found
}

/// The wallet's pending requests: request id → whether it goes to a merchant.
fn pending(dir: &Path) -> BTreeMap<String, bool> {
    let mut store = wallet_store(dir);
    store
        .begin()
        .and_then(|mut tx| tx.all_pending())
        .expect("the wallet's pending requests")
        .into_iter()
        .map(|p| {
            (
                p.request_id.to_string(),
                matches!(p.destination, Destination::Merchant(_)),
            )
        })
        .collect()
}

/// The request ids of the `recovered-<id>` files in the peer directory.
fn recovered_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read the peer directory")
        .map(|entry| entry.expect("a directory entry").file_name())
        .filter_map(|name| {
            name.to_str()
                .and_then(|n| n.strip_prefix("recovered-"))
                .map(str::to_owned)
        })
        .collect()
}

/// The `data` of the single JSON line of type `kind` a command printed.
fn json_data(outcome: &util::Outcome, kind: &str) -> Value {
    let line: Value = serde_json::from_str(outcome.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {outcome:#?}"));
    assert_eq!(line["type"], kind, "{outcome:#?}");
    assert_eq!(line["version"], 1, "{outcome:#?}");
    line["data"].clone()
}

/// Runs one wallet command and books what it showed: the items it handed
/// over (printed, or recovered from an earlier command), the BrokerScrip it
/// printed, and what it left pending. Only success (0) and an unknown
/// outcome (3) are expected: nothing here is ever refused.
fn run(customer: &Customer, seen: &mut Seen, op: Op) -> bool {
    let dir = &customer.dir;
    let receipts_before = purchases(dir);
    let files_before = recovered_files(dir);
    let outcome = match op {
        Op::Buy => wallet(dir, &["buy", "shop", "byte", "--top-up", TOP_UP]).outcome(),
        Op::Obtain => wallet(
            dir,
            &[
                "obtain-broker-scrip",
                REFILL,
                "--account",
                &customer.account.number,
            ],
        )
        .pin(&customer.account.pin)
        .outcome(),
        Op::Balance => wallet(dir, &["balance"]).outcome(),
    };
    seen.commands += 1;
    let receipts_after = purchases(dir);
    let files_after = recovered_files(dir);
    assert!(
        receipts_before
            .keys()
            .all(|id| receipts_after.contains_key(id)),
        "a purchase receipt vanished from {}: {outcome:#?}",
        dir.display()
    );
    let new_receipts: BTreeSet<String> = receipts_after
        .keys()
        .filter(|id| !receipts_before.contains_key(*id))
        .cloned()
        .collect();
    let new_files: BTreeSet<String> = files_after.difference(&files_before).cloned().collect();
    for id in &new_files {
        assert!(
            new_receipts.contains(id),
            "recovered-{id} appeared, but the wallet took in no delivery for it: {outcome:#?}"
        );
        let content = std::fs::read_to_string(dir.join(format!("recovered-{id}")))
            .expect("read a recovered item");
        assert_eq!(content, ITEM, "the recovered item of buy {id}");
        assert!(
            !seen.bought.contains(id) && seen.recovered.insert(id.clone()),
            "buy {id} was delivered twice"
        );
    }
    // Deliveries this command took in and did not hand over as a file.
    let delivered_now: Vec<&String> = new_receipts.difference(&new_files).collect();
    match outcome.status.code() {
        Some(0) => {
            match op {
                Op::Buy => {
                    let data = json_data(&outcome, "purchase");
                    assert_eq!(data["content"], ITEM, "{outcome:#?}");
                    assert_eq!(
                        delivered_now.len(),
                        1,
                        "a buy printed one item; the wallet took in {delivered_now:?}: {outcome:#?}"
                    );
                    let id = delivered_now[0].clone();
                    assert!(
                        !seen.recovered.contains(&id) && seen.bought.insert(id.clone()),
                        "buy {id} was delivered twice"
                    );
                }
                Op::Obtain => {
                    let data = json_data(&outcome, "broker-scrip-obtained");
                    assert!(delivered_now.is_empty(), "{delivered_now:?}: {outcome:#?}");
                    let scrip = rows(&data["scrip"]);
                    assert_eq!(scrip.len(), 1, "{outcome:#?}");
                    assert_eq!(scrip[0]["kind"], "BrokerScrip", "{outcome:#?}");
                    assert_eq!(amount_at(&scrip[0], "value"), micros(REFILL));
                    let id = scrip[0]["id"].as_str().expect("a scrip id").to_owned();
                    assert!(
                        seen.obtained.insert(id, micros(REFILL)).is_none(),
                        "the same BrokerScrip obtained twice: {outcome:#?}"
                    );
                }
                Op::Balance => {
                    json_data(&outcome, "balance");
                    assert!(delivered_now.is_empty(), "{delivered_now:?}: {outcome:#?}");
                }
            }
            true
        }
        Some(3) => {
            // Notes on recovered items and warnings may come first.
            assert!(
                outcome.stdout.is_empty()
                    && outcome.stderr.lines().any(|l| l.starts_with("error: ")),
                "{outcome:#?}"
            );
            assert!(
                delivered_now.is_empty(),
                "a command took in deliveries {delivered_now:?} yet reported an unknown outcome: {outcome:#?}"
            );
            seen.unknown += 1;
            seen.retried.extend(pending(dir));
            false
        }
        _ => panic!("{op:?}: only success or an unknown outcome is expected: {outcome:#?}"),
    }
}

/// One customer buying until `stop`: mostly purchases (with VendorScrip
/// top-ups), now and then more BrokerScrip from the account.
fn shop_until(customer: &Customer, mut rng: ChaCha8Rng, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let op = if rng.gen_bool(0.1) {
            Op::Obtain
        } else {
            Op::Buy
        };
        let pause = if run(customer, &mut seen, op) {
            rng.gen_range(0..30)
        } else {
            rng.gen_range(50..250)
        };
        thread::sleep(ms(pause));
    }
    seen
}

/// The listen address of a full address: without its `/p2p/…` part.
fn listen_of(address: &str) -> String {
    address
        .split("/p2p/")
        .next()
        .expect("split yields a part")
        .to_owned()
}

/// The broker, the merchant "shop", and how to kill and restart them.
/// The merchant is declared first so it stops before the broker.
struct Cluster {
    shop: Daemon,
    shop_dir: PathBuf,
    shop_account: Account,
    shop_address: String,
    broker_address: String,
    starts: usize,
    net: Network,
}

impl Cluster {
    fn kill_broker(&mut self) {
        self.net.broker.kill();
    }

    fn kill_shop(&mut self) {
        self.shop.kill();
    }

    /// Starts the broker again on its address, with its directory as the
    /// crash left it; with `exit_after_commit`, the fault hook armed.
    fn start_broker(&mut self, exit_after_commit: Option<u64>) {
        self.starts += 1;
        let commit = exit_after_commit.map(|n| n.to_string());
        let env = fault_env(commit.as_deref());
        self.net.broker = Daemon::start_on(
            &["broker", "run", path_str(&self.net.broker_dir)],
            None,
            "broker-listening",
            &self.net.path(&format!("broker.{}.log", self.starts)),
            &listen_of(&self.broker_address),
            &env,
        );
        // Null only if the fault hook ended it before it printed the line.
        if !self.net.broker.data.is_null() {
            assert_eq!(self.net.broker.address(), self.broker_address);
        }
    }

    /// Starts the merchant again on its address; it registers at the broker
    /// again. With `exit_after_commit`, the fault hook armed.
    fn start_shop(&mut self, exit_after_commit: Option<u64>) {
        self.starts += 1;
        let commit = exit_after_commit.map(|n| n.to_string());
        let env = fault_env(commit.as_deref());
        let catalog = self.shop_dir.join("catalog.toml");
        self.shop = Daemon::start_on(
            &[
                "peer",
                "run",
                path_str(&self.shop_dir),
                "--sell",
                path_str(&catalog),
                "--name",
                "shop",
                "--account",
                &self.shop_account.number,
            ],
            Some(&self.shop_account.pin),
            "merchant-listening",
            &self.net.path(&format!("shop.{}.log", self.starts)),
            &listen_of(&self.shop_address),
            &env,
        );
        if !self.shop.data.is_null() {
            assert_eq!(self.shop.address(), self.shop_address);
        }
    }

    /// Restarts the broker with the fault hook armed at group commit
    /// `commit`, waits for it to exit there, and after `down` starts it
    /// again, unarmed. True if the hook ended it, false if it still ran
    /// after [`FAULT_WAIT`] (then it was killed).
    fn fault_broker(&mut self, commit: u64, down: Duration) -> bool {
        self.start_broker(Some(commit));
        let faulted = exit_by_fault(&mut self.net.broker);
        thread::sleep(down);
        self.start_broker(None);
        faulted
    }

    /// [`Cluster::fault_broker`] for the merchant.
    fn fault_shop(&mut self, commit: u64, down: Duration) -> bool {
        self.start_shop(Some(commit));
        let faulted = exit_by_fault(&mut self.shop);
        thread::sleep(down);
        self.start_shop(None);
        faulted
    }
}

/// The environment that arms the fault hook at group commit `commit`, if any.
fn fault_env(commit: Option<&str>) -> Vec<(&'static str, &str)> {
    commit
        .map(|commit| (fault::EXIT_AFTER_COMMIT, commit))
        .into_iter()
        .collect()
}

/// Waits for a process with the fault hook armed to exit by it: true if it
/// did; false if it still ran after [`FAULT_WAIT`], and then kills it.
fn exit_by_fault(daemon: &mut Daemon) -> bool {
    match daemon.wait_for_exit(FAULT_WAIT) {
        Some(status) => {
            assert_eq!(
                status.code(),
                Some(fault::EXIT_STATUS),
                "a process with the fault hook armed ended otherwise: {status:?}\n{}",
                std::fs::read_to_string(&daemon.log).unwrap_or_default()
            );
            true
        }
        None => {
            daemon.kill();
            false
        }
    }
}

#[test]
fn kills_lose_nothing_and_do_nothing_twice() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("crash test seed {seed} (rerun it with SCRIP_CRASH_SEED={seed})");
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("crash test failed with seed {seed}: rerun it with SCRIP_CRASH_SEED={seed} cargo test -p scrip-cli --test crash");
        hook(info);
    }));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let mut net = Network::start();
    if std::env::var_os("SCRIP_CRASH_KEEP").is_some() {
        net.root.disable_cleanup(true);
        eprintln!("keeping {}", net.root.path().display());
    }
    let shop_account = net.open_account("shop");
    let (shop_dir, shop) = net.merchant(
        "shop",
        &shop_account,
        &[Item {
            id: "byte",
            title: "A byte",
            price: PRICE,
            text: ITEM,
        }],
    );
    let customers: Vec<Customer> = (0..CUSTOMERS)
        .map(|i| {
            let name = format!("customer{i}");
            let account = net.funded_account(&name, FUNDS);
            let dir = net.peer(&name);
            // Two pieces of BrokerScrip, so one locked by a pending request
            // leaves the other to pay with.
            for _ in 0..2 {
                wallet(
                    &dir,
                    &["obtain-broker-scrip", "0.5", "--account", &account.number],
                )
                .pin(&account.pin)
                .ok("broker-scrip-obtained");
            }
            Customer { account, dir }
        })
        .collect();
    let mut cluster = Cluster {
        shop_address: shop.address(),
        broker_address: net.broker.address(),
        shop,
        shop_dir,
        shop_account,
        starts: 0,
        net,
    };
    let set_up = started.elapsed();

    // The load, and the kills while it runs.
    let stop = AtomicBool::new(false);
    let mut kills = BTreeMap::from([("broker", 0), ("merchant", 0)]);
    let mut faults = BTreeMap::from([("broker", 0), ("merchant", 0)]);
    let mut events = 0;
    let seen: Vec<Seen> = thread::scope(|scope| {
        let workers: Vec<_> = customers
            .iter()
            .map(|customer| {
                let rng = ChaCha8Rng::seed_from_u64(rng.gen());
                let stop = &stop;
                scope.spawn(move || shop_until(customer, rng, stop))
            })
            .collect();
        while (kills.values().sum::<usize>() + faults.values().sum::<usize>() < KILLS
            || faults.values().any(|&n| n < FAULTS_EACH))
            && events < MAX_EVENTS
        {
            if workers.iter().any(|w| w.is_finished()) {
                break; // a customer failed: stop and report it
            }
            events += 1;
            thread::sleep(ms(rng.gen_range(100..=600)));
            // Mostly back at once, within a client's own retries of the same
            // bytes (about 3 s); sometimes down for longer than those last,
            // so requests stay pending for a later command to resend.
            let down = ms(if rng.gen_bool(0.15) {
                rng.gen_range(3300..=4200)
            } else {
                rng.gen_range(0..=300)
            });
            // The fault hook ends a process at one of its first group
            // commits after the restart, often retries of what the kill cut off.
            let commit = rng.gen_range(1..=3);
            match rng.gen_range(0..5) {
                0 => {
                    cluster.kill_broker();
                    thread::sleep(down);
                    cluster.start_broker(None);
                    *kills.get_mut("broker").expect("counted") += 1;
                }
                1 => {
                    cluster.kill_shop();
                    thread::sleep(down);
                    cluster.start_shop(None);
                    *kills.get_mut("merchant").expect("counted") += 1;
                }
                3 | 4 => {
                    // A kill, then the fault hook, in the process it ended
                    // less often so far.
                    let process = match faults["broker"].cmp(&faults["merchant"]) {
                        std::cmp::Ordering::Less => "broker",
                        std::cmp::Ordering::Greater => "merchant",
                        std::cmp::Ordering::Equal if rng.gen_bool(0.5) => "broker",
                        std::cmp::Ordering::Equal => "merchant",
                    };
                    let faulted = if process == "broker" {
                        cluster.kill_broker();
                        cluster.fault_broker(commit, down)
                    } else {
                        cluster.kill_shop();
                        cluster.fault_shop(commit, down)
                    };
                    *kills.get_mut(process).expect("counted") += 1;
                    let ended = if faulted { &mut faults } else { &mut kills };
                    *ended.get_mut(process).expect("counted") += 1;
                }
                _ => {
                    // Both at once, in either order, as in a power cut.
                    if rng.gen_bool(0.5) {
                        cluster.kill_broker();
                        cluster.kill_shop();
                    } else {
                        cluster.kill_shop();
                        cluster.kill_broker();
                    }
                    thread::sleep(down);
                    cluster.start_broker(None);
                    cluster.start_shop(None);
                    *kills.get_mut("broker").expect("counted") += 1;
                    *kills.get_mut("merchant").expect("counted") += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut seen = seen;
    let loaded = started.elapsed() - set_up;
    assert!(
        kills.values().sum::<usize>() + faults.values().sum::<usize>() >= KILLS,
        "only {kills:?} kills and {faults:?} exits by the fault hook"
    );
    assert!(
        faults.values().all(|&n| n >= FAULTS_EACH),
        "the fault hook ended the processes only {faults:?} times in {events} events (kills: {kills:?})"
    );

    // Everything runs again: each wallet resends what it left pending until
    // nothing is pending (`balance` resends first, then reports).
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for (customer, seen) in customers.iter().zip(&mut seen) {
        loop {
            run(customer, seen, Op::Balance);
            let left = pending(&customer.dir);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still has pending requests {left:?} after {DRAIN_TIMEOUT:?}",
                customer.dir.display()
            );
            thread::sleep(ms(200));
        }
    }

    // Each item a customer saw delivered is one purchase receipt in its
    // wallet, and the other way round.
    let price = micros(PRICE);
    let mut receipts = BTreeMap::new();
    for (customer, seen) in customers.iter().zip(&seen) {
        let held = purchases(&customer.dir);
        assert_eq!(
            held.keys().cloned().collect::<BTreeSet<_>>(),
            seen.delivered(),
            "{}: the purchase receipts are not the items delivered",
            customer.dir.display()
        );
        assert!(held.values().all(|p| *p == price), "{held:?}");
        receipts.extend(held);
    }
    let items = receipts.len() as i128;
    assert!(items >= 10, "only {items} items were bought under load");

    // The merchant forwards its payment records: the shop is credited with
    // every item delivered, exactly once.
    let books = cluster
        .net
        .wait_for_balance(&cluster.shop_account.number, items * price);

    // Wallets and broker agree: each account was debited by exactly what its
    // wallet holds and spent, and the scrip the wallets hold is what the
    // broker has outstanding.
    let balances = cluster.net.balances();
    let mut held_broker_scrip = 0;
    let mut held_vendor_scrip = 0;
    let mut debits = BTreeMap::new();
    for customer in &customers {
        let held = balance(&customer.dir);
        assert_eq!(held.pending, 0, "{}", customer.dir.display());
        assert!(
            held.vendor_scrip.keys().all(|m| m == "shop"),
            "{:?}",
            held.vendor_scrip
        );
        let spent: i128 = purchases(&customer.dir).values().sum();
        let debited = micros(FUNDS) - balances[&customer.account.number];
        assert_eq!(
            held.total() + spent,
            debited,
            "{}: holds {} and spent {spent}, but its account was debited {debited}",
            customer.dir.display(),
            held.total()
        );
        held_broker_scrip += held.broker_scrip;
        held_vendor_scrip += held.total() - held.broker_scrip;
        debits.insert(customer.account.number.clone(), debited);
    }
    assert_eq!(
        amount_at(&books, "outstanding_broker_scrip"),
        held_broker_scrip,
        "{books}"
    );
    assert_eq!(
        amount_at(&books, "outstanding_vendor_scrip"),
        held_vendor_scrip,
        "{books}"
    );
    assert_eq!(
        amount_at(&books, "deposited"),
        CUSTOMERS as i128 * micros(FUNDS)
    );
    cluster.net.assert_conserved();

    // Every receipt a wallet or the merchant kept is still in the broker's
    // log, and the log only grew: no crash rolled back an acknowledged step.
    for dir in customers
        .iter()
        .map(|c| &c.dir)
        .chain(std::iter::once(&cluster.shop_dir))
    {
        let verified = wallet(dir, &["verify"]).ok("log-verified");
        assert_eq!(
            verified["problems"].as_array().map(Vec::len),
            Some(0),
            "{}: {verified}",
            dir.display()
        );
    }

    // Both stop cleanly after all those crashes; then the books are read.
    for (name, status) in [
        ("merchant", cluster.shop.stop()),
        ("broker", cluster.net.broker.stop()),
    ] {
        assert!(
            status.is_some_and(|s| s.success()),
            "the {name} exited with {status:?} on SIGTERM"
        );
    }
    let audit = cluster.net.audit();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(audit["pending_intents"], 0, "{audit}");
    assert_eq!(audit["unmatched_intents"], serde_json::json!([]), "{audit}");
    assert_eq!(
        audit["unmatched_payments"],
        serde_json::json!([]),
        "{audit}"
    );

    // The broker's log, event by event.
    let snapshot = SqliteBrokerStore::open(&cluster.net.broker_dir.join("broker.db"))
        .and_then(|mut store| store.begin().and_then(|mut tx| tx.snapshot()))
        .expect("the broker's tables");
    let mut payments: BTreeMap<String, usize> = BTreeMap::new();
    // The scrip each buy spent, by its request id.
    let mut spent_by = BTreeMap::new();
    let mut paid = 0;
    let mut intents: BTreeMap<String, usize> = BTreeMap::new();
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    let mut issued: BTreeMap<String, (i128, usize)> = BTreeMap::new();
    let mut issued_to: BTreeMap<String, i128> = BTreeMap::new();
    for leaf in &snapshot.leaves {
        let event: BrokerEvent = scrip_proto::decode(leaf).expect("a broker event");
        match event {
            BrokerEvent::PaymentRecorded {
                buy_request,
                scrip,
                price: amount,
                ..
            } => {
                *payments.entry(buy_request.to_string()).or_default() += 1;
                spent_by.insert(buy_request.to_string(), scrip);
                paid += i128::from(amount.minor());
            }
            BrokerEvent::IntentRecorded {
                request,
                buy_request,
                ..
            } => {
                *intents.entry(buy_request.to_string()).or_default() += 1;
                *steps.entry(request.to_string()).or_default() += 1;
            }
            BrokerEvent::BrokerScripIssued {
                request,
                account,
                scrip,
                value,
                ..
            } => {
                *steps.entry(request.to_string()).or_default() += 1;
                let entry = issued.entry(scrip.to_string()).or_default();
                entry.0 = i128::from(value.minor());
                entry.1 += 1;
                *issued_to.entry(account.to_string()).or_default() += i128::from(value.minor());
            }
            BrokerEvent::VendorScripExchanged { request, .. }
            | BrokerEvent::BrokerScripRenewed { request, .. } => {
                *steps.entry(request.to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
    // Every item delivered was paid for exactly once and announced by
    // exactly one intent. (A Buy does not wait for its intent's receipt, so
    // after a broker crash the merchant's record may reach the broker before
    // the wallet resends the intent: the match is by buy, not by order.)
    let delivered: BTreeSet<String> = receipts.keys().cloned().collect();
    assert!(payments.values().all(|n| *n == 1), "payments: {payments:?}");
    assert!(intents.values().all(|n| *n == 1), "intents: {intents:?}");
    assert_eq!(
        payments.keys().cloned().collect::<BTreeSet<_>>(),
        delivered,
        "the payments recorded are not the items delivered"
    );
    assert_eq!(
        intents.keys().cloned().collect::<BTreeSet<_>>(),
        delivered,
        "the intents recorded are not the items delivered"
    );
    assert_eq!(paid, items * price);
    // Each request moved value once.
    assert!(
        steps.values().all(|n| *n == 1),
        "a request recorded twice: {steps:?}"
    );
    assert!(issued.values().all(|(_, n)| *n == 1), "{issued:?}");
    // Each account was debited by exactly the BrokerScrip issued from it.
    for customer in &customers {
        assert_eq!(
            issued_to
                .get(&customer.account.number)
                .copied()
                .unwrap_or(0),
            debits[&customer.account.number],
            "account {}",
            customer.account.number
        );
    }
    // Each BrokerScrip a command printed was issued exactly once, at its value.
    for seen in &seen {
        for (scrip, value) in &seen.obtained {
            assert_eq!(
                issued.get(scrip).map(|(v, _)| *v),
                Some(*value),
                "BrokerScrip {scrip} was printed but not issued"
            );
        }
    }
    // Each request resent after an unknown outcome completed exactly once.
    for seen in &seen {
        for (request, to_merchant) in &seen.retried {
            if *to_merchant {
                assert_eq!(payments.get(request), Some(&1), "retried buy {request}");
                assert!(delivered.contains(request), "retried buy {request}");
            } else {
                assert_eq!(steps.get(request), Some(&1), "retried request {request}");
            }
        }
    }

    // The merchant agrees: nothing left to forward, and a stored delivery
    // for each item.
    let mut shop_store = SqliteMerchantStore::open(&cluster.shop_dir.join("merchant.db"))
        .expect("the merchant's store");
    let mut tx = shop_store.begin().expect("a merchant transaction");
    let queued = tx.queued_payment_records(1 << 20).expect("the outbox");
    assert!(
        queued.is_empty(),
        "{} payment records never forwarded",
        queued.len()
    );
    for id in &delivered {
        let request: RequestId = id.parse().expect("a request id");
        assert!(
            tx.stored_delivery(&spent_by[id], &request)
                .expect("a stored delivery")
                .is_some(),
            "the merchant has no delivery stored for buy {id}"
        );
    }
    drop(tx);

    let retried: usize = seen.iter().map(|s| s.retried.len()).sum();
    eprintln!(
        "seed {seed}: {kills:?} kills, {faults:?} exits by the fault hook; {} commands, {} with an unknown outcome, {retried} requests resent; {items} items ({} printed, {} recovered); set-up {set_up:?}, load {loaded:?}, total {:?}",
        seen.iter().map(|s| s.commands).sum::<usize>(),
        seen.iter().map(|s| s.unknown).sum::<usize>(),
        seen.iter().map(|s| s.bought.len()).sum::<usize>(),
        seen.iter().map(|s| s.recovered.len()).sum::<usize>(),
        started.elapsed()
    );
}
