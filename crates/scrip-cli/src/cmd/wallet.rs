//! `scrip wallet DIR …`: a peer's wallet on the network.

use std::path::Path;

use scrip_core::WalletKeys;
use scrip_node::customer::Customer;
use scrip_proto::{AccountNumber, Amount, Scrip};
use scrip_store_sqlite::SqliteWalletStore;
use serde_json::json;

use crate::dirs::{self, PeerDir};
use crate::output::{escape, CliError, Report};

/// Connects the wallet of a peer directory to its broker, resending anything left pending.
pub async fn connect(dir: &Path, net: scrip_node::NetOptions) -> Result<Customer, CliError> {
    let layout = PeerDir(dir.to_owned());
    let broker = super::peer::broker_address(&layout)?;
    let seed = dirs::read_seed(&layout.seed())?;
    let store = SqliteWalletStore::open(&layout.wallet()).map_err(CliError::local)?;
    let mut customer = Customer::connect(broker, WalletKeys::from_seed(&seed), store, net).await?;
    // A purchase an earlier run left pending may have completed just now: keep what it delivered.
    for (request, delivered) in customer.take_recovered() {
        let path = dir.join(format!("recovered-{request}"));
        match std::fs::write(&path, &delivered.content) {
            Ok(()) => eprintln!("note: a purchase left pending by an earlier run completed; the item is in {}", path.display()),
            Err(e) => eprintln!("note: a purchase left pending by an earlier run completed, but its item cannot be written to {}: {e}", path.display()),
        }
    }
    Ok(customer)
}

fn scrip_json(scrip: &[Scrip]) -> serde_json::Value {
    scrip
        .iter()
        .map(|s| json!({ "kind": s.body.kind.to_string(), "id": s.id().to_string(), "value": s.value().to_string(), "issuer": s.body.issuer.to_string(), "expiry": s.body.expiry.0 }))
        .collect()
}

