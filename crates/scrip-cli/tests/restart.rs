//! Stopping and restarting the daemons: nothing is lost, and sales made just
//! before a merchant stops are still credited.

mod util;

use std::time::{Duration, Instant};

use util::{balance, micros, wallet, Item, Network};

const GREEN: &str = "a cup of green tea";

fn tea_items() -> [Item<'static>; 1] {
    [Item {
        id: "green",
        title: "Green tea",
        price: "0.002",
        text: GREEN,
    }]
}

#[test]
fn restarts_lose_nothing() {
    let started = Instant::now();
    let mut net = Network::start();
    let alice = net.funded_account("alice", "10");
    let tea_account = net.open_account("tea shop");
    let (tea_dir, mut tea) = net.merchant("tea", &tea_account, &tea_items());
    let alice_dir = net.peer("alice");
    wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &alice.number],
    )
    .pin(&alice.pin)
    .ok("broker-scrip-obtained");

    // A sale, and the merchant stopped at once, before its next 200 ms
    // forwarding round: it forwards what is queued as it shuts down.
    let sale = wallet(&alice_dir, &["buy", "tea", "green"]).ok("purchase");
    assert_eq!(sale["content"], GREEN);
    assert_eq!(
        sale["change"], "0.018",
        "ten times the price obtained, less one"
    );
    let status = tea.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "merchant exited with {status:?}"
    );
    net.wait_for_balance(&tea_account.number, micros("0.002"));

    // The broker stops and comes back on the same address with the same books.
    let books = net.accounts();
    net.restart_broker();
    assert_eq!(net.accounts(), books, "the books changed across a restart");

    // The merchant comes back with its keys and spent set: the VendorScrip
    // the wallet holds is still good there, and change continues from it.
    let mut tea = net.sell(&tea_dir, "tea", &tea_account);
    let sale = wallet(&alice_dir, &["buy", "tea", "green"]).ok("purchase");
    assert_eq!(sale["change"], "0.016");
    net.wait_for_balance(&tea_account.number, micros("0.004"));

    // The account still knows alice's wallet key and PIN.
    wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &alice.number],
    )
    .pin(&alice.pin)
    .ok("broker-scrip-obtained");
    assert_eq!(net.balance(&alice.number), micros("8"));
    let held = balance(&alice_dir);
    assert_eq!(held.total(), micros("2") - micros("0.004"));
    net.assert_conserved();
    assert!(tea.running(), "the merchant stopped");
    eprintln!("restarts took {:?}", started.elapsed());
}

/// A merchant that keeps running while the broker restarts should be found
/// again by customers within seconds.
#[test]
fn merchant_is_found_again_after_a_broker_restart() {
    let mut net = Network::start();
    let alice = net.funded_account("alice", "10");
    let tea_account = net.open_account("tea shop");
    let (_tea_dir, tea) = net.merchant("tea", &tea_account, &tea_items());
    let alice_dir = net.peer("alice");
    wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &alice.number],
    )
    .pin(&alice.pin)
    .ok("broker-scrip-obtained");
    wallet(&alice_dir, &["buy", "tea", "green"]).ok("purchase");
    net.wait_for_balance(&tea_account.number, micros("0.002"));

    net.restart_broker();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = wallet(&alice_dir, &["buy", "tea", "green"]).outcome();
        if outcome.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tea is still not reachable 10 s after the broker restarted: {outcome:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    net.wait_for_balance(&tea_account.number, micros("0.004"));
    net.assert_conserved();
    drop(tea);
}
