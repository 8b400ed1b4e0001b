//! `scrip demo`: a broker, two merchants and a customer on loopback, the whole
//! story of the paper told as it happens. Exits non-zero if any step did not
//! do what it should.

use scrip_core::ledger::LedgerAccount;
use scrip_core::store::ScripState;
use scrip_core::wallet::forget_item;
use scrip_core::{
    Broker, BrokerConfig, BrokerKeys, CatalogItem, MerchantConfig, MerchantKeys, WalletKeys,
};
use scrip_node::broker::BrokerNode;
use scrip_node::customer::Customer;
use scrip_node::merchant::{MerchantNode, MerchantSetup};
use scrip_proto::crypto::{CustomerSecret, Proved, StampingSecret};
use scrip_proto::msg::{Buy, MerchantRequest, MerchantResponse, Purchase};
use scrip_proto::{Amount, Currency, Refusal, RequestId, Scrip, ScripKind, Secret32};
use scrip_store::BrokerDatabase;
use scrip_store_sqlite::{SqliteBrokerStore, SqliteWalletStore};

use crate::output::CliError;

fn amount(text: &str) -> Amount {
    text.parse().expect("the demo's amounts are valid")
}

fn check(holds: bool, what: &str) -> Result<(), CliError> {
    if holds {
        println!("   ✓ {what}");
        Ok(())
    } else {
        Err(CliError::local(format!("demo step failed: {what}")))
    }
}

fn item(id: &str, title: &str, price: &str, content: &str) -> CatalogItem {
    CatalogItem {
        id: id.into(),
        title: title.into(),
        price: amount(price),
        content: content.as_bytes().to_vec(),
    }
}

