//! The whole story through real processes: a broker, two merchants and their
//! customers on 127.0.0.1, driven only through the `scrip` command line.
//!
//! Every amount is checked exactly, in integer micro-units; value must be
//! conserved in the broker's books at the end.

mod util;

use std::collections::BTreeMap;
use std::time::Instant;

use util::{amount_at, balance, micros, parse_micros, rows, wallet, Item, Network};

const GREEN: &str = "a cup of green tea, \"sencha\"\nsteeped for 2 minutes";
const BLACK: &str = "a cup of black tea";
const DAILY: &str = "today's news: scrip works";

/// The sum of the `value`s of the scrip of `kind` in an obtain answer.
fn scrip_value(data: &serde_json::Value, kind: &str) -> i128 {
    rows(&data["scrip"])
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| amount_at(s, "value"))
        .sum()
}

/// A PIN that is certainly not `pin`.
fn other_pin(pin: &str) -> String {
    let mut other: Vec<u8> = pin.bytes().collect();
    let last = other.last_mut().expect("a PIN is not empty");
    *last = if *last == b'0' { b'1' } else { b'0' };
    String::from_utf8(other).expect("ASCII")
}

/// `wallet DIR buy MERCHANT ITEM`: checks the item and the change, returns the data.
fn buy(dir: &std::path::Path, merchant: &str, item: &str, content: &str, change: &str) {
    let data = wallet(dir, &["buy", merchant, item]).ok("purchase");
    assert_eq!(data["merchant"], merchant);
    assert_eq!(data["item"], item);
    assert_eq!(data["content"], content, "the item as sold");
    assert_eq!(
        amount_at(&data, "change"),
        micros(change),
        "change after buying {item} at {merchant}: {data}"
    );
}

#[test]
fn micros_reads_amounts_exactly() {
    assert_eq!(micros("95.00"), 95_000_000);
    assert_eq!(micros("0.002"), 2_000);
    assert_eq!(micros("0.0035"), 3_500);
    assert_eq!(micros("12"), 12_000_000);
    assert_eq!(micros("-1.5"), -1_500_000);
    assert_eq!(micros("0.000001"), 1);
    for bad in [
        "",
        ".",
        "1.",
        ".5",
        "1.0000001",
        "1,5",
        "+1",
        "1e3",
        "--1",
        "1.-5",
        "-",
    ] {
        assert_eq!(parse_micros(bad), None, "{bad:?} was read as an amount");
    }
}

