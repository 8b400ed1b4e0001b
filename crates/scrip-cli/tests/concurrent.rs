//! Many customers buying at one merchant at the same time, each through its
//! own `scrip wallet` processes: the books must come out exact.

mod util;

use std::collections::BTreeMap;
use std::thread;
use std::time::Instant;

use util::{amount_at, balance, micros, wallet, Item, Network};

const CUSTOMERS: usize = 10;
const PURCHASES: usize = 20;
const PRICE: &str = "0.001";
const TOP_UP: &str = "0.05";
const ITEM: &str = "one bit of news";

#[test]
fn customers_buy_concurrently() {
    let started = Instant::now();
    let net = Network::start();
    let shop_account = net.open_account("bit shop");
    let (_shop_dir, mut shop) = net.merchant(
        "bits",
        &shop_account,
        &[Item {
            id: "bit",
            title: "A bit",
            price: PRICE,
            text: ITEM,
        }],
    );
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|i| {
            let name = format!("customer{i}");
            (net.funded_account(&name, "10"), net.peer(&name))
        })
        .collect();
    let set_up = started.elapsed();

    // Each customer, on its own thread: 1.00 of BrokerScrip, then its
    // purchases one after the other; all customers at once.
    let price = micros(PRICE);
    thread::scope(|scope| {
        let workers: Vec<_> = customers
            .iter()
            .map(|(account, dir)| {
                scope.spawn(move || {
                    let obtained = wallet(
                        dir,
                        &["obtain-broker-scrip", "1", "--account", &account.number],
                    )
                    .pin(&account.pin)
                    .ok("broker-scrip-obtained");
                    assert_eq!(obtained["scrip"][0]["value"], "1.00", "{obtained}");
                    for n in 1..=PURCHASES as i128 {
                        let data =
                            wallet(dir, &["buy", "bits", "bit", "--top-up", TOP_UP]).ok("purchase");
                        assert_eq!(data["content"], ITEM);
                        // One top-up of 0.05 covers all the purchases; the change
                        // shrinks by the price each time.
                        assert_eq!(
                            amount_at(&data, "change"),
                            micros(TOP_UP) - n * price,
                            "purchase {n} of {}: {data}",
                            dir.display()
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let bought = started.elapsed() - set_up;

    // Each wallet: 1 - 20 * 0.001 = 0.98, as 0.95 BrokerScrip and 0.03 VendorScrip.
    let spent = PURCHASES as i128 * price;
    let mut total_broker_scrip = 0;
    let mut total_vendor_scrip = 0;
    for (account, dir) in &customers {
        let held = balance(dir);
        assert_eq!(held.total(), micros("0.98"), "{}", dir.display());
        assert_eq!(held.broker_scrip, micros("1") - micros(TOP_UP));
        assert_eq!(
            held.vendor_scrip,
            BTreeMap::from([("bits".to_owned(), micros(TOP_UP) - spent)])
        );
        assert_eq!(held.pending, 0);
        total_broker_scrip += held.broker_scrip;
        total_vendor_scrip += held.vendor_scrip.values().sum::<i128>();
        assert_eq!(net.balance(&account.number), micros("9"));
    }

    // The merchant is credited with every sale, exactly: 10 * 20 * 0.001 = 0.20.
    let all_sales = micros("0.20");
    let books = net.wait_for_balance(&shop_account.number, all_sales);
    assert_eq!(
        amount_at(&books, "outstanding_broker_scrip"),
        micros("9.50")
    );
    assert_eq!(
        amount_at(&books, "outstanding_broker_scrip"),
        total_broker_scrip
    );
    assert_eq!(
        amount_at(&books, "outstanding_vendor_scrip"),
        micros("0.30")
    );
    assert_eq!(
        amount_at(&books, "outstanding_vendor_scrip"),
        total_vendor_scrip
    );
    assert_eq!(
        amount_at(&books, "deposited"),
        CUSTOMERS as i128 * micros("10")
    );
    assert_eq!(amount_at(&books, "withdrawn"), 0);
    net.assert_conserved();
    // Nothing more arrives later.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(net.balance(&shop_account.number), all_sales);

    assert!(shop.running(), "the merchant stopped");
    eprintln!(
        "{CUSTOMERS} customers x {PURCHASES} purchases: set-up {set_up:?}, purchases {bought:?}, total {:?}",
        started.elapsed()
    );
}

/// Customers buying at two merchants in turn with small top-ups, so
/// BrokerScrip is exchanged for VendorScrip of both merchants many times at
/// once.
#[test]
fn frequent_top_ups_at_two_merchants() {
    const ROUNDS: i128 = 5;
    let started = Instant::now();
    let net = Network::start();
    let tea_account = net.open_account("tea shop");
    let news_account = net.open_account("news stand");
    let (_tea_dir, mut tea) = net.merchant(
        "tea",
        &tea_account,
        &[Item {
            id: "cup",
            title: "A cup",
            price: "0.001",
            text: "tea",
        }],
    );
    let (_news_dir, mut news) = net.merchant(
        "news",
        &news_account,
        &[Item {
            id: "page",
            title: "A page",
            price: "0.002",
            text: "news",
        }],
    );
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|i| {
            let name = format!("reader{i}");
            (net.funded_account(&name, "1"), net.peer(&name))
        })
        .collect();

    thread::scope(|scope| {
        let workers: Vec<_> = customers
            .iter()
            .map(|(account, dir)| {
                scope.spawn(move || {
                    wallet(
                        dir,
                        &["obtain-broker-scrip", "0.5", "--account", &account.number],
                    )
                    .pin(&account.pin)
                    .ok("broker-scrip-obtained");
                    for _ in 0..ROUNDS {
                        let cup =
                            wallet(dir, &["buy", "tea", "cup", "--top-up", "0.003"]).ok("purchase");
                        assert_eq!(cup["content"], "tea");
                        let page = wallet(dir, &["buy", "news", "page", "--top-up", "0.003"])
                            .ok("purchase");
                        assert_eq!(page["content"], "news");
                    }
                })
            })
            .collect();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });

    let spent_each = ROUNDS * (micros("0.001") + micros("0.002"));
    let mut outstanding_broker_scrip = 0;
    let mut outstanding_vendor_scrip = 0;
    for (account, dir) in &customers {
        let held = balance(dir);
        assert_eq!(
            held.total(),
            micros("0.5") - spent_each,
            "{}",
            dir.display()
        );
        assert_eq!(held.pending, 0);
        outstanding_broker_scrip += held.broker_scrip;
        outstanding_vendor_scrip += held.vendor_scrip.values().sum::<i128>();
        assert_eq!(net.balance(&account.number), micros("0.5"));
    }
    net.wait_for_balance(
        &tea_account.number,
        CUSTOMERS as i128 * ROUNDS * micros("0.001"),
    );
    let books = net.wait_for_balance(
        &news_account.number,
        CUSTOMERS as i128 * ROUNDS * micros("0.002"),
    );
    assert_eq!(
        amount_at(&books, "outstanding_broker_scrip"),
        outstanding_broker_scrip
    );
    assert_eq!(
        amount_at(&books, "outstanding_vendor_scrip"),
        outstanding_vendor_scrip
    );
    net.assert_conserved();
    assert!(tea.running() && news.running(), "a merchant stopped");
    eprintln!(
        "{CUSTOMERS} customers at two merchants: {:?}",
        started.elapsed()
    );
}

/// An account is bound to the key of the first wallet that obtains
/// BrokerScrip from it. Ten wallets that all know the PIN race for a fresh
/// account: exactly one wins, the others are refused, and the account is
/// debited exactly once.
#[test]
fn first_use_of_an_account_binds_one_wallet() {
    let net = Network::start();
    let family = net.funded_account("family", "10");
    let dirs: Vec<_> = (0..CUSTOMERS)
        .map(|i| net.peer(&format!("member{i}")))
        .collect();
    let outcomes: Vec<_> = thread::scope(|scope| {
        let workers: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let family = &family;
                scope.spawn(move || {
                    wallet(
                        dir,
                        &["obtain-broker-scrip", "0.5", "--account", &family.number],
                    )
                    .pin(&family.pin)
                    .outcome()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker panicked"))
            .collect()
    });
    let winners: Vec<_> = outcomes.iter().filter(|o| o.status.success()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:#?}");
    for loser in outcomes.iter().filter(|o| !o.status.success()) {
        assert_eq!(loser.status.code(), Some(1), "{loser:#?}");
        assert!(
            loser.stderr.starts_with("error: ") && loser.stderr.contains("bound to another wallet"),
            "{loser:#?}"
        );
    }
    assert_eq!(net.balance(&family.number), micros("9.5"));
    let held: i128 = dirs.iter().map(|dir| balance(dir).total()).sum();
    assert_eq!(held, micros("0.5"), "only the winner holds scrip");
    net.assert_conserved();
}
