//! `scrip broker …`: set up, run and administer a broker.

use std::path::Path;

use libp2p::Multiaddr;
use scrip_core::ledger::LedgerAccount;
use scrip_core::store::{BrokerStore, BrokerTx};
use scrip_core::{Broker, BrokerConfig, BrokerKeys};
use scrip_node::broker::BrokerNode;
use scrip_proto::{AccountNumber, Amount, Currency};
use scrip_store::{BrokerDatabase, BrokerDb};
use serde_json::json;

use crate::dirs::{self, BrokerDir, BrokerFile};
use crate::output::{CliError, Report};

pub fn init(dir: &Path, currency: &str, database: Option<&str>) -> Result<Report, CliError> {
    let currency: Currency = currency.parse().map_err(CliError::local)?;
    let layout = BrokerDir(dir.to_owned());
    let file = BrokerFile {
        currency: currency.to_string(),
        database: database.map(str::to_owned),
    };
    let database = layout.database(&file);
    if let Some(text) = &file.database {
        if !matches!(BrokerDatabase::parse(text), BrokerDatabase::Postgres(_)) {
            return Err(CliError::local(format!(
                "--database takes a PostgreSQL URL, not {database}"
            ))
            .with_hint("write postgres://user@host:port/db, or leave --database out to keep the broker's state in DIR/broker.db"));
        }
    }
    // A PostgreSQL database that cannot be reached, or already holds a
    // broker, is refused before anything is written: no half-made directory.
    let postgres = matches!(database, BrokerDatabase::Postgres(_));
    if postgres {
        create_store(&database)?;
    }
    dirs::create(dir, &layout.seed(), "broker")?;
    let seed = dirs::write_seed(&layout.seed())?;
    dirs::write_toml(&layout.config(), &file)?;
    if !postgres {
        create_store(&database)?;
    }
    let public_key = BrokerKeys::from_seed(&seed).public_key();
    std::fs::write(layout.public_key(), format!("{public_key}\n")).map_err(|e| {
        CliError::local(format!(
            "cannot write {}: {e}",
            layout.public_key().display()
        ))
    })?;
    let peer = scrip_node::keypair(&BrokerKeys::from_seed(&seed).signing)
        .public()
        .to_peer_id();
    Ok(Report::new(
        "broker-initialised",
        format!("broker initialised in {} (currency {currency}, peer id {peer})\nnext: scrip broker run {}", dir.display(), dir.display()),
        json!({ "dir": dir, "currency": currency.to_string(), "peer_id": peer.to_string() }),
    ))
}

/// Creates (or migrates) the store of a new broker: refuses one that
/// already holds a broker's log.
fn create_store(database: &BrokerDatabase) -> Result<(), CliError> {
    let mut store = database.open().map_err(|e| {
        CliError::local(e).with_hint("is the database running, and does the URL name it?")
    })?;
    let used = store
        .begin()
        .and_then(|mut tx| tx.log_size())
        .map_err(CliError::local)?;
    if used > 0 {
        return Err(CliError::local(format!(
            "{database} already holds a broker's state"
        ))
        .with_hint("to run another process of that broker, copy its directory (broker.toml and broker.seed) instead of running init; for a new broker, use an empty database"));
    }
    Ok(())
}

/// The broker of a directory, with its store and where that store is.
pub fn load(dir: &Path) -> Result<(Broker, BrokerDb, BrokerDatabase), CliError> {
    let layout = BrokerDir(dir.to_owned());
    let file: BrokerFile = dirs::read_toml(&layout.config())?;
    let currency: Currency = file.currency.parse().map_err(CliError::local)?;
    let broker = Broker::new(
        BrokerKeys::from_seed(&dirs::read_seed(&layout.seed())?),
        BrokerConfig::new(currency),
    );
    let database = layout.database(&file);
    let store = database.open().map_err(CliError::local)?;
    Ok((broker, store, database))
}

pub async fn run(
    dir: &Path,
    listen: Multiaddr,
    net: scrip_node::NetOptions,
    json: bool,
) -> Result<(), CliError> {
    let (broker, store, database) = load(dir)?;
    drop(store);
    let node = BrokerNode::start(broker, &database, vec![listen], net)
        .await
        .map_err(|e| match e {
            scrip_node::NetError::Listen(_) => CliError::local(e).with_hint(
                "is another broker listening on that address? choose another with --listen",
            ),
            other => CliError::local(other),
        })?;
    for address in node.node.listen_addresses() {
        Report::new(
            "broker-listening",
            format!("broker listening on {address}"),
            json!({ "address": address.to_string() }),
        )
        .print(json)?;
    }
    super::shutdown_signal().await;
    // Every answered request was committed before its answer left; nothing is left to flush.
    node.node.shutdown().await;
    Ok(())
}