#[test]
fn story() {
    let started = Instant::now();
    let net = Network::start();

    // Accounts, opened and funded with the broker running on the same directory.
    let alice = net.funded_account("alice", "100");
    let tea_account = net.open_account("tea shop");
    let news_account = net.open_account("news stand");
    assert_eq!(net.balance(&tea_account.number), 0);

    // Two merchants register and serve.
    let (tea_dir, mut tea) = net.merchant(
        "tea",
        &tea_account,
        &[
            Item {
                id: "green",
                title: "Green tea",
                price: "0.002",
                text: GREEN,
            },
            Item {
                id: "black",
                title: "Black tea",
                price: "0.0035",
                text: BLACK,
            },
        ],
    );
    let (_news_dir, news) = net.merchant(
        "news",
        &news_account,
        &[Item {
            id: "daily",
            title: "The Daily",
            price: "0.005",
            text: DAILY,
        }],
    );
    let merchants_of: BTreeMap<String, serde_json::Value> = rows(&net.accounts()["accounts"])
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap().to_owned(),
                row["merchants"].clone(),
            )
        })
        .collect();
    assert_eq!(merchants_of["tea shop"], serde_json::json!(["tea"]));
    assert_eq!(merchants_of["news stand"], serde_json::json!(["news"]));
    assert_eq!(merchants_of["alice"], serde_json::json!([]));

    // The customer finds them at the broker and reads a catalog.
    let alice_dir = net.peer("alice");
    let listed: BTreeMap<String, String> =
        rows(&wallet(&alice_dir, &["merchants"]).ok("merchants")["merchants"])
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["peer_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    let expected: BTreeMap<String, String> = [("tea", &tea), ("news", &news)]
        .into_iter()
        .map(|(name, daemon)| {
            (
                name.to_owned(),
                daemon.data["peer_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, expected, "the merchants registered at the broker");
    let catalog = wallet(&alice_dir, &["catalog", "tea"]).ok("catalog");
    assert_eq!(catalog["merchant"], "tea");
    assert_eq!(catalog["currency"], "EUR");
    assert_eq!(
        catalog["items"],
        serde_json::json!([
            { "id": "green", "title": "Green tea", "price": "0.002" },
            { "id": "black", "title": "Black tea", "price": "0.0035" },
        ])
    );
    // A catalog asked for by peer id names the same merchant.
    let by_id = wallet(
        &alice_dir,
        &["catalog", tea.data["peer_id"].as_str().unwrap()],
    )
    .ok("catalog");
    assert_eq!(by_id["merchant"], "tea");

    // Step 1: Obtain BrokerScrip debits the account by exactly the amount.
    let obtained = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "5", "--account", &alice.number],
    )
    .pin(&alice.pin)
    .ok("broker-scrip-obtained");
    assert_eq!(scrip_value(&obtained, "BrokerScrip"), micros("5"));
    assert_eq!(scrip_value(&obtained, "VendorScrip"), 0);
    let alice_row = rows(&net.accounts()["accounts"])
        .iter()
        .find(|row| row["account"] == alice.number.as_str())
        .cloned()
        .expect("alice's account is listed");
    assert_eq!(alice_row["balance"], "95.00", "100.00 less 5.00");
    let held = balance(&alice_dir);
    assert_eq!(
        (held.broker_scrip, held.vendor_scrip.len(), held.pending),
        (micros("5"), 0, 0)
    );

    // Step 2: Obtain VendorScrip for tea, change in BrokerScrip.
    let exchanged =
        wallet(&alice_dir, &["obtain-vendor-scrip", "tea", "0.05"]).ok("vendor-scrip-obtained");
    assert_eq!(exchanged["merchant"], "tea");
    assert_eq!(scrip_value(&exchanged, "VendorScrip"), micros("0.05"));
    assert_eq!(scrip_value(&exchanged, "BrokerScrip"), micros("4.95"));

    // Step 3: purchases, each with its change.
    buy(&alice_dir, "tea", "green", GREEN, "0.048");
    buy(&alice_dir, "tea", "black", BLACK, "0.0445");
    let out = net.path("green.txt");
    let to_file = wallet(
        &alice_dir,
        &["buy", "tea", "green", "--out", util::path_str(&out)],
    )
    .ok("purchase");
    assert_eq!(
        to_file["content"],
        serde_json::Value::Null,
        "written to the file, not printed"
    );
    assert_eq!(amount_at(&to_file, "change"), micros("0.0425"));
    assert_eq!(
        std::fs::read_to_string(&out).expect("the item was written"),
        GREEN
    );
    // No VendorScrip for news yet: `buy` obtains ten times the price first.
    buy(&alice_dir, "news", "daily", DAILY, "0.045");
    buy(&alice_dir, "news", "daily", DAILY, "0.04");

    // The wallet adds up: 5 less what was spent (3 teas, 2 papers).
    let spent_at_tea = micros("0.002") + micros("0.0035") + micros("0.002");
    let spent_at_news = 2 * micros("0.005");
    let held = balance(&alice_dir);
    assert_eq!(held.total(), micros("5") - spent_at_tea - spent_at_news);
    assert_eq!(held.broker_scrip, micros("4.90"));
    assert_eq!(
        held.vendor_scrip,
        BTreeMap::from([
            ("news".to_owned(), micros("0.04")),
            ("tea".to_owned(), micros("0.0425"))
        ])
    );
    assert_eq!(held.pending, 0);

    // Settlement: each merchant's account is credited with exactly its sales.
    net.wait_for_balance(&tea_account.number, spent_at_tea);
    net.wait_for_balance(&news_account.number, spent_at_news);
    assert_eq!(net.balance(&alice.number), micros("95"));
    net.assert_conserved();

    // Role inversion: tea's own peer directory, while it is selling, turns
    // its earnings into BrokerScrip and buys the paper.
    let earnings = wallet(
        &tea_dir,
        &[
            "obtain-broker-scrip",
            "0.0075",
            "--account",
            &tea_account.number,
        ],
    )
    .pin(&tea_account.pin)
    .ok("broker-scrip-obtained");
    assert_eq!(scrip_value(&earnings, "BrokerScrip"), micros("0.0075"));
    assert_eq!(
        net.balance(&tea_account.number),
        0,
        "tea's earnings are all withdrawn as scrip"
    );
    // The top-up is capped by the BrokerScrip held: 0.0075, so 0.0025 change.
    buy(&tea_dir, "news", "daily", DAILY, "0.0025");
    let tea_wallet = balance(&tea_dir);
    assert_eq!(tea_wallet.broker_scrip, 0);
    assert_eq!(
        tea_wallet.vendor_scrip,
        BTreeMap::from([("news".to_owned(), micros("0.0025"))])
    );
    net.wait_for_balance(&news_account.number, 3 * micros("0.005"));
    // And tea still sells.
    assert!(tea.running(), "the tea merchant stopped");
    buy(&alice_dir, "tea", "green", GREEN, "0.0405");
    net.wait_for_balance(&tea_account.number, micros("0.002"));

    // Administration while `broker run` holds the same directory, and a new
    // account usable at once by the running broker.
    let bob = net.open_account("bob");
    assert_eq!(net.deposit(&bob, "20"), micros("20"));
    let withdrawal = net
        .admin(&["withdraw"], &[&bob.number, "5"])
        .ok("withdrawal");
    assert_eq!(withdrawal["balance"], "15.00");
    let books = net.accounts();
    assert_eq!(books["deposited"], "120.00");
    assert_eq!(books["withdrawn"], "5.00");
    assert_eq!(net.balance(&bob.number), micros("15"));
    let bob_dir = net.peer("bob");
    let got = wallet(
        &bob_dir,
        &["obtain-broker-scrip", "2", "--account", &bob.number],
    )
    .pin(&bob.pin)
    .ok("broker-scrip-obtained");
    assert_eq!(scrip_value(&got, "BrokerScrip"), micros("2"));
    assert_eq!(net.balance(&bob.number), micros("13"));
    buy(&bob_dir, "tea", "black", BLACK, "0.0315");
    net.wait_for_balance(&tea_account.number, micros("0.002") + micros("0.0035"));

    // Refusals: each exits 1 with an error line and changes nothing.
    let alice_wallet_before = balance(&alice_dir).total();
    let wrong_pin = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &alice.number],
    )
    .pin(&other_pin(&alice.pin))
    .fails(1);
    assert!(wrong_pin.contains("PIN"), "{wrong_pin}");
    // An account number that does not exist gets the same line: no probing.
    let nobody = "111111111111";
    let unknown = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", nobody],
    )
    .pin(&alice.pin)
    .fails(1);
    assert_eq!(unknown.replace(nobody, &alice.number), wrong_pin);
    let overdraft = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1000", "--account", &alice.number],
    )
    .pin(&alice.pin)
    .fails(1);
    assert!(overdraft.contains(&alice.number), "{overdraft}");
    let over_withdrawn = net.admin(&["withdraw"], &[&bob.number, "1000"]).fails(1);
    assert!(over_withdrawn.contains("1000.00"), "{over_withdrawn}");
    let not_yours = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &bob.number],
    )
    .pin(&alice.pin)
    .fails(1);
    assert!(not_yours.contains("PIN"), "{not_yours}");
    // Even with bob's PIN: bob's account is bound to bob's wallet.
    let bound = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &bob.number],
    )
    .pin(&bob.pin)
    .fails(1);
    assert!(bound.contains("bound to another wallet"), "{bound}");
    assert_eq!(net.balance(&alice.number), micros("95"));
    assert_eq!(net.balance(&bob.number), micros("13"));
    // The operator clears alice's wrong PIN while the broker runs; the
    // audit below sees the unlock in the log.
    let unlocked = net
        .admin(&["unlock"], &[&alice.number])
        .ok("account-unlocked");
    assert_eq!(unlocked["was_locked"], false, "{unlocked}");
    assert_eq!(unlocked["wrong_pins_cleared"], 1, "{unlocked}");

    // Local errors: exit 2 with a clear message, nothing changed.
    for args in [
        &["buy", "nosuch", "green"][..],
        &["catalog", "nosuch"][..],
        &["obtain-vendor-scrip", "nosuch", "0.01"][..],
    ] {
        let unknown = wallet(&alice_dir, args).fails(2);
        assert!(
            unknown.contains("\"nosuch\"") && unknown.contains("merchant"),
            "{args:?}: {unknown}"
        );
    }
    let not_sold = wallet(&alice_dir, &["buy", "tea", "coffee"]).fails(2);
    assert!(not_sold.contains("\"coffee\""), "{not_sold}");
    let too_much = wallet(&alice_dir, &["obtain-vendor-scrip", "tea", "10"]).fails(2);
    assert!(too_much.contains("10.00"), "{too_much}");
    let no_pin = wallet(
        &alice_dir,
        &["obtain-broker-scrip", "1", "--account", &alice.number],
    )
    .fails(2);
    assert!(no_pin.contains("SCRIP_PIN"), "{no_pin}");
    assert_eq!(balance(&alice_dir).total(), alice_wallet_before);

    // The books at the end: every wallet's scrip is outstanding at the
    // broker, and value is conserved.
    let wallets = [balance(&alice_dir), balance(&tea_dir), balance(&bob_dir)];
    assert!(wallets.iter().all(|w| w.pending == 0));
    let books = net.assert_conserved();
    assert_eq!(
        amount_at(&books, "outstanding_broker_scrip"),
        wallets.iter().map(|w| w.broker_scrip).sum::<i128>()
    );
    assert_eq!(
        amount_at(&books, "outstanding_vendor_scrip"),
        wallets
            .iter()
            .map(|w| w.vendor_scrip.values().sum::<i128>())
            .sum::<i128>()
    );
    let expected_balances = BTreeMap::from([
        (alice.number.clone(), micros("95")),
        (tea_account.number.clone(), micros("0.0055")),
        (news_account.number.clone(), micros("0.015")),
        (bob.number.clone(), micros("13")),
    ]);
    assert_eq!(net.balances(), expected_balances);
    assert_eq!(
        amount_at(&books, "deposited") - amount_at(&books, "withdrawn"),
        micros("115")
    );

    // The audit: each wallet's log receipts are in the broker's log, and the
    // broker's books match its signed log, checked with its public key only.
    for dir in [&alice_dir, &tea_dir, &bob_dir] {
        let verified = wallet(dir, &["verify"]).ok("log-verified");
        assert!(verified["receipts"].as_u64().unwrap_or(0) > 0, "{verified}");
        assert_eq!(
            verified["problems"].as_array().map(Vec::len),
            Some(0),
            "{verified}"
        );
    }
    let audit = net.audit();
    assert_eq!(audit["clean"], true, "{audit}");
    assert!(
        audit["refused_pins"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "the wrong PIN is in the audit: {audit}"
    );
    assert!(
        audit["account_unlocks"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["account"] == alice.number.as_str())),
        "the unlock is in the audit: {audit}"
    );

    assert!(tea.running(), "the tea merchant stopped");
    drop((tea, news));
    no_secret_leaked(
        net.root.path(),
        &[&alice.pin, &bob.pin, &tea_account.pin, &news_account.pin],
    );
    eprintln!("story took {:?}", started.elapsed());
}