fn scrip_text(scrip: &[Scrip]) -> String {
    scrip
        .iter()
        .map(|s| format!("{} {} worth {}", s.body.kind, s.id(), s.value()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn obtain_broker_scrip(
    customer: &mut Customer,
    account: AccountNumber,
    amount: Amount,
) -> Result<Report, CliError> {
    let pin = super::read_pin()?;
    let scrip = customer.obtain_broker_scrip(account, pin, amount).await?;
    Ok(Report::new(
        "broker-scrip-obtained",
        format!("obtained {}", scrip_text(&scrip)),
        json!({ "scrip": scrip_json(&scrip) }),
    ))
}

pub async fn obtain_vendor_scrip(
    customer: &mut Customer,
    merchant: &str,
    amount: Amount,
) -> Result<Report, CliError> {
    let entry = customer.resolve(merchant).await?;
    let scrip = customer.obtain_vendor_scrip(entry.merchant, amount).await?;
    Ok(Report::new(
        "vendor-scrip-obtained",
        format!(
            "obtained for {}:\n{}",
            escape(&entry.name),
            scrip_text(&scrip)
        ),
        json!({ "merchant": entry.name, "scrip": scrip_json(&scrip) }),
    ))
}

pub async fn merchants(customer: &Customer) -> Result<Report, CliError> {
    let merchants = customer.merchants().await?;
    let text = merchants
        .iter()
        .map(|m| {
            format!(
                "{:<24} {}",
                escape(&m.name),
                scrip_node::peer_id(&m.merchant)
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rows: Vec<_> = merchants.iter().map(|m| json!({ "name": m.name, "merchant": m.merchant.to_string(), "peer_id": scrip_node::peer_id(&m.merchant).map(|p| p.to_string()) })).collect();
    Ok(Report::new(
        "merchants",
        if text.is_empty() {
            "no merchant is registered yet".into()
        } else {
            text
        },
        json!({ "merchants": rows }),
    ))
}

pub async fn catalog(customer: &mut Customer, merchant: &str) -> Result<Report, CliError> {
    let entry = customer.resolve(merchant).await?;
    let listing = customer.catalog(entry.merchant).await?;
    let text = listing
        .items
        .iter()
        .map(|i| {
            format!(
                "{:<16} {:>12} {}  {}",
                escape(&i.id),
                i.price.to_string(),
                listing.currency,
                escape(&i.title)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rows: Vec<_> = listing
        .items
        .iter()
        .map(|i| json!({ "id": i.id, "title": i.title, "price": i.price.to_string() }))
        .collect();
    Ok(Report::new(
        "catalog",
        text,
        json!({ "merchant": listing.name, "currency": listing.currency.to_string(), "items": rows }),
    ))
}

pub async fn buy(
    customer: &mut Customer,
    merchant: &str,
    item: &str,
    out: Option<&Path>,
    top_up: Option<Amount>,
    json_output: bool,
) -> Result<Report, CliError> {
    let entry = customer.resolve(merchant).await?;
    let delivered = customer.buy(entry.merchant, item, top_up).await?;
    let change = delivered
        .change
        .as_ref()
        .map(|c| c.value())
        .unwrap_or(Amount::ZERO);
    let mut text = String::new();
    match out {
        Some(path) => {
            std::fs::write(path, &delivered.content).map_err(|e| {
                CliError::local(format!(
                    "bought, but cannot write {}: {e}; the receipt is in the wallet",
                    path.display()
                ))
            })?;
            text.push_str(&format!(
                "bought {} from {}, written to {}; change {change}",
                escape(item),
                escape(&entry.name),
                path.display()
            ));
        }
        None if json_output => {}
        // On a terminal, text the merchant chose cannot drive it; into a pipe or file, the exact bytes.
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            text.push_str(&escape(&String::from_utf8_lossy(&delivered.content)))
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout();
            stdout
                .write_all(&delivered.content)
                .and_then(|_| stdout.flush())
                .map_err(|e| {
                    CliError::local(format!(
                        "bought, but cannot write the item: {e}; the receipt is in the wallet"
                    ))
                })?;
        }
    }
    let content = if out.is_none() {
        Some(String::from_utf8_lossy(&delivered.content).into_owned())
    } else {
        None
    };
    Ok(Report::new(
        "purchase",
        text,
        json!({ "merchant": entry.name, "item": item, "change": change.to_string(), "content": content }),
    ))
}

pub async fn balance(customer: &mut Customer) -> Result<Report, CliError> {
    let currency = customer.wallet().broker().currency;
    let balances = customer
        .balances()
        .map_err(scrip_node::customer::CustomerError::from)?;
    let names = customer.merchants().await.unwrap_or_default();
    let name_of = |id: &scrip_proto::MerchantId| {
        names
            .iter()
            .find(|m| &m.merchant == id)
            .map(|m| escape(&m.name))
            .unwrap_or_else(|| id.to_string())
    };
    let mut text = format!("BrokerScrip  {} {currency}", balances.broker_scrip);
    for (merchant, amount) in &balances.vendor_scrip {
        text.push_str(&format!(
            "\nVendorScrip  {amount} {currency} at {}",
            name_of(merchant)
        ));
    }
    if !balances.pending.is_zero() {
        text.push_str(&format!(
            "\npending      {} {currency} (requests whose outcome is not known yet)",
            balances.pending
        ));
    }
    let vendor: Vec<_> = balances.vendor_scrip.iter().map(|(m, a)| json!({ "merchant": name_of(m), "merchant_id": m.to_string(), "amount": a.to_string() })).collect();
    Ok(Report::new(
        "balance",
        text,
        json!({ "currency": currency.to_string(), "broker_scrip": balances.broker_scrip.to_string(), "vendor_scrip": vendor, "pending": balances.pending.to_string() }),
    ))
}

/// Verifies the wallet's receipts and, in a merchant's peer directory, the merchant's too.
pub async fn verify(customer: &mut Customer, dir: &Path) -> Result<Report, CliError> {
    let merchant_db = PeerDir(dir.to_owned()).merchant();
    let merchant_receipts = if merchant_db.exists() {
        use scrip_core::store::{MerchantStore, MerchantTx};
        let mut store =
            scrip_store_sqlite::SqliteMerchantStore::open(&merchant_db).map_err(CliError::local)?;
        store
            .begin()
            .and_then(|mut tx| tx.receipts())
            .map_err(CliError::local)?
    } else {
        Vec::new()
    };
    let verification = customer.verify_log(merchant_receipts).await?;
    let data = json!({ "log_size": verification.log_size, "receipts": verification.receipts, "problems": verification.problems });
    if verification.problems.is_empty() {
        return Ok(Report::new(
            "log-verified",
            format!(
                "all {} receipts are in the broker's log of {} entries, and the log only grew",
                verification.receipts, verification.log_size
            ),
            data,
        ));
    }
    Err(CliError {
        failure: crate::output::Failure::Refused,
        message: format!(
            "the broker's log does not hold what it signed for this wallet:\n{}",
            verification.problems.join("\n")
        ),
        hint: Some(
            "keep this wallet directory as evidence and run `scrip audit` on the broker".into(),
        ),
    })
}
