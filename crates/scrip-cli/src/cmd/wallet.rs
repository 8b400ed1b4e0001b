//! `scrip wallet DIR …`: a peer's wallet on the network.

use std::io::Write;
use std::path::{Path, PathBuf};

use scrip_core::WalletKeys;
use scrip_node::customer::{Customer, CustomerError};
use scrip_proto::msg::Purchase;
use scrip_proto::{AccountNumber, Amount, RequestId, Scrip};
use scrip_store_sqlite::SqliteWalletStore;
use serde_json::json;

use crate::dirs::{self, PeerDir};
use crate::output::{escape, terminal_text, CliError, Report};

/// Connects the wallet of a peer directory to its broker, resending anything
/// left pending, and writes out every item the wallet still keeps.
pub async fn connect(dir: &Path, net: scrip_node::NetOptions) -> Result<Customer, CliError> {
    let layout = PeerDir(dir.to_owned());
    let broker = super::peer::broker_address(&layout)?;
    let seed = dirs::read_seed(&layout.seed())?;
    let store = SqliteWalletStore::open(&layout.wallet()).map_err(CliError::local)?;
    let mut customer = Customer::connect(broker, WalletKeys::from_seed(&seed), store, net).await?;
    write_kept_items(&mut customer, dir)?;
    Ok(customer)
}

/// Writes each item the wallet keeps to `recovered-<request id>` in the peer
/// directory, synced, and then forgets it. The wallet keeps an item from the
/// moment its purchase settles until the user has it: a purchase an earlier
/// run left pending that [`Customer::connect`] just completed, a run that
/// stopped before writing its item out, or an item a terminal cannot show.
fn write_kept_items(customer: &mut Customer, dir: &Path) -> Result<(), CliError> {
    let items = customer.items().map_err(CustomerError::from)?;
    for item in items {
        let path = recovered_path(dir, item.request_id);
        let what = match &item.purchase {
            Purchase::Item(id) => format!("the item \"{}\"", escape(id)),
            Purchase::Renew => "a renewal".into(),
        };
        match write_synced(&path, &item.content) {
            Ok(()) => {
                eprintln!("note: {what} bought and not yet written out is in {}", path.display());
                customer
                    .forget_item(item.request_id)
                    .map_err(CustomerError::from)?;
            }
            Err(e) => eprintln!(
                "note: {what} bought and not yet written out cannot be written to {}: {e}; the wallet keeps it and tries again on its next command",
                path.display()
            ),
        }
    }
    Ok(())
}

fn recovered_path(dir: &Path, request: RequestId) -> PathBuf {
    dir.join(format!("recovered-{request}"))
}

/// Writes `content` to a new or truncated file at `path`, and syncs the file
/// and its directory, so the item is on disk before the wallet forgets it.
fn write_synced(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(content)?;
    file.sync_all()?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Once a purchase's report is out, the user has the item: syncs standard
/// output if it is a file, then lets the wallet forget the item.
pub fn forget_delivered(customer: &mut Customer, request: RequestId) -> Result<(), CliError> {
    use std::os::fd::AsFd;
    let synced = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|out| match out.metadata()?.is_file() {
            true => out.sync_all(),
            false => Ok(()),
        });
    synced.map_err(|e| {
        CliError::local(format!(
            "bought, but cannot sync standard output: {e}; the wallet keeps the item and writes it to a recovered-{request} file on its next command"
        ))
    })?;
    customer.forget_item(request).map_err(CustomerError::from)?;
    Ok(())
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

/// Step 3. The report holds the item unless `out` names a file or it is not
/// text a terminal can show; with it, the purchase's request id for
/// [`forget_delivered`] once the report is out. An item the report does not
/// deliver is written to a `recovered-` file here.
pub async fn buy(
    customer: &mut Customer,
    dir: &Path,
    merchant: &str,
    item: &str,
    out: Option<&Path>,
    top_up: Option<Amount>,
    json_output: bool,
) -> Result<(Report, Option<RequestId>), CliError> {
    let entry = customer.resolve(merchant).await?;
    let delivered = customer.buy(entry.merchant, item, top_up).await?;
    let request = delivered.request_id;
    let change = delivered
        .change
        .as_ref()
        .map(|c| c.value())
        .unwrap_or(Amount::ZERO);
    let kept_hint = || {
        format!(
            "the wallet keeps the item and writes it to {} on its next command",
            recovered_path(dir, request).display()
        )
    };
    let mut data = json!({ "merchant": entry.name, "item": item, "change": change.to_string(), "request_id": request.to_string() });
    let (item, name) = (escape(item), escape(&entry.name));
    let mut text = String::new();
    // Whether the report delivers the item, so the wallet may forget it once the report is out.
    let mut delivers = true;
    match out {
        Some(path) => {
            write_synced(path, &delivered.content).map_err(|e| {
                CliError::local(format!("bought, but cannot write {}: {e}", path.display()))
                    .with_hint(kept_hint())
            })?;
            text = format!(
                "bought {item} from {name}, written to {}; change {change}",
                path.display()
            );
        }
        // Exact in JSON: text as a string, anything else as hex.
        None if json_output => match std::str::from_utf8(&delivered.content) {
            Ok(content) => data["content"] = json!(content),
            Err(_) => data["content_hex"] = json!(hex::encode(&delivered.content)),
        },
        // On a terminal, text the merchant chose cannot drive it; into a pipe or file, the exact bytes.
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            match terminal_text(&delivered.content) {
                Some(content) => text.push_str(content),
                None => {
                    delivers = false;
                    write_kept_items(customer, dir)?;
                    text = format!(
                        "bought {item} from {name}, {} bytes that are not text (the note above says where they are); change {change}",
                        delivered.content.len()
                    );
                }
            }
        }
        None => {
            let mut stdout = std::io::stdout();
            stdout
                .write_all(&delivered.content)
                .and_then(|_| stdout.flush())
                .map_err(|e| {
                    CliError::local(format!("bought, but cannot write the item: {e}"))
                        .with_hint(kept_hint())
                })?;
        }
    }
    Ok((
        Report::new("purchase", text, data),
        delivers.then_some(request),
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