pub fn open_account(dir: &Path, name: &str) -> Result<Report, CliError> {
    let (broker, mut store, _) = load(dir)?;
    let opened =
        broker.open_account(&mut store, scrip_node::now(), &mut rand::rngs::OsRng, name)?;
    Ok(Report::new(
        "account-opened",
        format!("account {} opened for {name}\nPIN {} (shown once: give it to the account holder, it is stored only as a hash)", opened.number, opened.pin.expose()),
        json!({ "account": opened.number.to_string(), "name": name, "pin": opened.pin.expose() }),
    ))
}

pub fn deposit(dir: &Path, account: AccountNumber, amount: Amount) -> Result<Report, CliError> {
    let (broker, mut store, _) = load(dir)?;
    let balance = broker.deposit(&mut store, scrip_node::now(), account, amount)?;
    Ok(balance_report(
        "deposit",
        account,
        amount,
        balance,
        broker.config().currency,
    ))
}

pub fn withdraw(dir: &Path, account: AccountNumber, amount: Amount) -> Result<Report, CliError> {
    let (broker, mut store, _) = load(dir)?;
    let balance = broker.withdraw(&mut store, scrip_node::now(), account, amount)?;
    Ok(balance_report(
        "withdrawal",
        account,
        amount,
        balance,
        broker.config().currency,
    ))
}

/// Lifts an account's lock and clears its wrong PINs (logged as `AccountUnlocked`).
/// Safe while `broker run` serves the same directory: the count and the lock
/// are in the database, which both use one transaction at a time.
pub fn unlock(dir: &Path, account: AccountNumber) -> Result<Report, CliError> {
    let (broker, mut store, _) = load(dir)?;
    let now = scrip_node::now();
    let cleared = broker.unlock_account(&mut store, now, account)?;
    let text = match cleared.lock {
        Some(lock) => format!(
            "account {account} unlocked: it was locked at {} ({}) after {} wrong PINs in a row; its PIN is accepted again",
            lock.at,
            match lock.until {
                Some(until) if lock.in_force(now) => format!("until {until}"),
                Some(until) => format!("the lock had lapsed at {until}"),
                None => "until unlocked".to_owned(),
            },
            cleared.failures
        ),
        None if cleared.failures > 0 => format!(
            "account {account} was not locked; its {} wrong PINs in a row are cleared",
            cleared.failures
        ),
        None => format!("account {account} was not locked and had no wrong PINs: nothing to do"),
    };
    Ok(Report::new(
        "account-unlocked",
        text,
        json!({
            "account": account.to_string(),
            "was_locked": cleared.lock.is_some_and(|lock| lock.in_force(now)),
            "locked_at": cleared.lock.map(|lock| lock.at.0),
            "locked_until": cleared.lock.and_then(|lock| lock.until).map(|until| until.0),
            "wrong_pins_cleared": cleared.failures,
        }),
    ))
}

fn balance_report(
    kind: &'static str,
    account: AccountNumber,
    amount: Amount,
    balance: Amount,
    currency: Currency,
) -> Report {
    Report::new(
        kind,
        format!("{kind} of {amount} {currency} to account {account}; balance {balance} {currency}"),
        json!({ "account": account.to_string(), "amount": amount.to_string(), "balance": balance.to_string(), "currency": currency.to_string() }),
    )
}