/// After a full run, no PIN and no key seed is in any file of any role but
/// the seed files themselves, and every seed and database is its owner's only.
fn no_secret_leaked(root: &std::path::Path, pins: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let is_seed = |p: &std::path::Path| p.extension().is_some_and(|e| e == "seed");
    let mut secrets: Vec<Vec<u8>> = pins.iter().map(|pin| pin.as_bytes().to_vec()).collect();
    for seed in files.iter().filter(|p| is_seed(p)) {
        let mode = std::fs::metadata(seed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is readable by others", seed.display());
        let bytes = std::fs::read(seed).unwrap();
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        secrets.push(text.as_bytes().to_vec());
        // Whether the file holds the seed raw or as hex, neither form may appear elsewhere.
        if let Ok(raw) = hex::decode(&text) {
            secrets.push(raw);
        } else {
            secrets.push(hex::encode(&bytes).into_bytes());
        }
    }
    assert!(secrets.len() > pins.len(), "the run left seed files");
    for file in files.iter().filter(|p| !is_seed(p)) {
        let name = file.display().to_string();
        if name.ends_with(".db") || name.contains(".db-") || name.ends_with(".sqlite") {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} is readable by others");
        }
        let bytes = std::fs::read(file).unwrap();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                "a secret is in {name}"
            );
        }
    }
}