pub async fn run() -> Result<(), CliError> {
    let work = tempfile::tempdir()
        .map_err(|e| CliError::local(format!("cannot make a working directory: {e}")))?;
    let path = |name: &str| work.path().join(name);
    let random = || Secret32::random(&mut rand::rngs::OsRng);
    let euro: Currency = "EUR".parse().expect("EUR is a currency");
    let loopback = || vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid address")];

    println!("== scrip demo: a broker, two merchants and a customer on 127.0.0.1 ==\n");
    let broker_seed = random();
    let broker = BrokerNode::start(
        Broker::new(BrokerKeys::from_seed(&broker_seed), BrokerConfig::new(euro)),
        &BrokerDatabase::Sqlite(path("broker.db")),
        loopback(),
        scrip_node::NetOptions::default(),
    )
    .await
    .map_err(CliError::local)?;
    let broker_address = broker.node.listen_addresses()[0].clone();
    println!("1. The broker, the bank of scrip, listens on {broker_address}");
    // The operator's view of the same database, as `scrip broker …` commands have.
    let operator = Broker::new(BrokerKeys::from_seed(&broker_seed), BrokerConfig::new(euro));
    let mut books = SqliteBrokerStore::open(&path("broker.db")).map_err(CliError::local)?;
    let now = scrip_node::now;
    let alice = operator.open_account(&mut books, now(), &mut rand::rngs::OsRng, "alice")?;
    let tea_account =
        operator.open_account(&mut books, now(), &mut rand::rngs::OsRng, "tea shop")?;
    let news_account =
        operator.open_account(&mut books, now(), &mut rand::rngs::OsRng, "news stand")?;
    operator.deposit(&mut books, now(), alice.number, amount("100"))?;
    println!(
        "2. Accounts opened: alice {} (funded with 100.00 EUR), tea shop {}, news stand {}",
        alice.number, tea_account.number, news_account.number
    );

    let tea_seed = random();
    let tea = MerchantNode::start(
        MerchantSetup {
            keys: MerchantKeys::from_seed(&tea_seed),
            config: MerchantConfig::new("tea"),
            catalog: vec![
                item("green", "Green tea", "0.002", "a cup of green tea"),
                item("black", "Black tea", "0.0035", "a cup of black tea"),
            ],
            account: tea_account.number,
            pin: tea_account.pin.clone(),
        },
        &path("tea.db"),
        loopback(),
        broker_address.clone(),
        scrip_node::NetOptions::default(),
    )
    .await
    .map_err(CliError::local)?;
    let news = MerchantNode::start(
        MerchantSetup {
            keys: MerchantKeys::from_seed(&random()),
            config: MerchantConfig::new("news"),
            catalog: vec![item(
                "daily",
                "The Daily",
                "0.005",
                "today's news: scrip works",
            )],
            account: news_account.number,
            pin: news_account.pin.clone(),
        },
        &path("news.db"),
        loopback(),
        broker_address.clone(),
        scrip_node::NetOptions::default(),
    )
    .await
    .map_err(CliError::local)?;
    println!("3. Merchants registered at the broker (licences sealed to it) and at its rendezvous point:");
    println!(
        "   tea  {}\n   news {}",
        tea.node.listen_addresses()[0],
        news.node.listen_addresses()[0]
    );
    let tea_id = tea.service.merchant().id();
    let news_id = news.service.merchant().id();

    let mut customer = Customer::connect(
        broker_address.clone(),
        WalletKeys::from_seed(&random()),
        SqliteWalletStore::open(&path("alice-wallet.db")).map_err(CliError::local)?,
        scrip_node::NetOptions::default(),
    )
    .await?;
    println!("4. Alice's wallet connects from an ephemeral peer identity");

    println!(
        "\n5. Obtain BrokerScrip: 5.00 EUR from account {}, credentials sealed to the broker",
        alice.number
    );
    let obtained = customer
        .obtain_broker_scrip(alice.number, alice.pin.clone(), amount("5"))
        .await?;
    check(
        obtained.len() == 1 && obtained[0].value() == amount("5"),
        "alice holds BrokerScrip worth 5.00",
    )?;
    check(
        operator
            .accounts(&mut books)?
            .iter()
            .any(|a| a.number == alice.number && a.balance == amount("95")),
        "her account went from 100.00 to 95.00",
    )?;

    println!("\n6. Obtain VendorScrip: 0.05 EUR valid only at tea, change in BrokerScrip");
    let exchanged = customer.obtain_vendor_scrip(tea_id, amount("0.05")).await?;
    check(
        exchanged.len() == 2 && exchanged[1].value() == amount("4.95"),
        "VendorScrip 0.05 for tea and 4.95 BrokerScrip change",
    )?;

    println!("\n7. Buy items: tea validates each VendorScrip locally and returns change");
    let mut spent: Option<(Scrip, CustomerSecret)> = None;
    for (what, price) in [("green", "0.002"), ("black", "0.0035"), ("green", "0.002")] {
        let before = customer
            .scrip()
            .map_err(scrip_node::customer::CustomerError::from)?;
        let held = before
            .into_iter()
            .find(|s| s.scrip.body.kind == ScripKind::Vendor && s.state == ScripState::Available);
        let delivered = customer.buy(tea_id, what, None).await?;
        let change = delivered
            .change
            .as_ref()
            .map(|c| c.value())
            .unwrap_or(Amount::ZERO);
        println!(
            "   bought {what} for {price}: \"{}\", change {change}",
            String::from_utf8_lossy(&delivered.content)
        );
        // The wallet keeps each item until its user has it.
        forget_item(customer.store(), delivered.request_id)
            .map_err(scrip_node::customer::CustomerError::from)?;
        spent = held.map(|h| (h.scrip, h.secret));
    }
    let balances = customer
        .balances()
        .map_err(scrip_node::customer::CustomerError::from)?;
    check(
        balances.vendor_scrip == vec![(tea_id, amount("0.0425"))],
        "alice holds 0.0425 of tea's VendorScrip (0.05 - 0.0075)",
    )?;

    println!("\n8. Settlement: tea reports its payments, the broker matches them with the intents and credits tea");
    let settled = tea
        .service
        .forward_payment_records(&tea.link)
        .await
        .map_err(CliError::local)?;
    let earned = |books: &mut SqliteBrokerStore, number| {
        operator.accounts(books).map(|accounts| {
            accounts
                .into_iter()
                .find(|a| a.number == number)
                .map(|a| a.balance)
        })
    };
    let tea_balance = earned(&mut books, tea_account.number)?;
    check(
        settled.refused.is_empty() && tea_balance == Some(amount("0.0075")),
        "tea's account holds exactly 0.0075 EUR",
    )?;

    println!("\n9. Role inversion: the tea shop spends its earnings at the news stand");
    let mut tea_wallet = Customer::connect(
        broker_address.clone(),
        WalletKeys::from_seed(&tea_seed),
        SqliteWalletStore::open(&path("tea-wallet.db")).map_err(CliError::local)?,
        scrip_node::NetOptions::default(),
    )
    .await?;
    tea_wallet
        .obtain_broker_scrip(
            tea_account.number,
            tea_account.pin.clone(),
            amount("0.0075"),
        )
        .await?;
    let paper = tea_wallet.buy(news_id, "daily", None).await?;
    println!(
        "   tea bought the daily: \"{}\"",
        String::from_utf8_lossy(&paper.content)
    );
    forget_item(tea_wallet.store(), paper.request_id)
        .map_err(scrip_node::customer::CustomerError::from)?;
    news.service
        .forward_payment_records(&news.link)
        .await
        .map_err(CliError::local)?;
    check(
        earned(&mut books, news_account.number)? == Some(amount("0.005")),
        "news's account holds exactly 0.005 EUR",
    )?;

    println!("\n10. A double spend: alice's spent VendorScrip sent again, under a new request id");
    let (old, secret) =
        spent.ok_or_else(|| CliError::local("demo step failed: no spent scrip was kept"))?;
    let replay = Proved::prove(
        Buy {
            request_id: RequestId::random(&mut rand::rngs::OsRng),
            scrip: old.clone(),
            purchase: Purchase::Item("green".into()),
            price: amount("0.002"),
        },
        &secret,
    );
    let answer = customer
        .merchant_request(tea_id, &MerchantRequest::Buy(replay))
        .await?;
    report_refusal(&answer);
    check(
        answer == MerchantResponse::Refused(Refusal::DoubleSpend { scrip: old.id() }),
        "refused as a double spend",
    )?;

    println!(
        "\n11. A forged scrip: VendorScrip for tea worth 1000.00, stamped without tea's secret"
    );
    let mut body = old.body.clone();
    body.value = amount("1000");
    body.id = scrip_proto::ScripId::random(body.id.series, &mut rand::rngs::OsRng);
    let forged = Scrip::mint(body, &StampingSecret(random()));
    let attempt = Proved::prove(
        Buy {
            request_id: RequestId::random(&mut rand::rngs::OsRng),
            scrip: forged.clone(),
            purchase: Purchase::Item("green".into()),
            price: amount("0.002"),
        },
        &secret,
    );
    let answer = customer
        .merchant_request(tea_id, &MerchantRequest::Buy(attempt))
        .await?;
    report_refusal(&answer);
    check(
        answer == MerchantResponse::Refused(Refusal::ForgedStamp { scrip: forged.id() }),
        "refused as forged",
    )?;

    println!("\n12. The books");
    tea.service
        .forward_payment_records(&tea.link)
        .await
        .map_err(CliError::local)?;
    for account in operator.accounts(&mut books)? {
        println!(
            "   {:<12} {} {:>10} EUR",
            account.name,
            account.number,
            account.balance.to_string()
        );
    }
    let ledger = operator.ledger(&mut books)?;
    let total = |wanted: &dyn Fn(&LedgerAccount) -> bool| -> i64 {
        ledger
            .iter()
            .filter(|(a, _)| wanted(a))
            .map(|(_, b)| *b)
            .sum()
    };
    let deposits = -total(&|a| *a == LedgerAccount::MoneyIn);
    let accounts = total(&|a| matches!(a, LedgerAccount::Customer(_)));
    let broker_scrip = total(&|a| *a == LedgerAccount::OutstandingBrokerScrip);
    let vendor_scrip = total(&|a| matches!(a, LedgerAccount::OutstandingVendorScrip(_)));
    let shown = |minor: i64| Amount::from_minor(minor.unsigned_abs()).unwrap_or_default();
    println!(
        "   outstanding BrokerScrip {}, outstanding VendorScrip {}",
        shown(broker_scrip),
        shown(vendor_scrip)
    );
    check(
        deposits == accounts + broker_scrip + vendor_scrip,
        &format!(
            "value is conserved: deposits {} = accounts {} + BrokerScrip {} + VendorScrip {}",
            shown(deposits),
            shown(accounts),
            shown(broker_scrip),
            shown(vendor_scrip)
        ),
    )?;

    println!("\n13. The audit: alice checks her receipts, and an auditor with only the broker's public key checks the books");
    let verified = customer.verify_log(Vec::new()).await?;
    check(
        verified.problems.is_empty() && verified.receipts > 0,
        &format!(
            "all {} of alice's log receipts are in the broker's log of {} entries, which only grew",
            verified.receipts, verified.log_size
        ),
    )?;
    let snapshot = {
        use scrip_core::store::{BrokerStore, BrokerTx};
        books
            .begin()
            .and_then(|mut tx| tx.snapshot())
            .map_err(CliError::local)?
    };
    let audit = scrip_core::audit::audit(&operator.info().broker, &snapshot, now());
    for finding in &audit.findings {
        println!(
            "   FAIL [{}] {}: expected {}, found {}",
            finding.check, finding.location, finding.expected, finding.found
        );
    }
    check(
        audit.clean() && audit.refused_double_spends == 0,
        &format!("audit passed: {} log entries under signed checkpoints, ledger replayed, payments matched, value conserved", audit.log_size),
    )?;

    tea.shutdown().await;
    news.shutdown().await;
    broker.node.shutdown().await;
    println!("\nEvery step did what it should.");
    Ok(())
}

fn report_refusal(answer: &MerchantResponse) {
    if let MerchantResponse::Refused(refusal) = answer {
        println!("   tea answered: {refusal}");
    }
}