pub fn accounts(dir: &Path) -> Result<Report, CliError> {
    let (broker, mut store, _) = load(dir)?;
    let currency = broker.config().currency;
    let accounts = broker.accounts(&mut store)?;
    let ledger = broker.ledger(&mut store)?;
    let total = |wanted: fn(&LedgerAccount) -> bool| -> i64 {
        ledger
            .iter()
            .filter(|(a, _)| wanted(a))
            .map(|(_, b)| *b)
            .sum()
    };
    let shown = |minor: i64| {
        Amount::from_minor(minor.unsigned_abs())
            .map(|a| {
                if minor < 0 {
                    format!("-{a}")
                } else {
                    a.to_string()
                }
            })
            .unwrap_or_default()
    };
    let deposits = shown(-total(|a| *a == LedgerAccount::MoneyIn));
    let withdrawals = shown(total(|a| *a == LedgerAccount::MoneyOut));
    let broker_scrip = shown(total(|a| *a == LedgerAccount::OutstandingBrokerScrip));
    let vendor_scrip = shown(total(|a| {
        matches!(a, LedgerAccount::OutstandingVendorScrip(_))
    }));
    let mut text = format!(
        "{:<14} {:<24} {:>16}  merchant\n",
        "account",
        "name",
        format!("balance {currency}")
    );
    let now = scrip_node::now();
    let locked = |a: &scrip_core::broker::AccountSummary| {
        a.pin_failures.lock.filter(|lock| lock.in_force(now))
    };
    for a in &accounts {
        text.push_str(&format!(
            "{:<14} {:<24} {:>16}  {}\n",
            a.number.to_string(),
            a.name,
            a.balance.to_string(),
            a.merchants.join(", ")
        ));
    }
    for a in &accounts {
        if let Some(lock) = locked(a) {
            let until = lock.until.map_or("until unlocked".to_owned(), |until| {
                format!("until {until}")
            });
            text.push_str(&format!(
                "account {} is locked {until} after {} wrong PINs (scrip broker unlock)\n",
                a.number, a.pin_failures.count
            ));
        }
    }
    text.push_str(&format!("deposited {deposits}, withdrawn {withdrawals}, outstanding BrokerScrip {broker_scrip}, outstanding VendorScrip {vendor_scrip}"));
    let rows: Vec<_> = accounts.iter().map(|a| json!({ "account": a.number.to_string(), "name": a.name, "balance": a.balance.to_string(), "merchants": a.merchants, "wrong_pins": a.pin_failures.count, "locked": locked(a).is_some(), "locked_until": locked(a).and_then(|lock| lock.until).map(|until| until.0) })).collect();
    Ok(Report::new(
        "accounts",
        text,
        json!({ "currency": currency.to_string(), "accounts": rows, "deposited": deposits, "withdrawn": withdrawals, "outstanding_broker_scrip": broker_scrip, "outstanding_vendor_scrip": vendor_scrip }),
    ))
}

#[cfg(test)]
mod tests {
    use scrip_core::{PinHashing, Wallet, WalletKeys};
    use scrip_proto::msg::BrokerResponse;
    use scrip_proto::{Pin, Refusal, Secret32};
    use scrip_store_sqlite::SqliteWalletStore;

    use super::*;

    #[test]
    fn unlock_lifts_a_lock_made_by_wrong_pins_and_logs_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("broker");
        init(&dir, "EUR", None).unwrap();
        // The directory's broker, with cheap PIN hashing for the test's account.
        let layout = BrokerDir(dir.clone());
        let mut config = BrokerConfig::new("EUR".parse().unwrap());
        config.pin_hashing = PinHashing::FAST_INSECURE;
        let broker = Broker::new(
            BrokerKeys::from_seed(&dirs::read_seed(&layout.seed()).unwrap()),
            config,
        );
        let mut store =
            scrip_store_sqlite::SqliteBrokerStore::open(&layout.sqlite_database()).unwrap();
        let rng = &mut rand::rngs::OsRng;
        let now = scrip_node::now();
        let opened = broker.open_account(&mut store, now, rng, "carol").unwrap();
        let wrong = Pin::new(if opened.pin.expose() == "00000000" {
            "11111111"
        } else {
            "00000000"
        })
        .unwrap();
        let wallet = Wallet::new(WalletKeys::from_seed(&Secret32::random(rng)), broker.info());
        let mut wallet_store = SqliteWalletStore::open_in_memory().unwrap();
        let mut last = None;
        for _ in 0..broker.config().max_pin_failures.get() {
            let pending = wallet
                .obtain_broker_scrip(
                    &mut wallet_store,
                    rng,
                    opened.number,
                    wrong.clone(),
                    "1".parse().unwrap(),
                )
                .unwrap();
            let request = scrip_proto::decode(&pending.request).unwrap();
            last = Some(broker.handle(&mut store, now, rng, &request));
        }
        let locked = Refusal::AccountLocked {
            account: opened.number,
            until: None,
        };
        assert_eq!(last, Some(BrokerResponse::Refused(locked)));

        let books = accounts(&dir).unwrap();
        assert_eq!(books.data["accounts"][0]["locked"], true, "{}", books.data);
        assert!(books.text.contains("is locked"), "{}", books.text);

        let report = unlock(&dir, opened.number).unwrap();
        assert_eq!(report.kind, "account-unlocked");
        assert_eq!(report.data["was_locked"], true);
        assert_eq!(report.data["wrong_pins_cleared"], 5);
        assert!(report.text.contains("unlocked"), "{}", report.text);
        let books = accounts(&dir).unwrap();
        assert_eq!(books.data["accounts"][0]["locked"], false);

        // Again: nothing left to clear, and nothing logged.
        let again = unlock(&dir, opened.number).unwrap();
        assert!(again.text.contains("nothing to do"), "{}", again.text);
        let (report, verdict) = super::super::audit::run(&dir, None).unwrap();
        assert!(verdict.is_ok(), "{}", report.text);
        assert_eq!(
            report.data["account_locks"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            report.data["account_unlocks"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            report.data["locked_accounts"].as_array().map(Vec::len),
            Some(0)
        );
    }
}
